"""HTTP/1.x request and response heads from the first bytes of a TCP segment."""

from __future__ import annotations

from typing import Any

METHODS = frozenset({b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH",
                     b"CONNECT", b"TRACE", b"PROPFIND", b"MKCOL", b"COPY", b"MOVE"})
# First four bytes of a request line, checked before anything is parsed.
REQUEST_PREFIXES = frozenset(m[:4] if len(m) >= 4 else m + b" " for m in METHODS)


def looks_like_request(head: bytes) -> bool:
    return head[:4] in REQUEST_PREFIXES


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        if not line:
            break
        name, sep, value = line.partition(b":")
        if sep:
            out.setdefault(name.strip().lower().decode("latin-1"),
                           value.strip().decode("latin-1"))
    return out


def parse_request(data: bytes) -> dict[str, Any] | None:
    lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in METHODS or not parts[2].startswith(b"HTTP/"):
        return None
    hdr = _headers(lines[1:])
    return {"method": parts[0].decode(), "uri": parts[1].decode("latin-1"),
            "version": parts[2][5:].decode("latin-1"), "host": hdr.get("host"),
            "user_agent": hdr.get("user-agent"), "referrer": hdr.get("referer"),
            "content_length": _int(hdr.get("content-length"))}


def parse_response(data: bytes) -> dict[str, Any] | None:
    lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        return None
    hdr = _headers(lines[1:])
    return {"status": int(parts[1]), "version": parts[0][5:].decode("latin-1"),
            "content_type": hdr.get("content-type"),
            "content_length": _int(hdr.get("content-length"))}


def _int(v: str | None) -> int | None:
    """A decimal header value, else None. ASCII digits only and at most 18 of them:
    str.isdigit() also accepts "²" (latin-1 0xB2) and int() refuses 4,300+ digits, and
    either raising would drop the whole request and stop parsing that connection."""
    return int(v) if v is not None and v.isascii() and v.isdigit() and len(v) <= 18 else None
