"""The playbook driver: runs shipped playbooks with ansible-runner and records them.

Each run gets a private data dir, an inventory file, per-host locks, and a status document
in the store (queued -> running -> successful/failed/canceled) rewritten in place; every
runner event is streamed to the store as it happens. The result is a per-host summary.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from playbooks import events as ev
from playbooks.catalog import CONTENT_DIR, PlaybookError, get_playbook
from playbooks.inventory import resolve_hosts, write_inventory
from playbooks.locks import HostLocks
from playbooks.variables import unsafe_yaml, validate_vars
from soc_core.config import load_config
from soc_core.ecs import now_iso

HOST_PYTHON = "/usr/bin/python3"
_FLUSH_EVERY = 50  # events; also flushed at least every _FLUSH_SECONDS
_FLUSH_SECONDS = 0.2  # the longest an event waits in the buffer: live views read the store


@dataclass
class HostSummary:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    status: str = "not_run"  # ok | changed | failed | unreachable | not_run
    error: str | None = None  # the last failure message for this host
    result: dict[str, Any] | None = None  # what the playbook reported (`govsoc_result`)


@dataclass
class RunResult:
    run_id: str
    playbook: str
    status: str
    hosts: dict[str, HostSummary] = field(default_factory=dict)
    reason: str | None = None
    rc: int | None = None
    created: str = ""
    ended: str = ""
    check: bool = False

    @property
    def ok(self) -> bool:
        """True only when the run succeeded and no host failed or was unreachable."""
        return self.status == "successful" and not any(
            h.status in ("failed", "unreachable") for h in self.hosts.values())

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_results:
            for h in d["hosts"].values():
                h.pop("result", None)
        return d


PostProcessor = Callable[[RunResult, Any], None]
_POST: dict[str, PostProcessor] = {}


def post_processor(playbook: str) -> Callable[[PostProcessor], PostProcessor]:
    """Register what a playbook's results become in the store (asset records, reports)."""

    def deco(fn: PostProcessor) -> PostProcessor:
        _POST[playbook] = fn
        return fn

    return deco


def result_sinks(playbook: str) -> list[PostProcessor]:
    """What receives a finished run of `playbook`: our own post-processor, then any function
    another package registered under the entry point group `govsoc.playbook_results` with the
    playbook's name (the asset registry takes `asset_sweep`). Those get the run as plain data
    (`RunResult.to_dict()`) and the store, so no package above us is ever imported here."""
    from importlib.metadata import entry_points

    found: list[PostProcessor] = [_POST[playbook]] if playbook in _POST else []
    for ep in entry_points(group="govsoc.playbook_results", name=playbook):
        fn = ep.load()
        found.append(lambda result, store, fn=fn: fn(result.to_dict(), store))
    return found


