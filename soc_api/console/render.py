"""Rendering a console page: the Jinja2 environment, the viewer's preferences (language and
time zone, kept in two plain cookies) and what every page's layout needs."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from soc_api import roles
from soc_api.console.messages import DEFAULT_LANG, LANGS, catalogue, text
from soc_core import ecs

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
LANG_COOKIE = "govsoc_lang"
TZ_COOKIE = "govsoc_tz"
DEFAULT_TZ = "Asia/Shanghai"
ZONES = ("Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", "UTC")


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(("html",)), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["json"] = json_island
    env.filters["pretty"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode()
    return env


def json_island(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` island: data, never code (the CSP
    runs no inline script); `<`, `>` and `&` escaped so no text can close the element."""
    raw = orjson.dumps(value).decode()
    return Markup(raw.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


def lang_of(request: Request) -> str:
    given = request.cookies.get(LANG_COOKIE, "")
    return given if given in LANGS else DEFAULT_LANG


def zone_of(request: Request) -> ZoneInfo:
    """The viewer's zone (cookie), else the configured one, else Asia/Shanghai."""
    cookie = request.cookies.get(TZ_COOKIE)
    for name in (cookie if cookie in ZONES else None,
                 request.app.state.ctx.cfg.get("timezone")):
        if name:
            try:
                return ZoneInfo(str(name))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo(DEFAULT_TZ)


def local_time(value: Any, zone: ZoneInfo, *, seconds: bool = True) -> str:
    """An ISO-8601 (or epoch) UTC time as the viewer reads it; "" for none."""
    if value in (None, ""):
        return ""
    try:
        when = ecs.parse_time(value) if not isinstance(value, datetime) else value
    except ecs.EventError:
        return str(value)
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def safe_next(value: str | None) -> str:
    """A local path to go back to (never another site: `//host` and `/\\host` are out)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) \
            and len(value) < 2000:
        return value
    return "/"


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    lang = lang_of(request)
    zone = zone_of(request)
    principal = getattr(request.state, "principal", None)
    can = roles.permissions(principal.roles) if principal else frozenset()
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")

    def t(key: str, **fmt: Any) -> str:
        s = text(key, lang)
        return s.format(**fmt) if fmt else s

    cfg = request.app.state.ctx.cfg
    body = environment().get_template(template).render(
        refresh=int(cfg.get("console.refresh_seconds", 30)),
        poll=int(cfg.get("console.poll_seconds", 10)),
        t=t, lang=lang, zone=zone.key, zones=ZONES, principal=principal, can=can,
        csrf=getattr(principal, "csrf", None) or "", here=here,
        other_lang="en" if lang != "en" else "zh-CN",
        strings=catalogue(lang), when=lambda v, s=True: local_time(v, zone, seconds=s),
        **values)
    return HTMLResponse(body, status_code=status)
