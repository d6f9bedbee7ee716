"""Real engine processes for the shared-state tests: `govsoc detect run` over a test's store,
with what each prints collected as it comes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

GOVSOC = str(Path(sys.executable).parent / "govsoc")


def cli_env(store: Any, **extra: str) -> dict[str, str]:
    """The environment of a `govsoc` process on the same store as `store`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    if store.backend != "sqlite":
        env["GOVSOC_ES_NAMESPACE"] = store.namespace
    return env


def govsoc(store: Any, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([GOVSOC, *args, "--store", store.url], capture_output=True,
                          text=True, timeout=300, env=cli_env(store, **env))


class EngineProc:
    """`govsoc detect run` on a schedule, electing a leader with the others on the store."""

    def __init__(self, store: Any, *, interval: float = 0.5, lease_s: float = 3.0) -> None:
        self.proc = subprocess.Popen(
            [GOVSOC, "detect", "run", "--interval", str(interval), "--store", store.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(store, GOVSOC_DETECTIONS_LEASE_S=str(lease_s)))
        self.lines: list[tuple[float, str, str]] = []  # (monotonic, stream, line)
        self._lock = threading.Lock()
        for name in ("out", "err"):
            stream = self.proc.stdout if name == "out" else self.proc.stderr
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self.lines.append((time.monotonic(), name, line.rstrip("\n")))

    def _pass_times(self) -> list[float]:
        """When each pass ended (stdout prints one line a pass)."""
        with self._lock:
            return [t for t, s, line in self.lines if s == "out" and " rules, " in line]

    def passes(self, after: float = 0.0) -> int:
        return sum(1 for t in self._pass_times() if t > after)

    def first_pass_after(self, after: float) -> float | None:
        """When the first pass after `after` ended (None: none yet)."""
        return next((t for t in self._pass_times() if t > after), None)

    def leading_since(self) -> float | None:
        """When this engine last began to lead (None: it does not lead now)."""
        with self._lock:
            changes = [(t, "leads" in line) for t, s, line in self.lines
                       if s == "err" and line.startswith("engine ")]
        return changes[-1][0] if changes and changes[-1][1] else None

    def text(self) -> str:
        with self._lock:
            return "\n".join(f"{s}: {line}" for _, s, line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                # a clean stop finishes the pass under way and releases the lease (tests
                # check that): on a loaded machine a pass over a cluster can outlast 30 s
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(cond: Any, timeout: float, what: str, procs: tuple = ()) -> None:
    """Wait until `cond()`; a liveness bound, never a timing assertion. Fails at once when
    every one of `procs` has exited."""
    deadline = time.monotonic() + timeout

    def diag() -> str:
        return "\n---\n".join(p.text() for p in procs)

    while not cond():
        if time.monotonic() > deadline or (procs and all(p.proc.poll() is not None
                                                          for p in procs)):
            raise AssertionError(f"{what} did not happen within {timeout} s\n"
                                 f"{diag()}")
        time.sleep(0.1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UpProc:
    """`govsoc up` (every service: agent, detection engine, API, ...) over a test's store,
    with its own data directory and API port; its output goes to files under `home`.
    The agent's host collector and heartbeats are slowed to once an hour so that what the
    engines see is the test's events (plus one host snapshot at start)."""

    def __init__(self, store: Any, home: Path, *, interval: int = 1,
                 lease_s: float = 3.0, **extra: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = cli_env(
            store, GOVSOC_STORE_URL=store.url, GOVSOC_DATA_DIR=str(home / "data"),
            GOVSOC_DETECTIONS_INTERVAL=str(interval), GOVSOC_DETECTIONS_LEASE_S=str(lease_s),
            GOVSOC_API_PORT=str(self.port), GOVSOC_API_HOST="127.0.0.1",
            GOVSOC_API_INSECURE_HTTP="1", GOVSOC_COLLECTORS_HOST_INTERVAL="3600",
            GOVSOC_AGENT_HEALTH_INTERVAL="3600", GOVSOC_COLLECTORS_LOGS_AUTH_PATHS="-",
            GOVSOC_COLLECTORS_LOGS_SYSLOG_PATHS="-", GOVSOC_COLLECTORS_LOGS_AUDITD_PATHS="-",
            **extra)
        self.out = open(home / "out.txt", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([GOVSOC, "up"], stdout=self.out, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=home)

    def text(self) -> str:
        return (self.home / "out.txt").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        EngineProc.stop(self)  # type: ignore[arg-type]
        self.out.close()