class Driver:
    def __init__(self, store: Any, *, work_dir: Path | None = None, forks: int = 20) -> None:
        self.store = store
        self.work_dir = Path(work_dir or load_config().data_dir / "playbooks").resolve()
        self.forks = forks

    def run_dir(self, run_id: str) -> Path:
        return self.work_dir / "runs" / run_id

    # -- run ----------------------------------------------------------------------
    def run(self, name: str, inventory: dict[str, Any] | str | Path, *,
            limit: str | None = None, check: bool = False,
            extravars: dict[str, Any] | None = None, timeout: int | None = None,
            forks: int | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
            run_id: str | None = None,
            should_cancel: Callable[[], bool] | None = None) -> RunResult:
        import ansible_runner

        from playbooks import sinks  # noqa: F401  (registers the post-processors)

        playbook = get_playbook(name)
        extravars = validate_vars(name, extravars)  # refused before anything runs
        run_id = run_id or uuid.uuid4().hex[:12]
        run_dir = self.run_dir(run_id)
        if run_dir.exists():
            raise PlaybookError(f"run {run_id} exists already")
        run_dir.mkdir(parents=True)
        try:
            inv_path = write_inventory(inventory, run_dir)
            if extravars:  # ansible-runner passes env/extravars as `-e @file`: all !unsafe
                (run_dir / "env").mkdir(exist_ok=True)
                (run_dir / "env" / "extravars").write_text(unsafe_yaml(extravars),
                                                           encoding="utf-8")
            hosts = resolve_hosts(inv_path, limit)
            result = RunResult(run_id=run_id, playbook=name, status="queued",
                               created=now_iso(), check=check,
                               hosts={h: HostSummary() for h in hosts})
            with HostLocks(self.work_dir / "locks", run_id) as locks:
                locks.acquire(hosts)
                self._record(result, limit=limit, extravars=extravars)
                stream = _EventStream(self.store, run_id, name, result, on_event)
                status_seen: dict[str, str] = {}

                def on_status(data: dict[str, Any], runner_config: Any = None) -> None:
                    status_seen["last"] = data.get("status", "")
                    if data.get("status") == "running" and result.status == "queued":
                        result.status = "running"
                        self._record(result, limit=limit, extravars=extravars)

                cancel_flag = run_dir / "cancel"

                def cancelled() -> bool:
                    return cancel_flag.exists() or bool(should_cancel and should_cancel())

                stream.start_timer()
                try:
                    runner = ansible_runner.run(
                        private_data_dir=str(run_dir), project_dir=str(CONTENT_DIR),
                        playbook=playbook.path.name, inventory=str(inv_path), limit=limit,
                        forks=forks or self.forks,
                        cmdline="--check" if check else None, timeout=timeout,
                        envvars=ansible_env(run_dir), quiet=True,
                        settings={"suppress_ansible_output": True},
                        event_handler=stream.handle, status_handler=on_status,
                        cancel_callback=cancelled)
                    stream.flush()
                except BaseException as exc:  # never leave a run "running" forever
                    _kill_leftovers(run_dir)
                    stream.stop_timer()
                    result.status, result.reason = "failed", f"driver error: {exc}"[:500]
                    result.ended = now_iso()
                    self._record(result, limit=limit, extravars=extravars)
                    raise
                stream.stop_timer()
                if runner.status in ("canceled", "timeout"):
                    _kill_leftovers(run_dir)
                result.rc = runner.rc
                _finish(result, runner.status, stream, timeout)
                sinks = result_sinks(name) if result.status != "canceled" else []
                if sinks:
                    try:
                        for sink in sinks:
                            sink(result, self.store)
                    except Exception as exc:  # the run is recorded even if a sink fails
                        result.status = "failed"
                        result.reason = f"recording results failed: {exc}"
                result.ended = now_iso()
                self._record(result, limit=limit, extravars=extravars)
                return result
        finally:
            if not os.environ.get("GOVSOC_KEEP_RUN_DIRS"):
                shutil.rmtree(run_dir, ignore_errors=True)

    def _record(self, result: RunResult, *, limit: str | None,
                extravars: dict[str, Any] | None) -> None:
        run = {"run_id": result.run_id, "playbook": result.playbook, "status": result.status,
               "created": result.created, "ended": result.ended or None,
               "reason": result.reason, "rc": result.rc, "check": result.check,
               "limit": limit, "hosts": sorted(result.hosts), "pid": os.getpid(),
               # values of extra vars may be secrets: only their names are recorded
               "extra_vars": sorted(extravars or {}),
               "summary": {h: {k: v for k, v in asdict(s).items() if k != "result"}
                           for h, s in result.hosts.items()}}
        res = self.store.write([ev.status_doc(run)], refresh=True)
        if res.rejected:
            raise PlaybookError(f"store rejected the run status: {res.rejected[0].reason}")

    # -- status / cancel ----------------------------------------------------------
    def status(self, run_id: str) -> dict[str, Any]:
        doc = self.store.get("playbook_runs", ev.status_id(run_id))
        if doc is None:
            raise PlaybookError(f"no playbook run {run_id!r}")
        return doc["govsoc"]["playbook"]

    def cancel(self, run_id: str) -> str:
        """Ask a running run to stop (it may live in another process). Returns the status
        the run had; a run whose process is gone is marked canceled here."""
        run = self.status(run_id)
        if run["status"] not in ("queued", "running"):
            raise PlaybookError(f"run {run_id} already finished: {run['status']}")
        run_dir = self.run_dir(run_id)
        if run_dir.exists():
            (run_dir / "cancel").touch()
            return run["status"]
        if not _pid_alive(run.get("pid")):
            run.update(status="canceled", reason="driver process gone", ended=now_iso())
            self.store.write([ev.status_doc(run)], refresh=True)
            return run["status"]
        raise PlaybookError(f"run {run_id} is not known on this machine's data dir")

    def wait_status(self, run_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                run = self.status(run_id)
                if run["status"] in statuses:
                    return run
            except PlaybookError:
                pass
            if time.monotonic() > deadline:
                raise PlaybookError(f"run {run_id} did not reach {statuses} in time")
            time.sleep(0.1)


class _EventStream:
    """Buffers runner events into store writes and folds them into the run result."""

    def __init__(self, store: Any, run_id: str, playbook: str, result: RunResult,
                 on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.store = store
        self.run_id = run_id
        self.playbook = playbook
        self.result = result
        self.on_event = on_event
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.stats: dict[str, dict[str, int]] | None = None
        self.other_errors: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def start_timer(self) -> None:
        """Flush what waits in the buffer even when no next event comes (a long task)."""
        def loop() -> None:
            while not self._stop.wait(_FLUSH_SECONDS):
                with self.lock:
                    if self.pending and time.monotonic() - self.last_flush >= _FLUSH_SECONDS:
                        self._flush_locked()

        self._timer = threading.Thread(target=loop, name="runner-event-flush", daemon=True)
        self._timer.start()

    def stop_timer(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        self.flush()

    def handle(self, data: dict[str, Any]) -> bool:
        name = data.get("event", "")
        ed = data.get("event_data") or {}
        host = ed.get("host")
        summary = self.result.hosts.get(host) if host else None
        res = ed.get("res") if isinstance(ed.get("res"), dict) else {}
        if summary is None and host and name in ("runner_on_failed", "runner_on_unreachable") \
                and not ed.get("ignore_errors"):
            # a failure on a host outside the inventory (the controller, `localhost`)
            self.other_errors.append(f"{host}: {str(res.get('msg') or name)[:300]}")
        if summary is not None:
            facts = res.get("ansible_facts") or {}
            if isinstance(facts.get("govsoc_result"), dict):
                summary.result = {**(summary.result or {}), **facts["govsoc_result"]}
            if name in ("runner_on_failed", "runner_on_unreachable") \
                    and not ed.get("ignore_errors"):
                summary.error = str(res.get("msg") or res.get("stderr") or name)[:500]
        if name == "playbook_on_stats":
            self.stats = {k: ed.get(k) or {} for k in ("ok", "changed", "failures", "dark",
                                                        "skipped", "rescued", "ignored")}
        with self.lock:
            self.pending.append(ev.runner_event_doc(self.run_id, self.playbook, data))
            if len(self.pending) >= _FLUSH_EVERY or \
                    time.monotonic() - self.last_flush > _FLUSH_SECONDS:
                self._flush_locked()
        if self.on_event:
            self.on_event(data)
        return False  # the store holds the events; runner need not keep its own copy

    def flush(self) -> None:
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.pending:
            # refreshed: a live view (the API's event stream) must see them now, not at
            # the search index's next refresh
            self.store.write(self.pending, refresh=True)
            self.pending = []
        self.last_flush = time.monotonic()


def _finish(result: RunResult, runner_status: str, stream: _EventStream,
            timeout: int | None) -> None:
    stats = stream.stats or {}
    for host, s in result.hosts.items():
        s.ok = int(stats.get("ok", {}).get(host, 0))
        s.changed = int(stats.get("changed", {}).get(host, 0))
        s.failed = int(stats.get("failures", {}).get(host, 0))
        s.unreachable = int(stats.get("dark", {}).get(host, 0))
        s.skipped = int(stats.get("skipped", {}).get(host, 0))
        s.rescued = int(stats.get("rescued", {}).get(host, 0))
        s.ignored = int(stats.get("ignored", {}).get(host, 0))
        if s.unreachable:
            s.status = "unreachable"
        elif s.failed:
            s.status = "failed"
        elif s.changed:
            s.status = "changed"
        elif s.ok or s.skipped:
            s.status = "ok"
    if runner_status == "canceled":
        result.status, result.reason = "canceled", "canceled on request"
    elif runner_status == "timeout":
        result.status, result.reason = "failed", f"timed out after {timeout}s"
    elif runner_status == "successful" and not any(
            s.status in ("failed", "unreachable") for s in result.hosts.values()):
        result.status = "successful"
    else:
        result.status = "failed"
        bad = sorted(h for h, s in result.hosts.items() if s.status in ("failed", "unreachable"))
        result.reason = (f"failed on {', '.join(bad)}" if bad
                         else "; ".join(stream.other_errors)
                         or f"ansible-playbook exited {result.rc}")


def ansible_env(run_dir: Path) -> dict[str, str]:
    """The environment ansible-playbook runs with for a run in `run_dir`: our content's
    config and modules, the venv's ansible on PATH (also for tools outside the driver, like
    bench/sweep.py's plain-Ansible reference)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if venv_bin not in path.split(":"):
        os.environ["PATH"] = path = f"{venv_bin}:{path}"  # runner looks ansible-playbook up
    return {
        "PATH": path,
        "ANSIBLE_CONFIG": str(CONTENT_DIR / "ansible.cfg"),
        "ANSIBLE_LIBRARY": str(CONTENT_DIR / "library"),
        "ANSIBLE_PIPELINING": "True",  # one SSH round trip a task instead of three
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_TIMEOUT": "10",
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": HOST_PYTHON,
    }


def _kill_leftovers(run_dir: Path) -> int:
    """Kill what is left of a stopped run. The runner kills ansible-playbook's process
    group, but Ansible's workers (and their ssh) run in sessions of their own and would go
    on; each carries the run's ANSIBLE_LOCAL_TEMP in its environment."""
    import psutil

    marker, killed = str(run_dir / "tmp"), 0
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("ANSIBLE_LOCAL_TEMP") == marker:
                proc.kill()
                killed += 1
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return killed


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


