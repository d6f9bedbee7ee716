"""A keystore damaged on disk or edited by hand: every field that is out of shape is one
clear error (CLI: one line, exit 2), and KDF parameters govsoc never writes — another KDF,
an iteration count that would stall every key use — are refused rather than obeyed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crypto_helpers import MASTER, one_error_line, run

from crypto_svc.errors import KeystoreError
from crypto_svc.keystore import Keystore


def _damage(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _first(doc: dict) -> dict:
    return next(iter(doc["keys"].values()))


DAMAGE = [
    ("salt not hex", lambda d: d["kdf"].update(salt="zz" * 16), "salt"),
    ("iterations a text", lambda d: d["kdf"].update(iterations="many"), "iterations"),
    ("iterations 2e9", lambda d: d["kdf"].update(iterations=2_000_000_000), "iterations"),
    ("iterations huge float", lambda d: d["kdf"].update(iterations=1e300), "iterations"),
    ("iterations zero", lambda d: d["kdf"].update(iterations=0), "iterations"),
    ("unknown KDF", lambda d: d["kdf"].update(name="md5-once"), "KDF 'md5-once'"),
    ("KDF name missing", lambda d: d["kdf"].pop("name"), "KDF 'None'"),
    ("check not base64", lambda d: d.update(check="!!!"), "check"),
    ("public not hex", lambda d: _first(d)["versions"][0].update(public="xyz"), "public"),
    ("public off the curve", lambda d: _first(d)["versions"][0].update(public="04" + "00" * 64),
     "curve"),
    ("sealed not base64", lambda d: _first(d)["versions"][0].update(sealed="%%%"), "sealed"),
    ("sealed missing", lambda d: _first(d)["versions"][0].pop("sealed"), "sealed"),
    ("version huge", lambda d: _first(d)["versions"][0].update(version=2**70), "version"),
    ("current unknown", lambda d: _first(d).update(current=9), "current"),
    ("versions not a list", lambda d: _first(d).update(versions="v1"), "versions"),
    ("keys a list", lambda d: d.update(keys=[]), "keys"),
    ("labels a list", lambda d: _first(d).update(labels=["a"]), "labels"),
]


@pytest.mark.timeout(60)  # 2e9 PBKDF2 iterations would take most of an hour
@pytest.mark.parametrize("what, edit, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_field_is_one_keystore_error(keystore, what, edit, message):
    key = keystore.create("sign")
    _damage(keystore.path, edit)
    fresh = Keystore(keystore.path, MASTER, iterations=1000)
    with pytest.raises(KeystoreError, match=message.replace("(", r"\(")):
        fresh.unlock()
        for info in fresh.list():
            fresh.public_key(info.id)
        fresh.private_key(key.id)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what, edit, message",
                         [DAMAGE[2], DAMAGE[5], DAMAGE[9], DAMAGE[11]],
                         ids=["iterations 2e9", "unknown KDF", "off the curve", "version huge"])
def test_the_cli_says_so_in_one_line_exit_2(crypto_env, what, edit, message):
    key_id = run("keygen", "--purpose", "sign").stdout.decode().strip()
    path = crypto_env / "keystore.json"
    _damage(path, edit)
    msg = crypto_env / "m.txt"
    msg.write_text("hello")
    uses = [("list",)]
    if "curve" not in what:  # signing needs only the private half
        uses.append(("sign", "--key", key_id, "--in", str(msg), "--out", "-"))
    for args in uses:
        line = one_error_line(run(*args))
        assert line.startswith("error: ") and "Traceback" not in line


@pytest.mark.parametrize("n", [0, 999, 2_000_001, "200000", True])
def test_iterations_outside_what_govsoc_writes_are_refused_up_front(tmp_path, n):
    with pytest.raises(KeystoreError, match="kdf_iterations"):
        Keystore(tmp_path / "k.json", MASTER, iterations=n)
