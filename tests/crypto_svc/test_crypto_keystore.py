"""The keystore: sealed at rest, useless without the master secret, clear about a wrong
one; versions, rotation, disable and destroy."""

from __future__ import annotations

import base64
import json
import os

import pytest
from crypto_helpers import FAST_KDF, MASTER

from crypto_svc.errors import CryptoError, KeyNotFound, KeyStateError, KeystoreError
from crypto_svc.keystore import Keystore, master_secret_from_env
from soc_core.config import Config


def _secrets_of(ks: Keystore, key_id: str) -> list[bytes]:
    return [ks.private_key(key_id, v.version)[0].to_bytes()
            for v in ks.info(key_id).versions if not v.destroyed]


def test_file_alone_reveals_no_key(keystore, tmp_path):
    info = keystore.create("sign", {"department": "finance", "system": "oa"})
    scalar = keystore.private_key(info.id)[0].to_bytes()
    raw = keystore.path.read_bytes()
    for form in (scalar, scalar.hex().encode(), scalar.hex().upper().encode(),
                 base64.b64encode(scalar)):
        assert form not in raw
    assert oct(keystore.path.stat().st_mode & 0o777) == "0o600"

    locked = Keystore(keystore.path, None)
    assert [k.id for k in locked.list()] == [info.id]  # metadata and public keys: yes
    assert locked.public_key(info.id)[0] == info.version().public
    with pytest.raises(KeystoreError, match="no master secret"):
        locked.private_key(info.id)
    with pytest.raises(KeystoreError, match="no master secret"):
        locked.create("sign")


def test_wrong_master_secret_is_a_clear_error(keystore):
    info = keystore.create("sign")
    wrong = Keystore(keystore.path, b"not the master secret at all")
    with pytest.raises(KeystoreError, match="wrong master secret") as exc:
        wrong.private_key(info.id)
    assert MASTER.decode() not in str(exc.value)
    with pytest.raises(KeystoreError, match="wrong master secret"):
        wrong.unlock()
    with pytest.raises(KeystoreError, match="wrong master secret"):
        wrong.create("encrypt")  # nothing sealed under another KEK gets in
    assert len(Keystore(keystore.path, MASTER).list()) == 1


def test_short_master_secret_refused(tmp_path):
    with pytest.raises(KeystoreError, match="at least 16"):
        Keystore(tmp_path / "k.json", b"short")


def test_rotation_keeps_old_versions_for_verification(keystore):
    info = keystore.create("sign")
    v1_key, v1 = keystore.private_key(info.id)
    old_sig = v1_key.sign(b"report 2025")
    rotated = keystore.rotate(info.id)
    assert (v1, rotated.current) == (1, 2)
    assert rotated.rotated is not None
    v2_key, v2 = keystore.private_key(info.id)
    assert v2 == 2 and v2_key.public_key != v1_key.public_key
    assert rotated.version(1).public.verify(b"report 2025", old_sig)
    assert not rotated.version(2).public.verify(b"report 2025", old_sig)
    # another process (a new Keystore object on the same file) sees the rotation
    assert Keystore(keystore.path, MASTER).info(info.id).current == 2


def test_disable_enable_destroy(keystore):
    info = keystore.create("encrypt")
    keystore.rotate(info.id)
    keystore.disable(info.id)
    with pytest.raises(KeyStateError, match="disabled"):
        keystore.private_key(info.id)
    keystore.enable(info.id)
    assert keystore.private_key(info.id)[1] == 2
    scalars = _secrets_of(keystore, info.id)
    keystore.destroy(info.id)
    with pytest.raises(KeyStateError, match="destroyed"):
        keystore.private_key(info.id)
    with pytest.raises(KeyStateError, match="destroyed"):
        keystore.private_key(info.id, 1)
    with pytest.raises(KeyStateError, match="cannot be undone"):
        keystore.enable(info.id)
    with pytest.raises(KeyStateError, match="only active"):
        keystore.rotate(info.id)
    doc = json.loads(keystore.path.read_text())
    assert all(v["sealed"] is None for v in doc["keys"][info.id]["versions"])
    # a fresh object with the right secret cannot recover it either
    fresh = Keystore(keystore.path, MASTER)
    with pytest.raises(KeyStateError):
        fresh.private_key(info.id)
    assert len(scalars) == 2


