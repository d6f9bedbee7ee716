"""`govsoc audit verify` and `govsoc audit export` over real CLI runs: key use through
`govsoc crypto`, tampering in the store named with exit 1, an evidence folder whose
manifest OpenSSL verifies with the exported platform key."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soc_core.sm3 import sm3
from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).with_name("govsoc"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVSOC_CONFIG", raising=False)
    monkeypatch.delenv("GOVSOC_MASTER_KEY_FILE", raising=False)
    monkeypatch.setenv("GOVSOC_STORE_URL", f"sqlite:///{tmp_path}/govsoc.db")
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GOVSOC_MASTER_KEY", "correct horse battery staple 2026")
    monkeypatch.setenv("GOVSOC_CRYPTO_KDF_ITERATIONS", "1000")
    return tmp_path


def govsoc(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([GOVSOC, *args], capture_output=True, input=stdin, timeout=120,
                          check=False)


def test_verify_names_tampering_and_export_is_signed_evidence(env: Path):
    key_id = govsoc("crypto", "keygen", "--purpose", "sign").stdout.decode().strip()
    for i in range(3):
        assert govsoc("crypto", "sign", "--key", key_id, "--in", "-", "--out", f"{i}.sig",
                      stdin=b"report %d" % i).returncode == 0
    out = govsoc("audit", "verify")
    assert out.returncode == 0, out.stderr
    assert b"audit trail intact" in out.stdout and b"signed checkpoint" in out.stdout
    report = json.loads(govsoc("audit", "verify", "--json").stdout)
    assert report["ok"] and report["records"] >= 8  # keygen, 3 signs, checkpoints, verify

    with open_store(os.environ["GOVSOC_STORE_URL"]) as store:
        sign = next(d for d in store.scan(Selection(family="audit"))
                    if d["event"]["action"] == "crypto.sign")
        edited = copy.deepcopy(sign)
        edited["govsoc"]["crypto"]["input"]["bytes"] = 1
        store.delete("audit", [sign["event"]["id"]])
        store.write([edited])
    out = govsoc("audit", "verify")
    assert out.returncode == 1
    chain, seq = sign["govsoc"]["audit"]["chain"], sign["govsoc"]["audit"]["seq"]
    assert f"TAMPERED {chain} seq {seq} (id {chain}.{seq}): edited".encode() in out.stdout

    bad = govsoc("audit", "verify", "--from", "yesterday-ish")
    assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1

    out = govsoc("audit", "export", "--out", "evidence")
    assert out.returncode == 0, out.stderr
    folder = env / "evidence"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert not manifest["intact"] and manifest["records"] >= 5
    names = {f["name"] for f in manifest["files"]}
    assert {"records.ndjson", "checkpoints.ndjson", "verify.json"} <= names
    for f in manifest["files"]:
        assert sm3((folder / f["name"]).read_bytes()).hex() == f["sm3"]
    key = manifest["signed_by"]
    pem = folder / f"platform-{key['key_id']}-v{key['version']}.pem"
    ossl = subprocess.run(["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
                           "-pkeyopt", "distid:1234567812345678", "-pubin", "-inkey", str(pem),
                           "-in", str(folder / "manifest.json"),
                           "-sigfile", str(folder / "manifest.sig")],
                          capture_output=True, check=False)
    assert ossl.returncode == 0, ossl.stderr
    records = (folder / "records.ndjson").read_bytes()
    assert b"report 0" not in records and b"correct horse" not in records
    again = govsoc("audit", "export", "--out", "evidence")
    assert again.returncode == 2 and b"not empty" in again.stderr
