"""SM3 (GB/T 32905): the hash (from `soc_core.sm3`), HMAC-SM3 (GM/T 0042) and the SM3 key
derivation function of GB/T 32918.4."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from soc_core.sm3 import DIGEST_SIZE, new, sm3, sm3_hex, sm3_parts, sm3_stream

__all__ = ["DIGEST_SIZE", "hmac_sm3", "kdf", "new", "sm3", "sm3_hex", "sm3_parts",
           "sm3_stream"]

_SM3 = hashes.SM3()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    if not key:
        raise ValueError("HMAC-SM3 needs a non-empty key")
    mac = hmac.HMAC(key, _SM3)
    mac.update(data)
    return mac.finalize()


def kdf(z: bytes, klen: int) -> bytes:
    """KDF(Z, klen) of GB/T 32918.4 §5.4.3: SM3(Z || ct) for ct = 1, 2, ... (32-bit big
    endian), concatenated and cut to `klen` bytes."""
    if klen < 0:
        raise ValueError("klen must be >= 0")
    out = bytearray()
    counter = 1
    while len(out) < klen:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:klen])
