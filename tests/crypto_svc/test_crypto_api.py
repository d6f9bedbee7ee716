"""The HTTP router (mounted in a standalone app): JSON/base64 in and out, 4xx with a one-line
`detail`, size limits, batch signing, and the injected caller identity in audit events."""

from __future__ import annotations

import base64
import warnings

import pytest
from crypto_helpers import detail
from fastapi import Header

from crypto_svc.api import Limits, create_app
from crypto_svc.keystore import Keystore
from crypto_svc.service import CryptoService
from crypto_svc.sm2 import SM2PublicKey
from soc_core.store import Selection

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def header_principal(x_user: str = Header("anonymous")) -> str:
    """Stands in for soc_api's authentication: the identity comes from a dependency."""
    return x_user


@pytest.fixture
def client(service):
    app = create_app(service, principal=header_principal,
                     limits=Limits(max_data=4096, max_body=64_000, max_batch=100))
    with TestClient(app) as c:
        yield c


def new_key(client, purpose="sign") -> str:
    r = client.post("/crypto/keys", json={"purpose": purpose, "labels": {"system": "oa"}},
                    headers={"X-User": "admin"})
    assert r.status_code == 201
    assert r.json()["labels"] == {"system": "oa"}
    SM2PublicKey.from_pem(r.json()["public_key_pem"])
    return r.json()["id"]


def test_sign_verify_and_audit_identity(client, service, sqlite_store):
    key_id = new_key(client)
    r = client.post("/crypto/sign", json={"key_id": key_id, "data": b64(b"doc")},
                    headers={"X-User": "oa-system"})
    assert r.status_code == 200 and r.json()["version"] == 1
    sig = r.json()["signature"]
    r = client.post("/crypto/verify", json={"key_id": key_id, "data": b64(b"doc"),
                                            "signature": sig})
    assert r.json() == {"valid": True, "key_id": key_id, "version": 1, "reason": None}
    r = client.post("/crypto/verify", json={"key_id": key_id, "data": b64(b"DOC"),
                                            "signature": sig})
    assert r.status_code == 200 and r.json()["valid"] is False
    pem = client.get(f"/crypto/keys/{key_id}").json()["public_key_pem"]
    r = client.post("/crypto/verify", json={"public_key_pem": pem, "data": b64(b"doc"),
                                            "signature": sig})
    assert r.json()["valid"] is True
    service.audit.flush()
    sqlite_store.refresh()
    users = sorted(d["user"]["name"] for d in sqlite_store.scan(Selection(family="audit")))
    assert users == ["admin", "anonymous", "anonymous", "oa-system"]


def test_batch_sign(client):
    key_id = new_key(client)
    items = [f"row {i}".encode() for i in range(100)]
    r = client.post("/crypto/sign", json={"key_id": key_id, "items": [b64(i) for i in items],
                                          "format": "raw"})
    assert r.status_code == 200
    sigs = r.json()["signatures"]
    assert len(sigs) == 100
    for item, s in zip(items[:5], sigs[:5], strict=True):
        v = client.post("/crypto/verify", json={"key_id": key_id, "data": b64(item),
                                                "signature": s["signature"], "format": "raw"})
        assert v.json()["valid"]
    assert "at most 100" in detail(client.post("/crypto/sign", json={
        "key_id": key_id, "items": [b64(b"x")] * 101}), 413)


def test_bad_requests_get_one_line_details(client, service):
    key_id = new_key(client)
    assert "not valid base64" in detail(client.post("/crypto/sign", json={
        "key_id": key_id, "data": "***"}), 400)
    assert "no key" in detail(client.post("/crypto/sign", json={
        "key_id": "k-missing", "data": b64(b"x")}), 404)
    assert "key_id" in detail(client.post("/crypto/sign", json={"data": b64(b"x")}), 422)
    assert "either data" in detail(client.post("/crypto/sign", json={"key_id": key_id}), 400)
    assert "larger than 4096" in detail(client.post("/crypto/sign", json={
        "key_id": key_id, "data": b64(b"x" * 5000)}), 413)
    assert "request body" in detail(client.post("/crypto/hash", content=b"{" + b" " * 70_000
                                                + b"}", headers={"content-type":
                                                                 "application/json"}), 413)
    assert "public_key_pem" in detail(client.post("/crypto/verify", json={
        "public_key_pem": "garbage", "data": b64(b"x"), "signature": b64(b"y")}), 400)
    enc_id = new_key(client, "encrypt")
    assert "not sign" in detail(client.post("/crypto/sign", json={
        "key_id": enc_id, "data": b64(b"x")}), 409)
    client.post(f"/crypto/keys/{key_id}/disable")
    assert "disabled" in detail(client.post("/crypto/sign", json={
        "key_id": key_id, "data": b64(b"x")}), 409)
    # nothing already accepted was lost: the key and its state are intact
    keys = {k["id"]: k["state"] for k in client.get("/crypto/keys").json()["keys"]}
    assert keys == {key_id: "disabled", enc_id: "active"}


