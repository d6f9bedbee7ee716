"""The console's rule pages (issue 16): the rules with their health and gaps, and one rule
with its Sigma source, exceptions and snooze. They show what the API's /rules routes
answer (the same functions, so one view of a rule); switching, exceptions and snoozes are
the page script calling those routes, which only `rules:write` (secadmin) may."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from soc_api import roles, routes_rules
from soc_api.console.render import local_time, page, zone_of

router = APIRouter(tags=["console"], include_in_schema=False)


def _times(rule: dict[str, Any], zone: Any) -> dict[str, Any]:
    h = rule.get("health") or {}
    rule["last_run_local"] = local_time(h.get("last_run"), zone)
    rule["last_error_local"] = local_time(h.get("last_error_at"), zone)
    if rule.get("snooze"):
        rule["snooze_until_local"] = local_time(rule["snooze"].get("until"), zone)
    for gap in rule.get("gaps") or []:
        if isinstance(gap, dict):
            gap["from_local"] = local_time(gap.get("start"), zone)
            gap["to_local"] = local_time(gap.get("end"), zone)
    return rule


@router.get("/ui/rules", response_class=HTMLResponse)
def rules_page(request: Request, q: str | None = Query(None, max_length=200),
               level: str | None = Query(None, pattern=r"^[a-z]*$", max_length=20)):
    found = routes_rules.list_rules(request, level=level or None, enabled=None, q=q,
                                    size=1000, after=None)
    request.app.state.ctx.audit(request, "rules.search", object=q or "*",
                                extra={"via": "console"})
    zone = zone_of(request)
    return page(request, "rules.html", rules=[_times(r, zone) for r in found["items"]],
                total=found["total"], q=q or "", level=level or "")


@router.get("/ui/rules/{rule_id}", response_class=HTMLResponse)
def rule_page(request: Request, rule_id: str = routes_rules.rule_id_param()):
    rule = routes_rules.get_rule(request, rule_id)
    request.app.state.ctx.audit(request, "rules.read", object=rule_id,
                                extra={"via": "console"})
    return page(request, "rule.html", rule=_times(rule, zone_of(request)),
                may_write=roles.allowed(request.state.principal.roles, "rules:write"))
