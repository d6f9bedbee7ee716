"""Hostile and careless input at every boundary of the crypto service: crafted PEM and DER,
over-long ids, a stale temporary keystore file, and where plaintexts land. Each case gets
one clear error (exception, HTTP 4xx, CLI exit 2), never a crash, a hang or an echo."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import time
import warnings

import pytest
from crypto_helpers import GOVSOC, detail, ok, one_error_line, run

from crypto_svc import asn1, ossl
from crypto_svc.api import Limits, create_app
from crypto_svc.errors import (
    AuditUnavailable,
    CryptoError,
    DecryptionError,
    KeyNotFound,
    KeystoreError,
)
from crypto_svc.service import CryptoService
from crypto_svc.sm2 import MAX_PEM, OID_SM2, SM2PrivateKey, SM2PublicKey, pem_encode
from soc_core.audit import AuditTrail
from soc_core.store.elastic import ElasticStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def client(service):
    app = create_app(service, limits=Limits(max_data=4096, max_body=200_000, max_batch=10))
    with TestClient(app) as c:
        yield c


# -- PEM and DER ---------------------------------------------------------------------------
def test_pem_larger_than_any_key_is_refused_unread():
    with pytest.raises(CryptoError, match=f"at most {MAX_PEM} bytes"):
        SM2PublicKey.from_pem("-----BEGIN A-----" * 5000)
    with pytest.raises(CryptoError, match=f"at most {MAX_PEM} bytes"):
        SM2PrivateKey.from_pem(b"x" * (MAX_PEM + 1))


def test_many_begin_lines_without_an_end_are_one_clear_error():
    # a back-tracking PEM regex spent seconds on this (quadratic in the BEGIN lines)
    with pytest.raises(CryptoError, match="has no -----END line"):
        SM2PublicKey.from_pem("-----BEGIN A-----" * 3500)
    with pytest.raises(CryptoError, match="bad -----BEGIN"):
        SM2PublicKey.from_pem("-----BEGIN -----\nAAAA\n-----END -----\n")
    # still found behind leading text, as OpenSSL writes "EC PARAMETERS" or comments
    key = SM2PrivateKey.generate()
    pem = "comment line\n" + key.public_key.to_pem()
    assert SM2PublicKey.from_pem(pem) == key.public_key


def _spki_with_oid_body(body: bytes) -> bytes:
    alg = asn1.sequence(asn1.tlv(asn1.OID, body), asn1.oid(OID_SM2))
    return asn1.sequence(alg, asn1.bits(SM2PrivateKey.generate().public_key.to_bytes()))


def test_unterminated_oid_is_a_der_error_not_a_crash():
    for body in (b"\x81", b"\x2a\x86"):  # last arc left open (bit 8 set)
        with pytest.raises(asn1.DERError, match="OBJECT IDENTIFIER"):
            asn1.to_oid(asn1.TLV(asn1.OID, body))
        with pytest.raises(CryptoError, match="malformed SM2 public key"):
            SM2PublicKey.from_der(_spki_with_oid_body(body))


def test_http_hostile_public_keys_are_400(client):
    flood = "-----BEGIN A-----" * 3500
    assert "-----END" in detail(client.post("/crypto/verify", json={
        "public_key_pem": flood, "data": b64(b"x"), "signature": b64(b"y")}), 400)
    bad_oid = pem_encode("PUBLIC KEY", _spki_with_oid_body(b"\x81"))
    assert "public_key_pem" in detail(client.post("/crypto/encrypt", json={
        "public_key_pem": bad_oid, "data": b64(b"x")}), 400)
    assert "public_key_pem" in detail(client.post("/crypto/verify", json={
        "public_key_pem": "x" * (MAX_PEM + 1), "data": b64(b"x"),
        "signature": b64(b"y")}), 422)


# -- ids and versions ----------------------------------------------------------------------
def test_over_long_key_ids_are_refused_and_not_echoed(client, service):
    long_id = "k" + "A" * 5000
    for resp in (client.get(f"/crypto/keys/{long_id}"),
                 client.post(f"/crypto/keys/{long_id}/rotate"),
                 client.post("/crypto/sign", json={"key_id": long_id, "data": b64(b"x")}),
                 client.post("/crypto/decrypt", json={"key_id": long_id,
                                                      "ciphertext": b64(b"x")})):
        text = detail(resp, 422)
        assert "A" * 100 not in text
    # in-process callers (the CLI) get a bounded message too
    with pytest.raises(KeyNotFound) as err:
        service.keystore.info(long_id)
    assert len(str(err.value)) < 120
    # a well-formed id that does not exist is still a 404
    assert "no key" in detail(client.get("/crypto/keys/k0123456789abcdef"), 404)


def test_version_numbers_are_bounded(client):
    key_id = client.post("/crypto/keys", json={"purpose": "sign"}).json()["id"]
    sig = client.post("/crypto/sign", json={"key_id": key_id, "data": b64(b"m")}).json()
    for version in (0, -1, 1 << 70):
        assert "version" in detail(client.post("/crypto/verify", json={
            "key_id": key_id, "version": version, "data": b64(b"m"),
            "signature": sig["signature"]}), 422)
    r = client.post("/crypto/verify", json={"key_id": key_id, "version": 1, "data": b64(b"m"),
                                            "signature": sig["signature"]})
    assert r.json()["valid"] is True


def test_bad_key_labels_are_the_callers_error_not_an_outage(client, service):
    # found by the schema test: a label the keystore refused was answered 503 (the
    # keystore's "cannot be opened"), telling a monitor the service was down
    for labels in ({"": "v"}, {"n" * 65: "v"}, {"n": "v" * 257},
                   {f"n{i}": "v" for i in range(33)}):
        detail(client.post("/crypto/keys", json={"purpose": "sign", "labels": labels}), 422)
    # in-process callers (the CLI) get the bad-input error (exit 2), not a keystore failure
    with pytest.raises(CryptoError, match="label") as err:
        service.create_key("sign", {"n": "v" * 257})
    assert not isinstance(err.value, KeystoreError)
    for bad in (lambda: service.create_key("sing"),
                lambda: service.keystore.set_state(service.create_key("sign").id, "gone")):
        with pytest.raises(CryptoError, match="must be one of") as err:
            bad()
        assert not isinstance(err.value, KeystoreError)
    assert client.post("/crypto/keys", json={"purpose": "sign",
                                             "labels": {"n" * 64: "v" * 256}}).status_code == 201


# -- SM2 decryption ------------------------------------------------------------------------
def test_decryption_runs_in_libcrypto_with_constant_time_c3():
    """OpenSSL compares C3 with CRYPTO_memcmp; gmalglib's byte loop stops early. With
    gmalglib's object taken away the key must still decrypt: libcrypto did it."""
    assert ossl.available()
    key = SM2PrivateKey.generate()
    cts = {fmt: key.public_key.encrypt(b"sm4 data key 16B", fmt=fmt)
           for fmt in ("der", "c1c3c2", "c1c2c3")}
    object.__setattr__(key, "_gm", None)
    for fmt, ct in cts.items():
        assert key.decrypt(ct, fmt=fmt) == b"sm4 data key 16B"
    tampered = bytearray(cts["c1c3c2"])
    tampered[65 + 31] ^= 0x01  # last byte of C3
    with pytest.raises(DecryptionError):
        key.decrypt(bytes(tampered), fmt="c1c3c2")
    other = SM2PrivateKey.generate()
    with pytest.raises(DecryptionError):
        other.decrypt(cts["der"])


