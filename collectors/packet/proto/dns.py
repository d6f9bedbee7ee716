"""DNS messages: header, questions and answers (RFC 1035), with name compression."""

from __future__ import annotations

import socket
import struct
from typing import Any

TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
         28: "AAAA", 33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG",
         47: "NSEC", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 99: "SPF", 255: "ANY", 257: "CAA"}
CLASSES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
_HDR = struct.Struct(">HHHHHH").unpack_from
_RR = struct.Struct(">HHIH").unpack_from
_QTAIL = struct.Struct(">HH").unpack_from


def type_name(t: int) -> str:
    return TYPES.get(t, f"TYPE{t}")


def class_name(c: int) -> str:
    return CLASSES.get(c, f"CLASS{c}")


_FLAG_BITS = ((0x0400, "AA"), (0x0200, "TC"), (0x0100, "RD"), (0x0080, "RA"),
              (0x0020, "AD"), (0x0010, "CD"))
# names of every combination of the flag bits above (bits 4..10 of the flags word),
# looked up once a message rather than tested bit by bit
_FLAG_NAMES = tuple(tuple(name for bit, name in _FLAG_BITS if (i << 4) & bit)
                    for i in range(128))


def header_flags(flags: int) -> list[str]:
    return list(_FLAG_NAMES[(flags >> 4) & 0x7F])


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """Name at `off`; returns (name, offset after it). Pointers are followed with a hop
    limit, so a looping message is an error, not a hang, and a name is at most 255 bytes
    (RFC 1035 2.3.4): chained pointers could otherwise spell 8 KB names, hundreds of times
    over in one 10 KB message, and every answer becomes part of an event."""
    labels: list[bytes] = []
    end = -1
    hops = 0
    size = 1  # the root label
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 64:
                raise ValueError("dns name pointer loop")
            continue
        if n & 0xC0:
            raise ValueError("dns label type")
        off += 1
        if n == 0:
            break
        label = msg[off:off + n]
        if len(label) != n:
            raise ValueError("dns name truncated")
        size += n + 1
        if size > 255:
            raise ValueError("dns name longer than 255 bytes")
        labels.append(label)
        off += n
    if not labels:
        return ".", (end if end >= 0 else off)
    # one decode of the joined labels: ASCII with backslashreplace works byte by byte,
    # so this is the same text as decoding each label and joining with "."
    return b".".join(labels).decode("ascii", "backslashreplace"), (end if end >= 0 else off)


def _rdata(msg: bytes, rtype: int, off: int, rdlen: int) -> str:
    data = msg[off:off + rdlen]
    if len(data) != rdlen:
        raise ValueError("dns rdata truncated")
    if rtype == 1 and rdlen == 4:
        return socket.inet_ntop(socket.AF_INET, data)
    if rtype == 28 and rdlen == 16:
        return socket.inet_ntop(socket.AF_INET6, data)
    if rtype in (2, 5, 12, 39):
        return read_name(msg, off)[0]
    if rtype == 15:
        return read_name(msg, off + 2)[0]
    if rtype == 16:
        parts, i = [], 0
        while i < rdlen:
            n = data[i]
            parts.append(data[i + 1:i + 1 + n].decode("utf-8", "backslashreplace"))
            i += 1 + n
        return "".join(parts)
    return data.hex()


def parse(msg: bytes) -> dict[str, Any]:
    """One DNS message -> {id, response, opcode, rcode, flags, questions, answers}."""
    if len(msg) < 12:
        raise ValueError("dns message shorter than its header")
    ident, flags, qd, an, _ns, _ar = _HDR(msg, 0)
    off = 12
    questions = []
    for _ in range(min(qd, 32)):
        name, off = read_name(msg, off)
        qtype, qclass = _QTAIL(msg, off)
        off += 4
        questions.append((name, qtype, qclass))
    answers = []
    for _ in range(min(an, 256)):
        name, off = read_name(msg, off)
        rtype, rclass, ttl, rdlen = _RR(msg, off)
        off += 10
        answers.append({"name": name, "type": TYPES.get(rtype) or f"TYPE{rtype}",
                        "class": CLASSES.get(rclass) or f"CLASS{rclass}",
                        "ttl": ttl, "data": _rdata(msg, rtype, off, rdlen)})
        off += rdlen
    return {"id": ident, "response": bool(flags & 0x8000), "opcode": (flags >> 11) & 15,
            "rcode": flags & 15, "flags": list(_FLAG_NAMES[(flags >> 4) & 0x7F]),
            "questions": questions,
            "answers": answers}
