"""Playbook runs over HTTP: list the playbooks, request a run, approve or reject it (a
secadmin other than the requester), follow its runner events live (Server-Sent Events
with Last-Event-ID resume), read the result and per-host summary, cancel, undo.

The lifecycle, the claim that makes a run execute once across workers, and undo live in
`playbooks.RunRequests`; this module is the HTTP side: permissions, departments, audit.

Config: `playbooks.inventory` (an Ansible inventory file; default: the asset registry,
reached with the `playbooks.connection` variables), `playbooks.timeout` (seconds a run
may take; default none), `playbooks.heartbeat` (seconds between a running run's heartbeats
and cancel checks; default 10), `playbooks.stale_after` (seconds without a heartbeat after
which any worker ends the run failed; default 60).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from playbooks import PlaybookError, RequestError, RunRequests, playbook_info
from soc_api import roles, tenancy
from soc_api.identity import Principal
from soc_api.routes_data import decode_cursor, encode_cursor

router = APIRouter(tags=["playbooks"])
POLL_SECONDS = 0.1  # how often a live stream looks for new runner events
KEEPALIVE_SECONDS = 15.0  # a comment line keeps proxies from closing a quiet stream
_BUILD = threading.Lock()
_STATUS = {"not_found": 404, "refused": 403, "conflict": 409, "invalid": 400}


def run_id_param() -> Any:
    return PathParam(pattern=r"^[0-9a-f]{12}$", description="the run id (12 hex digits)")


def service(request: Request) -> RunRequests:
    """One RunRequests per app (API worker), built on first use."""
    app = request.app
    svc = getattr(app.state, "runs", None)
    if svc is None:
        with _BUILD:
            svc = getattr(app.state, "runs", None)
            if svc is None:
                ctx = app.state.ctx
                timeout = ctx.cfg.get("playbooks.timeout")
                beat = float(ctx.cfg.get("playbooks.heartbeat") or 10)
                stale = float(ctx.cfg.get("playbooks.stale_after") or 60)
                svc = RunRequests(ctx.store, Path(ctx.cfg.data_dir) / "playbooks",
                                  inventory=ctx.cfg.get("playbooks.inventory"),
                                  connection=ctx.cfg.get("playbooks.connection"),
                                  departments=ctx.departments,
                                  on_finish=lambda rec: _audit_end(ctx, rec),
                                  timeout=int(timeout) if timeout else None,
                                  heartbeat=beat, stale_after=stale)
                svc.resume()
                app.state.runs = svc
    return svc


def _audit_end(ctx: Any, rec: dict[str, Any]) -> None:
    """The run's end, recorded by the worker that ran (or stopped) it."""
    ctx.trail.record(action="runs.end",
                     outcome="success" if rec["status"] == "successful" else "failure",
                     user=rec.get("canceled_by") or rec.get("approver") or rec["requester"],
                     object=rec["run_id"], reason=rec.get("reason"),
                     extra={"status": rec["status"], "playbook": rec["playbook"],
                            "hosts": rec["hosts"]})


def who(p: Principal) -> str:
    """The requester's identity: a token is named by its id (a label is not unique)."""
    return p.name if p.kind == "user" else f"token:{p.token_id}"


def _fail(request: Request, action: str, run_id: str | None, exc: PlaybookError) -> None:
    status = _STATUS.get(getattr(exc, "kind", "invalid"), 400)
    request.app.state.ctx.audit(request, action, "failure", object=run_id,
                                reason=str(exc)[:300])
    raise HTTPException(status, str(exc).splitlines()[0][:300]) from None


def _visible(request: Request, svc: RunRequests, run_id: str) -> dict[str, Any]:
    try:
        rec = svc.get(run_id)
    except RequestError:
        rec = None
    if rec is None or not tenancy.visible(request.state.principal,
                                          {"govsoc": {"departments": rec["departments"]}}):
        raise HTTPException(404, f"no run {run_id!r}")
    return rec


