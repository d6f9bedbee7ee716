"""Requested playbook runs and their approval: request -> approve/reject -> run -> result,
cancel at any point before the end, undo of a finished change.

A request is one document in the store's `state` family (`govsoc.state.run_request`, id
`runreq:<run_id>`), rewritten in place at each step, so every API worker (and every
machine over one Elasticsearch) sees the same requests. The run itself is the driver's:
its status document and runner events (`playbook_runs`) carry the same run id.

Lifecycle: `pending` (waits for an approver) -> `approved` -> `running` -> `successful` |
`failed` | `canceled`; or `rejected`, or `canceled` before it ran. A check-mode request
that sets no command variable is read-only and starts `approved` (nobody needs to approve
it). The requester never approves their own request.

Every transition (approve, reject, cancel, claim, finish, a stale run's takeover) is a
compare-and-set on that document (`store.modify`: read with its version, write only if
nobody wrote since, else read again and re-decide), so API workers on several machines over
one store never lose a step, and exactly one of them claims, and executes, an approved run.

Liveness: the worker that runs a request renews a heartbeat on it (`heartbeat`, its time,
every `heartbeat` seconds, by compare-and-set). A running request whose heartbeat is older
than `stale_after` seconds is ended `failed` by any worker that reads it (at once when its
worker was a process of this host that is gone). `stale_after` must outlast the clock
difference between the machines. Cancel of a running run is recorded on the request
(`canceled_by`); the worker running it sees that at its next heartbeat (at once when it is
the worker that was asked) and stops ansible-runner.

Undo: a playbook that declares an `undo` variable (block_ip, isolate_host, kill_process,
disable_account) is undone by running it again on the same hosts with the same variables
and `undo=true` — a new request that needs approval like any change. A read-only sweep,
the DR drill (it fails back by itself) and patch (package downgrades are not automatic)
have no undo.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from playbooks import events as ev
from playbooks.catalog import PlaybookError, get_playbook, playbooks
from playbooks.driver import Driver
from playbooks.inventory import from_assets, resolve_host_vars, write_inventory
from playbooks.variables import APPROVER_VARS, SCHEMAS, command_vars, has_undo, validate_vars
from soc_core import query as q
from soc_core.ecs import now_iso, parse_time
from soc_core.store import Selection

log = logging.getLogger("govsoc.playbooks")
DATASET = "govsoc.state.run_request"
FINAL = ("successful", "failed", "canceled", "rejected")
STATUSES = ("pending", "approved", "running", *FINAL)
RUN_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class RequestError(PlaybookError):
    """A request that cannot be done now; `kind` says why: not_found | refused | conflict
    | invalid."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


def playbook_info() -> list[dict[str, Any]]:
    """What a requester needs to know of each shipped playbook."""
    out = []
    for name, pb in sorted(playbooks().items()):
        names = sorted(SCHEMAS.get(name) or {})
        out.append({"name": name, "description": pb.description, "variables": names,
                    "command_variables": command_vars(name, dict.fromkeys(names)),
                    "undo": has_undo(name)})
    return out


def request_id(run_id: str) -> str:
    return f"runreq:{run_id}"


