"""The asset registry over HTTP: the assets (search, one asset by any of its keys), the
recent changes, the exposure surface and the idle systems. The registry itself is
`cloud_inventory` (the same functions the CLI uses); this module is only HTTP, departments
and the audit trail: an asset, a change or a finding of another department is not shown
(one asset: 404, its existence is not disclosed)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

import cloud_inventory as inv
from soc_api import tenancy
from soc_api.routes_data import AFTER, Q, doc_id, page, selection, store_call
from soc_core import query as q
from soc_core.store import Selection

router = APIRouter(tags=["inventory"])

_DEPT = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
_SINCE = Query("now-7d", max_length=64)
MAX_CHANGES = 1000
KEY_FIELDS = ("event.id", "host.name", "host.hostname", "host.id", "host.ip", "host.mac")


def _principal(request: Request, department: str | None) -> Any:
    """The caller, narrowed to one department when asked (none it may not see)."""
    principal = request.state.principal
    if department is None:
        return principal
    mine = (department,) if principal.all_departments or department in principal.departments \
        else ()
    return replace(principal, departments=mine)


def _mine(request: Request, department: str | None) -> Any:
    """A predicate on a department id: may the caller (narrowed) see it."""
    p = _principal(request, department)
    return lambda d: p.all_departments or (d is not None and d in p.departments)


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return store_call(fn, *args, **kwargs)
    except inv.InventoryError as exc:
        raise HTTPException(400, str(exc).splitlines()[0][:300]) from None


@router.get("/assets")
def list_assets(request: Request, q: str | None = Q, department: str | None = _DEPT,
                size: int = Query(100, ge=1, le=1000), after: str | None = AFTER
                ) -> dict[str, Any]:
    """The assets the caller's departments own (optionally an analyst query, one
    department), newest seen first; `next` as `after` for the following page."""
    sel = selection(request, "assets", q, inv.ASSET_DATASET, None, None,
                    principal=_principal(request, department))
    return page(request, sel, "assets.search", q, size, after,
                extra={"department": department})


@router.get("/assets/changes")
def asset_changes(request: Request, since: str | None = _SINCE,
                  until: str | None = Query(None, max_length=64),
                  run_id: str | None = Query(None, max_length=128,
                                             pattern=r"^[A-Za-z0-9._:-]+$"),
                  department: str | None = _DEPT) -> dict[str, Any]:
    """The changes recorded (newest first, at most 1000) of the caller's assets."""
    ctx = request.app.state.ctx
    p = _principal(request, department)
    got = _guard(inv.changes, ctx.store, run_id=run_id, since=since, until=until)
    # a change event carries its asset's addresses and department, so the store stamped it
    items = [d for d in reversed(got)
             if p.all_departments or tenancy.visible(p, d)][:MAX_CHANGES]
    ctx.audit(request, "assets.changes", object=run_id or "*",
              extra={"since": since, "until": until, "hits": len(items)})
    return {"items": items, "total": len(items), "next": None}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@router.get("/assets/{key}")
def get_asset(request: Request, key: str = doc_id()) -> dict[str, Any]:
    """One asset by id, name, hostname, machine-id, address or MAC."""
    ctx = request.app.state.ctx
    principal = request.state.principal
    doc = store_call(inv.get_asset, ctx.store, key)
    if doc is not None and not tenancy.visible(principal, doc):
        # the first asset of that name is another department's: the caller's own, if any
        mine = q.Or(tuple(q.Term(f, key, True) for f in KEY_FIELDS
                          if f != "host.ip" or _is_ip(key)))  # an IP field takes IPs only
        sel = Selection(family="assets", dataset=inv.ASSET_DATASET,
                        query=tenancy.scope(principal, mine))
        hits = store_call(ctx.store.search, sel, size=1).hits
        doc = hits[0] if hits else None
    if doc is None:
        raise HTTPException(404, "no such asset")
    ctx.audit(request, "assets.read", object=doc["event"]["id"], extra={"key": key})
    return doc


@router.get("/exposure")
def exposure(request: Request, since: str | None = _SINCE,
             department: str | None = _DEPT) -> dict[str, Any]:
    """The exposure findings (most severe first) on the caller's assets."""
    ctx = request.app.state.ctx
    mine = _mine(request, department)
    got = _guard(inv.exposure_surface, ctx.store, since=since,
                 conf=inv.inventory_config(ctx.cfg))
    items = [f for f in got if mine(f.get("department"))]
    ctx.audit(request, "exposure.read", extra={"since": since, "department": department,
                                               "hits": len(items)})
    return {"items": items, "total": len(items), "next": None}


@router.get("/idle")
def idle(request: Request, days: int | None = Query(None, ge=1, le=365),
         cpu: float | None = Query(None, ge=0, le=100),
         department: str | None = _DEPT) -> dict[str, Any]:
    """Idle (zombie) and low-load systems of the caller's departments, with the
    utilisation of each department."""
    ctx = request.app.state.ctx
    mine = _mine(request, department)
    got = _guard(inv.idle_systems, ctx.store, days=days, cpu=cpu,
                 conf=inv.inventory_config(ctx.cfg))
    systems = [s for s in got["systems"] if mine(s.get("department"))]
    depts = {d: u for d, u in got["departments"].items()
             if mine(None if d == "unassigned" else d)}
    ctx.audit(request, "idle.read", extra={"days": days, "department": department,
                                           "hits": len(systems)})
    return {"window": got["window"], "systems": systems, "departments": depts}
