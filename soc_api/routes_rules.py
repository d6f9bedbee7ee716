"""Rules and their detection state over HTTP: the rules the engines run, with health and
gaps; one rule with its Sigma source; switching a rule off and on; exceptions (who and
why); snoozes (until a time, why). Every change is audited and lands in the store's
detection state (detections.state), which every engine reads at its next pass.

Who may change: `rules:write` (secadmin) for every change, `rules:read` (analysts,
responders, secadmin) to read. An exception or a snooze blinds detection as surely as
switching the rule off, so under 三权分立 it is the security administrator's decision; an
analyst who finds a false positive says so on the alert (close reason `false_positive`)
and the secadmin tunes the rule. Rules belong to the platform, not to a department: their
state is the same for every tenant and holds no department's events."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from detections import (
    DetectionState,
    TuningError,
    add_exception,
    configured_packs,
    health_of,
    load_pack,
    remove_exception,
    rule_source,
    set_enabled,
    snooze,
    unsnooze,
)
from soc_api.routes_data import decode_cursor, encode_cursor

router = APIRouter(tags=["rules"])
_packs: dict[tuple, Any] = {}
_packs_lock = threading.Lock()
_FIELD = r"^@?[A-Za-z0-9_][A-Za-z0-9_.\-]*$"


def rule_id_param() -> Any:
    return PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")


def _pack(request: Request) -> Any:
    """The configured rule packs, compiled for this store's backend (once per process)."""
    ctx = request.app.state.ctx
    backend = "sqlite" if ctx.store.backend == "sqlite" else "elasticsearch"
    key = (tuple(configured_packs(ctx.cfg)), backend)
    with _packs_lock:
        if key not in _packs:
            _packs[key] = load_pack(list(key[0]), backends=[backend])
        return _packs[key], backend


def _rule(request: Request, rule_id: str) -> tuple[Any, str]:
    pack, backend = _pack(request)
    rule = pack.by_id().get(rule_id)
    if rule is None or not (rule.is_correlation or rule.generate):
        raise HTTPException(404, "no such rule")
    return rule, backend


def _view(rule: Any, runnable: set[str], backend: str, data: dict[str, Any],
          health: dict[str, Any]) -> dict[str, Any]:
    threat = rule.threat()
    h = health.get(rule.id) or {}
    why = None
    if rule.id not in runnable:
        why = (rule.errors.get(backend) or
               ("its log source is not collected" if not rule.datasets else
                "a rule it correlates cannot run"))
    return {
        "id": rule.id, "title": rule.title, "level": rule.level,
        "correlation": rule.is_correlation, "datasets": rule.datasets,
        "techniques": (threat.get("technique") or {}).get("id", []),
        "tactics": (threat.get("tactic") or {}).get("name", []),
        "file": Path(rule.path).name,
        "runs_on_this_store": why is None, "not_run_because": why,
        "enabled": rule.id not in data["disabled"], "disabled": data["disabled"].get(rule.id),
        "snooze": data["snoozes"].get(rule.id),
        "exceptions": len(data["exceptions"].get(rule.id, [])),
        "health": {k: h.get(k) for k in ("last_run", "runs", "errors", "last_error",
                                          "last_error_at", "matches", "total_matches",
                                          "alerts", "duration_ms", "checkpoint", "engine")},
        "gaps": h.get("gaps", []),
    }


def _state(request: Request) -> dict[str, Any]:
    return DetectionState.for_store(request.app.state.ctx.store).load()


