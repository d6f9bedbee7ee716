"""RDP connection set-up ([MS-RDPBCGR] 2.2.1.1-2.2.1.2): the X.224 Connection Request with
its routing cookie ("Cookie: mstshash=<user>") and RDP_NEG_REQ, and the Connection Confirm
with RDP_NEG_RSP (the security protocol chosen) or RDP_NEG_FAILURE. All of it is sent in
clear before TLS or CredSSP starts, which is why it is where spraying shows."""

from __future__ import annotations

PORTS = frozenset({3389})
PROTOCOLS = {0: "RDP", 1: "SSL", 2: "HYBRID", 4: "RDSTLS", 8: "HYBRID_EX"}
FAILURES = {1: "SSL_REQUIRED_BY_SERVER", 2: "SSL_NOT_ALLOWED_BY_SERVER",
            3: "SSL_CERT_NOT_ON_SERVER", 4: "INCONSISTENT_FLAGS",
            5: "HYBRID_REQUIRED_BY_SERVER", 6: "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER"}
COOKIE = b"Cookie: mstshash="
CR, CC = 0xE0, 0xD0


def protocol_names(mask: int) -> str:
    """Requested protocols (a bit mask) as Zeek writes them, e.g. "SSL,HYBRID"."""
    names = [n for bit, n in PROTOCOLS.items() if bit and mask & bit]
    return ",".join(names) if names else "RDP"


def parse(data: bytes) -> dict | None:
    """A TPKT + X.224 CR or CC -> {"type": "request"|"confirm", "cookie", "requested",
    "selected", "failure"} (absent keys: not in the message), or None."""
    if len(data) < 11 or data[0] != 3 or data[1] != 0:
        return None
    tpkt = (data[2] << 8) | data[3]
    end = min(len(data), tpkt, 5 + data[4])
    kind = data[5] & 0xF0
    if kind not in (CR, CC):
        return None
    off = 11
    out: dict = {"type": "request" if kind == CR else "confirm"}
    if kind == CR and data[off:off + len(COOKIE)] == COOKIE:
        stop = data.find(b"\r\n", off, end)
        if stop < 0:
            stop = end
        out["cookie"] = data[off + len(COOKIE):stop].decode("utf-8", "backslashreplace")
        off = stop + 2
    if off + 8 <= end and data[off + 2] == 8 and data[off + 3] == 0:
        value = int.from_bytes(data[off + 4:off + 8], "little")
        neg = data[off]
        if neg == 1:
            out["requested"] = value
        elif neg == 2:
            out["selected"] = value
        elif neg == 3:
            out["failure"] = value
    return out
