"""Changes to the asset registry over HTTP: annotate an asset (owner department, importance,
等保 level, data classification, tags, note) with its history of who changed what, and
request the retirement of an idle (zombie) host.

Annotating needs `assets:write` (secadmin and responder): the owner department and the
等保 level decide who is notified and which controls apply to a host, so changing them is
a security decision (secadmin) or part of handling an incident (responder), not a reader's
(an analyst reads assets). A caller changes only an asset of its departments and moves it
only to a department it holds.

Retiring goes through the playbook runs' own request and approval (`playbooks.RunRequests`,
the /runs routes): an analyst or responder (`assets:retire`) asks for the `retire_host` run
of a host tagged zombie; it waits `pending` until a secadmin other than the requester
approves it with POST /runs/{id}/approve; the approver's name reaches the playbook then.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

import cloud_inventory as inv
from playbooks import PlaybookError
from soc_api import routes_inventory, tenancy
from soc_api.routes_data import doc_id, store_call
from soc_api.routes_runs import _fail, _public, service, who
from soc_core import ecs

router = APIRouter(tags=["inventory"])
_TAG = re.compile(r"^[\w.:-]{1,40}$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


class Annotation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    department: str | None = Field(None, min_length=1, max_length=64,
                                   pattern=r"^[A-Za-z0-9_.:-]+$")
    importance: str | None = Field(None, pattern=r"^(high|medium|low)$")
    djcp_level: int | None = Field(None, ge=1, le=5)
    data_class: str | None = Field(None, pattern=r"^(core|important|general)$")
    tags: list[str] | None = Field(None, max_length=32)
    note: str | None = Field(None, max_length=2000)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not all(_TAG.match(t) for t in v):
            raise ValueError("a tag is 1-40 letters, digits, '_', '.', ':' or '-'")
        return v


class RetireBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    services: list[str] = Field(min_length=1, max_length=32)

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        if not all(_SERVICE.match(s) for s in v):
            raise ValueError("a service is a unit name: letters, digits, '_', '.', '@', '-'")
        return v


def _own_asset(request: Request, key: str) -> dict[str, Any]:
    """The asset (any of its keys), 404 unless the caller's departments hold it."""
    ctx = request.app.state.ctx
    doc = store_call(inv.get_asset, ctx.store, key)
    if doc is None or not tenancy.visible(request.state.principal, doc):
        doc = routes_inventory.get_asset(request, key)  # the caller's own of that name
    return doc


@router.patch("/assets/{key}")
def annotate_asset(body: Annotation, request: Request, key: str = doc_id()) -> dict[str, Any]:
    ctx = request.app.state.ctx
    p = request.state.principal
    given = body.model_dump(exclude_unset=True)
    if not given:
        raise HTTPException(400, "nothing to change: give department, importance, "
                                 "djcp_level, data_class, tags or note")
    doc = _own_asset(request, key)
    asset_id = doc["event"]["id"]
    department = None
    if body.department is not None:
        dept = ctx.departments.get(body.department) if ctx.departments else None
        if dept is None:
            raise HTTPException(400, f"unknown department {body.department!r}")
        if not p.all_departments and dept.id not in p.departments:
            ctx.audit(request, "assets.annotate", "failure", object=asset_id,
                      reason=f"department {dept.id} is not the caller's")
            raise HTTPException(403, "you may move an asset only to one of your departments")
        department = {"id": dept.id, "name": dept.name}
    try:
        doc = inv.annotate(ctx.store, asset_id, department=department,
                         importance=body.importance, djcp_level=body.djcp_level,
                         data_class=body.data_class, tags=body.tags, note=body.note,
                         by=p.name)
    except inv.InventoryError as exc:
        ctx.audit(request, "assets.annotate", "failure", object=asset_id, reason=str(exc))
        raise HTTPException(400, str(exc).splitlines()[0][:300]) from None
    ctx.audit(request, "assets.annotate", object=asset_id, extra={"fields": sorted(given)})
    return doc


@router.get("/assets/{key}/history")
def asset_history(request: Request, key: str = doc_id()) -> dict[str, Any]:
    """Who changed what of the asset (old -> new), and what discovery saw change."""
    ctx = request.app.state.ctx
    doc = _own_asset(request, key)
    items = store_call(inv.asset_history, ctx.store, doc["event"]["id"])
    ctx.audit(request, "assets.history", object=doc["event"]["id"],
              extra={"hits": len(items)})
    return {"items": items, "total": len(items), "next": None}


@router.post("/idle/{key}/retire", status_code=201)
def request_retire(body: RetireBody, request: Request, key: str = doc_id()) -> dict[str, Any]:
    """A `retire_host` run of the zombie `key`, pending a secadmin's approval."""
    ctx = request.app.state.ctx
    p = request.state.principal
    asset = _own_asset(request, key)
    try:
        asset, plan = inv.retire_plan(ctx.store, asset["event"]["id"], None,
                                       body.services)
    except inv.InventoryError as exc:
        ctx.audit(request, "idle.retire", "failure", object=asset["event"]["id"],
                  reason=str(exc))
        raise HTTPException(409, str(exc).splitlines()[0][:300]) from None
    svc = service(request)
    try:
        # may_change: whether a change may be asked for is this route's permission; the
        # approval (a secadmin, not the requester) is the runs' as for any change
        rec = svc.create("retire_host", requester=who(p), allowed_departments=p.departments,
                         limit=str(ecs.get_field(asset, "host.name")), variables=plan,
                         check=False, may_change=True)
    except PlaybookError as exc:
        _fail(request, "idle.retire", asset["event"]["id"], exc)
    ctx.audit(request, "idle.retire", object=asset["event"]["id"],
              extra={"run_id": rec["run_id"], "services": body.services,
                     "host": rec["hosts"]})
    return _public(rec, svc)