class RunRequests:
    """The requests of one deployment. `inventory`: an inventory file, or None for the
    asset registry reached with `connection` vars. `departments`: soc_core Departments
    (a host's department: its `govsoc_department` inventory variable, else its name's
    pattern, else its address). `heartbeat`: seconds between a running request's heartbeat
    renewals (and cancel checks); `stale_after`: seconds without one after which any worker
    ends the run `failed`."""

    def __init__(self, store: Any, work_dir: Path, *, inventory: str | Path | None = None,
                 connection: dict[str, Any] | None = None, departments: Any = None,
                 on_finish: Callable[[dict[str, Any]], None] | None = None,
                 timeout: int | None = None, heartbeat: float = 10.0,
                 stale_after: float = 60.0) -> None:
        if not 0 < heartbeat * 2 <= stale_after:
            raise ValueError(f"stale_after ({stale_after} s) must be at least twice the "
                             f"heartbeat ({heartbeat} s), which must be positive")
        self.store = store
        self.work_dir = Path(work_dir)
        self.inventory = inventory
        self.connection = connection or {}
        self.departments = departments
        self.on_finish = on_finish
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.driver = Driver(store, work_dir=self.work_dir)
        # host:pid for the same-host liveness fast path, then this instance's own tag: two
        # RunRequests of one process are two workers
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.threads: dict[str, threading.Thread] = {}
        self.cancels: dict[str, threading.Event] = {}  # the runs this worker executes

    # -- persistence -----------------------------------------------------------------
    @staticmethod
    def _doc(rec: dict[str, Any]) -> dict[str, Any]:
        return {"@timestamp": rec["created"],
                "event": {"kind": "state", "dataset": DATASET, "id": request_id(rec["run_id"])},
                "govsoc": {"departments": rec["departments"], "run_request": rec}}

    def save(self, rec: dict[str, Any]) -> None:
        """Store a request as it is, whatever is stored (a new request: its id is new)."""
        rec["updated"] = now_iso()
        res = self.store.write([self._doc(rec)], refresh=True)
        if res.rejected:
            raise PlaybookError(f"store rejected the run request: {res.rejected[0].reason}")

    def _change(self, run_id: str, fn: Callable[[dict[str, Any]], dict[str, Any] | None],
                *, refresh: bool = True) -> tuple[dict[str, Any], bool]:
        """Compare-and-set one request: `fn(rec)` returns it changed, or None to leave it
        (it may raise RequestError); it is called again on a fresher copy when another
        worker wrote in between. Returns the request as stored and whether it changed."""
        changed = False

        def step(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            nonlocal changed
            if doc is None:
                raise RequestError(f"no run {run_id!r}", "not_found")
            new = fn(doc["govsoc"]["run_request"])
            changed = new is not None
            if new is None:
                return None
            if refresh:  # a heartbeat is no news to a listing
                new["updated"] = now_iso()
            return self._doc(new)

        if not RUN_ID_RE.match(run_id):
            raise RequestError(f"no run {run_id!r}", "not_found")
        doc, _ = self.store.modify("state", request_id(run_id), step)
        if changed and refresh:  # listings (a search) see the step at once
            self.store.refresh()
        return doc["govsoc"]["run_request"], changed

    def get(self, run_id: str) -> dict[str, Any]:
        """The request; a running one whose worker is gone is ended (failed) first."""
        doc = self.store.get("state", request_id(run_id)) if RUN_ID_RE.match(run_id) else None
        if doc is None:
            raise RequestError(f"no run {run_id!r}", "not_found")
        rec = doc["govsoc"]["run_request"]
        if rec["status"] == "running" and self._stale(rec):
            # None: read again, it lived or ended meanwhile
            rec = self._take_over(run_id) or self.store.get(
                "state", request_id(run_id))["govsoc"]["run_request"]
        return rec

    @staticmethod
    def variables(rec: dict[str, Any]) -> dict[str, Any]:
        # kept as JSON text: one variable may be a number in one request and text in the
        # next, which a search index would refuse as one field
        return orjson.loads(rec.get("vars_json") or "{}")

    def run_status(self, run_id: str) -> dict[str, Any] | None:
        """The driver's status document of the run (per-host summary), if it started."""
        try:
            return self.driver.status(run_id)
        except PlaybookError:
            return None

    # -- request ---------------------------------------------------------------------
    def _inventory_path(self, tmp: Path) -> Path:
        if self.inventory:
            return Path(self.inventory)
        return write_inventory(from_assets(self.store, self.connection), tmp)

    def resolve(self, limit: str | None) -> dict[str, str | None]:
        """The hosts `limit` selects, each with its department id (None: unassigned)."""
        with tempfile.TemporaryDirectory(prefix="govsoc-inv-") as tmp:
            hosts = resolve_host_vars(self._inventory_path(Path(tmp)), limit)
        return {name: self._department(name, hv) for name, hv in hosts.items()}

    def _department(self, name: str, hostvars: dict[str, Any]) -> str | None:
        given = hostvars.get("govsoc_department")
        if isinstance(given, str) and given:
            return str(given)
        if not self.departments:
            return None
        dept = self.departments.for_host(name) or \
            self.departments.for_address(str(hostvars.get("ansible_host") or name))
        return dept.id if dept else None

    def create(self, playbook: str, *, requester: str, allowed_departments: tuple[str, ...],
               limit: str | None = None, variables: dict[str, Any] | None = None,
               check: bool = False, may_change: bool = True,
               undo_of: str | None = None) -> dict[str, Any]:
        """A new request (started at once when it needs no approval). Refused when a
        targeted host is outside `allowed_departments` ("*": all)."""
        get_playbook(playbook)
        checked = validate_vars(playbook, variables)
        commands = command_vars(playbook, checked)
        needs_approval = not check or bool(commands)
        if needs_approval and not may_change:
            why = (f"variables {', '.join(commands)} run commands on the hosts even in check "
                   "mode" if check else "a run that changes hosts")
            raise RequestError(f"{why}: only a responder may request it", "refused")
        hosts = self.resolve(limit)
        if "*" not in allowed_departments:
            outside = sorted(h for h, d in hosts.items() if d not in allowed_departments)
            if outside:
                raise RequestError(f"host {outside[0]} is outside your departments", "refused")
        run_id = uuid.uuid4().hex[:12]
        rec = {"run_id": run_id, "playbook": playbook, "check": bool(check),
               "limit": ",".join(hosts),  # exactly the hosts approved, whatever happens later
               "hosts": sorted(hosts), "vars_json": orjson.dumps(checked).decode(),
               "var_names": sorted(checked),
               "departments": sorted({d for d in hosts.values() if d}),
               "status": "pending" if needs_approval else "approved",
               "needs_approval": needs_approval, "requester": requester,
               "created": now_iso(), "undo_of": undo_of, "approver": None,
               "decided": None, "reason": None, "claimed_by": None, "started": None,
               "heartbeat": None, "ended": None, "canceled_by": None}
        self.save(rec)
        if not needs_approval:
            self.start(run_id)
        return self.get(run_id)

    def undo(self, run_id: str, *, requester: str,
             allowed_departments: tuple[str, ...]) -> dict[str, Any]:
        rec = self.get(run_id)
        if not has_undo(rec["playbook"]):
            raise RequestError(f"playbook {rec['playbook']} has no undo", "conflict")
        variables = self.variables(rec)
        if rec["check"] or variables.get("undo") or rec.get("undo_of"):
            raise RequestError("only a change can be undone (not a check run, not an undo)",
                               "conflict")
        if rec["status"] not in ("successful", "failed"):
            raise RequestError(f"run {run_id} is {rec['status']}: only a finished run can be "
                               "undone", "conflict")
        return self.create(rec["playbook"], requester=requester,
                           allowed_departments=allowed_departments, limit=rec["limit"],
                           variables={**variables, "undo": True}, undo_of=run_id)

    # -- decisions -------------------------------------------------------------------
    def approve(self, run_id: str, approver: str) -> dict[str, Any]:
        def step(rec: dict[str, Any]) -> dict[str, Any]:
            if rec["status"] != "pending":
                raise RequestError(f"run {run_id} is {rec['status']}, not waiting for "
                                   "approval", "conflict")
            if approver == rec["requester"]:
                raise RequestError("the requester cannot approve their own request",
                                   "refused")
            return {**rec, "status": "approved", "approver": approver, "decided": now_iso()}

        self._change(run_id, step)
        self.start(run_id)
        return self.get(run_id)

    def reject(self, run_id: str, approver: str, reason: str) -> dict[str, Any]:
        def step(rec: dict[str, Any]) -> dict[str, Any]:
            if rec["status"] != "pending":
                raise RequestError(f"run {run_id} is {rec['status']}, not waiting for "
                                   "approval", "conflict")
            return {**rec, "status": "rejected", "approver": approver, "decided": now_iso(),
                    "reason": reason, "ended": now_iso()}

        rec, _ = self._change(run_id, step)
        self._finished(rec)
        return rec

    def cancel(self, run_id: str, who: str) -> dict[str, Any]:
        """Cancel a request that has not run yet, or stop a running run: recorded on the
        request, where the worker running it (this one or another) sees it and has
        ansible-runner terminate ansible-playbook; the run then ends `canceled`."""
        def step(rec: dict[str, Any]) -> dict[str, Any]:
            if rec["status"] in FINAL:
                raise RequestError(f"run {run_id} already ended: {rec['status']}", "conflict")
            if rec["status"] == "running" and not self._stale(rec):
                return {**rec, "canceled_by": who}  # its worker stops it
            return {**rec, "canceled_by": who, "status": "canceled", "ended": now_iso(),
                    "reason": f"canceled by {who}"}

        rec, _ = self._change(run_id, step)
        if rec["status"] == "canceled":
            self._finished(rec)
        elif run_id in self.cancels:  # ours: no need to wait for the heartbeat
            self.cancels[run_id].set()
        return rec

    # -- execution -------------------------------------------------------------------
    def claim(self, run_id: str) -> dict[str, Any] | None:
        """Take an approved run for this worker; None when another took it (or it was
        canceled meanwhile)."""
        def step(rec: dict[str, Any]) -> dict[str, Any] | None:
            if rec["status"] != "approved" or rec["claimed_by"]:
                return None
            now = now_iso()
            return {**rec, "status": "running", "claimed_by": self.worker, "started": now,
                    "heartbeat": now}

        rec, changed = self._change(run_id, step)
        return rec if changed else None

    def start(self, run_id: str) -> bool:
        """Claim and run in a thread of this process; False when someone else has it."""
        rec = self.claim(run_id)
        if rec is None:
            return False
        self.cancels[run_id] = threading.Event()
        t = threading.Thread(target=self.execute, args=(rec,), name=f"run-{run_id}",
                             daemon=True)
        self.threads[run_id] = t
        t.start()
        return True

    def resume(self) -> list[str]:
        """At a worker's first use: run what was approved but never claimed (its approver's
        worker stopped in between), and end what a stopped worker was running (its
        ansible-playbook died with it). Returns the run ids it touched."""
        touched = []
        for doc in self.store.scan(Selection(family="state", dataset=DATASET, query=q.Or((
                q.Term("govsoc.run_request.status", "approved"),
                q.Term("govsoc.run_request.status", "running"))))):
            rec = doc["govsoc"]["run_request"]
            started = rec["status"] == "approved" and self.start(rec["run_id"])
            ended = rec["status"] == "running" and self._stale(rec) \
                and self._take_over(rec["run_id"])
            if started or ended:
                touched.append(rec["run_id"])
        return touched

    def _stale(self, rec: dict[str, Any]) -> str | None:
        """Why a running request's worker is taken for gone, or None while it lives."""
        claimed = str(rec.get("claimed_by") or "")
        host, pid = (claimed.split(":") + [""])[:2]
        if host == socket.gethostname() and pid.isdigit():
            try:  # same host: the process table knows at once
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return f"the worker running it ({claimed}) stopped"
            except OSError:
                pass
        beat = rec.get("heartbeat")
        if beat is None:  # claimed before heartbeats existed: only its host can tell
            return None
        age = (datetime.now(UTC) - parse_time(beat)).total_seconds()
        if age > self.stale_after:
            return (f"the worker running it ({claimed}) stopped: no heartbeat for "
                    f"{int(age)} s")
        return None

    def _take_over(self, run_id: str) -> dict[str, Any] | None:
        """End a running request whose worker is gone (`failed`), unless, read again, it
        lives or ended; the request as ended, or None."""
        def step(rec: dict[str, Any]) -> dict[str, Any] | None:
            why = self._stale(rec) if rec["status"] == "running" else None
            if why is None:
                return None
            return {**rec, "status": "failed", "ended": now_iso(), "reason": why}

        rec, changed = self._change(run_id, step)
        if not changed:
            return None
        log.warning("run %s: %s", run_id, rec["reason"])
        self._finished(rec)
        return rec

    def _renew(self, run_id: str, cancel: threading.Event) -> None:
        """One heartbeat of a run this worker executes; sets `cancel` when the request was
        canceled, or is no longer ours (another worker took it for gone)."""
        def step(rec: dict[str, Any]) -> dict[str, Any] | None:
            if rec["status"] != "running" or rec["claimed_by"] != self.worker:
                return None
            return {**rec, "heartbeat": now_iso()}

        rec, mine = self._change(run_id, step, refresh=False)
        if rec.get("canceled_by") or not mine:
            cancel.set()

    def _beat(self, run_id: str, cancel: threading.Event, done: threading.Event) -> None:
        while not done.wait(self.heartbeat):
            try:
                self._renew(run_id, cancel)
            except Exception as exc:  # noqa: BLE001 - the store may be back at the next beat
                log.warning("run %s: heartbeat not renewed: %s", run_id, exc)

    def run_playbook(self, rec: dict[str, Any], should_cancel: Callable[[], bool]
                     ) -> tuple[str, str | None]:
        """Run the request's playbook through the driver: (status, reason)."""
        extravars = self.variables(rec)
        approver_var = APPROVER_VARS.get(rec["playbook"])
        if approver_var and rec.get("approver"):
            # who approved, as the request says ("token:<id>" as a plain name)
            extravars[approver_var] = rec["approver"].replace(":", "-")
        with tempfile.TemporaryDirectory(prefix="govsoc-inv-") as tmp:
            inventory = self._inventory_path(Path(tmp))
            result = self.driver.run(rec["playbook"], inventory, limit=rec["limit"],
                                     check=rec["check"], extravars=extravars,
                                     run_id=rec["run_id"], timeout=self.timeout,
                                     should_cancel=should_cancel)
        if result.status == "successful" and not result.ok:
            return "failed", "a host failed or was unreachable"
        return result.status, result.reason

    def execute(self, rec: dict[str, Any]) -> dict[str, Any]:
        run_id = rec["run_id"]
        cancel = self.cancels.setdefault(run_id, threading.Event())
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(run_id, cancel, done),
                                name=f"beat-{run_id}", daemon=True)
        beat.start()
        status, reason = "failed", None
        try:
            status, reason = self.run_playbook(rec, cancel.is_set)
        except PlaybookError as exc:
            reason = str(exc)[:500]
        except Exception as exc:  # noqa: BLE001 - recorded on the request, never lost
            reason = f"driver error: {type(exc).__name__}: {exc}"[:500]
        finally:
            done.set()
            beat.join()

        def step(rec: dict[str, Any]) -> dict[str, Any] | None:
            if rec["status"] != "running" or rec["claimed_by"] != self.worker:
                return None  # another worker took it for gone and ended it
            why = f"canceled by {rec['canceled_by']}" \
                if status == "canceled" and rec.get("canceled_by") else reason
            return {**rec, "status": status, "reason": why, "ended": now_iso()}

        try:
            rec, mine = self._change(run_id, step)
        finally:
            self.threads.pop(run_id, None)
            self.cancels.pop(run_id, None)
        if mine:
            self._finished(rec)
        else:
            log.warning("run %s ended %s here, but was already ended %s: %s", run_id, status,
                        rec["status"], rec.get("reason"))
        return rec

    def _finished(self, rec: dict[str, Any]) -> None:
        if self.on_finish:
            try:
                self.on_finish(rec)
            except Exception as exc:  # noqa: BLE001 - a report hook never undoes the run
                log.error("run %s: finish hook failed: %s", rec["run_id"], exc)

    # -- reading ---------------------------------------------------------------------
    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The run's runner events with a sequence number above `after`, in order."""
        sel = Selection(family="playbook_runs", dataset=ev.DATASET, query=q.And((
            q.Term("govsoc.playbook.run_id", run_id), q.Term("event.kind", "event"),
            q.Range("event.sequence", str(after), None, include_low=False))))
        return sorted(self.store.scan(sel, page_size=500),
                      key=lambda d: d["event"].get("sequence") or 0)

    def search(self, *, scope: Any = None, status: str | None = None,
               playbook: str | None = None, size: int = 50,
               after: list[Any] | None = None) -> tuple[Any, int]:
        """A page of requests, newest first, and how many match in all; `scope` is a
        query node (departments)."""
        parts = [n for n in (scope, status and q.Term("govsoc.run_request.status", status),
                             playbook and q.Term("govsoc.run_request.playbook", playbook)) if n]
        query = None if not parts else parts[0] if len(parts) == 1 else q.And(tuple(parts))
        sel = Selection(family="state", dataset=DATASET, query=query)
        return (self.store.search(sel, size=size, after=after, descending=True),
                self.store.count(sel))

    def wait(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Until the request ended (for tools and tests)."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.get(run_id)
            if rec["status"] in FINAL or time.monotonic() > deadline:
                return rec
            time.sleep(0.1)
