"""Cases over HTTP: create from alerts, link/unlink, merge, tasks, observables, timeline,
GB/T 20986 classification with reporting deadlines, close, MTTA/MTTR (see `cases`).

Every change answers the case as it now is and writes an audit record; every read is
scoped to the caller's departments (another department's case is a 404).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi import Path as PathParam

from soc_api.cases import CaseError, Cases
from soc_api.routes_data import decode_cursor, doc_id, encode_cursor

router = APIRouter(tags=["cases"])
READS = frozenset({"cases.read", "cases.search", "cases.metrics"})


def service(request: Request) -> Cases:
    """One `Cases` per app (the reporting table is read from the config once)."""
    state = request.app.state
    cases = getattr(state, "cases", None)
    if cases is None:
        ctx = state.ctx
        depts = [d.id for d in ctx.departments.all()] if ctx.departments else []
        cases = state.cases = Cases(ctx.store, ctx.cfg, departments=depts)
    return cases


def _do(request: Request, action: str, case_id: str | None, fn, **extra: Any) -> Any:
    """Run a case operation: its refusal is a 4xx with the reason, its success an audit
    record naming the case."""
    ctx = request.app.state.ctx
    principal = request.state.principal
    try:
        result = fn(service(request), principal)
    except CaseError as exc:
        if action not in READS:  # a refused change is recorded too
            ctx.audit(request, action, "failure", object=case_id, reason=str(exc)[:300])
        raise HTTPException(exc.status, str(exc)) from None
    ctx.audit(request, action, object=case_id or _id_of(result), extra=extra or None)
    return result


def _id_of(result: Any) -> str | None:
    if isinstance(result, dict):
        return (result.get("event") or {}).get("id") or result.get("id")
    return None


_BODY = Body(..., embed=False)
_Q = Query(None, max_length=4000, description="analyst query (field:value Lucene subset)")


def _s() -> object:
    # a fresh parameter each time: FastAPI binds a shared one to the first name it meets
    return Query(None, max_length=128)


@router.get("/cases")
def list_cases(request: Request, status: str | None = _s(), level: str | None = _s(),
               category: str | None = _s(), assignee: str | None = _s(),
               department: str | None = _s(), alert: str | None = _s(), q: str | None = _Q,
               start: str | None = Query(None, alias="from", max_length=64),
               end: str | None = Query(None, alias="to", max_length=64),
               size: int = Query(50, ge=1, le=500),
               after: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
    cursor = decode_cursor(after)

    def run(cases: Cases, p: Any) -> dict[str, Any]:
        sel = cases.selection(p, status=status, level=level, category=category,
                              assignee=assignee, department=department, alert=alert,
                              text=q, start=start, end=end)
        items, total, nxt = cases.list(p, sel, size=size, after=cursor)
        return {"items": items, "total": total, "next": encode_cursor(nxt)}

    return _do(request, "cases.search", "*", run)


@router.post("/cases", status_code=201)
def create_case(request: Request, body: dict[str, Any] = _BODY) -> dict[str, Any]:
    doc = _do(request, "cases.create", None, lambda c, p: c.create(p, body),
              alerts=len(body.get("alerts") or []))
    return service(request).view(doc)


@router.get("/cases/metrics")
def case_metrics(request: Request, department: str | None = _s(),
                 start: str | None = Query(None, alias="from", max_length=64),
                 end: str | None = Query(None, alias="to", max_length=64)) -> dict[str, Any]:
    def run(cases: Cases, p: Any) -> dict[str, Any]:
        return cases.metrics(p, cases.selection(p, department=department, start=start,
                                                end=end))

    return _do(request, "cases.metrics", "*", run)


@router.get("/cases/{case_id}")
def get_case(request: Request, case_id: str = doc_id()) -> dict[str, Any]:
    return _do(request, "cases.read", case_id, lambda c, p: c.get(p, case_id))


def _change(request: Request, action: str, case_id: str, fn, **extra: Any) -> dict[str, Any]:
    doc = _do(request, action, case_id, fn, **extra)
    return service(request).view(doc)


@router.patch("/cases/{case_id}")
def patch_case(request: Request, case_id: str = doc_id(),
               body: dict[str, Any] = _BODY) -> dict[str, Any]:
    return _change(request, "cases.update", case_id, lambda c, p: c.patch(p, case_id, body),
                   fields=sorted(body)[:10])


@router.post("/cases/{case_id}/alerts")
def link_alerts(request: Request, case_id: str = doc_id(),
                body: dict[str, Any] = _BODY) -> dict[str, Any]:
    ids = body.get("ids")
    return _change(request, "cases.link", case_id, lambda c, p: c.link(p, case_id, ids),
                   alerts=ids[:20] if isinstance(ids, list) else None)


@router.delete("/cases/{case_id}/alerts/{alert_id}")
def unlink_alert(request: Request, case_id: str = doc_id(),
                 alert_id: str = doc_id()) -> dict[str, Any]:
    return _change(request, "cases.unlink", case_id,
                   lambda c, p: c.unlink(p, case_id, alert_id), alert=alert_id)


@router.post("/cases/{case_id}/merge")
def merge_cases(request: Request, case_id: str = doc_id(),
                body: dict[str, Any] = _BODY) -> dict[str, Any]:
    sources = body.get("from")
    return _change(request, "cases.merge", case_id,
                   lambda c, p: c.merge(p, case_id, sources),
                   sources=sources[:50] if isinstance(sources, list) else None)


@router.post("/cases/{case_id}/tasks", status_code=201)
def add_task(request: Request, case_id: str = doc_id(),
             body: dict[str, Any] = _BODY) -> dict[str, Any]:
    created: dict[str, str] = {}

    def run(cases: Cases, p: Any) -> dict[str, Any]:
        doc, created["task_id"] = cases.add_task(p, case_id, body)
        return doc

    view = _change(request, "cases.task.add", case_id, run)
    return {**view, "task_id": created["task_id"]}


@router.patch("/cases/{case_id}/tasks/{task_id}")
def update_task(request: Request, case_id: str = doc_id(),
                task_id: str = PathParam(min_length=1, max_length=64,
                                         pattern=r"^task-[0-9a-f]+$"),
                body: dict[str, Any] = _BODY) -> dict[str, Any]:
    return _change(request, "cases.task.update", case_id,
                   lambda c, p: c.update_task(p, case_id, task_id, body), task=task_id)


@router.post("/cases/{case_id}/observables")
def add_observables(request: Request, case_id: str = doc_id(),
                    body: dict[str, Any] = _BODY) -> dict[str, Any]:
    return _change(request, "cases.observables", case_id,
                   lambda c, p: c.add_observables(p, case_id, body))


@router.get("/cases/{case_id}/timeline")
def case_timeline(request: Request, case_id: str = doc_id()) -> dict[str, Any]:
    items = _do(request, "cases.read", case_id, lambda c, p: c.timeline(p, case_id))
    return {"items": items, "total": len(items), "next": None}


@router.post("/cases/{case_id}/close")
def close_case(request: Request, case_id: str = doc_id(),
               body: dict[str, Any] = _BODY) -> dict[str, Any]:
    return _change(request, "cases.close", case_id,
                   lambda c, p: c.close(p, case_id, body.get("resolution")))