def test_purpose_is_bound_to_the_sealed_material(keystore):
    info = keystore.create("encrypt")
    with pytest.raises(KeyStateError, match="not sign"):
        keystore.private_key(info.id, purpose="sign")
    doc = json.loads(keystore.path.read_text())
    doc["keys"][info.id]["purpose"] = "sign"  # an edit of the file
    keystore.path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="altered"):
        Keystore(keystore.path, MASTER).private_key(info.id, purpose="sign")


def test_unknown_key_and_bad_input(keystore):
    with pytest.raises(KeyNotFound):
        keystore.info("k0000")
    with pytest.raises(CryptoError, match="purpose") as err:  # the caller's input
        keystore.create("sign-and-encrypt")
    assert not isinstance(err.value, KeystoreError)
    info = keystore.create("sign")
    with pytest.raises(KeyNotFound, match="no version 9"):
        keystore.private_key(info.id, 9)


def test_master_key_file_must_be_0600(tmp_path, monkeypatch):
    secret = tmp_path / "master"
    secret.write_bytes(MASTER + b"\n")
    cfg = Config(values={})
    monkeypatch.delenv("GOVSOC_MASTER_KEY", raising=False)
    monkeypatch.setenv("GOVSOC_MASTER_KEY_FILE", str(secret))
    os.chmod(secret, 0o644)
    with pytest.raises(KeystoreError, match="must have mode 0600, it has 0644"):
        master_secret_from_env(cfg)
    os.chmod(secret, 0o600)
    assert master_secret_from_env(cfg) == MASTER
    monkeypatch.setenv("GOVSOC_MASTER_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(KeystoreError, match="cannot be read"):
        master_secret_from_env(cfg)
    monkeypatch.setenv("GOVSOC_MASTER_KEY", "direct-secret-value-123")
    assert master_secret_from_env(cfg) == b"direct-secret-value-123"


def test_keystore_from_config_lives_in_data_dir(crypto_env):
    ks = Keystore.from_config()
    assert ks.path == crypto_env / "keystore.json"
    info = ks.create("sign")
    assert ks.path.exists() and ks.info(info.id).purpose == "sign"
    assert json.loads(ks.path.read_text())["kdf"]["iterations"] == FAST_KDF


def test_concurrent_writers_lose_nothing(keystore):
    """Four processes create keys in the same file at once: every key is kept."""
    import subprocess
    import sys

    script = ("import sys; from crypto_svc.keystore import Keystore; "
              "ks = Keystore(sys.argv[1], sys.argv[2].encode(), iterations=1000); "
              "[print(ks.create('sign').id) for _ in range(5)]")
    keystore.create("encrypt")  # the file and its KEK parameters exist first
    procs = [subprocess.Popen([sys.executable, "-P", "-c", script, str(keystore.path),
                               MASTER.decode()], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    made = set()
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        made.update(out.split())
    listed = {k.id for k in Keystore(keystore.path, MASTER).list()}
    assert len(made) == 20 and made <= listed and len(listed) == 21
    for key_id in list(made)[:3]:
        assert keystore.private_key(key_id)[0].public_key == keystore.info(key_id).version().public


def test_compressed_public_key_input():
    from crypto_svc.sm2 import SM2PrivateKey, SM2PublicKey

    pub = SM2PrivateKey.generate().public_key
    point = pub.to_bytes()
    compressed = bytes([2 + (point[-1] & 1)]) + point[1:33]
    assert SM2PublicKey(compressed) == pub
