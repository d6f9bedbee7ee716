"""Saved views of the alert queue: a named set of the queue's filters (status, level, time
range, sort, query), one user's, optionally shared, and the user's default view (the queue
opens on it when its address names no filter).

A user's views are one document in the store's `state` family (`govsoc.state.alert_views`,
id `alertviews:<user>`), changed by compare-and-set like every other piece of user state,
so API workers over one store never lose a view. A shared view is seen by the users of its
owner's departments (every user, when the owner holds all); what it shows is still scoped
to each viewer's own departments, as every query is.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from soc_api.identity import Principal
from soc_api.routes_console import LEVELS, RANGES, STATUSES
from soc_api.routes_data import store_call
from soc_api.routes_runs import who
from soc_core import ecs
from soc_core.store import Selection

router = APIRouter(tags=["alerts"])
DATASET = "govsoc.state.alert_views"
MAX_VIEWS = 50
FILTER_KEYS = ("status", "level", "range", "sort", "q")
ViewId = PathParam(pattern=r"^v[0-9a-f]{16}$")


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    status: str = Field("", pattern="^(" + "|".join(STATUSES) + ")?$")
    level: str = Field("", pattern="^(" + "|".join(LEVELS) + ")?$")
    range: str = Field("", pattern="^(" + "|".join(RANGES) + ")?$")
    sort: str = Field("newest", pattern="^(newest|oldest)$")
    q: str = Field("", max_length=4000)


class NewView(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=60)
    filters: Filters
    shared: bool = False
    default: bool = False


class DefaultView(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str | None = Field(None, pattern=r"^v[0-9a-f]{16}$")


def _doc_id(owner: str) -> str:
    return f"alertviews:{owner}"


def _empty(p: Principal, owner: str) -> dict[str, Any]:
    return {"@timestamp": ecs.now_iso(),
            "event": {"kind": "state", "dataset": DATASET, "id": _doc_id(owner)},
            "govsoc": {"alert_views": {"owner": owner, "departments": list(p.departments),
                                       "views": [], "default": None}}}


def _sees(p: Principal, state: dict[str, Any]) -> bool:
    """Whether the principal sees the owner's shared views (see the module's text)."""
    depts = set(state.get("departments") or [])
    return p.all_departments or "*" in depts or bool(depts & set(p.departments))


def views_of(store: Any, p: Principal) -> dict[str, Any]:
    """{"mine": [...], "shared": [others' shared views it sees, with their owner],
    "default": view id or None}."""
    me = who(p)
    mine = store.get("state", _doc_id(me))
    state = (mine or {}).get("govsoc", {}).get("alert_views") or {"views": [],
                                                                  "default": None}
    shared = []
    for doc in store.scan(Selection(family="state", dataset=DATASET)):
        other = doc["govsoc"]["alert_views"]
        if other["owner"] == me or not _sees(p, other):
            continue
        shared += [{**v, "owner": other["owner"]} for v in other["views"] if v.get("shared")]
    known = {v["id"] for v in state["views"]} | {v["id"] for v in shared}
    return {"mine": state["views"], "shared": sorted(shared, key=lambda v: v["name"]),
            "default": state["default"] if state["default"] in known else None}


def default_filters(store: Any, p: Principal) -> dict[str, str] | None:
    """The filters of the principal's default view, if it has one it still sees."""
    got = views_of(store, p)
    for v in got["mine"] + got["shared"]:
        if v["id"] == got["default"]:
            return v["filters"]
    return None


def _change(request: Request, fn: Any) -> dict[str, Any]:
    """Compare-and-set the caller's views document with `fn(state)`."""
    ctx = request.app.state.ctx
    p = request.state.principal
    me = who(p)

    def step(doc: dict[str, Any] | None) -> dict[str, Any]:
        doc = doc or _empty(p, me)
        state = doc["govsoc"]["alert_views"]
        state["departments"] = list(p.departments)  # who sees its shared views: now's grant
        fn(state)
        doc["@timestamp"] = ecs.now_iso()
        return doc

    doc, _ = store_call(ctx.store.modify, "state", _doc_id(me), step)
    ctx.store.refresh()
    return doc["govsoc"]["alert_views"]


@router.get("/views")
def list_views(request: Request) -> dict[str, Any]:
    return store_call(views_of, request.app.state.ctx.store, request.state.principal)


@router.post("/views", status_code=201)
def save_view(body: NewView, request: Request) -> dict[str, Any]:
    view = {"id": "v" + secrets.token_hex(8), "name": body.name.strip(),
            "filters": body.filters.model_dump(), "shared": body.shared,
            "created": ecs.now_iso()}

    def add(state: dict[str, Any]) -> None:
        if len(state["views"]) >= MAX_VIEWS:
            raise HTTPException(409, f"at most {MAX_VIEWS} saved views a user")
        if any(v["name"] == view["name"] for v in state["views"]):
            raise HTTPException(409, f"you have a view named {view['name']!r} already")
        state["views"].append(view)
        if body.default:
            state["default"] = view["id"]

    _change(request, add)
    request.app.state.ctx.audit(request, "views.save", object=view["id"],
                                extra={"shared": body.shared, "default": body.default})
    return view


@router.delete("/views/{view_id}")
def delete_view(request: Request, view_id: str = ViewId) -> dict[str, Any]:
    def drop(state: dict[str, Any]) -> None:
        if not any(v["id"] == view_id for v in state["views"]):
            raise HTTPException(404, "no such view of yours")
        state["views"] = [v for v in state["views"] if v["id"] != view_id]
        if state["default"] == view_id:
            state["default"] = None

    _change(request, drop)
    request.app.state.ctx.audit(request, "views.delete", object=view_id)
    return {"deleted": view_id}


@router.put("/views/default")
def set_default(body: DefaultView, request: Request) -> dict[str, Any]:
    """The view the queue opens on (one of the caller's or a shared one it sees); null:
    none."""
    ctx = request.app.state.ctx
    if body.id is not None:
        got = store_call(views_of, ctx.store, request.state.principal)
        if body.id not in {v["id"] for v in got["mine"] + got["shared"]}:
            raise HTTPException(404, "no such view")

    def put(state: dict[str, Any]) -> None:
        state["default"] = body.id

    _change(request, put)
    ctx.audit(request, "views.default", object=body.id or "-")
    return {"default": body.id}
