"""The console's inventory pages beyond the registry (issue 15): the exposure surface with
its evidence, idle and low-load systems with the utilisation of each department (and the
retire request for a zombie), and the registry's recent changes. Each shows what the API's
own route function answers (routes_inventory: the same departments, the same audit
records); the retire request is the page script calling POST /idle/{key}/retire."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from soc_api import roles, routes_inventory
from soc_api.console.render import local_time, page, zone_of
from soc_core import ecs

router = APIRouter(tags=["console"], include_in_schema=False)
_DEPT = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")
_SINCE = Query("now-7d", max_length=64)


@router.get("/ui/exposure", response_class=HTMLResponse)
def exposure_page(request: Request, since: str = _SINCE, department: str | None = _DEPT):
    found = routes_inventory.exposure(request, since=since or "now-7d",
                                      department=department or None)
    return page(request, "exposure.html", items=found["items"], since=since or "now-7d",
                department=department or "")


@router.get("/ui/idle", response_class=HTMLResponse)
def idle_page(request: Request, days: int | None = Query(None, ge=1, le=365),
              department: str | None = _DEPT):
    found = routes_inventory.idle(request, days=days, cpu=None, department=department or None)
    zone = zone_of(request)
    order = {"zombie": 0, "low_load": 1, "busy": 2, "unmeasured": 3}
    systems = sorted(found["systems"], key=lambda s: (order[s["verdict"]], str(s["host"])))
    for s in systems:
        s["last_local"] = local_time(s["evidence"].get("sessions_last"), zone)
    return page(request, "idle.html", window=found["window"], systems=systems,
                departments=sorted(found["departments"].items()),
                days=days or found["window"]["days"], department=department or "",
                may_retire=roles.allowed(request.state.principal.roles, "assets:retire"))


@router.get("/ui/changes", response_class=HTMLResponse)
def changes_page(request: Request, since: str = _SINCE, department: str | None = _DEPT):
    found = routes_inventory.asset_changes(request, since=since or "now-7d", until=None,
                                           run_id=None, department=department or None)
    zone = zone_of(request)
    rows: list[dict[str, Any]] = []
    for d in found["items"][:500]:
        inv = (d.get("govsoc") or {}).get("inventory") or {}
        rows.append({"time_local": local_time(d.get("@timestamp"), zone),
                     "change": inv.get("change") or ecs.get_field(d, "event.action") or "",
                     "host": ecs.get_field(d, "host.name") or "",
                     "asset_id": inv.get("asset_id"), "message": d.get("message") or "",
                     "source": inv.get("source") or "", "by": inv.get("by") or "",
                     "department": ecs.get_field(d, "organization.id") or ""})
    return page(request, "changes.html", rows=rows, total=found["total"],
                since=since or "now-7d", department=department or "")
