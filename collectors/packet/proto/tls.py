"""TLS ClientHello / ServerHello, the JA3 fingerprint and the Chinese SM cipher suites.

TLCP (GB/T 38636-2020, the 国密 SSL protocol) uses record version 0x0101 and the SM2/
SM3/SM4 suites below; RFC 8998 adds TLS_SM4_GCM_SM3/TLS_SM4_CCM_SM3 to TLS 1.3. When a
client offers any of them the event notes it under `govsoc.tls.sm_ciphers`.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

VERSIONS = {0x0300: ("ssl", "3.0"), 0x0301: ("tls", "1.0"), 0x0302: ("tls", "1.1"),
            0x0303: ("tls", "1.2"), 0x0304: ("tls", "1.3"), 0x0101: ("tlcp", "1.1")}
SM_CIPHERS = {
    0xE001: "ECDHE_SM1_SM3", 0xE003: "ECC_SM1_SM3", 0xE005: "IBSDH_SM1_SM3",
    0xE007: "IBC_SM1_SM3", 0xE009: "RSA_SM1_SM3", 0xE00A: "RSA_SM1_SHA1",
    0xE011: "ECDHE_SM4_CBC_SM3", 0xE013: "ECC_SM4_CBC_SM3", 0xE015: "IBSDH_SM4_CBC_SM3",
    0xE017: "IBC_SM4_CBC_SM3", 0xE019: "RSA_SM4_CBC_SM3", 0xE01A: "RSA_SM4_CBC_SHA1",
    0xE01C: "RSA_SM4_CBC_SHA256", 0xE051: "ECDHE_SM4_GCM_SM3", 0xE053: "ECC_SM4_GCM_SM3",
    0xE055: "IBSDH_SM4_GCM_SM3", 0xE057: "IBC_SM4_GCM_SM3", 0xE059: "RSA_SM4_GCM_SM3",
    0xE05A: "RSA_SM4_GCM_SHA256",
    0x00C6: "TLS_SM4_GCM_SM3", 0x00C7: "TLS_SM4_CCM_SM3",
}
CIPHER_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    **SM_CIPHERS,
}


_H = struct.Struct(">H").unpack_from
_HH = struct.Struct(">HH").unpack_from


def cipher_name(c: int) -> str:
    return CIPHER_NAMES.get(c, f"0x{c:04X}")


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


# the 16 GREASE values (RFC 8701): 0x0A0A, 0x1A1A ... 0xFAFA, for set lookups in loops
GREASE = frozenset(v for v in range(0x10000) if is_grease(v))


def version_of(v: int) -> tuple[str, str]:
    return VERSIONS.get(v, ("tls", f"0x{v:04x}"))


def record_length(data: bytes) -> int | None:
    """Bytes needed for the first handshake record (header included), or None when the
    data does not start with a TLS/TLCP handshake record."""
    if len(data) < 5 or data[0] != 0x16 or data[1] not in (1, 3):
        return None
    return 5 + ((data[3] << 8) | data[4])


def _exts(data: bytes, off: int, end: int):
    while off + 4 <= end:
        etype, elen = _HH(data, off)
        off += 4
        if off + elen > end:
            raise ValueError("tls extension truncated")
        yield etype, off, elen
        off += elen


def _hello(data: bytes, kind: int) -> tuple[int, int, int] | None:
    """The common head of a Client/ServerHello (handshake type `kind`): (end of the
    message, its version, offset after random and session id), or None when `data` is
    not a handshake record holding one."""
    if record_length(data) is None or len(data) < 9 or data[5] != kind:
        return None
    end = min(len(data), 9 + int.from_bytes(data[6:9], "big"))
    version = _H(data, 9)[0]
    off = 9 + 2 + 32
    return end, version, off + 1 + data[off]  # session id


def parse_client_hello(data: bytes) -> dict[str, Any] | None:
    """A handshake record holding a ClientHello -> its fields and JA3."""
    head = _hello(data, 1)
    if head is None:
        return None
    end, client_version, off = head
    (clen,) = _H(data, off)
    off += 2
    if off + clen > end:
        raise ValueError("tls cipher list truncated")
    ciphers = list(struct.unpack_from(f">{clen // 2}H", data, off))
    off += clen
    off += 1 + data[off]  # compression methods
    sni = None
    exts: list[int] = []
    groups: list[int] = []
    formats: list[int] = []
    versions: list[int] = []
    alpn: list[str] = []
    if off + 2 <= end:
        (xlen,) = _H(data, off)
        off += 2
        for etype, eoff, elen in _exts(data, off, min(end, off + xlen)):
            exts.append(etype)
            # lengths inside an extension are cut at its end: one that overruns it must
            # not pull in the next extension's bytes or fail the whole hello
            if etype == 0 and elen >= 5:
                nlen = min(_H(data, eoff + 3)[0], elen - 5)
                sni = data[eoff + 5:eoff + 5 + nlen].decode("ascii", "backslashreplace")
            elif etype == 10 and elen >= 2:
                n = min(_H(data, eoff)[0], elen - 2) // 2
                groups = list(struct.unpack_from(f">{n}H", data, eoff + 2))
            elif etype == 11 and elen >= 1:
                formats = list(data[eoff + 1:eoff + 1 + min(data[eoff], elen - 1)])
            elif etype == 43 and elen >= 1:
                n = min(data[eoff], elen - 1) // 2
                versions = list(struct.unpack_from(f">{n}H", data, eoff + 1))
            elif etype == 16 and elen >= 2:
                i, stop = eoff + 2, eoff + elen
                while i < stop:
                    n = data[i]
                    alpn.append(data[i + 1:i + 1 + n].decode("ascii", "backslashreplace"))
                    i += 1 + n
    grease = GREASE
    ciphers = [c for c in ciphers if c not in grease]
    ja3_full = ",".join([
        str(client_version),
        "-".join(map(str, ciphers)),
        "-".join([str(e) for e in exts if e not in grease]),
        "-".join([str(g) for g in groups if g not in grease]),
        "-".join(map(str, formats)),
    ])
    offered = [v for v in versions if v not in grease]
    return {
        "client_version": client_version, "record_version": (data[1] << 8) | data[2],
        "ciphers": ciphers, "sni": sni,
        "supported_versions": offered, "alpn": alpn,
        "ja3_full": ja3_full, "ja3": hashlib.md5(ja3_full.encode()).hexdigest(),
    }


def parse_server_hello(data: bytes) -> dict[str, Any] | None:
    head = _hello(data, 2)
    if head is None:
        return None
    end, version, off = head
    (cipher,) = _H(data, off)
    off += 3
    if off + 2 <= end:
        (xlen,) = _H(data, off)
        off += 2
        for etype, eoff, elen in _exts(data, off, min(end, off + xlen)):
            if etype == 43 and elen == 2:
                version = _H(data, eoff)[0]
    return {"version": version, "cipher": cipher}


HEARTBEAT = 24  # record content type (RFC 6520)


def heartbeat(data: bytes) -> tuple[int, int, int] | None:
    """(message type 1=request 2=response, declared payload length, record length) of a
    heartbeat record at the start of `data`, or None. Only the record's first bytes are
    needed, so a message split over segments is judged from its first one."""
    if len(data) < 8 or data[0] != HEARTBEAT or data[1] not in (1, 3) or data[5] not in (1, 2):
        return None
    return data[5], (data[6] << 8) | data[7], (data[3] << 8) | data[4]


def heartbeat_verdict(payload_length: int, record_length: int) -> str:
    """RFC 6520 4: the message is type (1) + length (2) + payload + at least 16 bytes of
    padding, so a declared payload beyond record length - 19 is a lie: the Heartbleed
    over-read (CVE-2014-0160) that Zeek's heartbleed policy flags the same way."""
    return "malformed" if payload_length + 19 > record_length else "normal"


