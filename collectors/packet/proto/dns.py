"""DNS messages: header, questions and answers (RFC 1035), with name compression."""

from __future__ import annotations

import math
import re
import socket
import struct
from typing import Any

# Every resource record type IANA has named ("Resource Record (RR) TYPEs" registry), so a
# tunnel's NULL or SSHFP records read as such, not as TYPE10 / TYPE44. 255 keeps the
# customary "ANY" (the registry's name is "*").
TYPES = {1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
         10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT",
         17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAP-PTR",
         24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT",
         31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT",
         38: "A6", 39: "DNAME", 40: "SINK", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP",
         45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3",
         51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 56: "NINFO", 57: "RKEY",
         58: "TALINK", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
         64: "SVCB", 65: "HTTPS", 66: "DSYNC", 99: "SPF", 100: "UINFO", 101: "UID", 102: "GID",
         103: "UNSPEC", 104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48",
         109: "EUI64", 128: "NXNAME", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR",
         253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA", 258: "AVC",
         259: "DOA", 260: "AMTRELAY", 261: "RESINFO", 262: "WALLET", 263: "CLA", 264: "IPN",
         32768: "TA", 32769: "DLV"}
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


_ESCAPED = re.compile(r"\\x[0-9a-f]{2}|[^.]", re.S)


def label_stats(name: str) -> tuple[int, float]:
    """(characters, Shannon entropy in bits per character) of a name's labels without the
    dots, a byte written as "\\xNN" counted as one character: whatever alphabet a
    tunnel encodes its data in (hex, base32, base64, raw bytes), its names are long and
    their characters near-uniform."""
    chars = _ESCAPED.findall(name)
    n = len(chars)
    if not n:
        return 0, 0.0
    counts: dict[str, int] = {}
    for c in chars:
        counts[c] = counts.get(c, 0) + 1
    return n, -sum(k / n * math.log2(k / n) for k in counts.values())


def cname_chain(answers: list[dict[str, Any]]) -> int:
    """How many CNAME records the answer follows before its final records."""
    return sum(1 for a in answers if a["type"] == "CNAME")
