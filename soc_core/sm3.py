"""SM3 (GB/T 32905) digests on the OpenSSL build that `cryptography` ships (the fastest SM3
at hand). In the core because every layer needs the hash: file digests in the collectors,
the audit chain, the crypto service (which adds HMAC-SM3 and the KDF on top)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes

DIGEST_SIZE = 32
_SM3 = hashes.SM3()
_CHUNK = 1 << 20

__all__ = ["DIGEST_SIZE", "new", "sm3", "sm3_hex", "sm3_parts", "sm3_stream"]


_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def _hashlib_sm3() -> object | None:
    """hashlib's SM3 when the OpenSSL Python links has it (the same OpenSSL code, ~15 %
    fewer instructions a short message than `cryptography`'s object: a copied context
    instead of a new one; the audit trail hashes every record); else None."""
    try:
        proto = hashlib.new("sm3")
        proto.update(b"abc")  # GB/T 32905 example 1: refuse a wrong or partial build
        if proto.hexdigest() != _ABC:
            return None
        return hashlib.new("sm3")
    except (ValueError, TypeError):
        return None


_PROTO = _hashlib_sm3()


def sm3(data: bytes) -> bytes:
    if _PROTO is not None:
        h = _PROTO.copy()
        h.update(data)
        return h.digest()
    h = hashes.Hash(_SM3)
    h.update(data)
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    if _PROTO is not None:
        h = _PROTO.copy()
        h.update(data)
        return h.hexdigest()
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
