"""The console's pages for the two other administrators (issue 16, 三权分立): the audit
trail and the reports for the auditor, users and tokens for the system administrator.
Each shows what the API's own route function answers (so the same checks, the same audit
record); changes (disable/enable a user, revoke a token) are the page script calling the
API's routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from soc_api import roles, routes_admin, routes_audit, routes_reports
from soc_api.console.render import local_time, page, zone_of

router = APIRouter(tags=["console"], include_in_schema=False)


def _may(request: Request, permission: str) -> bool:
    return roles.allowed(request.state.principal.roles, permission)


@router.get("/ui/audit", response_class=HTMLResponse)
def audit_page(request: Request, start: str | None = Query(None, alias="from", max_length=64),
               end: str | None = Query(None, alias="to", max_length=64),
               cursor: str | None = Query(None, max_length=2000),
               verify: bool = False):
    found = routes_audit.audit_records(request, start=start or None, end=end or None,
                                       size=100, cursor=cursor)
    checked = routes_audit.audit_verify(request, start=start or None, end=end or None) \
        if verify else None
    zone = zone_of(request)
    rows = []
    for h in found["hits"]:
        ev, au = h.get("event") or {}, (h.get("govsoc") or {}).get("audit") or {}
        obj = au.get("object")
        rows.append({"time_local": local_time(h.get("@timestamp"), zone),
                     "user": (h.get("user") or {}).get("name") or "",
                     "action": ev.get("action") or "", "outcome": ev.get("outcome") or "",
                     "reason": ev.get("reason") or "", "seq": au.get("seq"),
                     "object": obj.get("id") if isinstance(obj, dict) else obj,
                     "ip": (h.get("source") or {}).get("ip") or ""})
    return page(request, "audit.html", rows=rows, next=found["cursor"], start=start or "",
                end=end or "", checked=checked)


@router.get("/ui/users", response_class=HTMLResponse)
def users_page(request: Request):
    zone = zone_of(request)
    users = routes_admin.list_users(request)["users"] if _may(request, "users:admin") else []
    tokens = routes_admin.list_tokens(request)["tokens"] \
        if _may(request, "tokens:admin") else []
    for u in users:
        u["created_local"] = local_time(u.get("created"), zone)
        u["password_changed_local"] = local_time(u.get("password_changed"), zone)
    for tk in tokens:
        tk["created_local"] = local_time(tk.get("created"), zone)
        tk["expires_local"] = local_time(tk.get("expires"), zone)
    # the roles this administrator may put on a token (the API refuses the others anyway)
    token_roles = sorted(roles.ROLES) if _may(request, "roles:grant") \
        else sorted(roles.TOKEN_ROLES_FOR_SYSADMIN)
    deps = request.app.state.ctx.departments
    return page(request, "users.html", users=users, tokens=tokens, token_roles=token_roles,
                departments=[(d.id, d.name) for d in deps.all()] if deps else [])


@router.get("/ui/reports", response_class=HTMLResponse)
def reports_page(request: Request):
    found = routes_reports.reports(request, kind=None, size=100)["reports"]
    request.app.state.ctx.audit(request, "report.list", extra={"via": "console"})
    zone = zone_of(request)
    items: list[dict[str, Any]] = []
    for r in found:
        items.append({**r, "created_local": local_time(r.get("created"), zone)})
    return page(request, "reports.html", reports=items)
