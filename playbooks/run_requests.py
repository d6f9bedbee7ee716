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

Transitions are read-modify-write under one file lock in the data dir (`requests.lock`):
every API worker of one machine serialises on it, so a run is claimed, and executed, once.
(Workers on several machines over one Elasticsearch need the store's compare-and-set;
until it exists they must share the data dir.)

Undo: a playbook that declares an `undo` variable (block_ip, isolate_host, kill_process,
disable_account) is undone by running it again on the same hosts with the same variables
and `undo=true` — a new request that needs approval like any change. A read-only sweep,
the DR drill (it fails back by itself) and patch (package downgrades are not automatic)
have no undo.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from playbooks import events as ev
from playbooks.catalog import PlaybookError, get_playbook, playbooks
from playbooks.driver import Driver
from playbooks.inventory import from_assets, resolve_host_vars, write_inventory
from playbooks.variables import SCHEMAS, command_vars, has_undo, validate_vars
from soc_core import query as q
from soc_core.ecs import now_iso
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
    pattern, else its address)."""

    def __init__(self, store: Any, work_dir: Path, *, inventory: str | Path | None = None,
                 connection: dict[str, Any] | None = None, departments: Any = None,
                 on_finish: Callable[[dict[str, Any]], None] | None = None,
                 timeout: int | None = None) -> None:
        self.store = store
        self.work_dir = Path(work_dir)
        self.inventory = inventory
        self.connection = connection or {}
        self.departments = departments
        self.on_finish = on_finish
        self.timeout = timeout
        self.driver = Driver(store, work_dir=self.work_dir)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.threads: dict[str, threading.Thread] = {}

    # -- persistence -----------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.work_dir / "requests.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def save(self, rec: dict[str, Any]) -> None:
        rec["updated"] = now_iso()
        doc = {"@timestamp": rec["created"],
               "event": {"kind": "state", "dataset": DATASET, "id": request_id(rec["run_id"])},
               "govsoc": {"departments": rec["departments"], "run_request": rec}}
        res = self.store.write([doc], refresh=True)
        if res.rejected:
            raise PlaybookError(f"store rejected the run request: {res.rejected[0].reason}")

    def get(self, run_id: str) -> dict[str, Any]:
        doc = self.store.get("state", request_id(run_id)) if RUN_ID_RE.match(run_id) else None
        if doc is None:
            raise RequestError(f"no run {run_id!r}", "not_found")
        return doc["govsoc"]["run_request"]

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
               "ended": None, "canceled_by": None}
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
        with self._locked():
            rec = self.get(run_id)
            if rec["status"] != "pending":
                raise RequestError(f"run {run_id} is {rec['status']}, not waiting for "
                                   "approval", "conflict")
            if approver == rec["requester"]:
                raise RequestError("the requester cannot approve their own request",
                                   "refused")
            rec.update(status="approved", approver=approver, decided=now_iso())
            self.save(rec)
        self.start(run_id)
        return self.get(run_id)

    def reject(self, run_id: str, approver: str, reason: str) -> dict[str, Any]:
        with self._locked():
            rec = self.get(run_id)
            if rec["status"] != "pending":
                raise RequestError(f"run {run_id} is {rec['status']}, not waiting for "
                                   "approval", "conflict")
            rec.update(status="rejected", approver=approver, decided=now_iso(), reason=reason,
                       ended=now_iso())
            self.save(rec)
        self._finished(rec)
        return rec

    def cancel(self, run_id: str, who: str) -> dict[str, Any]:
        """Cancel a request that has not run yet, or stop a running run (ansible-playbook
        is terminated by the runner; the run ends `canceled`)."""
        with self._locked():
            rec = self.get(run_id)
            if rec["status"] in FINAL:
                raise RequestError(f"run {run_id} already ended: {rec['status']}", "conflict")
            rec["canceled_by"] = who
            if rec["status"] in ("pending", "approved"):
                rec.update(status="canceled", ended=now_iso(), reason=f"canceled by {who}")
            else:
                self._cancel_flag(run_id).touch()
            self.save(rec)
        if rec["status"] == "canceled":
            self._finished(rec)
        return rec

    def _cancel_flag(self, run_id: str) -> Path:
        flags = self.work_dir / "cancel"
        flags.mkdir(parents=True, exist_ok=True)
        return flags / run_id

    # -- execution -------------------------------------------------------------------
    def claim(self, run_id: str) -> dict[str, Any] | None:
        """Take an approved run for this worker; None when another took it (or it was
        canceled meanwhile)."""
        with self._locked():
            rec = self.get(run_id)
            if rec["status"] != "approved" or rec["claimed_by"]:
                return None
            rec.update(status="running", claimed_by=self.worker, started=now_iso())
            self.save(rec)
            return rec

    def start(self, run_id: str) -> bool:
        """Claim and run in a thread of this process; False when someone else has it."""
        rec = self.claim(run_id)
        if rec is None:
            return False
        t = threading.Thread(target=self.execute, args=(rec,), name=f"run-{run_id}",
                             daemon=True)
        self.threads[run_id] = t
        t.start()
        return True

    def resume(self) -> list[str]:
        """At a worker's first use: run what was approved but never claimed (its approver's
        worker stopped in between), and end what a stopped worker of this machine was
        running (its ansible-playbook died with it). Returns the run ids it touched."""
        touched = []
        for doc in self.store.scan(Selection(family="state", dataset=DATASET, query=q.Or((
                q.Term("govsoc.run_request.status", "approved"),
                q.Term("govsoc.run_request.status", "running"))))):
            rec = doc["govsoc"]["run_request"]
            if rec["status"] == "approved" and self.start(rec["run_id"]):
                touched.append(rec["run_id"])
            elif rec["status"] == "running" and self._orphaned(rec):
                with self._locked():
                    rec = self.get(rec["run_id"])
                    if rec["status"] != "running" or not self._orphaned(rec):
                        continue
                    rec.update(status="failed", ended=now_iso(),
                               reason=f"the worker running it ({rec['claimed_by']}) stopped")
                    self.save(rec)
                touched.append(rec["run_id"])
                self._finished(rec)
        return touched

    @staticmethod
    def _orphaned(rec: dict[str, Any]) -> bool:
        host, _, pid = str(rec.get("claimed_by") or "").rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False  # another machine's: only it can tell
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def execute(self, rec: dict[str, Any]) -> dict[str, Any]:
        run_id = rec["run_id"]
        flag = self._cancel_flag(run_id)
        status, reason = "failed", None
        try:
            with tempfile.TemporaryDirectory(prefix="govsoc-inv-") as tmp:
                inventory = self._inventory_path(Path(tmp))
                result = self.driver.run(rec["playbook"], inventory, limit=rec["limit"],
                                         check=rec["check"], extravars=self.variables(rec),
                                         run_id=run_id, timeout=self.timeout,
                                         should_cancel=flag.exists)
            status, reason = result.status, result.reason
            if status == "successful" and not result.ok:
                status, reason = "failed", "a host failed or was unreachable"
        except PlaybookError as exc:
            reason = str(exc)[:500]
        except Exception as exc:  # noqa: BLE001 - recorded on the request, never lost
            reason = f"driver error: {type(exc).__name__}: {exc}"[:500]
        with self._locked():
            rec = self.get(run_id)
            if status == "canceled" and rec.get("canceled_by"):
                reason = f"canceled by {rec['canceled_by']}"
            rec.update(status=status, reason=reason, ended=now_iso())
            self.save(rec)
        flag.unlink(missing_ok=True)
        self.threads.pop(run_id, None)
        self._finished(rec)
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