def _public(rec: dict[str, Any], svc: RunRequests, with_result: bool = False
            ) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k != "vars_json"}
    out["vars"] = svc.variables(rec)
    if with_result:
        run = svc.run_status(rec["run_id"])
        out["result"] = None if run is None else {
            k: run.get(k) for k in ("status", "rc", "reason", "created", "ended", "summary")}
    return out


# -- playbooks ------------------------------------------------------------------------
@router.get("/playbooks")
def list_playbooks(request: Request) -> dict[str, Any]:
    items = playbook_info()
    return {"items": items, "total": len(items), "next": None}


# -- requests -------------------------------------------------------------------------
class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    hosts: list[str] | None = Field(None, min_length=1, max_length=1000)
    limit: str | None = Field(None, min_length=1, max_length=4000,
                              pattern=r"^[A-Za-z0-9_.:,*!&-]+$")
    vars: dict[str, Any] = Field(default_factory=dict, max_length=64)
    check: bool = False


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


_HOST = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$"


@router.post("/runs", status_code=201)
def request_run(request: Request, body: RunBody) -> dict[str, Any]:
    svc = service(request)
    p: Principal = request.state.principal
    if body.hosts is not None and body.limit is not None:
        raise HTTPException(400, "give hosts or limit, not both")
    if body.hosts is not None and not all(re.match(_HOST, h) for h in body.hosts):
        raise HTTPException(400, "hosts: inventory host names only (no patterns)")
    limit = ",".join(body.hosts) if body.hosts is not None else body.limit
    try:
        rec = svc.create(body.playbook, requester=who(p), allowed_departments=p.departments,
                         limit=limit, variables=body.vars, check=body.check,
                         may_change=roles.allowed(p.roles, "playbooks:run"))
    except PlaybookError as exc:
        _fail(request, "runs.request", None, exc)
    request.app.state.ctx.audit(request, "runs.request", object=rec["run_id"],
                                extra={"playbook": rec["playbook"], "hosts": rec["hosts"],
                                       "check": rec["check"], "vars": rec["var_names"],
                                       "status": rec["status"]})
    return _public(rec, svc)


