"""The service and its audit trail: every key use becomes an ECS audit event in the store,
with who, which key/version, what operation and the SM3 digest of the input — never the
input or key material."""

from __future__ import annotations

import base64
import io

import orjson
import pytest

from crypto_svc import sm3
from crypto_svc.errors import DecryptionError, KeyNotFound, KeyStateError
from crypto_svc.service import CryptoService
from soc_core.store import Selection

SECRET_INPUT = b"the secret input: citizen id 110101199003071234"


def _audit(store) -> list[dict]:
    """The key-use records (not the trail's checkpoints), in chain order."""
    store.refresh()
    docs = [d for d in store.scan(Selection(family="audit"), descending=False)
            if d["event"]["action"].startswith("crypto.")]
    return sorted(docs, key=lambda d: d["govsoc"]["audit"]["seq"])


def _assert_no_secrets(doc: dict, *secrets: bytes) -> None:
    text = orjson.dumps(doc)
    for secret in secrets:
        for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
            assert form not in text


def test_sign_verify_audit_events(service, sqlite_store):
    info = service.create_key("sign", {"department": "finance"}, user="alice")
    signed = service.sign(info.id, SECRET_INPUT, user="alice")
    assert service.verify(info.id, SECRET_INPUT, signed.signature, user="bob").valid
    bad = service.verify(info.id, SECRET_INPUT + b"x", signed.signature, user="bob")
    assert not bad.valid and "does not match" in bad.reason
    service.audit.flush()
    docs = _audit(sqlite_store)
    assert [d["event"]["action"] for d in docs] == [
        "crypto.keygen", "crypto.sign", "crypto.verify", "crypto.verify"]
    assert [d["event"]["outcome"] for d in docs] == ["success", "success", "success", "failure"]
    assert [d["user"]["name"] for d in docs] == ["alice", "alice", "bob", "bob"]
    sign_ev = docs[1]
    assert sign_ev["event"]["dataset"] == "govsoc.audit"
    crypto = sign_ev["govsoc"]["crypto"]
    assert crypto["key"] == {"id": info.id, "version": 1, "purpose": "sign"}
    assert crypto["input"] == {"sm3": sm3.sm3_hex(SECRET_INPUT), "bytes": len(SECRET_INPUT)}
    private = service.keystore.private_key(info.id)[0].to_bytes()
    for doc in docs:
        _assert_no_secrets(doc, SECRET_INPUT, private, signed.signature)
    assert docs[0]["govsoc"]["crypto"]["key"]["id"] == info.id


def test_failures_are_audited_and_raised(service, sqlite_store):
    with pytest.raises(KeyNotFound):
        service.sign("k-missing", SECRET_INPUT, user="mallory")
    enc = service.create_key("encrypt")
    with pytest.raises(KeyStateError, match="not sign"):
        service.sign(enc.id, SECRET_INPUT, user="mallory")
    with pytest.raises(DecryptionError):
        service.decrypt(enc.id, b"\x30\x00", user="mallory")
    service.audit.flush()
    failures = [d for d in _audit(sqlite_store) if d["event"]["outcome"] == "failure"]
    assert len(failures) == 3
    assert {d["user"]["name"] for d in failures} == {"mallory"}
    assert "no key" in failures[0]["event"]["reason"]


def test_rotation_signs_with_new_verifies_old(service):
    info = service.create_key("sign")
    old = service.sign(info.id, b"2025 report")
    service.rotate_key(info.id)
    new = service.sign(info.id, b"2025 report")
    assert (old.version, new.version) == (1, 2)
    v_old = service.verify(info.id, b"2025 report", old.signature)
    assert v_old.valid and v_old.version == 1
    assert not service.verify(info.id, b"2025 report", old.signature, version=2).valid
    service.disable_key(info.id)
    with pytest.raises(KeyStateError, match="disabled"):
        service.sign(info.id, b"x")
    assert service.verify(info.id, b"2025 report", new.signature).valid  # verification goes on
    service.destroy_key(info.id)
    with pytest.raises(KeyStateError, match="destroyed"):
        service.verify(info.id, b"2025 report", new.signature)


