"""The standards' known-answer vectors (../shared/vectors), through the service's code."""

from __future__ import annotations

import pytest

from crypto_svc import curves, sm3, sm4
from crypto_svc.curves import SM2P256V1, Curve
from crypto_svc.sm2 import (
    SM2PrivateKey,
    SM2PublicKey,
    decode_ciphertext,
    encode_ciphertext,
    encode_signature,
    za,
)


def _msg(entry: dict) -> bytes:
    return bytes.fromhex(entry["message_hex"]) if "message_hex" in entry \
        else entry["message"].encode()


# -- SM3 -------------------------------------------------------------------------------
def test_sm3_vectors(vectors):
    entries = vectors["sm3"]["sm3"]
    assert len(entries) >= 2
    for entry in entries:
        assert sm3.sm3(_msg(entry)).hex() == entry["digest"].lower(), entry["name"]


def test_sm3_standard_examples_present(vectors):
    digests = {e["digest"].lower() for e in vectors["sm3"]["sm3"]}
    assert sm3.sm3_hex(b"abc") in digests
    assert sm3.sm3_hex(b"abcd" * 16) in digests


def test_hmac_sm3_vectors(vectors):
    for entry in vectors["sm3"]["hmac_sm3"]:
        assert sm3.hmac_sm3(bytes.fromhex(entry["key_hex"]), _msg(entry)).hex() == entry["mac"]


# -- SM4 -------------------------------------------------------------------------------
def test_sm4_single_block(vectors):
    ex = vectors["sm4"]["sm4"]["example1"]
    enc = sm4.block_encryptor(bytes.fromhex(ex["key"]))
    assert enc(bytes.fromhex(ex["plaintext"])).hex() == ex["ciphertext"].lower()


def test_sm4_one_million_iterations(vectors):
    ex = vectors["sm4"]["sm4"]["example2_1000000_iterations"]
    enc = sm4.block_encryptor(bytes.fromhex(ex["key"]))  # the C path: well under a second
    block = bytes.fromhex(ex["plaintext"])
    for _ in range(1_000_000):
        block = enc(block)
    assert block.hex() == ex["ciphertext_after_1000000_encryptions"].lower()


def _modes(vectors, cipher: str) -> list[dict]:
    out = [v for v in vectors["sm4"]["sm4"]["modes_from_openssl_evpciph_sm4"]
           if v["Cipher"] == cipher]
    assert out, cipher
    return out


def test_sm4_cbc_vectors(vectors):
    for v in _modes(vectors, "SM4-CBC"):
        key, iv, pt, ct = (bytes.fromhex(v[k]) for k in ("Key", "IV", "Plaintext", "Ciphertext"))
        assert sm4.cbc_encrypt(key, iv, pt, pad=False) == ct
        assert sm4.cbc_decrypt(key, iv, ct, pad=False) == pt
        # with PKCS#7 the vector is the prefix and one whole padding block follows
        padded = sm4.cbc_encrypt(key, iv, pt)
        assert padded[:len(ct)] == ct and len(padded) == len(ct) + 16
        assert sm4.cbc_decrypt(key, iv, padded) == pt


def test_sm4_ctr_vectors(vectors):
    for v in _modes(vectors, "SM4-CTR"):
        key, iv, pt, ct = (bytes.fromhex(v[k]) for k in ("Key", "IV", "Plaintext", "Ciphertext"))
        assert sm4.ctr_apply(key, iv, pt) == ct
        assert sm4.ctr_apply(key, iv, ct) == pt


def test_sm4_gcm_rfc8998(vectors):
    for v in _modes(vectors, "SM4-GCM"):
        key, iv, aad, pt, ct, tag = (bytes.fromhex(v[k]) for k in
                                     ("Key", "IV", "AAD", "Plaintext", "Ciphertext", "Tag"))
        assert sm4.gcm_encrypt(key, iv, pt, aad) == (ct, tag)
        assert sm4.gcm_decrypt(key, iv, ct, tag, aad) == pt


# -- SM2 signatures ----------------------------------------------------------------------
def _sig_entry(vectors, curve_p: str) -> dict:
    return next(e for e in vectors["sm2"]["signature"]
                if e.get("curve", {}).get("p", "").upper() == curve_p)


def test_sm2_sign_example_curve(vectors):
    """GB/T 32918.2 Annex A: the standard's example curve, through our Z_A and the
    curve-generic reference (no fast library supports that curve)."""
    e = next(x for x in vectors["sm2"]["signature"] if x["user_id"] == "ALICE123@YAHOO.COM")
    curve = Curve.from_hex("example", e["curve"])
    d = int(e["private_key"], 16)
    pub = curves.mul(curve, d, curve.g)
    assert pub == (int(e["public_key_x"], 16), int(e["public_key_y"], 16))
    z = za(e["user_id"].encode(), *pub, curve=curve)
    assert z.hex().upper() == e["ZA"]
    digest = sm3.sm3(z + _msg(e))
    assert digest.hex().upper() == e["e"]
    r, s = curves.sign_digest(curve, d, digest, int(e["k"], 16))
    assert (r, s) == (int(e["r"], 16), int(e["s"], 16))
    assert encode_signature(r, s).hex().upper() == e["signature_der"]
    assert curves.verify_digest(curve, pub, digest, r, s)
    assert not curves.verify_digest(curve, pub, digest, r, s + 1)


