"""The console's asset pages: the registry (search, one department, paged) and one asset
with its listening services. They show what the API's /assets routes answer (the same
functions, so the same departments and the same audit records)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from soc_api import roles, routes_inventory, routes_inventory_write
from soc_api.console.render import local_time, page, zone_of
from soc_api.routes_data import doc_id
from soc_core import ecs

router = APIRouter(tags=["console"], include_in_schema=False)


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    """What a page shows of an asset document (see cloud_inventory.model)."""
    a = (doc.get("govsoc") or {}).get("asset") or {}
    os_ = ecs.get_field(doc, "host.os.name") or ecs.get_field(doc, "host.os.family") or ""
    ips = ecs.get_field(doc, "host.ip") or []
    return {"id": doc["event"]["id"], "name": ecs.get_field(doc, "host.name") or "",
            "ips": ips if isinstance(ips, list) else [ips], "os": os_,
            "department": ecs.get_field(doc, "organization.name")
            or ecs.get_field(doc, "organization.id") or "",
            "state": a.get("state", ""), "registered": bool(a.get("registered")),
            "importance": a.get("importance", ""), "djcp_level": a.get("djcp_level", ""),
            "data_class": a.get("data_class", ""), "first_seen": a.get("first_seen"),
            "last_seen": a.get("last_seen"), "seen_by": a.get("seen_by") or [],
            "listening": [s for s in a.get("listening") or [] if isinstance(s, dict)]}


@router.get("/ui/assets", response_class=HTMLResponse)
def assets_page(request: Request, q: str | None = Query(None, max_length=4000),
                department: str | None = Query(None, max_length=64,
                                               pattern=r"^[A-Za-z0-9_.:-]*$"),
                after: str | None = Query(None, max_length=2000)):
    found = routes_inventory.list_assets(request, q=q or None, department=department or None,
                                         size=100, after=after or None)
    return page(request, "assets.html", assets=[_row(d) for d in found["items"]],
                total=found["total"], next=found["next"], q=q or "",
                department=department or "")


@router.get("/ui/assets/{key}", response_class=HTMLResponse)
def asset_page(request: Request, key: str = doc_id()):
    doc = routes_inventory.get_asset(request, key)
    history = []
    zone = zone_of(request)
    for h in routes_inventory_write.asset_history(request, doc["event"]["id"])["items"]:
        inv = (h.get("govsoc") or {}).get("inventory") or {}
        history.append({"time_local": local_time(h.get("@timestamp"), zone),
                        "change": inv.get("change") or "", "by": inv.get("by") or
                        inv.get("source") or "", "fields": inv.get("fields") or [],
                        "message": h.get("message") or ""})
    a = _row(doc)
    a["tags"] = ecs.get_field(doc, "govsoc.asset.tags") or []
    a["note"] = ecs.get_field(doc, "govsoc.asset.note") or ""
    a["department_id"] = ecs.get_field(doc, "organization.id") or ""
    p = request.state.principal
    deps = request.app.state.ctx.departments
    mine = [(d.id, d.name) for d in (deps.all() if deps else [])
            if p.all_departments or d.id in p.departments]
    return page(request, "asset.html", a=a, history=history, departments=mine,
                may_write=roles.allowed(p.roles, "assets:write"))
