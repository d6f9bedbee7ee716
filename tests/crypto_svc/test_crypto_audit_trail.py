"""Key use and the durable audit trail: a process killed mid-run with the store down loses
no record of a signature it handed out, and the platform key signs the checkpoints."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

from crypto_helpers import FAST_KDF, MASTER

from crypto_svc import platform_signer, platform_verifier
from crypto_svc.keystore import Keystore
from crypto_svc.platform import find_platform_key
from crypto_svc.sm3 import sm3_hex
from soc_core.audit import checkpoint_payload, local_heads, verify
from soc_core.store import Selection, open_store

SIGNER = textwrap.dedent("""
    import sys
    from crypto_svc.service import CryptoService
    svc = CryptoService.from_config()
    key_id = svc.create_key("sign").id
    out = sys.stdout
    for i in range(10_000):
        signed = svc.sign(key_id, b"document %d" % i)
        out.write(f"{i} {signed.signature.hex()}\\n")
        out.flush()
""")
DRAINER = textwrap.dedent("""
    from crypto_svc.service import CryptoService
    svc = CryptoService.from_config()
    assert svc.audit.flush(120), list(svc.audit.errors)
    svc.close()
""")


def test_sigkill_with_the_store_down_loses_no_record(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the store's directory should be: the store is down")
    env = {**os.environ, "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/db/govsoc.db",
           "GOVSOC_DATA_DIR": str(tmp_path / "data"), "GOVSOC_MASTER_KEY": MASTER.decode(),
           "GOVSOC_CRYPTO_KDF_ITERATIONS": str(FAST_KDF), "GOVSOC_AUDIT_CHECKPOINT_EVERY": "500"}
    env.pop("GOVSOC_CONFIG", None)
    child = subprocess.Popen([sys.executable, "-c", SIGNER], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    printed = []
    for line in child.stdout:  # type: ignore[union-attr]
        printed.append(line)
        if len(printed) == 3000:
            child.send_signal(signal.SIGKILL)  # in the middle of the 10,000
            break
    # read on through the same buffered reader: communicate() reads the raw pipe and would
    # drop what the reader already holds, tearing a line at the buffer's edge
    rest = child.stdout.read()  # type: ignore[union-attr]
    err = child.stderr.read()  # type: ignore[union-attr]
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]
    handed_out = [int(line.split()[0]) for line in printed + rest.splitlines(keepends=True)
                  if line.endswith(b"\n")]  # a torn last line was never complete output
    assert 3000 <= len(handed_out) < 10_000

    blocker.unlink()  # the store is back; a restarted process drains what the dead one left
    drain = subprocess.run([sys.executable, "-c", DRAINER], env=env, capture_output=True,
                           timeout=300)
    assert drain.returncode == 0, drain.stderr.decode()[-2000:]

    with open_store(env["GOVSOC_STORE_URL"]) as store:
        docs = list(store.scan(Selection(family="audit")))
        signs = Counter(d["govsoc"]["crypto"]["input"]["sm3"] for d in docs
                        if d["event"]["action"] == "crypto.sign")
        for i in handed_out:
            assert signs[sm3_hex(b"document %d" % i)] == 1, i
        assert max(signs.values()) == 1
        ids = [d["event"]["id"] for d in docs]
        assert len(ids) == len(set(ids))
        keystore = Keystore(tmp_path / "data" / "keystore.json", MASTER, iterations=FAST_KDF)
        report = verify(store, verifier=platform_verifier(keystore),
                        heads=local_heads(tmp_path / "data" / "audit"))
    assert report.ok, report.problems[:5]
    (summary,) = report.chains.values()
    assert summary["checkpoints"] >= 6 and summary["unsigned_tail"] == 0


def test_platform_key_signs_and_only_it_verifies(keystore):
    assert find_platform_key(keystore) is None
    sign = platform_signer(keystore)
    payload = checkpoint_payload("api-0-abc", 7, "00" * 32)
    sig = sign(payload)
    platform = find_platform_key(keystore)
    assert platform is not None and sig["key_id"] == platform.id
    assert platform.labels == {"govsoc.role": "audit-checkpoint"}
    check = platform_verifier(keystore)
    assert check(payload, sig)
    assert not check(checkpoint_payload("api-0-abc", 8, "00" * 32), sig)
    # a signature by any other key of the keystore is no checkpoint signature
    other = keystore.create("sign")
    key, version = keystore.private_key(other.id)
    forged = {"key_id": other.id, "version": version, "alg": "SM2-SM3",
              "value": base64.b64encode(key.sign(payload)).decode()}
    assert not check(payload, forged)
    # rotation: old checkpoints still verify, new ones use the new version
    keystore.rotate(platform.id)
    assert check(payload, sig)
    assert sign(payload)["version"] == 2 and find_platform_key(keystore).id == platform.id


def test_trails_from_config_sign_with_the_platform_key(tmp_path, monkeypatch):
    from soc_core.audit import AuditTrail
    from soc_core.config import Config

    for var in ("GOVSOC_MASTER_KEY", "GOVSOC_MASTER_KEY_FILE", "GOVSOC_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)

    values = {"store_url": f"sqlite:///{tmp_path}/govsoc.db", "data_dir": str(tmp_path),
              "crypto": {"kdf_iterations": FAST_KDF}}
    with AuditTrail.from_config(Config(values=dict(values)), name="api") as unsigned:
        assert unsigned.signer is None  # no master secret: nothing could sign
    cfg = Config(values={**values, "master_key": MASTER.decode()})
    with AuditTrail.from_config(cfg, name="api") as trail:
        trail.record(action="user.add", outcome="success", user="admin", object="alice")
        assert trail.flush(30)
    keystore = Keystore.from_config(cfg)
    with open_store(values["store_url"]) as store:
        report = verify(store, verifier=platform_verifier(keystore))
    assert report.ok and report.chains[trail.chain]["checkpoints"] == 1
    assert find_platform_key(keystore) is not None
