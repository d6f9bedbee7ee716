"""Interop, both ways, with the OpenSSL 3 command line on this machine: what govsoc makes,
OpenSSL accepts, and the other way round."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from crypto_svc import sm3, sm4
from crypto_svc.sm2 import DEFAULT_ID, SM2PrivateKey, SM2PublicKey

MESSAGE = b"govsoc audit record \xe6\x94\xbf\xe5\x8a\xa1\xe4\xba\x91 " * 40


def openssl(*args: str, data: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60,
                         check=False)
    if check:
        assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ossl")
    ours = SM2PrivateKey.generate()
    (d / "ours.key").write_text(ours.to_pem())
    (d / "ours.pub").write_text(ours.public_key.to_pem())
    openssl("genpkey", "-algorithm", "SM2", "-out", str(d / "theirs.key"))
    openssl("pkey", "-in", str(d / "theirs.key"), "-pubout", "-out", str(d / "theirs.pub"))
    (d / "msg").write_bytes(MESSAGE)
    return {p.name: p for p in d.iterdir()} | {"dir": d}


def test_openssl_reads_our_keys(files):
    ours = SM2PrivateKey.from_pem(files["ours.key"].read_text())
    text = openssl("pkey", "-in", str(files["ours.key"]), "-noout", "-text").stdout.decode()
    assert "SM2" in text
    priv_hex = "".join(text.split("priv:")[1].split("pub:")[0].split()).replace(":", "")
    assert int(priv_hex, 16) == int.from_bytes(ours.to_bytes(), "big")
    pub_der = openssl("pkey", "-pubin", "-in", str(files["ours.pub"]), "-outform", "DER").stdout
    assert pub_der == ours.public_key.to_der()


def test_we_read_openssl_keys(files):
    key = SM2PrivateKey.from_pem(files["theirs.key"].read_text())
    assert key.public_key == SM2PublicKey.from_pem(files["theirs.pub"].read_text())
    # and we write them back byte for byte as OpenSSL does
    assert key.public_key.to_pem() == files["theirs.pub"].read_text()


@pytest.mark.parametrize("uid", [DEFAULT_ID, b"ALICE123@YAHOO.COM"])
def test_our_signature_verifies_in_openssl(files, uid):
    key = SM2PrivateKey.from_pem(files["ours.key"].read_text())
    sig = files["dir"] / f"ours.{len(uid)}.sig"
    sig.write_bytes(key.sign(MESSAGE, uid=uid))
    out = openssl("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt",
                  f"distid:{uid.decode()}", "-pubin", "-inkey", str(files["ours.pub"]),
                  "-in", str(files["msg"]), "-sigfile", str(sig))
    assert b"Signature Verified Successfully" in out.stdout
    # a different ID is a different Z_A: OpenSSL must refuse
    bad = openssl("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt",
                  "distid:someone-else", "-pubin", "-inkey", str(files["ours.pub"]),
                  "-in", str(files["msg"]), "-sigfile", str(sig), check=False)
    assert bad.returncode != 0


@pytest.mark.parametrize("uid", [DEFAULT_ID, b"ALICE123@YAHOO.COM"])
def test_openssl_signature_verifies_in_govsoc(files, uid):
    sig = files["dir"] / f"theirs.{len(uid)}.sig"
    openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{uid.decode()}",
            "-inkey", str(files["theirs.key"]), "-in", str(files["msg"]), "-out", str(sig))
    pub = SM2PublicKey.from_pem(files["theirs.pub"].read_text())
    assert pub.verify(MESSAGE, sig.read_bytes(), uid=uid)
    assert not pub.verify(MESSAGE + b"!", sig.read_bytes(), uid=uid)
    assert not pub.verify(MESSAGE, sig.read_bytes(), uid=b"someone-else")


def test_digest_signatures_interoperate(files):
    """Sign a precomputed e = SM3(Z_A || M) (large files) ; OpenSSL verifies it as a digest."""
    key = SM2PrivateKey.from_pem(files["ours.key"].read_text())
    e = key.public_key.digest(MESSAGE)
    (files["dir"] / "e").write_bytes(e)
    (files["dir"] / "e.sig").write_bytes(key.sign_digest(e))
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(files["ours.pub"]),
                  "-in", str(files["dir"] / "e"), "-sigfile", str(files["dir"] / "e.sig"))
    assert b"Signature Verified Successfully" in out.stdout


def test_our_ciphertext_decrypts_in_openssl(files):
    pub = SM2PublicKey.from_pem(files["theirs.pub"].read_text())
    secret = os.urandom(16)  # an SM4 key being wrapped
    ct = files["dir"] / "wrapped.der"
    ct.write_bytes(pub.encrypt(secret))
    out = openssl("pkeyutl", "-decrypt", "-inkey", str(files["theirs.key"]), "-in", str(ct))
    assert out.stdout == secret


def test_openssl_ciphertext_decrypts_in_govsoc(files):
    ct = files["dir"] / "theirs.ct"
    openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(files["ours.pub"]),
            "-in", str(files["msg"]), "-out", str(ct))
    key = SM2PrivateKey.from_pem(files["ours.key"].read_text())
    assert key.decrypt(ct.read_bytes()) == MESSAGE
    other = SM2PrivateKey.generate()
    with pytest.raises(ValueError, match="decryption failed"):
        other.decrypt(ct.read_bytes())


def test_sm4_cbc_matches_openssl_enc(tmp_path):
    key, iv = os.urandom(16), os.urandom(16)
    for size in (0, 1, 15, 16, 17, 1000):
        data = os.urandom(size)
        out = openssl("enc", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), data=data).stdout
        assert sm4.cbc_encrypt(key, iv, data) == out
        back = openssl("enc", "-d", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(),
                       data=sm4.cbc_encrypt(key, iv, data)).stdout
        assert back == data


def test_sm4_ctr_matches_openssl_enc():
    key, iv = os.urandom(16), os.urandom(16)
    data = os.urandom(1000)
    out = openssl("enc", "-sm4-ctr", "-K", key.hex(), "-iv", iv.hex(), data=data).stdout
    assert sm4.ctr_apply(key, iv, data) == out


def test_sm3_matches_openssl_dgst():
    for data in (b"", b"abc", os.urandom(100_000)):
        out = openssl("dgst", "-sm3", "-r", data=data).stdout.split()[0].decode()
        assert sm3.sm3_hex(data) == out


def test_hmac_sm3_matches_openssl():
    key = os.urandom(20)
    data = os.urandom(500)
    out = openssl("dgst", "-sm3", "-mac", "HMAC", "-macopt", f"hexkey:{key.hex()}", "-r",
                  data=data).stdout.split()[0].decode()
    assert sm3.hmac_sm3(key, data).hex() == out
