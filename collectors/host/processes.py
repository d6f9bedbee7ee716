"""Process start/stop by polling, in the layout of Auditbeat's system/process dataset.

Every cycle reads only `/proc/<pid>/stat` for each process (pid + start time identify a
process across pid reuse); the full record (psutil: executable, command line, user) is
read once, when a process first appears, and kept for its stop event."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from collectors.host.hashing import HashCache
from soc_core.ecs import make_event, stable_id

DATASET = "system.process"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_time() -> float:
    return psutil.boot_time()


def scan_proc() -> dict[int, int]:
    """pid -> start time in clock ticks since boot, for every process (Linux /proc)."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # exited between listdir and open
        rest = data[data.rfind(b")") + 2:].split(b" ", 20)
        try:
            out[int(name)] = int(rest[19])
        except (IndexError, ValueError):
            continue
    return out


@dataclass
class ProcInfo:
    pid: int
    ticks: int
    fields: dict[str, Any] = field(default_factory=dict)


class ProcessTracker:
    def __init__(self, host: str, hashes: HashCache) -> None:
        self.host = host
        self.hashes = hashes
        self.known: dict[int, ProcInfo] = {}
        self.boot = _boot_time()
        self.first = True

    def _describe(self, pid: int, ticks: int) -> dict[str, Any] | None:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                info = p.as_dict(["ppid", "name", "exe", "cmdline", "username", "uids", "cwd"])
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            info = {}
        proc: dict[str, Any] = {"pid": pid,
                                "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
                                    self.boot + ticks / _TICKS)) + "Z",
                                "entity_id": stable_id(self.host, pid, ticks)[:16]}
        if info.get("ppid") is not None:
            proc["parent"] = {"pid": info["ppid"]}
        if info.get("name"):
            proc["name"] = info["name"]
        args = info.get("cmdline") or []
        if args:
            proc["args"] = args
            proc["command_line"] = " ".join(args)
        if info.get("cwd"):
            proc["working_directory"] = info["cwd"]
        exe = info.get("exe")
        if exe:
            proc["executable"] = exe
            digest = self.hashes.sm3(exe)
            if digest:
                proc["hash"] = {"sm3": digest}
        fields: dict[str, Any] = {"process": proc}
        user: dict[str, Any] = {}
        if info.get("uids"):
            user["id"] = str(info["uids"].real)
        if info.get("username"):
            user["name"] = info["username"]
        if user:
            fields["user"] = user
        return fields

    def _event(self, info: ProcInfo, action: str, etype: str, ts: float) -> dict[str, Any]:
        proc = info.fields["process"]
        verb = {"process_started": "STARTED", "process_stopped": "STOPPED",
                "existing_process": "is RUNNING"}[action]
        fields = {**info.fields,
                  "message": f"Process {proc.get('name', '?')} (PID: {info.pid}) by user "
                             f"{info.fields.get('user', {}).get('name', '?')} {verb}",
                  "event": {"module": "system", "category": ["process"], "type": [etype],
                            "action": action},
                  "host": {"name": self.host}}
        # a process starts and stops once: its identity and the action make the id
        return make_event(DATASET, ts, (self.host, info.pid, info.ticks, action), fields)

    def collect(self, ts: float) -> list[dict[str, Any]]:
        now = scan_proc()
        out: list[dict[str, Any]] = []
        for pid, old in list(self.known.items()):
            if now.get(pid) != old.ticks:
                del self.known[pid]
                out.append(self._event(old, "process_stopped", "end", ts))
        for pid, ticks in now.items():
            if pid in self.known:
                continue
            fields = self._describe(pid, ticks)
            if fields is None:
                continue
            info = ProcInfo(pid, ticks, fields)
            self.known[pid] = info
            if self.first:
                out.append(self._event(info, "existing_process", "info", ts))
            else:
                out.append(self._event(info, "process_started", "start", ts))
        self.first = False
        return out