def test_sm2_sign_recommended_curve_fast_path(vectors):
    """GM/T 0003.5 example on sm2p256v1 through the production key class, with the
    standard's fixed k (the test-only `_k` hook)."""
    e = _sig_entry(vectors, f"{SM2P256V1.p:064X}")
    key = SM2PrivateKey(int(e["private_key"], 16))
    assert key.public_key.x == int(e["public_key_x"], 16)
    assert key.public_key.y == int(e["public_key_y"], 16)
    assert key.public_key.za(e["user_id"].encode()).hex().upper() == e["ZA"]
    assert key.public_key.digest(_msg(e)).hex().upper() == e["e"]
    sig = key.sign(_msg(e), _k=int(e["k"], 16))
    assert sig.hex().upper() == e["signature_der"]
    assert key.sign(_msg(e), fmt="raw", _k=int(e["k"], 16)).hex().upper() == e["r"] + e["s"]
    assert key.public_key.verify(_msg(e), sig)
    # the generic reference agrees on the same curve
    r, s = curves.sign_digest(SM2P256V1, int(e["private_key"], 16),
                              bytes.fromhex(e["e"]), int(e["k"], 16))
    assert (r, s) == (int(e["r"], 16), int(e["s"], 16))


def test_sm2_without_fixed_k_is_randomized(vectors):
    e = _sig_entry(vectors, f"{SM2P256V1.p:064X}")
    key = SM2PrivateKey(int(e["private_key"], 16))
    a, b = key.sign(b"message digest"), key.sign(b"message digest")
    assert a != b and a.hex().upper() != e["signature_der"]
    assert key.public_key.verify(b"message digest", a)
    assert key.public_key.verify(b"message digest", b)


def test_openssl_evp_vectors(vectors):
    e = next(x for x in vectors["sm2"]["signature"] if "private_key_pkcs8_pem" in x)
    key = SM2PrivateKey.from_pem(e["private_key_pkcs8_pem"])
    assert key.to_bytes().hex().upper() == e["private_key"]
    assert key.to_pem() == e["private_key_pkcs8_pem"]  # byte-identical PKCS#8
    for v in e["verify"]:
        sig = bytes.fromhex(v["signature_der"])
        assert key.public_key.verify_digest(bytes.fromhex(v["e"]), sig) is (v["result"] == "valid")
        assert not key.public_key.verify_digest(bytes(32), sig)
    for v in e["decrypt"]:
        assert key.decrypt(bytes.fromhex(v["ciphertext_der"])) == v["plaintext"].encode()


# -- SM2 encryption ----------------------------------------------------------------------
_FORMS = {"der": "ciphertext_der_gmt0009", "c1c3c2": "ciphertext_C1C3C2",
          "c1c2c3": "ciphertext_C1C2C3"}


def test_sm2_encrypt_example_curve(vectors):
    e = next(x for x in vectors["sm2"]["encryption"]
             if x["curve"]["p"].upper() != f"{SM2P256V1.p:064X}")
    curve = Curve.from_hex("example", e["curve"])
    d = int(e["private_key"], 16)
    pub = curves.mul(curve, d, curve.g)
    c1, c3, c2 = curves.encrypt(curve, pub, _msg(e), int(e["k"], 16))
    assert (c1.hex().upper(), c3.hex().upper(), c2.hex().upper()) == (e["C1"], e["C3"], e["C2"])
    for fmt, field in _FORMS.items():
        assert encode_ciphertext(c1, c3, c2, fmt).hex().upper() == e[field], fmt
        parts = decode_ciphertext(bytes.fromhex(e[field]), fmt)
        assert curves.decrypt(curve, d, *parts) == _msg(e)


@pytest.mark.parametrize("fmt", sorted(_FORMS))
def test_sm2_encrypt_recommended_curve_fast_path(vectors, fmt):
    e = next(x for x in vectors["sm2"]["encryption"]
             if x["curve"]["p"].upper() == f"{SM2P256V1.p:064X}")
    key = SM2PrivateKey(int(e["private_key"], 16))
    ct = key.public_key.encrypt(_msg(e), fmt=fmt, _k=int(e["k"], 16))
    assert ct.hex().upper() == e[_FORMS[fmt]]
    assert key.decrypt(bytes.fromhex(e[_FORMS[fmt]]), fmt=fmt) == _msg(e)


def test_public_key_rejects_points_off_the_curve():
    good = SM2PrivateKey.generate().public_key.to_bytes()
    off = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(ValueError, match="not on sm2p256v1"):
        SM2PublicKey(off)
    with pytest.raises(ValueError, match="65-byte"):
        SM2PublicKey(good[1:])
