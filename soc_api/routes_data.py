"""The SOC's data over HTTP (part 1: read): events and alerts, each search scoped to the
caller's departments and written to the audit trail (a privileged read)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam

from soc_api import tenancy
from soc_core import query as q
from soc_core.store import Selection, StoreError

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
              start: str | None, end: str | None) -> Selection:
    try:
        parsed = q.parse(text) if text else None
        return Selection(family=family, dataset=dataset, start=start, end=end,
                         query=tenancy.scope(request.state.principal, parsed))
    except (q.QueryError, ValueError, RecursionError, OverflowError) as exc:
        msg = "query nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise HTTPException(400, msg.splitlines()[0][:300]) from None


def _page(request: Request, family: str, action: str, text: str | None,
          dataset: str | None, start: str | None, end: str | None, size: int,
          cursor: str | None) -> dict[str, Any]:
    ctx = request.app.state.ctx
    sel = selection(request, family, text, dataset, start, end)
    try:
        page = ctx.store.search(sel, size=size, after=decode_cursor(cursor), descending=True)
    except StoreError as exc:
        raise HTTPException(503, f"the event store cannot answer now: "
                                 f"{str(exc).splitlines()[0][:200]}") from None
    ctx.audit(request, action, object=text or "*",
              extra={"dataset": dataset, "from": start, "to": end, "hits": len(page.hits)})
    return {"hits": page.hits, "cursor": encode_cursor(page.cursor)}


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


_Q = Query(None, max_length=4000, description="analyst query (field:value Lucene subset)")
_DS = Query(None, max_length=100, pattern=r"^[a-z0-9_.-]+$")


@router.get("/events")
def search_events(request: Request, q: str | None = _Q, dataset: str | None = _DS,
                  start: str | None = Query(None, alias="from", max_length=64),
                  end: str | None = Query(None, alias="to", max_length=64),
                  size: int = Query(100, ge=1, le=1000),
                  cursor: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
    return _page(request, "events", "events.search", q, dataset, start, end, size, cursor)


@router.get("/events/{event_id}")
def get_event(request: Request, event_id: str = doc_id()) -> dict[str, Any]:
    return _one(request, "events", "events.read", event_id)


@router.get("/alerts")
def search_alerts(request: Request, q: str | None = _Q,
                  start: str | None = Query(None, alias="from", max_length=64),
                  end: str | None = Query(None, alias="to", max_length=64),
                  size: int = Query(100, ge=1, le=1000),
                  cursor: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
    return _page(request, "alerts", "alerts.search", q, None, start, end, size, cursor)


@router.get("/alerts/{alert_id}")
def get_alert(request: Request, alert_id: str = doc_id()) -> dict[str, Any]:
    return _one(request, "alerts", "alerts.read", alert_id)
