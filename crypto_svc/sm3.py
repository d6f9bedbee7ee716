"""SM3 (GB/T 32905): hash, HMAC-SM3 (GM/T 0042) and the SM3 key derivation function of
GB/T 32918.4, on the OpenSSL build that `cryptography` ships (the fastest SM3 at hand)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes, hmac

DIGEST_SIZE = 32
_SM3 = hashes.SM3()
_CHUNK = 1 << 20


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(_SM3)
    h.update(data)
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    return sm3(data).hex()


def new() -> hashes.Hash:
    """An incremental SM3 hasher (`update`, `finalize`)."""
    return hashes.Hash(_SM3)


def sm3_parts(parts: Iterable[bytes]) -> bytes:
    h = hashes.Hash(_SM3)
    for part in parts:
        h.update(part)
    return h.finalize()


def sm3_stream(stream: BinaryIO) -> bytes:
    """SM3 of a file-like object read in 1 MiB chunks (large files never sit in memory)."""
    h = hashes.Hash(_SM3)
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    return h.finalize()


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