def test_encrypt_decrypt_and_rotation(client):
    key_id = new_key(client, "encrypt")
    r = client.post("/crypto/encrypt", json={"key_id": key_id, "data": b64(b"dek-0001")})
    ct1 = r.json()["ciphertext"]
    r = client.post(f"/crypto/keys/{key_id}/rotate")
    assert r.json()["current_version"] == 2
    assert [v["state"] for v in r.json()["versions"]] == ["retired", "current"]
    r = client.post("/crypto/decrypt", json={"key_id": key_id, "ciphertext": ct1})
    assert r.json() == {"key_id": key_id, "version": 1, "data": b64(b"dek-0001")}
    for fmt in ("c1c3c2", "c1c2c3"):
        ct = client.post("/crypto/encrypt", json={"key_id": key_id, "data": b64(b"k2"),
                                                  "format": fmt}).json()
        assert ct["version"] == 2
        r = client.post("/crypto/decrypt", json={"key_id": key_id, "ciphertext": ct["ciphertext"],
                                                 "format": fmt})
        assert base64.b64decode(r.json()["data"]) == b"k2"
    bad = bytearray(base64.b64decode(ct1))
    bad[-3] ^= 4
    assert "decryption failed" in detail(client.post("/crypto/decrypt", json={
        "key_id": key_id, "ciphertext": b64(bytes(bad))}), 400)
    r = client.post(f"/crypto/keys/{key_id}/destroy")
    assert r.json()["state"] == "destroyed" and "public_key_pem" not in r.json()
    assert "destroyed" in detail(client.post("/crypto/decrypt", json={
        "key_id": key_id, "ciphertext": ct1}), 409)


def test_hash_hmac(client, vectors):
    r = client.post("/crypto/hash", json={"data": b64(b"abc")})
    assert r.json()["sm3"] == vectors["sm3"]["sm3"][0]["digest"].lower()
    v = vectors["sm3"]["hmac_sm3"][2]
    r = client.post("/crypto/hmac", json={"key": b64(bytes.fromhex(v["key_hex"])),
                                          "data": b64(v["message"].encode())})
    assert r.json()["hmac_sm3"] == v["mac"]
    assert "non-empty key" in detail(client.post("/crypto/hmac", json={"key": "",
                                                                      "data": b64(b"x")}), 400)


def test_no_private_material_in_any_answer(client, service):
    key_id = new_key(client)
    scalar = service.keystore.private_key(key_id)[0].to_bytes()
    answers = [client.get("/crypto/keys").text, client.get(f"/crypto/keys/{key_id}").text,
               client.post(f"/crypto/keys/{key_id}/rotate").text]
    for text in answers:
        assert scalar.hex() not in text and b64(scalar) not in text


def test_keystore_without_master_secret_is_503(tmp_path):
    svc = CryptoService(Keystore(tmp_path / "ks.json", None))
    with TestClient(create_app(svc)) as c:
        assert "no master secret" in detail(c.post("/crypto/keys", json={"purpose": "sign"}), 503)
        assert c.get("/crypto/keys").json() == {"keys": []}


def test_body_without_length_is_refused(client):
    def chunks():
        yield b'{"data": "'
        yield b'YWJj"}'

    assert "Content-Length" in detail(client.post("/crypto/hash", content=chunks(),
                                                  headers={"content-type": "application/json"}),
                                      411)


def test_principal_objects_and_missing_identity(service):
    class User:
        def __init__(self, name: str) -> None:
            self.name = name

    async def as_object() -> User:
        return User("zhang.san")

    async def nobody() -> None:
        return None

    with TestClient(create_app(service, principal=as_object)) as c:
        key_id = c.post("/crypto/keys", json={"purpose": "sign"}).json()["id"]
        assert c.post("/crypto/sign", json={"key_id": key_id, "data": b64(b"x")}).status_code == 200
    assert service.audit.recent[-1]["user"]["name"] == "zhang.san"
    with TestClient(create_app(service, principal=nobody)) as c:
        assert "principal" in detail(c.post("/crypto/sign", json={"key_id": key_id,
                                                                  "data": b64(b"x")}), 401)
