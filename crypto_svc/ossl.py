"""SM2 signature verification and decryption through the system OpenSSL 3 libcrypto
(ctypes).

Why: measured here, gmalglib signs ~2.5x faster than OpenSSL but verifies at ~0.45x, and
nothing else installed verifies SM2 faster than OpenSSL's own code. So verification calls
`EVP_PKEY_verify` on a precomputed e = SM3(Z_A || M) — the same code path `openssl pkeyutl
-verify` runs. ctypes drops the GIL for the call, so verifications run in parallel threads.

Decryption runs here too, for safety rather than speed: OpenSSL compares C3 with
CRYPTO_memcmp (constant time), where gmalglib stops at the first differing byte, and it
clears the private scalar when the key is freed.

`available()` is False when no libcrypto 3 can be loaded; `crypto_svc.sm2` then verifies
and decrypts with gmalglib instead (same results).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import weakref
from typing import Any

_lib: Any = None
_tried = False
_load_lock = threading.Lock()


def _load() -> Any:
    global _lib, _tried
    with _load_lock:
        if _tried:
            return _lib
        _tried = True
        for name in ("libcrypto.so.3", ctypes.util.find_library("crypto")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                version = ctypes.c_char_p
                lib.OpenSSL_version.restype = version
                lib.OpenSSL_version.argtypes = [ctypes.c_int]
                if not lib.OpenSSL_version(0).startswith(b"OpenSSL 3"):
                    continue
                vp = ctypes.c_void_p
                lib.d2i_PUBKEY.restype = vp
                lib.d2i_PUBKEY.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
                lib.EVP_PKEY_free.argtypes = [vp]
                lib.EVP_PKEY_CTX_new.restype = vp
                lib.EVP_PKEY_CTX_new.argtypes = [vp, vp]
                lib.EVP_PKEY_CTX_free.argtypes = [vp]
                lib.EVP_PKEY_verify_init.argtypes = [vp]
                lib.EVP_PKEY_verify.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t,
                                                ctypes.c_char_p, ctypes.c_size_t]
                lib.ERR_clear_error.argtypes = []
                lib.d2i_AutoPrivateKey.restype = vp
                lib.d2i_AutoPrivateKey.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p),
                                                   ctypes.c_long]
                lib.EVP_PKEY_is_a.argtypes = [vp, ctypes.c_char_p]
                lib.EVP_PKEY_decrypt_init.argtypes = [vp]
                lib.EVP_PKEY_decrypt.argtypes = [vp, ctypes.c_char_p,
                                                 ctypes.POINTER(ctypes.c_size_t),
                                                 ctypes.c_char_p, ctypes.c_size_t]
                _lib = lib
                break
            except (OSError, AttributeError):
                continue
        return _lib


def available() -> bool:
    return _load() is not None


def version() -> str:
    lib = _load()
    return lib.OpenSSL_version(0).decode() if lib else "unavailable"


class _Key:
    """An EVP_PKEY parsed from DER by one of libcrypto's d2i functions, freed with its
    owner. The key is shared read-only by all threads; each call makes its own context."""

    _d2i = ""  # libcrypto function that parses the DER
    _what = ""

    def __init__(self, der: bytes) -> None:
        lib = _load()
        if lib is None:
            raise RuntimeError("libcrypto 3 is not available")
        buf = ctypes.c_char_p(der)
        pkey = getattr(lib, self._d2i)(None, ctypes.byref(buf), len(der))
        if not pkey:
            lib.ERR_clear_error()
            raise ValueError(f"libcrypto refused the {self._what}")
        if lib.EVP_PKEY_is_a(pkey, b"SM2") != 1:
            lib.EVP_PKEY_free(pkey)
            raise ValueError(f"libcrypto did not load the {self._what} as an SM2 key")
        self._pkey = pkey
        self._lib = lib
        weakref.finalize(self, lib.EVP_PKEY_free, pkey)


class Verifier(_Key):
    """An SM2 public key loaded into libcrypto (from its SubjectPublicKeyInfo DER)."""

    _d2i = "d2i_PUBKEY"
    _what = "public key"

    def verify_digest(self, e: bytes, der_sig: bytes) -> bool:
        lib = self._lib
        ctx = lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx:
            raise MemoryError("EVP_PKEY_CTX_new failed")
        try:
            if lib.EVP_PKEY_verify_init(ctx) != 1:
                lib.ERR_clear_error()
                raise RuntimeError("EVP_PKEY_verify_init failed")
            ok = lib.EVP_PKEY_verify(ctx, der_sig, len(der_sig), e, len(e)) == 1
            if not ok:
                lib.ERR_clear_error()  # a bad signature leaves errors on this thread's queue
            return ok
        finally:
            lib.EVP_PKEY_CTX_free(ctx)


class Decryptor(_Key):
    """An SM2 private key loaded into libcrypto (from PKCS#8 DER), for decryption only."""

    _d2i = "d2i_AutoPrivateKey"
    _what = "private key"

    def decrypt(self, der_ct: bytes) -> bytes | None:
        """The plaintext of a GM/T 0009 DER ciphertext, or None when it does not decrypt
        (malformed, C1 off the curve, C3 mismatch: OpenSSL does not say which)."""
        lib = self._lib
        ctx = lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx:
            raise MemoryError("EVP_PKEY_CTX_new failed")
        out = None
        try:
            size = ctypes.c_size_t(0)
            if (lib.EVP_PKEY_decrypt_init(ctx) != 1
                    or lib.EVP_PKEY_decrypt(ctx, None, ctypes.byref(size), der_ct,
                                            len(der_ct)) != 1):
                lib.ERR_clear_error()
                return None
            out = ctypes.create_string_buffer(max(size.value, 1))
            if lib.EVP_PKEY_decrypt(ctx, out, ctypes.byref(size), der_ct, len(der_ct)) != 1:
                lib.ERR_clear_error()
                return None
            return out.raw[:size.value]
        finally:
            if out is not None:
                ctypes.memset(out, 0, len(out))  # no plaintext left in this buffer
            lib.EVP_PKEY_CTX_free(ctx)
