"""The console's case pages (issue 16): the list and one case with its timeline, linked
alerts, tasks, observables, GB/T 20986 category and level with the reporting deadlines.
Reads go through the case service (soc_api.cases), scoped to the caller's departments
like the API's; changes are the page script calling the API's own /cases routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from soc_api import cases as case_lib
from soc_api import roles
from soc_api.console.render import local_time, page, zone_of
from soc_api.routes_cases import service
from soc_api.routes_data import decode_cursor, doc_id, encode_cursor

router = APIRouter(tags=["console"], include_in_schema=False)
PAGE_SIZE = 50


def _may(request: Request, permission: str) -> bool:
    return roles.allowed(request.state.principal.roles, permission)


def _labels(request: Request, case: dict[str, Any]) -> dict[str, Any]:
    """The case with its times in the viewer's zone."""
    zone = zone_of(request)
    case["created_local"] = local_time(case.get("created"), zone)
    case["updated_local"] = local_time(case.get("updated"), zone)
    for r in case.get("reporting") or []:
        r["due_local"] = local_time(r["due"], zone)
        r["reported_local"] = local_time(r.get("reported_at"), zone)
    for r in case.get("reports") or []:
        r["at_local"] = local_time(r.get("at"), zone)
    return case


@router.get("/ui/cases", response_class=HTMLResponse)
def cases_page(request: Request, status: str | None = Query(None, max_length=20),
               after: str | None = Query(None, max_length=2000),
               alerts: str | None = Query(None, max_length=4000)):
    """The cases; `alerts` pre-fills the new-case form (the alert queue's "open a case
    from these")."""
    ctx = request.app.state.ctx
    svc, p = service(request), request.state.principal
    try:
        sel = svc.selection(p, status=status or None)
        items, total, nxt = svc.list(p, sel, size=PAGE_SIZE, after=decode_cursor(after))
    except case_lib.CaseError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    ctx.audit(request, "cases.search", object="*", extra={"status": status, "via": "console"})
    return page(request, "cases.html", cases=[_labels(request, c) for c in items],
                total=total, next=encode_cursor(nxt), chosen=status or "",
                statuses=case_lib.STATUSES, prefill=alerts or "",
                may_write=_may(request, "cases:write"))


@router.get("/ui/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str = doc_id()):
    ctx = request.app.state.ctx
    svc, p = service(request), request.state.principal
    try:
        case = svc.get(p, case_id)
        timeline = svc.timeline(p, case_id)
    except case_lib.CaseError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    ctx.audit(request, "cases.read", object=case_id, extra={"via": "console"})
    zone = zone_of(request)
    for e in timeline:
        e["at_local"] = local_time(e["at"], zone)
    return page(request, "case.html", case=_labels(request, case), timeline=timeline,
                categories=list(case_lib.CATEGORIES), levels=list(case_lib.LEVELS),
                observable_types=case_lib.OBSERVABLE_TYPES,
                report_methods=case_lib.REPORT_METHODS,
                may_write=_may(request, "cases:write"))
