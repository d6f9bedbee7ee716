"""The SOC's events over HTTP: search (the CLI's query syntax), histogram, a field's top
values, one document; each read scoped to the caller's departments and written to the
audit trail (a privileged read). Lists answer {"items", "total", "next"}: pass `next` as
`after` for the following page (a search_after cursor; `total` on the first page only).
Alerts are in routes_alerts."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam

from soc_api import tenancy
from soc_core import query as q
from soc_core.store import Selection, StoreError, parse_duration

router = APIRouter(tags=["data"])


def doc_id() -> object:
    # a fresh parameter each time: FastAPI binds a shared one to the first name it meets
    return PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")


def encode_cursor(cursor: list[Any] | None) -> str | None:
    return None if cursor is None else base64.urlsafe_b64encode(orjson.dumps(cursor)).decode()


def decode_cursor(text: str | None) -> list[Any] | None:
    if not text:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise HTTPException(400, "bad cursor: pass the one a previous page returned") from None
    if not isinstance(value, list) or len(value) > 4 or \
            not all(isinstance(v, str | int | float) for v in value):
        raise HTTPException(400, "bad cursor: pass the one a previous page returned")
    return value


def selection(request: Request, family: str, text: str | None, dataset: str | None,
              start: str | None, end: str | None, *, principal: Any = None,
              first: list[q.Node] | None = None) -> Selection:
    """The caller's selection, scoped to `principal` (default: the caller's; a narrower
    one for a department filter); `first`: filters checked before the scope (cheapest)."""
    try:
        parsed = q.parse(text) if text and text.strip() != "*" else None  # "*": all
        query = tenancy.scope(principal or request.state.principal, parsed)
        if first:
            query = q.And((*first, query)) if query is not None else q.And(tuple(first))
        return Selection(family=family, dataset=dataset, start=start, end=end, query=query)
    except (q.QueryError, ValueError, RecursionError, OverflowError) as exc:
        msg = "query nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise HTTPException(400, msg.splitlines()[0][:300]) from None


def store_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A store read; a query the store refuses is the caller's 400, an outage a 503."""
    try:
        return fn(*args, **kwargs)
    except (q.QueryError, ValueError) as exc:
        raise HTTPException(400, str(exc).splitlines()[0][:300]) from None
    except StoreError as exc:
        raise HTTPException(503, f"the event store cannot answer now: "
                                 f"{str(exc).splitlines()[0][:200]}") from None


def page(request: Request, sel: Selection, action: str, text: str | None, size: int,
         cursor: str | None, descending: bool = True, extra: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    """One page of a list route, audited."""
    ctx = request.app.state.ctx
    after = decode_cursor(cursor)
    got = store_call(ctx.store.search, sel, size=size, after=after, descending=descending)
    total = None if after is not None else store_call(ctx.store.count, sel)
    ctx.audit(request, action, object=text or "*",
              extra={**(extra or {}), "from": sel.start, "to": sel.end, "hits": len(got.hits)})
    return {"items": got.hits, "total": total, "next": encode_cursor(got.cursor)}


def _one(request: Request, family: str, action: str, doc_id: str) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        doc = ctx.store.get(family, doc_id)
    except StoreError as exc:
        raise HTTPException(503, "the event store cannot answer now") from exc
    if doc is None or not tenancy.visible(request.state.principal, doc):
        raise HTTPException(404, f"no such {family[:-1]}")
    ctx.audit(request, action, object=doc_id)
    return doc


Q = Query(None, max_length=4000, description="analyst query (field:value Lucene subset)")
FROM = Query(None, alias="from", max_length=64)
TO = Query(None, alias="to", max_length=64)
AFTER = Query(None, max_length=2000, description="`next` of the previous page")
_DS = Query(None, max_length=100, pattern=r"^[a-z0-9_.-]+$")
FIELD = PathParam(min_length=1, max_length=200, pattern=r"^@?[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
MAX_BUCKETS = 5000


@router.get("/events")
def search_events(request: Request, q: str | None = Q, dataset: str | None = _DS,
                  start: str | None = FROM, end: str | None = TO,
                  size: int = Query(100, ge=1, le=1000), after: str | None = AFTER,
                  cursor: str | None = Query(None, max_length=2000, deprecated=True)
                  ) -> dict[str, Any]:
    sel = selection(request, "events", q, dataset, start, end)
    return page(request, sel, "events.search", q, size, after or cursor,
                extra={"dataset": dataset})


@router.get("/events/histogram")
def events_histogram(request: Request, q: str | None = Q, dataset: str | None = _DS,
                     start: str | None = Query("now-24h", alias="from", max_length=64),
                     end: str | None = Query("now", alias="to", max_length=64),
                     interval: str = Query("1h", max_length=16, pattern=r"^[0-9]{1,9}[smhdw]$")
                     ) -> dict[str, Any]:
    """Counts per `interval` bucket of @timestamp, oldest first (empty buckets left out)."""
    sel = selection(request, "events", q, dataset, start, end)
    step = store_call(parse_duration, interval).total_seconds() * 1000
    if step <= 0 or (sel.end_ms - sel.start_ms) / step > MAX_BUCKETS:
        raise HTTPException(400, f"at most {MAX_BUCKETS} buckets: widen the interval or "
                                 "narrow from/to")
    buckets = store_call(request.app.state.ctx.store.histogram, interval, sel)
    request.app.state.ctx.audit(request, "events.histogram", object=q or "*",
                                extra={"from": start, "to": end, "interval": interval})
    return {"interval": interval, "buckets": [{"start": t, "count": n} for t, n in buckets]}


@router.get("/events/fields/{field}/top")
def events_top(request: Request, field: str = FIELD, q: str | None = Q,
               dataset: str | None = _DS, start: str | None = FROM, end: str | None = TO,
               size: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    """A field's most frequent values with their counts (a terms aggregation)."""
    if field == "message":
        raise HTTPException(400, "message is full text: pick a keyword field")
    sel = selection(request, "events", q, dataset, start, end)
    top = store_call(request.app.state.ctx.store.terms, field, sel, size=size)
    request.app.state.ctx.audit(request, "events.top", object=field,
                                extra={"q": q, "from": start, "to": end})
    return {"field": field, "items": [{"value": v, "count": n} for v, n in top]}


@router.get("/events/{event_id}")
def get_event(request: Request, event_id: str = doc_id()) -> dict[str, Any]:
    return _one(request, "events", "events.read", event_id)
