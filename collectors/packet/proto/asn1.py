"""A minimal BER/DER reader for the few ASN.1 messages read on the wire (Kerberos, LDAP):
tag-length-value walking, definite lengths only (both protocols send those)."""

from __future__ import annotations

from collections.abc import Iterator


def tlv(data: bytes, off: int, end: int, partial: bool = False) -> tuple[int, int, int]:
    """(tag byte, start of the value, end of the value) of the element at `off`; with
    `partial`, a value running past `end` (a message continued in the next segment)
    ends at `end` instead of raising."""
    if off + 2 > end:
        raise ValueError("asn.1 element truncated")
    tag = data[off]
    if tag & 0x1F == 0x1F:
        raise ValueError("asn.1 multi-byte tag")
    n = data[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or off + k > end:
            raise ValueError("asn.1 bad length")
        n = int.from_bytes(data[off:off + k], "big")
        off += k
    if off + n > end:
        if not partial:
            raise ValueError("asn.1 value truncated")
        n = end - off
    return tag, off, off + n


def children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The elements inside a constructed value."""
    off = start
    while off < end:
        tag, s, e = tlv(data, off, end)
        yield tag, s, e
        off = e


def fields(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """A SEQUENCE of context-tagged fields ([n] EXPLICIT ...) as n -> (start, end) of the
    tagged element's inner value; the fields before one cut off by the segment's end."""
    out = {}
    try:
        for tag, s, e in children(data, start, end):
            if tag & 0xE0 == 0xA0:  # context-specific, constructed
                out[tag & 0x1F] = (s, e)
    except ValueError:
        pass
    return out


def integer(data: bytes, start: int, end: int) -> int:
    """The INTEGER (or ENUMERATED) element at `start` (inside an explicit tag)."""
    tag, s, e = tlv(data, start, end)
    if tag not in (0x02, 0x0A) or e - s > 8:
        raise ValueError("asn.1 integer expected")
    return int.from_bytes(data[s:e], "big", signed=True)


def string(data: bytes, start: int, end: int) -> str:
    tag, s, e = tlv(data, start, end)
    return data[s:e].decode("utf-8", "backslashreplace")
