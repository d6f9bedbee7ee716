"""The analyst console's parts (its routes are soc_api/routes_console.py):

    mount_static(app)          serve the console's static files (own scripts and styles,
                               the vendored htmx and ECharts) at /static
    html_error(request, exc)   for a browser's page request, the login (401, or a session
                               still at its first-login stage) or an error page; None for
                               any other request (the API's JSON error stays)
    MESSAGES                   the one message catalogue (zh-CN, en)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from soc_api.console.messages import MESSAGES
from soc_api.console.render import STATIC_DIR, page

__all__ = ["MESSAGES", "html_error", "mount_static"]


def mount_static(app: Any) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _is_page(request: Request) -> bool:
    path = request.url.path
    return request.method == "GET" and (path == "/" or path.startswith("/ui/")) \
        and "text/html" in request.headers.get("accept", "")


def html_error(request: Request, exc: HTTPException) -> Any:
    if not _is_page(request):
        return None
    principal = getattr(request.state, "principal", None)
    unfinished = principal is not None and principal.stage != "full"
    if exc.status_code == 401 or (exc.status_code == 403 and unfinished):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?next=" + quote(here, safe=""), status_code=303)
    key = {403: "err.forbidden", 404: "err.not_found"}.get(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) else ""
    return page(request, "error.html", status=exc.status_code, key=key, detail=detail)
