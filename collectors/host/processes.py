"""Process start/stop by polling, in the layout of Auditbeat's system/process dataset.

A process is its pid and start time (pids are reused). A cycle costs one listing of /proc
(which pids exist) and one poll() over a pidfd per known process (which of them ended): a
pidfd refers to the process, not to its number, so a pid reused between two cycles
cannot hide an exit, and a host of 1,000 quiet processes costs about a millisecond a
cycle where reading every /proc/<pid>/stat took twenty. Only a process seen for the first
time is read in full (`procfs.read_process`); its fields are kept for its stop event.

Where a pidfd cannot be had (a kernel before 5.3, or the open-files budget: one pidfd a
process, and `RESERVED_FDS` left for everything else), that process is checked the older
way: its start time re-read from /proc/<pid>/stat every cycle.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import time
import weakref
from typing import Any

import psutil

from collectors.host import procfs
from collectors.host.hashing import HashCache
from soc_core.ecs import make_event, stable_id

DATASET = "system.process"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
RESERVED_FDS = 256  # open files kept free for the rest of the process (store, spool, logs)
_VERB = {"process_started": "STARTED", "process_stopped": "STOPPED",
         "existing_process": "is RUNNING"}


class ProcInfo:
    __slots__ = ("fd", "fields", "pid", "ticks")

    def __init__(self, pid: int, ticks: int, fields: dict[str, Any], fd: int) -> None:
        self.pid, self.ticks, self.fields, self.fd = pid, ticks, fields, fd


class ProcessTracker:
    def __init__(self, host: str, hashes: HashCache, *, pidfds: bool = True) -> None:
        self.host = host
        self.hashes = hashes
        self.known: dict[int, ProcInfo] = {}
        self.boot = psutil.boot_time()
        self.first = True
        self.started: list[int] = []  # pids that started in the last cycle
        self._pidfds = pidfds and hasattr(os, "pidfd_open")
        self._poll = select.poll()  # every pidfd held, for "which ended"
        self._by_fd: dict[int, int] = {}  # pidfd -> pid
        self._unpinned: set[int] = set()  # known pids without a pidfd
        self._users: dict[int, str] = {}
        self._budget = 0  # pidfds this cycle may still open
        # a tracker dropped without close() still gives its pidfds back
        self._finalizer = weakref.finalize(self, _close_all, self._by_fd)

    # -- pidfds ---------------------------------------------------------------------------
    def _pin(self, pid: int) -> int:
        """A pidfd for `pid`, or -1 (unsupported, over budget, or the pid is gone)."""
        if self._budget <= 0:
            return -1
        try:
            fd = os.pidfd_open(pid)
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPERM):  # no pidfds here: the old way
                self._pidfds = False
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOSYS, errno.EPERM):
                self._budget = 0
            return -1
        self._budget -= 1
        return fd

    @staticmethod
    def _ended(fd: int) -> bool:
        probe = select.poll()
        probe.register(fd, select.POLLIN)
        return bool(probe.poll(0))

    def _hold(self, info: ProcInfo) -> None:
        self.known[info.pid] = info
        if info.fd >= 0:
            self._by_fd[info.fd] = info.pid
            self._poll.register(info.fd, select.POLLIN)
        else:
            self._unpinned.add(info.pid)

    def _release(self, info: ProcInfo) -> None:
        if info.fd >= 0:
            self._poll.unregister(info.fd)
            del self._by_fd[info.fd]
            os.close(info.fd)
        else:
            self._unpinned.discard(info.pid)

    def close(self) -> None:
        """Let go of every pidfd (the tracker then starts over as on its first cycle)."""
        for info in self.known.values():
            self._release(info)
        self.known.clear()
        self.first = True

    # -- one process ------------------------------------------------------------------
    def _fields(self, pid: int, info: dict[str, Any]) -> dict[str, Any]:
        ticks = info["ticks"]
        proc: dict[str, Any] = {"pid": pid,
                                "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
                                    self.boot + ticks / _TICKS)) + "Z",
                                "entity_id": stable_id(self.host, pid, ticks)[:16],
                                "parent": {"pid": info["ppid"]}}
        if info.get("name"):
            proc["name"] = info["name"]
        args = info.get("cmdline")
        if args:
            proc["args"] = args
            proc["command_line"] = " ".join(args)
        if info.get("cwd"):
            proc["working_directory"] = info["cwd"]
        if info.get("exe"):
            proc["executable"] = info["exe"]
            digest = self.hashes.sm3(info["exe_path"])
            if digest:
                proc["hash"] = {"sm3": digest}
        fields: dict[str, Any] = {"process": proc}
        user: dict[str, Any] = {}
        if "uid" in info:
            user["id"] = str(info["uid"])
            user["name"] = info["username"]
        if user:
            fields["user"] = user
        return fields

    def describe(self, pid: int) -> dict[str, Any] | None:
        """The event fields of process `pid` (known, or read now); None when it is gone."""
        known = self.known.get(pid)
        if known is not None:
            return known.fields
        info = procfs.read_process(pid, self._users)
        return None if info is None else self._fields(pid, info)

    def _discover(self, pid: int) -> ProcInfo | None:
        """Start tracking `pid`; None when it has ended already (or is a zombie)."""
        fd = self._pin(pid)  # first: whatever is read next is this process or it ended
        info = procfs.read_process(pid, self._users)
        if info is not None and fd >= 0 and self._ended(fd):
            info = None  # ended meanwhile: what was read may be a successor's
        if info is None:
            if fd >= 0:
                os.close(fd)
            return None
        return ProcInfo(pid, info["ticks"], self._fields(pid, info), fd)

    def _event(self, info: ProcInfo, action: str, etype: str, ts: float) -> dict[str, Any]:
        proc = info.fields["process"]
        fields = {**info.fields,
                  "message": f"Process {proc.get('name', '?')} (PID: {info.pid}) by user "
                             f"{info.fields.get('user', {}).get('name', '?')} {_VERB[action]}",
                  "event": {"module": "system", "category": ["process"], "type": [etype],
                            "action": action},
                  "host": {"name": self.host}}
        # a process starts and stops once: its identity and the action make the id
        return make_event(DATASET, ts, (self.host, info.pid, info.ticks, action), fields)

    # -- a cycle ----------------------------------------------------------------------------
    def collect(self, ts: float) -> list[dict[str, Any]]:
        listed = procfs.pids()
        known = self.known
        gone = known.keys() - listed
        for fd, _ in self._poll.poll(0):  # a pidfd is readable once its process ended
            gone.add(self._by_fd[fd])
        for pid in self._unpinned - gone:
            if procfs.running_since(pid) != known[pid].ticks:
                gone.add(pid)
        out: list[dict[str, Any]] = []
        for pid in sorted(gone):
            info = known.pop(pid)
            self._release(info)
            out.append(self._event(info, "process_stopped", "end", ts))
        action, etype = ("existing_process", "info") if self.first else \
            ("process_started", "start")
        self.started = []
        new = listed - known.keys()
        if new:
            self._budget = self._fd_budget(len(new))
            self._users.clear()  # user names are looked up again each cycle
        for pid in sorted(new):
            info = self._discover(pid)
            if info is None:
                continue
            self._hold(info)
            self.started.append(pid)
            out.append(self._event(info, action, etype, ts))
        self.first = False
        return out

    def _fd_budget(self, wanted: int) -> int:
        """pidfds that may be opened now: all `wanted` while this tracker holds less than
        half the open-files limit; nearer to it, the limit less what the process holds
        besides its pidfds and less RESERVED_FDS."""
        if not self._pidfds:
            return 0
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return wanted
        held = len(self._by_fd)
        if 2 * (held + wanted) + RESERVED_FDS <= soft:
            return wanted
        others = len(os.listdir("/proc/self/fd")) - held
        return soft - RESERVED_FDS - others - held


def _close_all(by_fd: dict[int, int]) -> None:
    for fd in by_fd:
        try:
            os.close(fd)
        except OSError:
            pass
    by_fd.clear()
