"""SM4 (GB/T 32907) modes on `cryptography`'s OpenSSL: CBC with PKCS#7 padding, CTR, and
GCM (the default for data). Random IVs/nonces come from the OS for every call, so a nonce
is never reused with a key; the IV/nonce travels in front of the ciphertext.

Wire formats (all byte strings):
    cbc:  IV(16) || ciphertext
    ctr:  counter block(16) || ciphertext
    gcm:  nonce(12) || ciphertext || tag(16)
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto_svc.errors import CryptoError, DecryptionError

KEY_SIZE = 16
BLOCK = 16
GCM_NONCE = 12
GCM_TAG = 16
MODES = ("gcm", "cbc", "ctr")


def _check_key(key: bytes) -> algorithms.SM4:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"an SM4 key is 16 bytes, got {len(key)}")
    return algorithms.SM4(key)


def generate_key() -> bytes:
    return os.urandom(KEY_SIZE)


# -- raw modes with a caller-chosen IV (for vectors and interop); services use seal/open ---
def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes, *, pad: bool = True) -> bytes:
    enc = Cipher(_check_key(key), modes.CBC(_iv(iv))).encryptor()
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    elif len(plaintext) % BLOCK:
        raise CryptoError("CBC without padding needs a multiple of 16 bytes")
    return enc.update(plaintext) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes, *, pad: bool = True) -> bytes:
    if not ciphertext or len(ciphertext) % BLOCK:
        raise DecryptionError("decryption failed: CBC ciphertext must be a non-empty "
                              "multiple of 16 bytes")
    dec = Cipher(_check_key(key), modes.CBC(_iv(iv))).decryptor()
    data = dec.update(ciphertext) + dec.finalize()
    if not pad:
        return data
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise DecryptionError() from None


def ctr_apply(key: bytes, counter: bytes, data: bytes) -> bytes:
    """CTR encryption and decryption are the same operation."""
    c = Cipher(_check_key(key), modes.CTR(_iv(counter))).encryptor()
    return c.update(data) + c.finalize()


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes,
                aad: bytes = b"") -> tuple[bytes, bytes]:
    """-> (ciphertext, tag)."""
    if len(nonce) != GCM_NONCE:
        raise CryptoError(f"an SM4-GCM nonce is 12 bytes, got {len(nonce)}")
    enc = Cipher(_check_key(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct, enc.tag


def gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, aad: bytes = b"") -> bytes:
    if len(nonce) != GCM_NONCE or len(tag) != GCM_TAG:
        raise DecryptionError()
    dec = Cipher(_check_key(key), modes.GCM(nonce, tag)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    try:
        return dec.update(ciphertext) + dec.finalize()
    except InvalidTag:
        raise DecryptionError() from None


def _iv(iv: bytes) -> bytes:
    if len(iv) != BLOCK:
        raise CryptoError(f"an SM4 IV/counter block is 16 bytes, got {len(iv)}")
    return iv


# -- sealed formats with fresh random IVs --------------------------------------------------
def seal(key: bytes, plaintext: bytes, *, mode: str = "gcm", aad: bytes = b"") -> bytes:
    """Encrypt with a fresh random IV/nonce; the result carries it (see module doc)."""
    if mode == "gcm":
        nonce = os.urandom(GCM_NONCE)
        ct, tag = gcm_encrypt(key, nonce, plaintext, aad)
        return nonce + ct + tag
    if aad:
        raise CryptoError("associated data needs an authenticated mode (gcm)")
    iv = os.urandom(BLOCK)
    if mode == "cbc":
        return iv + cbc_encrypt(key, iv, plaintext)
    if mode == "ctr":
        return iv + ctr_apply(key, iv, plaintext)
    raise CryptoError(f"unknown SM4 mode {mode!r}; one of {', '.join(MODES)}")


def open_sealed(key: bytes, sealed: bytes, *, mode: str = "gcm", aad: bytes = b"") -> bytes:
    if mode == "gcm":
        if len(sealed) < GCM_NONCE + GCM_TAG:
            raise DecryptionError()
        return gcm_decrypt(key, sealed[:GCM_NONCE], sealed[GCM_NONCE:-GCM_TAG],
                           sealed[-GCM_TAG:], aad)
    if mode not in ("cbc", "ctr"):
        raise CryptoError(f"unknown SM4 mode {mode!r}; one of {', '.join(MODES)}")
    if len(sealed) < BLOCK:
        raise DecryptionError()
    if mode == "cbc":
        return cbc_decrypt(key, sealed[:BLOCK], sealed[BLOCK:])
    return ctr_apply(key, sealed[:BLOCK], sealed[BLOCK:])


def block_encryptor(key: bytes) -> Callable[[bytes], bytes]:
    """Single-block SM4 (ECB of one block): the standard's iterated vector, on the C path
    (one OpenSSL context reused, no per-call setup)."""
    enc = Cipher(_check_key(key), modes.ECB()).encryptor()
    return enc.update
