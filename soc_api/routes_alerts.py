"""Alerts over HTTP: list, count and aggregate with filters, one alert with its matched
events, its history, and the workflow (transition, assign, notes, bulk). The workflow
itself (state machine, history, compare-and-set, bulk journal) is `detections.workflow`,
the same code the CLI uses; this module is only HTTP, departments and the audit trail."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from detections import AlertError, workflow
from soc_api import live, tenancy
from soc_api.routes_data import AFTER, FROM, TO, Q, doc_id, page, selection, store_call
from soc_core import query as q
from soc_core.store import Selection

router = APIRouter(tags=["alerts"])

# filter parameter -> the alert field(s) it matches
FILTERS = {"status": ("govsoc.alert.status",), "level": ("govsoc.alert.level",),
           "rule": ("rule.id",), "assignee": ("govsoc.alert.assignee",),
           "department": tenancy.FIELDS, "tactic": ("threat.tactic.id", "threat.tactic.name")}
# what /alerts/aggregate may group by
AGGREGATE = {"status": "govsoc.alert.status", "level": "govsoc.alert.level",
             "rule": "rule.id", "assignee": "govsoc.alert.assignee",
             "department": "organization.id", "tactic": "threat.tactic.name",
             "technique": "threat.technique.id", "host": "host.name",
             "severity": "event.severity", "close_reason": "govsoc.alert.close_reason"}
EVENTS_SHOWN = 100
def _v() -> Any:
    return Query(None, max_length=200)  # a fresh one each time (see routes_data.doc_id)
_USER = r"^[A-Za-z0-9_.@-]{1,200}$"


class Filters:
    """The list filters, shared by list, count, aggregate and bulk-by-query."""

    def __init__(self, status: str | None = None, level: str | None = None,
                 rule: str | None = None, assignee: str | None = None,
                 department: str | None = None, tactic: str | None = None,
                 q: str | None = None, start: str | None = None, end: str | None = None
                 ) -> None:
        self.values = {"status": status, "level": level, "rule": rule, "assignee": assignee,
                       "department": department, "tactic": tactic}
        self.q, self.start, self.end = q, start, end

    def selection(self, request: Request) -> Selection:
        first = []
        for name, value in self.values.items():
            terms = [q.Term(f, v.strip(), True) for f in FILTERS[name]
                     for v in (value or "").split(",") if v.strip() and name != "department"]
            if terms:  # comma-separated: any of them; empty: no filter
                first.append(q.Or(tuple(terms)))
        # a department filter narrows the caller's own scope (one check instead of two)
        principal = request.state.principal
        wanted = [d.strip() for d in (self.values["department"] or "").split(",") if d.strip()]
        if wanted:
            mine = [d for d in wanted if principal.all_departments or d in principal.departments]
            principal = replace(principal, departments=tuple(mine))
        return selection(request, "alerts", self.q, None, self.start, self.end,
                         principal=principal, first=first)


@router.get("/alerts")
def list_alerts(request: Request, status: str | None = _v(), level: str | None = _v(),
                rule: str | None = _v(), assignee: str | None = _v(), department: str | None = _v(),
                tactic: str | None = _v(), q: str | None = Q, start: str | None = FROM,
                end: str | None = TO,
                sort: Literal["-@timestamp", "@timestamp"] = Query(
                    "-@timestamp", description="newest (last seen) first, or oldest"),
                size: int = Query(50, ge=1, le=1000), after: str | None = AFTER
                ) -> dict[str, Any]:
    """Alerts matching every filter given (a comma-separated value: any of them)."""
    sel = Filters(status, level, rule, assignee, department, tactic, q, start,
                  end).selection(request)
    return page(request, sel, "alerts.search", q, size, after,
                descending=sort.startswith("-"),
                extra={k: v for k, v in request.query_params.items() if k != "after"})


@router.get("/alerts/count")
def count_alerts(request: Request, status: str | None = _v(), level: str | None = _v(),
                 rule: str | None = _v(), assignee: str | None = _v(),
                 department: str | None = _v(), tactic: str | None = _v(), q: str | None = Q,
                 start: str | None = FROM, end: str | None = TO) -> dict[str, int]:
    sel = Filters(status, level, rule, assignee, department, tactic, q, start,
                  end).selection(request)
    n = store_call(request.app.state.ctx.store.count, sel)
    request.app.state.ctx.audit(request, "alerts.count", object=q or "*",
                                extra=dict(request.query_params))
    return {"count": n}


@router.get("/alerts/aggregate")
def aggregate_alerts(request: Request,
                     field: Literal[tuple(AGGREGATE)] = Query(...),  # type: ignore[valid-type]
                     status: str | None = _v(), level: str | None = _v(), rule: str | None = _v(),
                     assignee: str | None = _v(), department: str | None = _v(),
                     tactic: str | None = _v(), q: str | None = Q, start: str | None = FROM,
                     end: str | None = TO, size: int = Query(20, ge=1, le=200)
                     ) -> dict[str, Any]:
    """Counts of the matching alerts by one field, most frequent first."""
    sel = Filters(status, level, rule, assignee, department, tactic, q, start,
                  end).selection(request)
    got = store_call(request.app.state.ctx.store.terms, AGGREGATE[field], sel, size=size)
    request.app.state.ctx.audit(request, "alerts.aggregate", object=field,
                                extra=dict(request.query_params))
    return {"field": field, "items": [{"value": v, "count": n} for v, n in got]}


def _alert(request: Request, alert_id: str) -> dict[str, Any]:
    doc = store_call(request.app.state.ctx.store.get, "alerts", alert_id)
    if doc is None or not tenancy.visible(request.state.principal, doc):
        raise HTTPException(404, "no such alert")
    return doc


@router.get("/alerts/{alert_id}")
def get_alert(request: Request, alert_id: str = doc_id()) -> dict[str, Any]:
    """The alert, its matched events (those the caller's departments may see; the first
    100 by id, the count on the alert stays exact) and its rule."""
    ctx = request.app.state.ctx
    doc = _alert(request, alert_id)
    ids = ((doc.get("govsoc") or {}).get("alert") or {}).get("event_ids") or []
    events: list[dict[str, Any]] = []
    if ids:
        sel = Selection(family="events", filters={"event.id": ids[:EVENTS_SHOWN]},
                        query=tenancy.scope(request.state.principal, None))
        events = store_call(ctx.store.search, sel, size=EVENTS_SHOWN).hits
    rule = dict(doc.get("rule") or {})
    if rule.get("id"):
        rule["href"] = f"/rules/{rule['id']}"  # the rule with its Sigma source
    ctx.audit(request, "alerts.read", object=alert_id)
    return {"alert": doc, "events": events, "rule": rule}


@router.get("/alerts/{alert_id}/history")
def alert_history(request: Request, alert_id: str = doc_id()) -> dict[str, Any]:
    """Every change, oldest first: who, when, action, from -> to, reason, note."""
    doc = _alert(request, alert_id)
    items = workflow.history(doc)
    request.app.state.ctx.audit(request, "alerts.history", object=alert_id)
    return {"items": items, "total": len(items), "next": None}


# -- changes ---------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransitionBody(_Body):
    status: Literal["open", "acknowledged", "closed"]
    reason: Literal[workflow.CLOSE_REASONS] | None = None  # type: ignore[valid-type]
    note: str | None = Field(None, max_length=workflow.MAX_NOTE)


class AssignBody(_Body):
    assignee: str | None = Field(..., pattern=_USER)


class NoteBody(_Body):
    text: str = Field(..., min_length=1, max_length=workflow.MAX_NOTE)


class BulkBody(_Body):
    action: Literal["transition", "assign", "note"]
    ids: list[str] | None = Field(None, max_length=workflow.MAX_BULK)
    q: str | None = Field(None, max_length=4000)
    filters: dict[str, str] | None = None  # status, level, rule, ... as in GET /alerts
    status: Literal["open", "acknowledged", "closed"] | None = None
    reason: Literal[workflow.CLOSE_REASONS] | None = None  # type: ignore[valid-type]
    note: str | None = Field(None, max_length=workflow.MAX_NOTE)
    text: str | None = Field(None, max_length=workflow.MAX_NOTE)
    assignee: str | None = Field(None, pattern=_USER)


def _visible(request: Request):
    principal = request.state.principal
    return lambda doc: tenancy.visible(principal, doc)


def _change(request: Request, action: str, alert_id: str, change: workflow.Change
            ) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:  # a StoreError becomes the app's 503
        doc = workflow.apply(ctx.store, alert_id, change, by=request.state.principal.name,
                             visible=_visible(request))
    except workflow.AlertNotFound:
        raise HTTPException(404, "no such alert") from None
    except AlertError as exc:
        ctx.audit(request, f"alerts.{action}", "failure", object=alert_id, reason=str(exc))
        code = 409 if isinstance(exc, workflow.TransitionRefused) else 400
        raise HTTPException(code, str(exc)) from None
    entries = workflow.history(doc)
    last = entries[-1] if entries else {}
    ctx.audit(request, f"alerts.{action}", object=alert_id,
              extra={k: last.get(k) for k in ("from", "to", "reason", "id")})
    live.publish(request, [doc])
    return doc


@router.post("/alerts/{alert_id}/transition")
def transition(request: Request, body: TransitionBody, alert_id: str = doc_id()
               ) -> dict[str, Any]:
    """open -> acknowledged -> closed (with a reason), and reopen (closed -> open)."""
    return _change(request, "transition", alert_id,
                   workflow.Change(status=body.status, reason=body.reason, note=body.note))


@router.post("/alerts/{alert_id}/assign")
def assign(request: Request, body: AssignBody, alert_id: str = doc_id()) -> dict[str, Any]:
    """Assign to a user (null: unassign)."""
    return _change(request, "assign", alert_id, workflow.Change(assignee=body.assignee))


@router.post("/alerts/{alert_id}/notes")
def add_note(request: Request, body: NoteBody, alert_id: str = doc_id()) -> dict[str, Any]:
    return _change(request, "note", alert_id, workflow.Change(note=body.text))


@router.post("/alerts/bulk")
def bulk(request: Request, body: BulkBody) -> dict[str, Any]:
    """One change to many alerts: by `ids`, or by `q` and `filters` (as GET /alerts; only
    alerts of the caller's departments). All of it happens, even across a crash (the
    workflow's journal); alerts the change does not fit are listed under `skipped`."""
    ctx = request.app.state.ctx
    if (body.ids is None) == (body.q is None and body.filters is None):
        raise HTTPException(400, "give either ids, or q and/or filters")
    if body.action == "transition":
        if body.status is None:
            raise HTTPException(400, "a transition needs a status")
        change = workflow.Change(status=body.status, reason=body.reason, note=body.note)
    elif body.action == "assign":
        change = workflow.Change(assignee=body.assignee)
    else:
        text = body.text or body.note
        if not text:
            raise HTTPException(400, "a note needs its text")
        change = workflow.Change(note=text)
    if body.ids is not None:
        ids = body.ids
        how = f"{len(ids)} ids"
    else:
        unknown = set(body.filters or {}) - set(FILTERS)
        if unknown:
            raise HTTPException(400, f"unknown filter {sorted(unknown)[0]!r}: one of "
                                     f"{', '.join(FILTERS)}")
        sel = Filters(**(body.filters or {}), q=body.q).selection(request)
        ids = _guard(workflow.resolve_query, ctx.store, sel)
        how = f"query {body.q or '*'} {body.filters or {}}"
    result = _guard(workflow.bulk, ctx.store, ids, change,
                    by=request.state.principal.name, visible=_visible(request))
    ctx.audit(request, f"alerts.bulk.{body.action}", object=result["id"],
              extra={"selected": how, "applied": len(result["applied"]),
                     "skipped": len(result["skipped"]), "change": change.to_dict()})
    # open consoles of this worker see the change now (the first alerts of a large bulk;
    # the rest reach them from the store's changed times)
    live.publish(request, [d for d in (ctx.store.get("alerts", i)
                                       for i in result["applied"][:live.MAX_KEPT // 4])
                           if d is not None])
    return result


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (AlertError, q.QueryError) as exc:
        raise HTTPException(400, str(exc).splitlines()[0][:300]) from None
