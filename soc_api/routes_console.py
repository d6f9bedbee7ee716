"""The analyst console (issue 16): server-rendered pages at `/` and under `/ui/`.

Every page passes the same gate as the API (roles.ROUTES, session cookie, CSRF on unsafe
requests); the pages read the store for the caller's departments only (soc_api.tenancy)
and write what they read to the audit trail, like the API's reads. Actions (acknowledge,
close, notes) are not console routes: the page's scripts call the API's own routes with
the session's CSRF token, so the server enforces roles there once, for both."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.concurrency import run_in_threadpool

from detections import posture
from soc_api import live, roles, tenancy
from soc_api.console.messages import LANGS, text
from soc_api.console.overview import PARTS, overview, summary
from soc_api.console.render import (
    LANG_COOKIE,
    TZ_COOKIE,
    ZONES,
    lang_of,
    local_time,
    page,
    safe_next,
    zone_of,
)
from soc_api.routes_data import decode_cursor, encode_cursor, selection
from soc_core import ecs
from soc_core import query as q
from soc_core.store import Selection, StoreError

router = APIRouter(tags=["console"], include_in_schema=False)

LEVELS = posture.LEVEL_ORDER
STATUSES = ("open", "acknowledged", "closed")
# the close reasons of the alert routes (issue 12's plan), which the page offers
CLOSE_REASONS = ("false_positive", "true_positive", "duplicate", "benign", "resolved")

PAGE_SIZE = 50
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# the fields the event search offers top values of, besides those of the shown documents
COMMON_FIELDS = ("event.dataset", "event.action", "event.outcome", "host.name", "source.ip",
                 "destination.ip", "destination.port", "network.transport", "user.name",
                 "process.name", "organization.name")
_Q = Query(None, max_length=4000)
_TIME = Query(None, max_length=64)


def _may(request: Request, permission: str) -> bool:
    return roles.allowed(request.state.principal.roles, permission)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = Query(None, max_length=2000)):  # noqa: A002
    return page(request, "login.html", next=safe_next(next))


@router.get("/ui/prefs")
def set_prefs(lang: str | None = Query(None, max_length=8),
              tz: str | None = Query(None, max_length=64),
              next: str | None = Query(None, max_length=2000)) -> Response:  # noqa: A002
    """Language and time zone of this browser (plain preference cookies, no account
    state); back to `next`, or 204 without one."""
    if lang is not None and lang not in LANGS:
        raise HTTPException(400, f"unknown language {lang!r}; one of {', '.join(LANGS)}")
    if tz is not None and tz not in ZONES:
        raise HTTPException(400, f"unknown time zone {tz!r}; one of {', '.join(ZONES)}")
    resp: Response = RedirectResponse(safe_next(next), status_code=303) if next \
        else Response(status_code=204)
    for name, value in ((LANG_COOKIE, lang), (TZ_COOKIE, tz)):
        if value:
            resp.set_cookie(name, value, max_age=365 * 86400, samesite="strict", path="/")
    return resp


# -- 态势感知 -------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request):
    request.app.state.ctx.audit(request, "console.overview")
    return page(request, "overview.html")


@router.get("/ui/bigscreen", response_class=HTMLResponse)
def bigscreen_page(request: Request):
    request.app.state.ctx.audit(request, "console.overview", extra={"view": "bigscreen"})
    return page(request, "bigscreen.html")


@router.get("/ui/overview.json")
def overview_json(request: Request, part: str = Query(
        "all", pattern="^(all|core|traffic)$")) -> JSONResponse:
    """The overview's figures: the page fetches them once painted, then every
    `console.refresh_seconds` (not audited each time: the page load was)."""
    return JSONResponse(_overview_data(request, PARTS if part == "all" else (part,)))


def _overview_data(request: Request, parts: tuple[str, ...]) -> dict[str, Any]:
    """The overview for this caller, with every label in its language and zone."""
    ctx = request.app.state.ctx
    lang, zone = lang_of(request), zone_of(request)
    try:
        data = overview(ctx.store, request.state.principal, ctx.departments,
                        alerts_readable=_may(request, "alerts:read"), parts=parts)
    except StoreError as exc:
        raise HTTPException(503, "the event store cannot answer now") from exc
    data["generated_local"] = local_time(data["generated"], zone)
    if "core" not in parts:
        return data
    for name, buckets in data["trend"].items():
        data["trend"][name] = [(local_time(t, zone, seconds=False)[: 11 if name == "24h"
                                                                   else 5], n)
                               for t, n in buckets]
    data["by_level"] = [(text(f"level.{lvl}", lang), n) for lvl, n in data["by_level"]]
    for a in data["newest"]:
        a["time_local"] = local_time(a["time"], zone)
        a["level_label"] = text(f"level.{a['level']}", lang)
        a["status_label"] = text(f"status.{a['status']}", lang)
    for c in data["health"]["collectors"]:
        c["seen_local"] = local_time(c["seen"], zone)
    data["health"]["last_run_local"] = local_time(data["health"]["last_run"], zone)
    idx = data["security_index"]
    idx["band_label"] = text(f"ov.band.{idx['band']}", lang)
    return data


# -- alert queue ------------------------------------------------------------------------

def _alert_selection(request: Request, status: str | None, level: str | None,
                     q: str | None, range_: str | None, since: str | None = None
                     ) -> Selection:
    if status and status not in STATUSES:
        raise HTTPException(400, f"bad status {status!r}: one of {', '.join(STATUSES)}")
    if level and level not in LEVELS:
        raise HTTPException(400, f"bad level {level!r}: one of {', '.join(LEVELS)}")
    if range_ and range_ not in RANGES:
        raise HTTPException(400, f"bad range {range_!r}: one of {', '.join(RANGES)}")
    start = since
    if start is None and range_:
        start = ecs.format_time(datetime.now(UTC) - RANGES[range_])
    sel = selection(request, "alerts", q, None, start, None)
    filters = {}
    if status:
        filters["govsoc.alert.status"] = status
    if level:
        filters["govsoc.alert.level"] = level
    sel.filters = filters or None
    return sel


def _rows(request: Request, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lang, zone = lang_of(request), zone_of(request)
    out = []
    for doc in hits:
        a = summary(doc)
        a["time_local"] = local_time(a["time"], zone)
        a["level_label"] = text(f"level.{a['level']}", lang)
        a["status_label"] = text(f"status.{a['status']}", lang)
        out.append(a)
    return out


@router.get("/ui/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, status: str | None = Query("open", max_length=20),
                level: str | None = Query(None, max_length=20), q: str | None = _Q,
                range: str | None = Query(None, max_length=8),  # noqa: A002
                sort: str = Query("newest", pattern="^(newest|oldest)$"),
                after: str | None = Query(None, max_length=2000)):
    from soc_api.routes_views import default_filters, views_of  # (it imports this module)

    ctx = request.app.state.ctx
    p = request.state.principal
    if not request.query_params:  # the queue's own address: the user's default view
        chosen = default_filters(ctx.store, p)
        if chosen:
            return RedirectResponse("/ui/alerts?" + urlencode(chosen), status_code=303)
    status, level, range_ = status or None, level or None, range or None
    sel = _alert_selection(request, status, level, q, range_)
    found = ctx.store.search(sel, size=PAGE_SIZE, after=decode_cursor(after),
                             descending=sort == "newest")
    total = ctx.store.count(sel)
    ctx.audit(request, "alerts.search", object=q or "*",
              extra={"status": status, "level": level, "range": range_,
                     "hits": len(found.hits), "via": "console"})
    filters = {"status": status or "", "level": level or "", "q": q or "",
               "range": range_ or "", "sort": sort}
    return page(request, "alerts.html", rows=_rows(request, found.hits), total=total,
                next=encode_cursor(found.cursor), filters=filters, statuses=STATUSES,
                levels=LEVELS, ranges=tuple(RANGES), reasons=CLOSE_REASONS,
                may_write=_may(request, "alerts:write"), views=views_of(ctx.store, p),
                view_query=urlencode)


@router.get("/ui/alerts/rows", response_class=HTMLResponse)
def alert_rows(request: Request, since: str = Query(..., max_length=64),
               status: str | None = Query(None, max_length=20),
               level: str | None = Query(None, max_length=20), q: str | None = _Q):
    """Table rows of the alerts at or after `since` (the newest one the page shows): how
    new alerts reach an open queue without a reload."""
    ctx = request.app.state.ctx
    sel = _alert_selection(request, status or None, level or None, q, None, since=since)
    found = ctx.store.search(sel, size=PAGE_SIZE, descending=True)
    if found.hits:
        ctx.audit(request, "alerts.search", object=q or "*",
                  extra={"since": since, "hits": len(found.hits), "via": "console"})
    return page(request, "_alert_rows.html", rows=_rows(request, found.hits),
                may_write=_may(request, "alerts:write"))


LIVE_TICK = 1.0  # at most this long between looks at the connection and the store poll


@router.get("/ui/alerts/live")
async def alerts_live(request: Request, last_event_id: str | None = Header(
        None, max_length=40, pattern=r"^\d{4}-\d\d-\d\dT[0-9:.]+Z$")) -> StreamingResponse:
    """`text/event-stream` of `change` events ({id, status, status_label, assignee}) for
    the alerts of the caller's departments that anyone changes from now on: at once for
    changes made through this API worker, within `console.live_poll_seconds` for the rest
    (see soc_api.live). The queue page follows it, so an acknowledgement shows in every
    open queue. Each event's id is its change time: a stream ends after
    `console.live_max_seconds` (default 600; proxies drop long requests anyway) and the
    browser's reconnect sends it back as Last-Event-ID, from which the store is asked."""
    p = request.state.principal
    ctx = request.app.state.ctx
    lang = lang_of(request)
    hub = live.feed(request.app)
    every = float(ctx.cfg.get("console.live_poll_seconds", 2))
    mark, _ = hub.since(0)
    since = last_event_id or ecs.format_time(datetime.now(UTC))
    lifetime = float(ctx.cfg.get("console.live_max_seconds", 600))
    ctx.audit(request, "alerts.live", extra={"via": "console"})

    def event(doc: dict[str, Any]) -> bytes:
        al = (doc.get("govsoc") or {}).get("alert") or {}
        status = al.get("status", "open")
        data = {"id": doc["event"]["id"], "status": status, "assignee": al.get("assignee"),
                "status_label": text(f"status.{status}", lang), "changed": al.get("changed")}
        head = f"id: {data['changed']}\n".encode() if data["changed"] else b""
        return head + b"event: change\ndata: " + orjson.dumps(data) + b"\n\n"

    def from_store(after: str) -> list[dict[str, Any]]:
        sel = Selection(family="alerts", query=tenancy.scope(p, q.Range(
            "govsoc.alert.changed", after, None, include_low=False)))
        return ctx.store.search(sel, size=200).hits

    async def stream() -> Any:
        nonlocal mark, since
        yield b"retry: 2000\n\n"
        sent: dict[str, str] = {}  # alert id -> the change time sent (no repeats)
        # a reconnect catches up from the store at once
        next_poll = time.monotonic() + (0 if last_event_id else every)
        quiet = start = time.monotonic()
        while time.monotonic() - start < lifetime and not await request.is_disconnected():
            mark, docs = hub.since(mark)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + every
                try:
                    docs += await run_in_threadpool(from_store, since)
                except StoreError:
                    pass  # the next poll asks again; this worker's own changes still flow
            for doc in docs:
                if not tenancy.visible(p, doc):
                    continue
                changed = ((doc.get("govsoc") or {}).get("alert") or {}).get("changed") or ""
                if sent.get(doc["event"]["id"]) == changed and changed:
                    continue
                sent[doc["event"]["id"]] = changed
                since = max(since, changed)
                quiet = time.monotonic()
                yield event(doc)
            if len(sent) > 5000:
                sent.clear()
            if time.monotonic() - quiet > 15:
                quiet = time.monotonic()
                yield b": keepalive\n\n"
            # woken by this worker's next change; otherwise at the store poll or the tick
            await hub.wait(mark, min(LIVE_TICK, next_poll - time.monotonic()))

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


