"""`govsoc crypto ...` run as a real process through the installed entry point: exit codes
0 (ok / valid), 1 (invalid signature), 2 (user error, one line), stdin/stdout with `-`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from crypto_helpers import GOVSOC, MASTER, ok, one_error_line, run

from crypto_svc import sm3
from soc_core.store import Selection, open_store


def test_sign_verify_cycle_with_openssl(crypto_env: Path):
    key_id = ok("keygen", "--purpose", "sign", "--label", "department=finance",
                "--label", "system=oa").strip()
    msg = crypto_env / "report.pdf"
    msg.write_bytes(os.urandom(300_000))
    ok("sign", "--key", key_id, "--in", str(msg), "--out", "report.sig")
    assert "valid" in ok("verify", "--key", key_id, "--in", str(msg), "--sig", "report.sig")
    (crypto_env / "pub.pem").write_text(ok("export-public", key_id))
    assert ok("verify", "--pub", "pub.pem", "--in", str(msg), "--sig", "report.sig").startswith(
        "valid")
    ossl = subprocess.run(["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
                           "-pkeyopt", "distid:1234567812345678", "-pubin", "-inkey", "pub.pem",
                           "-in", str(msg), "-sigfile", "report.sig"],
                          capture_output=True, check=False)
    assert ossl.returncode == 0, ossl.stderr
    # tampered message: exit 1, one line
    msg.write_bytes(msg.read_bytes() + b"!")
    line = one_error_line(run("verify", "--key", key_id, "--in", str(msg), "--sig", "report.sig"),
                          code=1)
    assert line.startswith("invalid signature")
    # raw r||s and a custom signer ID, stdin -> stdout
    sig = run("sign", "--key", key_id, "--raw", "--id", "ALICE123@YAHOO.COM", "--in", "-",
              "--out", "-", stdin=b"hello").stdout
    assert len(sig) == 64
    (crypto_env / "raw.sig").write_bytes(sig)
    assert ok("verify", "--key", key_id, "--raw", "--id", "ALICE123@YAHOO.COM", "--in", "-",
              "--sig", "raw.sig", stdin=b"hello")
    assert run("verify", "--key", key_id, "--raw", "--in", "-", "--sig", "raw.sig",
               stdin=b"hello").returncode == 1  # default ID: another Z_A

    listed = [json.loads(x) for x in ok("list", "--json").splitlines()]
    listed = [k for k in listed if "govsoc.role" not in k["labels"]]  # not the platform key
    assert listed[0]["id"] == key_id
    assert listed[0]["labels"] == {"department": "finance", "system": "oa"}

    with open_store(os.environ["GOVSOC_STORE_URL"]) as store:
        events = [e for e in store.scan(Selection(family="audit"))
                  if e["event"]["action"].startswith("crypto.")]  # not the checkpoints
    actions = sorted(e["event"]["action"] for e in events)
    assert actions.count("crypto.sign") == 2 and actions.count("crypto.verify") == 4
    assert {e["user"]["name"] for e in events} == {"local"}


def test_encrypt_decrypt_with_openssl(crypto_env: Path):
    key_id = ok("keygen", "--purpose", "encrypt").strip()
    (crypto_env / "pub.pem").write_text(ok("export-public", key_id))
    secret = os.urandom(16)
    (crypto_env / "dek").write_bytes(secret)
    ok("encrypt", "--key", key_id, "--in", "dek", "--out", "dek.ct")
    assert run("decrypt", "--key", key_id, "--in", "dek.ct", "--out", "-").stdout == secret
    # OpenSSL encrypts to our public key; we decrypt
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "dek",
                    "-out", "ossl.ct"], check=True, capture_output=True)
    ok("decrypt", "--key", key_id, "--in", "ossl.ct", "--out", "dek.out")
    assert (crypto_env / "dek.out").read_bytes() == secret
    for fmt in ("c1c3c2", "c1c2c3"):
        ok("encrypt", "--pub", "pub.pem", "--format", fmt, "--in", "dek", "--out", f"{fmt}.ct")
        assert run("decrypt", "--key", key_id, "--format", fmt, "--in", f"{fmt}.ct",
                   "--out", "-").stdout == secret
    (crypto_env / "backup.tar").write_bytes(os.urandom(2_000_000))
    ok("encrypt", "--key", key_id, "--envelope", "--in", "backup.tar", "--out", "backup.gse")
    ok("decrypt", "--key", key_id, "--envelope", "--in", "backup.gse", "--out", "restored.tar")
    assert (crypto_env / "restored.tar").read_bytes() == (crypto_env / "backup.tar").read_bytes()
    ct = bytearray((crypto_env / "dek.ct").read_bytes())
    ct[-1] ^= 1
    (crypto_env / "bad.ct").write_bytes(bytes(ct))
    line = one_error_line(run("decrypt", "--key", key_id, "--in", "bad.ct", "--out", "never"))
    assert line.startswith("error: decryption failed")
    assert not (crypto_env / "never").exists()  # nothing written on failure


def test_hash_and_hmac(crypto_env: Path, vectors):
    assert ok("hash", stdin=b"abc").strip() == sm3.sm3_hex(b"abc")
    (crypto_env / "f").write_bytes(b"abcd" * 16)
    assert ok("hash", "--in", "f").strip() == vectors["sm3"]["sm3"][1]["digest"].lower()
    v = vectors["sm3"]["hmac_sm3"][3]
    assert ok("hmac", "--key-hex", v["key_hex"], stdin=v["message"].encode()).strip() == v["mac"]
    line = one_error_line(run("hmac", "--key-hex", "zz-secret-zz", stdin=b"x"))
    assert "not hexadecimal" in line and "zz-secret-zz" not in line


def test_key_lifecycle_and_errors(crypto_env: Path):
    key_id = ok("keygen", "--purpose", "sign").strip()
    ok("sign", "--key", key_id, "--in", "-", "--out", "v1.sig", stdin=b"m")
    assert ok("rotate", key_id).strip() == f"{key_id} active v2"
    assert "v1" in ok("verify", "--key", key_id, "--in", "-", "--sig", "v1.sig", stdin=b"m")
    ok("disable", key_id)
    assert "disabled" in one_error_line(run("sign", "--key", key_id, "--in", "-", "--out", "x",
                                            stdin=b"m"))
    ok("enable", key_id)
    assert "--yes" in one_error_line(run("destroy", key_id))
    ok("destroy", key_id, "--yes")
    assert "destroyed" in one_error_line(run("sign", "--key", key_id, "--in", "-", "--out", "x",
                                             stdin=b"m"))
    assert "no key" in one_error_line(run("rotate", "k-nope"))
    assert "cannot read" in one_error_line(run("sign", "--key", key_id, "--in", "missing",
                                               "--out", "x"))
    assert "exactly one" in one_error_line(run("verify", "--in", "-", "--sig", "v1.sig"))
    assert run("keygen", "--purpose", "bogus").returncode == 2  # click usage error


def test_master_secret_errors(crypto_env: Path):
    key_id = ok("keygen", "--purpose", "sign").strip()
    line = one_error_line(run("sign", "--key", key_id, "--in", "-", "--out", "-", stdin=b"m",
                              env={"GOVSOC_MASTER_KEY": "a-wrong-master-secret"}))
    assert line.startswith("error: wrong master secret")
    assert "a-wrong-master-secret" not in line and MASTER.decode() not in line
    env = {k: v for k, v in os.environ.items() if k != "GOVSOC_MASTER_KEY"}
    out = subprocess.run([GOVSOC, "crypto", "sign", "--key", key_id, "--in", "-", "--out", "-"],
                         input=b"m", capture_output=True, env=env, check=False)
    assert "no master secret" in one_error_line(out)
    secret_file = crypto_env / "master.key"
    secret_file.write_bytes(MASTER)
    secret_file.chmod(0o640)
    env["GOVSOC_MASTER_KEY_FILE"] = str(secret_file)
    out = subprocess.run([GOVSOC, "crypto", "sign", "--key", key_id, "--in", "-", "--out", "-"],
                         input=b"m", capture_output=True, env=env, check=False)
    assert "mode 0600" in one_error_line(out)
    secret_file.chmod(0o600)
    out = subprocess.run([GOVSOC, "crypto", "sign", "--key", key_id, "--in", "-", "--out", "-"],
                         input=b"m", capture_output=True, env=env, check=False)
    assert out.returncode == 0 and out.stdout.startswith(b"\x30")
    # listing needs no secret at all
    assert key_id in ok("list", env={"GOVSOC_MASTER_KEY": ""})


@pytest.mark.parametrize("args", [("hash", "--in", "/nonexistent/file")])
def test_unreadable_input(crypto_env: Path, args):
    assert "cannot read" in one_error_line(run(*args))
