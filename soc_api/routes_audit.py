"""The audit trail for auditors: records by time, and the chain's verification."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from soc_api.routes_data import decode_cursor, encode_cursor
from soc_core.store import Selection, StoreError

router = APIRouter(tags=["audit"])


@router.get("/audit")
def audit_records(request: Request,
                  start: str | None = Query(None, alias="from", max_length=64),
                  end: str | None = Query(None, alias="to", max_length=64),
                  size: int = Query(100, ge=1, le=1000),
                  cursor: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        sel = Selection(family="audit", start=start, end=end)
        page = ctx.store.search(sel, size=size, after=decode_cursor(cursor), descending=True)
    except ValueError as exc:
        raise HTTPException(400, str(exc).splitlines()[0][:300]) from None
    except StoreError as exc:
        raise HTTPException(503, "the event store cannot answer now") from exc
    ctx.audit(request, "audit.read", extra={"from": start, "to": end, "hits": len(page.hits)})
    return {"hits": page.hits, "cursor": encode_cursor(page.cursor)}


@router.get("/audit/verify")
def audit_verify(request: Request,
                 start: str | None = Query(None, alias="from", max_length=64),
                 end: str | None = Query(None, alias="to", max_length=64)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        report = ctx.verify_trail(start=start, end=end)
    except ValueError as exc:
        raise HTTPException(400, str(exc).splitlines()[0][:300]) from None
    except StoreError as exc:
        raise HTTPException(503, "the event store cannot answer now") from exc
    ctx.audit(request, "audit.verify", "success" if report.get("ok") else "failure",
              extra={"from": start, "to": end})
    return report