@router.get("/ui/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: str = PathParam(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")):
    ctx = request.app.state.ctx
    p = request.state.principal
    doc = ctx.store.get("alerts", alert_id)
    if doc is None or not tenancy.visible(p, doc):
        raise HTTPException(404, "no such alert")
    al = (doc.get("govsoc") or {}).get("alert") or {}
    events = []
    for eid in (al.get("event_ids") or [])[:20]:
        ev = ctx.store.get("events", eid)
        if ev is not None and tenancy.visible(p, ev):
            events.append(ev)
    ctx.audit(request, "alerts.read", object=alert_id, extra={"via": "console"})
    return page(request, "alert.html", alert=doc, a=_rows(request, [doc])[0], al=al,
                events=events, reasons=CLOSE_REASONS, may_write=_may(request, "alerts:write"),
                threat=doc.get("threat") or {})


# -- event search -----------------------------------------------------------------------

@router.get("/ui/events", response_class=HTMLResponse)
def events_page(request: Request, q: str | None = _Q, start: str | None = Query(
        "now-24h", alias="from", max_length=64), end: str | None = Query(None, alias="to",
                                                                        max_length=64)):
    ctx = request.app.state.ctx
    error = None
    hits: list[dict[str, Any]] = []
    histogram: list[tuple[str, int]] = []
    total = 0
    try:
        sel = selection(request, "events", q, None, start or None, end or None)
        hits = ctx.store.search(sel, size=PAGE_SIZE, descending=True).hits
        total = ctx.store.count(sel)
        histogram = _histogram(ctx.store, sel, request)
    except HTTPException as exc:
        error = exc.detail
    ctx.audit(request, "events.search", "failure" if error else "success", object=q or "*",
              reason=error, extra={"from": start, "to": end, "hits": len(hits),
                                   "via": "console"})
    seen = {f for h in hits for f in _leaf_fields(h)}
    fields = [f for f in COMMON_FIELDS if f in seen] + sorted(
        seen - set(COMMON_FIELDS) - {"@timestamp", "event.id", "message"})
    zone = zone_of(request)
    docs = [{"time_local": local_time(h.get("@timestamp"), zone), "doc": h,
             "dataset": ecs.get_field(h, "event.dataset"), "message": h.get("message", ""),
             "id": ecs.get_field(h, "event.id")} for h in hits]
    return page(request, "events.html", q=q or "", start=start or "", end=end or "",
                error=error, docs=docs, total=total, histogram=histogram,
                fields=fields[:60])


