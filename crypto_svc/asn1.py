"""The little DER that SM2 needs: INTEGER, OCTET STRING, BIT STRING, OID, SEQUENCE and one
context tag. Decoding is strict (minimal lengths, minimal integers, no trailing bytes), so
one value has one encoding and a altered encoding is rejected instead of re-interpreted."""

from __future__ import annotations

from dataclasses import dataclass

from crypto_svc.errors import CryptoError

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30


class DERError(CryptoError):
    pass


# -- encoding --------------------------------------------------------------------------
def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative integers are used here")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # keeps a leading 0 for the sign bit
    return tlv(INTEGER, body)


def octets(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def bits(data: bytes) -> bytes:
    return tlv(BIT_STRING, b"\x00" + data)


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


# -- decoding --------------------------------------------------------------------------
@dataclass
class TLV:
    tag: int
    body: bytes


def read(data: bytes, pos: int = 0) -> tuple[TLV, int]:
    """One TLV at `pos` -> (tlv, position after it)."""
    if pos + 2 > len(data):
        raise DERError("truncated DER")
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise DERError("bad DER length")
        length = int.from_bytes(data[pos:pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise DERError("non-minimal DER length")
        pos += n
    end = pos + length
    if end > len(data):
        raise DERError("truncated DER")
    return TLV(tag, data[pos:end]), end


def read_all(data: bytes, tag: int) -> bytes:
    """The body of `data`, which must be exactly one TLV with `tag`."""
    item, end = read(data)
    if item.tag != tag:
        raise DERError(f"expected DER tag {tag:#x}, got {item.tag:#x}")
    if end != len(data):
        raise DERError("trailing bytes after DER value")
    return item.body


def items(body: bytes) -> list[TLV]:
    out = []
    pos = 0
    while pos < len(body):
        item, pos = read(body, pos)
        out.append(item)
    return out


def to_int(item: TLV) -> int:
    if item.tag != INTEGER:
        raise DERError("expected an INTEGER")
    b = item.body
    if not b:
        raise DERError("empty INTEGER")
    if b[0] & 0x80:
        raise DERError("negative INTEGER")
    if len(b) > 1 and b[0] == 0 and not b[1] & 0x80:
        raise DERError("non-minimal INTEGER")
    return int.from_bytes(b, "big")


def to_octets(item: TLV) -> bytes:
    if item.tag != OCTET_STRING:
        raise DERError("expected an OCTET STRING")
    return item.body


def to_bits(item: TLV) -> bytes:
    if item.tag != BIT_STRING or not item.body or item.body[0] != 0:
        raise DERError("expected a BIT STRING of whole bytes")
    return item.body[1:]


def to_oid(item: TLV) -> str:
    if item.tag != OID or not item.body or item.body[-1] & 0x80:
        # the last byte of every arc has bit 8 clear: one that is set leaves an arc open
        raise DERError("expected an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in item.body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])
