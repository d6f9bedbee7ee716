"""Plain ASGI layers around the app (cheaper than Starlette's BaseHTTPMiddleware): a
request id on every request and response, a bound on request bodies, and security headers.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NO_STORE = (b"cache-control", b"no-store")
# the console's static files (scripts, styles) may be kept an hour: they hold no data
_CACHE_STATIC = (b"cache-control", b"public, max-age=3600")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000"),
    # the console: its own scripts, styles and fonts only; no inline script or style, no
    # framing, no plug-ins; fetches go to this origin only
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
     b"frame-ancestors 'none'"),
]


class Guard:
    def __init__(self, app: Any, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        length = headers.get(b"content-length")
        if scope["method"] in ("POST", "PUT", "PATCH"):
            if length is None and headers.get(b"transfer-encoding"):
                return await _reply(send, 411, "a Content-Length header is required", rid)
            if length is not None:
                if not length.isdigit():
                    return await _reply(send, 400, "bad Content-Length", rid)
                if int(length) > self.max_body:
                    return await _reply(send, 413, f"request body is larger than "
                                                   f"{self.max_body} bytes", rid)

        cache = _CACHE_STATIC if scope["path"].startswith("/static/") else _NO_STORE

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS,
                                      cache, (b"x-request-id", rid.encode())]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _reply(send: Any, status: int, detail: str, rid: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", rid.encode()), *_SECURITY_HEADERS,
                            _NO_STORE]})
    await send({"type": "http.response.body", "body": body})