# -- files -----------------------------------------------------------------------------------
def test_stale_temporary_file_does_not_loosen_the_keystore_mode(keystore):
    stale = keystore.path.with_name(f".{keystore.path.name}.{os.getpid()}.tmp")
    stale.write_text("left by a crashed run")
    stale.chmod(0o644)
    keystore.create("sign")
    assert keystore.path.stat().st_mode & 0o777 == 0o600
    assert not stale.exists()
    assert len(keystore.list()) == 1


def test_cli_decrypted_plaintext_file_is_private(crypto_env):
    key_id = ok("keygen", "--purpose", "encrypt").strip()
    ok("encrypt", "--key", key_id, "--in", "-", "--out", "ct.bin", stdin=b"citizen records")
    old = os.umask(0o022)  # the usual umask: plain files come out 0644
    try:
        out = subprocess.run([GOVSOC, "crypto", "decrypt", "--key", key_id, "--in", "ct.bin",
                              "--out", "plain.txt"], capture_output=True, check=False)
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    plain = crypto_env / "plain.txt"
    assert plain.read_bytes() == b"citizen records"
    assert plain.stat().st_mode & 0o777 == 0o600


def test_cli_verify_with_pub_and_an_impossible_id_is_a_usage_error(crypto_env):
    key_id = ok("keygen", "--purpose", "sign").strip()
    (crypto_env / "pub.pem").write_text(ok("export-public", key_id))
    ok("sign", "--key", key_id, "--in", "-", "--out", "m.sig", stdin=b"m")
    line = one_error_line(run("verify", "--pub", "pub.pem", "--id", "I" * 9000, "--in", "-",
                              "--sig", "m.sig", stdin=b"m"), code=2)
    assert "signer ID" in line