def test_encrypt_decrypt_across_rotation(service):
    info = service.create_key("encrypt")
    ct1, v1 = service.encrypt(info.id, b"sm4 data key 0001")
    service.rotate_key(info.id)
    ct2, v2 = service.encrypt(info.id, b"sm4 data key 0002")
    assert (v1, v2) == (1, 2)
    assert service.decrypt(info.id, ct1) == (b"sm4 data key 0001", 1)
    assert service.decrypt(info.id, ct2) == (b"sm4 data key 0002", 2)
    with pytest.raises(DecryptionError):
        service.decrypt(info.id, ct1[:-1] + bytes([ct1[-1] ^ 1]))


def test_sign_stream_equals_sign(service):
    info = service.create_key("sign")
    data = b"large file " * 300_000  # 3.3 MB, read in 1 MiB chunks
    signed = service.sign_stream(info.id, io.BytesIO(data))
    assert service.verify(info.id, data, signed.signature).valid
    event = service.audit.recent[-2]
    assert event["govsoc"]["crypto"]["input"] == {"sm3": sm3.sm3_hex(data), "bytes": len(data)}


def test_batch_sign(service):
    info = service.create_key("sign")
    items = [f"record {i}".encode() for i in range(50)]
    signed = service.sign_many(info.id, items, user="batch")
    assert all(service.verify(info.id, m, s.signature).valid for m, s in zip(items, signed,
                                                                             strict=True))
    assert sum(1 for d in service.audit.recent if d["event"]["action"] == "crypto.sign") == 50


def test_audit_trail_writes_in_the_background(sqlite_store, keystore):
    svc = CryptoService(keystore, sqlite_store)
    info = svc.create_key("sign")
    for _ in range(5):
        svc.sign(info.id, b"m")
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sqlite_store.count(Selection(family="audit")) < 6:
        time.sleep(0.05)
    assert sqlite_store.count(Selection(family="audit")) == 6
    svc.close()


def test_audit_events_on_both_backends(store, keystore):
    """The same audit documents land in SQLite and in Elasticsearch."""
    svc = CryptoService(keystore, store)
    info = svc.create_key("sign", user="carol")
    svc.sign(info.id, SECRET_INPUT, user="carol")
    svc.close()
    docs = _audit(store)
    assert [d["event"]["action"] for d in docs] == ["crypto.keygen", "crypto.sign"]
    assert docs[1]["govsoc"]["crypto"]["input"]["sm3"] == sm3.sm3_hex(SECRET_INPUT)
    assert store.count(Selection(family="audit", query="user.name:carol")) == 2


def test_envelope_encryption_for_large_data(service):
    info = service.create_key("encrypt")
    backup = b"pg_dump output " * 100_000
    blob = service.seal(info.id, backup, aad=b"backup-2026-11-23")
    assert blob.startswith(b"GSE1") and len(blob) < len(backup) + 200
    event = service.audit.recent[-1]
    assert event["event"]["action"] == "crypto.seal"
    assert event["govsoc"]["crypto"]["input"]["sm3"] == sm3.sm3_hex(backup)
    assert service.unseal(info.id, blob, aad=b"backup-2026-11-23") == backup
    with pytest.raises(DecryptionError):
        service.unseal(info.id, blob, aad=b"another backup")
    for pos in (3, 10, len(blob) // 2, len(blob) - 1):  # header, wrapped key, body, tag
        bad = bytearray(blob)
        bad[pos] ^= 0x10
        with pytest.raises(DecryptionError):
            service.unseal(info.id, bytes(bad), aad=b"backup-2026-11-23")
    service.rotate_key(info.id)
    assert service.unseal(info.id, blob, aad=b"backup-2026-11-23") == backup