@router.get("/runs")
def list_runs(request: Request,
              status: str | None = Query(None, pattern=r"^[a-z]{1,20}$"),
              playbook: str | None = Query(None, pattern=r"^[a-z0-9_]{1,64}$"),
              size: int = Query(50, ge=1, le=500),
              after: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
    svc = service(request)
    scope = tenancy.scope(request.state.principal, None)
    page, total = svc.search(scope=scope, status=status, playbook=playbook, size=size,
                             after=decode_cursor(after))
    items = [_public(h["govsoc"]["run_request"], svc) for h in page.hits]
    return {"items": items, "total": total, "next": encode_cursor(page.cursor)}


@router.get("/runs/{run_id}")
def get_run(request: Request, run_id: str = run_id_param()) -> dict[str, Any]:
    svc = service(request)
    return _public(_visible(request, svc, run_id), svc, with_result=True)


@router.post("/runs/{run_id}/approve")
def approve_run(request: Request, run_id: str = run_id_param()) -> dict[str, Any]:
    svc = service(request)
    _visible(request, svc, run_id)
    try:
        rec = svc.approve(run_id, who(request.state.principal))
    except PlaybookError as exc:
        _fail(request, "runs.approve", run_id, exc)
    request.app.state.ctx.audit(request, "runs.approve", object=run_id,
                                extra={"playbook": rec["playbook"], "hosts": rec["hosts"],
                                       "requester": rec["requester"]})
    return _public(rec, svc)


@router.post("/runs/{run_id}/reject")
def reject_run(request: Request, body: RejectBody,
               run_id: str = run_id_param()) -> dict[str, Any]:
    svc = service(request)
    _visible(request, svc, run_id)
    try:
        rec = svc.reject(run_id, who(request.state.principal), body.reason)
    except PlaybookError as exc:
        _fail(request, "runs.reject", run_id, exc)
    request.app.state.ctx.audit(request, "runs.reject", object=run_id, reason=body.reason)
    return _public(rec, svc)


@router.post("/runs/{run_id}/cancel")
def cancel_run(request: Request, run_id: str = run_id_param()) -> dict[str, Any]:
    svc = service(request)
    rec = _visible(request, svc, run_id)
    p: Principal = request.state.principal
    if rec["requester"] != who(p) and not (roles.allowed(p.roles, "playbooks:run") or
                                           roles.allowed(p.roles, "remediation:approve")):
        _fail(request, "runs.cancel", run_id, RequestError(
            "only the requester, a responder or a secadmin may cancel a run", "refused"))
    try:
        rec = svc.cancel(run_id, who(p))
    except PlaybookError as exc:
        _fail(request, "runs.cancel", run_id, exc)
    request.app.state.ctx.audit(request, "runs.cancel", object=run_id,
                                extra={"status": rec["status"]})
    return _public(rec, svc)


@router.post("/runs/{run_id}/undo", status_code=201)
def undo_run(request: Request, run_id: str = run_id_param()) -> dict[str, Any]:
    svc = service(request)
    _visible(request, svc, run_id)
    p: Principal = request.state.principal
    try:
        rec = svc.undo(run_id, requester=who(p), allowed_departments=p.departments)
    except PlaybookError as exc:
        _fail(request, "runs.undo", run_id, exc)
    request.app.state.ctx.audit(request, "runs.undo", object=rec["run_id"],
                                extra={"undo_of": run_id, "playbook": rec["playbook"],
                                       "hosts": rec["hosts"]})
    return _public(rec, svc)


# -- live events ----------------------------------------------------------------------
ENDED = ("successful", "failed", "canceled", "rejected")


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _event_data(doc: dict[str, Any]) -> dict[str, Any]:
    pb = doc.get("govsoc", {}).get("playbook", {})
    return {"seq": doc["event"].get("sequence"), "event": pb.get("event"),
            "@timestamp": doc.get("@timestamp"), "host": (doc.get("host") or {}).get("name"),
            "play": pb.get("play"), "task": pb.get("task"), "message": doc.get("message"),
            "outcome": doc["event"].get("outcome"), "result": pb.get("result"),
            "stats": pb.get("stats")}


@router.get("/runs/{run_id}/events", response_class=StreamingResponse)
async def run_events(request: Request, run_id: str = run_id_param(),
                     last_event_id: str | None = Header(None, max_length=20)) -> Any:
    """`text/event-stream`: a `status` event (status, approver, decided) whenever the
    request's status changes before its end (so a page opened while it waited for approval
    follows it to running), `runner` events (id = the runner's sequence number) while the
    run goes, then one `result` event (status, per-host summary) and the end of the
    stream. A reconnect with `Last-Event-ID` continues after that event."""
    svc = service(request)
    await run_in_threadpool(_visible, request, svc, run_id)  # 404 before streaming
    after = 0
    if last_event_id:
        if not last_event_id.isdigit():
            raise HTTPException(400, "Last-Event-ID must be a runner event number")
        after = int(last_event_id)
    request.app.state.ctx.audit(request, "runs.events", object=run_id,
                                extra={"after": after})

    async def stream() -> Any:
        nonlocal after
        yield b"retry: 2000\n\n"
        quiet_since = time.monotonic()
        status = None
        while True:
            current = await run_in_threadpool(svc.get, run_id)  # before the events: see below
            if current["status"] != status and current["status"] not in ENDED:
                status = current["status"]
                yield _sse("status", {k: current.get(k) for k in
                                      ("status", "approver", "decided")})
            docs = await run_in_threadpool(svc.events, run_id, after)
            for doc in docs:
                after = max(after, int(doc["event"].get("sequence") or 0))
                yield _sse("runner", _event_data(doc), after)
            if current["status"] in ENDED:
                # the driver stores every event before it ends the run: nothing is missed
                result = await run_in_threadpool(_public, current, svc, True)
                yield _sse("result", result)
                return
            if docs:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield b": keepalive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})