@router.get("/rules")
def list_rules(request: Request,
               level: str | None = Query(None, pattern=r"^[a-z]+$", max_length=20),
               enabled: bool | None = None,
               q: str | None = Query(None, max_length=200,
                                     description="words in the title or the id"),
               size: int = Query(100, ge=1, le=1000),
               after: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
    pack, backend = _pack(request)
    data = _state(request)
    health = health_of(data)
    runnable = {r.id for r in pack.runnable(backend)}
    words = (q or "").lower().split()
    rules = sorted((r for r in pack.rules if r.is_correlation or r.generate),
                   key=lambda r: r.id)
    rules = [r for r in rules
             if (level is None or r.level == level)
             and (enabled is None or (r.id not in data["disabled"]) == enabled)
             and all(w in f"{r.id} {r.title}".lower() for w in words)]
    cursor = decode_cursor(after)
    start = 0
    if cursor:
        start = next((i for i, r in enumerate(rules) if r.id > str(cursor[0])), len(rules))
    page = rules[start:start + size]
    more = start + size < len(rules)
    return {"items": [_view(r, runnable, backend, data, health) for r in page],
            "total": len(rules), "next": encode_cursor([page[-1].id]) if more else None}


@router.get("/rules/{rule_id}")
def get_rule(request: Request, rule_id: str = rule_id_param()) -> dict[str, Any]:
    rule, backend = _rule(request, rule_id)
    pack, _ = _pack(request)
    data = _state(request)
    view = _view(rule, {r.id for r in pack.runnable(backend)}, backend, data, health_of(data))
    view["exceptions"] = data["exceptions"].get(rule.id, [])
    view["description"] = getattr(rule.sigma, "description", None)
    view["source"] = rule_source(rule)
    return view


class Switch(BaseModel):
    reason: str = Field("", max_length=500)


def _switch(request: Request, rule_id: str, body: Switch, on: bool) -> dict[str, Any]:
    ctx = request.app.state.ctx
    _rule(request, rule_id)
    if not on and not body.reason.strip():
        raise HTTPException(422, "say why: switching a rule off needs a reason")
    p = request.state.principal
    changed = set_enabled(ctx.store, rule_id, on, by=p.name, reason=body.reason)
    ctx.audit(request, "rules.enable" if on else "rules.disable", object=rule_id,
              reason=body.reason or None, extra={"changed": changed})
    return {"id": rule_id, "enabled": on, "changed": changed}


@router.post("/rules/{rule_id}/enable")
def enable_rule(request: Request, body: Switch | None = None,
                rule_id: str = rule_id_param()) -> dict[str, Any]:
    return _switch(request, rule_id, body or Switch(), True)


@router.post("/rules/{rule_id}/disable")
def disable_rule(request: Request, body: Switch | None = None,
                 rule_id: str = rule_id_param()) -> dict[str, Any]:
    return _switch(request, rule_id, body or Switch(), False)


@router.get("/rules/{rule_id}/exceptions")
def list_exceptions(request: Request, rule_id: str = rule_id_param()) -> dict[str, Any]:
    _rule(request, rule_id)
    items = _state(request)["exceptions"].get(rule_id, [])
    return {"items": items, "total": len(items), "next": None}


class NewException(BaseModel):
    field: str = Field(min_length=1, max_length=200, pattern=_FIELD)
    values: list[str | int | float | bool] = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)


@router.post("/rules/{rule_id}/exceptions", status_code=201)
def add_rule_exception(request: Request, body: NewException,
                       rule_id: str = rule_id_param()) -> dict[str, Any]:
    ctx = request.app.state.ctx
    _rule(request, rule_id)
    if any(isinstance(v, str) and len(v) > 500 for v in body.values):
        raise HTTPException(422, "an exception value is at most 500 characters")
    try:
        exc = add_exception(ctx.store, rule_id, body.field, list(body.values),
                            by=request.state.principal.name, reason=body.reason)
    except TuningError as err:
        raise HTTPException(422, str(err)) from None
    ctx.audit(request, "rules.exception.add", object=f"{rule_id}/{exc['id']}",
              reason=body.reason, extra={"field": body.field, "values": exc["values"]})
    return exc


@router.delete("/rules/{rule_id}/exceptions/{exc_id}")
def delete_rule_exception(request: Request, rule_id: str = rule_id_param(),
                          exc_id: str = PathParam(min_length=1, max_length=64,
                                                  pattern=r"^[A-Za-z0-9]+$")
                          ) -> dict[str, Any]:
    ctx = request.app.state.ctx
    _rule(request, rule_id)
    if not remove_exception(ctx.store, rule_id, exc_id):
        raise HTTPException(404, "no such exception")
    ctx.audit(request, "rules.exception.remove", object=f"{rule_id}/{exc_id}")
    return {"id": exc_id, "removed": True}


class Snooze(BaseModel):
    until: str = Field(min_length=1, max_length=64, description="ISO-8601 time in the future")
    reason: str = Field(min_length=1, max_length=500)


@router.post("/rules/{rule_id}/snooze")
def snooze_rule(request: Request, body: Snooze,
                rule_id: str = rule_id_param()) -> dict[str, Any]:
    ctx = request.app.state.ctx
    _rule(request, rule_id)
    try:
        entry = snooze(ctx.store, rule_id, body.until, by=request.state.principal.name,
                       reason=body.reason)
    except TuningError as err:
        raise HTTPException(422, str(err).splitlines()[0][:300]) from None
    ctx.audit(request, "rules.snooze", object=rule_id, reason=body.reason,
              extra={"until": entry["until"]})
    return {"id": rule_id, "snooze": entry}


@router.delete("/rules/{rule_id}/snooze")
def unsnooze_rule(request: Request, rule_id: str = rule_id_param()) -> dict[str, Any]:
    ctx = request.app.state.ctx
    _rule(request, rule_id)
    changed = unsnooze(ctx.store, rule_id)
    ctx.audit(request, "rules.unsnooze", object=rule_id, extra={"changed": changed})
    return {"id": rule_id, "snooze": None, "changed": changed}