CERTIFICATE, SERVER_HELLO_DONE = 11, 14


def server_certificates(data: bytes) -> list[bytes] | None:
    """The certificates (DER, leaf first) of the server's first flight, `data` being the
    server's bytes from its ServerHello record on: a list when the Certificate message
    is complete, [] when the flight shows none (ServerHelloDone first, or a
    non-handshake record: a resumed session, TLS 1.3's encrypted rest), None while it
    may still come (the caller holds more bytes)."""
    hs = bytearray()
    off, n = 0, len(data)
    while off + 5 <= n:
        if data[off] != 22:
            return []
        rlen = (data[off + 3] << 8) | data[off + 4]
        if off + 5 + rlen > n:
            hs += data[off + 5:n]  # a record in progress: its part counts
            off = n
            break
        hs += data[off + 5:off + 5 + rlen]
        off += 5 + rlen
    i, m = 0, len(hs)
    while i + 4 <= m:
        kind = hs[i]
        mlen = int.from_bytes(hs[i + 1:i + 4], "big")
        if kind == SERVER_HELLO_DONE:
            return []
        if kind == CERTIFICATE:
            if i + 4 + mlen > m:
                return None
            return _cert_list(bytes(hs[i + 4:i + 4 + mlen]))
        i += 4 + mlen
    return None


def _cert_list(body: bytes) -> list[bytes]:
    total = int.from_bytes(body[:3], "big")
    if total + 3 > len(body):
        raise ValueError("tls certificate list truncated")
    certs, i = [], 3
    while i + 3 <= 3 + total:
        clen = int.from_bytes(body[i:i + 3], "big")
        if i + 3 + clen > 3 + total:
            raise ValueError("tls certificate truncated")
        certs.append(body[i + 3:i + 3 + clen])
        i += 3 + clen
    return certs


def parse_sslv2_client_hello(data: bytes) -> dict[str, Any] | None:
    """A ClientHello in SSLv2 record format (a 2-byte header with the top bit set, as old
    clients and scanners send to reach SSLv2-only servers): its version and the TLS
    suites among its 3-byte cipher specs (those whose first byte is 0, RFC 5246 E.2)."""
    if len(data) < 11 or not data[0] & 0x80 or data[2] != 1 or data[3] not in (2, 3):
        return None
    version, slen = _HH(data, 3)
    end = min(len(data), 2 + (((data[0] & 0x7F) << 8) | data[1]))
    if 11 + slen > end:
        raise ValueError("sslv2 cipher specs truncated")
    specs = [int.from_bytes(data[i:i + 3], "big") for i in range(11, 11 + slen - 2, 3)]
    return sslv2_hello(version, specs)


def sslv2_hello(version: int, specs: list[int]) -> dict[str, Any]:
    """The hello's fields from its version and cipher specs, for both engines. JA3 is
    defined over TLS hellos; here it is computed the same way from what a v2 hello
    carries (version and TLS suites; no extensions, groups or formats)."""
    ciphers = [s for s in specs if s < 0x10000 and s not in GREASE]
    ja3_full = f"{version},{'-'.join(map(str, ciphers))},,,"
    return {"client_version": version, "record_version": 2, "ciphers": ciphers, "sni": None,
            "supported_versions": [], "alpn": [], "sslv2": True,
            "ja3_full": ja3_full, "ja3": hashlib.md5(ja3_full.encode()).hexdigest()}
