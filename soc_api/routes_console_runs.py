"""The console's playbook-run pages (issue 16): the runs with the request form (a check
run starts at once, a change waits for a secadmin's approval), the approvals inbox for
those who may approve, and one run with its live output (the page's EventSource reads
the API's /runs/{id}/events). Requests, approvals and rejections are the page script
calling the API's own /runs routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from playbooks import playbook_info
from soc_api import roles, tenancy
from soc_api.console.render import local_time, page, zone_of
from soc_api.routes_data import decode_cursor, encode_cursor
from soc_api.routes_runs import _visible, run_id_param, service, who

router = APIRouter(tags=["console"], include_in_schema=False)
PAGE_SIZE = 50
STATUSES = ("pending", "approved", "running", "successful", "failed", "canceled", "rejected")


def _may(request: Request, permission: str) -> bool:
    return roles.allowed(request.state.principal.roles, permission)


def _row(rec: dict[str, Any], zone: Any) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k != "vars_json"}
    for key in ("created", "decided", "started", "ended"):
        out[key + "_local"] = local_time(rec.get(key), zone)
    return out


@router.get("/ui/runs", response_class=HTMLResponse)
def runs_page(request: Request, status: str | None = Query(None, pattern=r"^[a-z]{0,20}$"),
              after: str | None = Query(None, max_length=2000),
              hosts: str | None = Query(None, max_length=4000)):
    """The runs; `hosts` pre-fills the request form (an alert's "run playbook")."""
    ctx = request.app.state.ctx
    svc, p = service(request), request.state.principal
    zone = zone_of(request)
    scope = tenancy.scope(p, None)
    found, total = svc.search(scope=scope, status=status or None, size=PAGE_SIZE,
                              after=decode_cursor(after))
    rows = [_row(h["govsoc"]["run_request"], zone) for h in found.hits]
    inbox: list[dict[str, Any]] = []
    if _may(request, "remediation:approve"):
        pending, _ = svc.search(scope=scope, status="pending", size=PAGE_SIZE)
        inbox = [_row(h["govsoc"]["run_request"], zone) for h in pending.hits]
    ctx.audit(request, "runs.search", object="*", extra={"status": status, "via": "console"})
    return page(request, "runs.html", rows=rows, total=total, inbox=inbox,
                next=encode_cursor(found.cursor), chosen=status or "", statuses=STATUSES,
                playbooks=playbook_info() if _may(request, "playbooks:check") else [],
                may_run=_may(request, "playbooks:run"), prefill=hosts or "",
                may_approve=_may(request, "remediation:approve"), me=who(p))


@router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str = run_id_param()):
    ctx = request.app.state.ctx
    svc = service(request)
    rec = _visible(request, svc, run_id)
    ctx.audit(request, "runs.read", object=run_id, extra={"via": "console"})
    p = request.state.principal
    variables = svc.variables(rec)
    ended = rec["status"] in ("successful", "failed", "canceled")
    run = svc.run_status(run_id) if ended else None
    # what the API's /runs/{id}/undo takes: a change (not a check, not itself an undo) of a
    # playbook with an undo; offered once the run has ended (the page script shows it then)
    undoable = (_may(request, "playbooks:run") and not rec["check"]
                and not variables.get("undo") and not rec.get("undo_of")
                and any(i["name"] == rec["playbook"] and i["undo"] for i in playbook_info()))
    return page(request, "run.html", run=_row(rec, zone_of(request)), variables=variables,
                summary=sorted(((run or {}).get("summary") or {}).items()),
                may_undo=undoable, undo_now=rec["status"] in ("successful", "failed"),
                may_approve=_may(request, "remediation:approve") and rec["requester"] != who(p))
