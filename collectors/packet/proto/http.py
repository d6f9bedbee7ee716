"""HTTP/1.x request and response heads from the first bytes of a TCP segment."""

from __future__ import annotations

from typing import Any

METHODS = frozenset({b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH",
                     b"CONNECT", b"TRACE", b"PROPFIND", b"MKCOL", b"COPY", b"MOVE"})
# First four bytes of a request line, checked before anything is parsed.
REQUEST_PREFIXES = frozenset(m[:4] if len(m) >= 4 else m + b" " for m in METHODS)


def looks_like_request(head: bytes) -> bool:
    return head[:4] in REQUEST_PREFIXES


# What a head cut after its first few bytes can begin with ("GE", "HTT"...)
_STARTS = frozenset(w[:n] for w in [m + b" " for m in METHODS] + [b"HTTP/"]
                    for n in range(1, len(w)))


def partial_start(data: bytes) -> bool:
    """A segment shorter than a request line's first word that could begin one."""
    return len(data) < 9 and data in _STARTS


# The header fields the events use; others are skipped before anything is decoded.
_REQUEST_FIELDS = frozenset({b"host", b"user-agent", b"referer", b"content-length"})
_RESPONSE_FIELDS = frozenset({b"content-type", b"content-length", b"transfer-encoding"})


def _headers(lines: list[bytes], wanted: frozenset[bytes]) -> dict[bytes, str]:
    """The first value of each wanted field (names compared lower-cased)."""
    out: dict[bytes, str] = {}
    for line in lines:
        if not line:
            break
        name, sep, value = line.partition(b":")
        if sep:
            name = name.strip().lower()
            if name in wanted and name not in out:
                out[name] = value.strip().decode("latin-1")
    return out


def _head(data: bytes) -> list[bytes]:
    """The head's lines (up to the blank line), without copying the body."""
    end = data.find(b"\r\n\r\n")
    return (data[:end] if end >= 0 else data).split(b"\r\n")


def parse_request(data: bytes) -> dict[str, Any] | None:
    lines = _head(data)
    parts = lines[0].split(b" ")
    if len(parts) == 2:
        return simple_request(data)
    if len(parts) != 3 or parts[0] not in METHODS or not parts[2].startswith(b"HTTP/"):
        return None
    hdr = _headers(lines[1:], _REQUEST_FIELDS)
    return {"method": parts[0].decode(), "uri": parts[1].decode("latin-1"),
            "version": parts[2][5:].decode("latin-1"), "host": hdr.get(b"host"),
            "user_agent": hdr.get(b"user-agent"), "referrer": hdr.get(b"referer"),
            "content_length": _int(hdr.get(b"content-length"))}


def simple_request(data: bytes) -> dict[str, Any] | None:
    """An HTTP/0.9 Simple-Request (RFC 1945 4.1: "GET" SP Request-URI CRLF, one line and
    no headers; the answer is the bare body until the close). Zeek logs these with
    version 0.9; a scanner or an old client sends them, and they carry URIs as any
    other request does."""
    line, sep, rest = data.partition(b"\n")
    parts = line.rstrip(b"\r").split(b" ")
    if not sep or rest.strip(b"\r\n") or len(parts) != 2 or parts[0] != b"GET" \
            or not parts[1]:
        return None
    return {"method": "GET", "uri": parts[1].decode("latin-1"), "version": "0.9",
            "host": None, "user_agent": None, "referrer": None, "content_length": None}


def parse_response(data: bytes) -> dict[str, Any] | None:
    lines = _head(data)
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        return None
    hdr = _headers(lines[1:], _RESPONSE_FIELDS)
    end = data.find(b"\r\n\r\n")
    return {"status": int(parts[1]), "version": parts[0][5:].decode("latin-1"),
            "content_type": hdr.get(b"content-type"),
            "content_length": _int(hdr.get(b"content-length")),
            "chunked": "chunked" in (hdr.get(b"transfer-encoding") or "").lower(),
            # body bytes that came with the head (the rest of its last segment)
            "body_in_head": len(data) - end - 4 if end >= 0 else 0}


def close_delimited(req: dict[str, Any] | None, resp: dict[str, Any]) -> bool:
    """A response whose body runs until the server closes (RFC 9112 6.3 rule 8): no
    Content-Length, not chunked, and a status and request that have a body at all."""
    status = resp["status"]
    return (resp["content_length"] is None and not resp.get("chunked")
            and status >= 200 and status not in (204, 304)
            and not (req and req["method"] in ("HEAD", "CONNECT")))


def _int(v: str | None) -> int | None:
    """A decimal header value, else None. ASCII digits only and at most 18 of them:
    str.isdigit() also accepts "²" (latin-1 0xB2) and int() refuses 4,300+ digits, and
    either raising would drop the whole request and stop parsing that connection."""
    return int(v) if v is not None and v.isascii() and v.isdigit() and len(v) <= 18 else None