def _histogram(store: Any, sel: Selection, request: Request) -> list[tuple[str, int]]:
    """Counts over the selection's span in about 60 buckets, labelled in the viewer's zone."""
    now_ms = ecs.to_millis(datetime.now(UTC))
    lo = sel.start_ms if sel.start_ms is not None else None
    hi = sel.end_ms if sel.end_ms is not None else now_ms
    if lo is None:
        first = store.search(sel, size=1, descending=False).hits
        lo = ecs.to_millis(first[0]["@timestamp"]) if first else hi - 86_400_000
    span_s = max(60, (hi - lo) // 1000)
    step = next((s for s in (60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800)
                 if span_s / s <= 60), 2_592_000)
    zone = zone_of(request)
    return [(local_time(t, zone, seconds=False), n)
            for t, n in store.histogram(f"{step}s", sel)]


def _leaf_fields(doc: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_leaf_fields(v, name + "."))
        else:
            out.append(name)
    return out


@router.get("/ui/events/top", response_class=HTMLResponse)
def top_values(request: Request, field: str = Query(..., max_length=200,
                                                      pattern=r"^[A-Za-z0-9_@.]+$"),
               q: str | None = _Q, start: str | None = Query(None, alias="from",
                                                             max_length=64),
               end: str | None = Query(None, alias="to", max_length=64)):
    """The field sidebar's top values (a fragment the page loads when a field is opened)."""
    ctx = request.app.state.ctx
    sel = selection(request, "events", q, None, start or None, end or None)
    values = ctx.store.terms(field, sel, size=10)
    total = sum(n for _, n in values) or 1
    ctx.audit(request, "events.search", object=q or "*",
              extra={"top": field, "from": start, "to": end, "via": "console"})
    return page(request, "_top.html", field=field, q=q or "",
                values=[(v, n, round(100 * n / total)) for v, n in values])