# -- the audit trail when the store is down --------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_store_down_bounds_the_backlog_and_refuses_key_use(tmp_path, keystore):
    password = "pw" + secrets.token_hex(8)  # a made-up credential that must never show
    url = f"http://govsoc:{password}@127.0.0.1:{_closed_port()}"
    trail = AuditTrail(tmp_path / "audit", lambda: ElasticStore(url, retries=0),
                       name="crypto", max_bytes=200_000)
    svc = CryptoService(keystore, audit=trail)
    info = svc.create_key("sign")
    signed = 0
    with pytest.raises(AuditUnavailable, match="spool is full") as err:
        for _ in range(10_000):
            svc.sign(info.id, b"m")
            signed += 1
    assert 50 < signed < 10_000
    assert password not in str(err.value)
    _wait_for(lambda: trail.errors)
    assert trail.errors and "***@" in trail.errors[-1]
    assert all(password not in e for e in trail.errors)
    assert trail._thread.is_alive()  # still retrying
    trail.close(drain_timeout=0)
    # every signature handed out has its record on disk, waiting for the store
    again = AuditTrail(tmp_path / "audit", None, name="crypto")
    assert again.chain == trail.chain
    assert again._head.seq == signed + 1  # keygen + each signature
    again.close()


def test_an_unexpected_store_error_keeps_the_records_and_the_writer(tmp_path, keystore):
    from soc_core.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/audit.db")
    store.close()  # writes now raise sqlite3.ProgrammingError, not a StoreError
    trail = AuditTrail(tmp_path / "audit", store, name="crypto", drain_interval=0.01)
    svc = CryptoService(keystore, audit=trail)
    svc.create_key("sign")
    _wait_for(lambda: trail.errors)
    assert "ProgrammingError" in trail.errors[-1]
    assert trail._thread.is_alive()
    assert trail.pending_bytes > 0
    trail.close(drain_timeout=0)


def test_one_byte_plaintexts_always_give_decryptable_ciphertexts():
    """gmalglib returns all-zero C3/C2 when the KDF output is all zeros (1 in 256 for one
    byte) instead of picking another k; 2,000 encryptions would meet that ~8 times."""
    key = SM2PrivateKey.generate()
    for i in range(2000):
        ct = key.public_key.encrypt(bytes([i & 0xFF]), fmt="c1c3c2")
        assert any(ct[65:97]), i  # C3 is an SM3 digest, never all zeros
        if i % 100 == 0:
            assert key.decrypt(ct, fmt="c1c3c2") == bytes([i & 0xFF])


def test_cli_verify_refuses_stdin_for_both_message_and_signature(crypto_env):
    key_id = ok("keygen", "--purpose", "sign").strip()
    sig = run("sign", "--key", key_id, "--in", "-", "--out", "-", stdin=b"m").stdout
    line = one_error_line(run("verify", "--key", key_id, "--in", "-", "--sig", "-",
                              stdin=sig + b"m"), code=2)
    assert "cannot both be -" in line
