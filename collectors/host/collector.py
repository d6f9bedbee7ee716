"""The host collector: one cycle every N seconds over processes, sockets, sessions,
metrics and file integrity, each event handed to a sink (the shipper)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from collectors.host.fim import FileIntegrity
from collectors.host.hashing import HashCache
from collectors.host.metrics import MetricsCollector
from collectors.host.processes import ProcessTracker
from collectors.host.sessions import SessionTracker
from collectors.host.sockets import SocketTracker

log = logging.getLogger("govsoc.host")


class HostCollector:
    def __init__(self, sink: Callable[[dict[str, Any]], Any], *,
                 fim_paths: Iterable[str] = (), state_dir: str | os.PathLike[str] | None = None,
                 host_name: str | None = None, metrics: bool = True,
                 checkpoint: Callable[[Callable[[], Any]], Any] | None = None) -> None:
        self.sink = sink
        self.host = host_name or socket.gethostname()
        self.hashes = HashCache()
        self.processes = ProcessTracker(self.host, self.hashes)
        self.sockets = SocketTracker(self.host, self.processes.describe,
                                     first=lambda p=self.processes: p.started)
        self.sessions = SessionTracker(self.host)
        self.metrics = MetricsCollector(self.host) if metrics else None
        paths = list(fim_paths)
        self.fim = FileIntegrity(
            self.host, paths, self.hashes,
            os.path.join(state_dir, "fim-state.json") if state_dir else None) if paths else None
        self.checkpoint = checkpoint
        self.cycles = 0
        self.counts: Counter = Counter()

    def collect(self) -> Counter:
        """One cycle; returns events per dataset emitted by it."""
        ts = time.time()
        docs: list[dict[str, Any]] = []
        docs += self.processes.collect(ts)
        docs += self.sockets.collect(ts)
        docs += self.sessions.collect(ts)
        if self.metrics is not None:
            docs += self.metrics.collect(ts)
        if self.fim is not None:
            docs += self.fim.collect(ts)
        counts: Counter = Counter()
        for d in docs:
            counts[d["event"]["dataset"]] += 1
            self.sink(d)
        if self.fim is not None:
            # the baseline moves on only once its change events are durable
            if self.checkpoint is not None:
                self.checkpoint(self.fim.save)
            else:
                self.fim.save()
        self.cycles += 1
        self.counts.update(counts)
        return counts

    def run(self, stop: threading.Event, interval: float = 10.0, once: bool = False) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.collect()
            except OSError as exc:  # a cycle that fails is retried at the next interval
                log.warning("host collection cycle failed: %s", exc)
            if once:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        # only a finished run lets go: a run restarted after a failure keeps what it knows
        self.close()

    def close(self) -> None:
        """Give back what the trackers hold open (the process tracker's pidfds)."""
        self.processes.close()


__all__ = ["HostCollector"]
