"""Live capture across cores: N worker processes, each with its own packet socket in one
PACKET_FANOUT group with the flow hash, as Zeek and Suricata clusters do. The kernel's
hash is symmetric, so every packet of a flow, both directions, reaches the same worker,
which builds the whole flow record. Processes, not threads: decoding is Python and one
interpreter runs on one core at a time.

Each worker delivers its own events (`make_sink(i)` runs in the worker and returns the
sink and a function that flushes it at the end) and reports its own LiveStats, kernel
drops included. `ready` is set only once every worker has joined the group: a flow that
starts while the group grows could be hashed to one worker and then to another.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from collectors.packet.live import LiveStats, capture
from collectors.packet.stats import CaptureError

Sink = Callable[[dict[str, Any]], None]


def capture_workers(iface: str, bpf: str | None, workers: int, stop_event: threading.Event,
                    make_sink: Callable[[int], tuple[Sink, Callable[[], Any]]], *,
                    netns: str | None = None, promisc: bool = False,
                    ready: threading.Event | None = None,
                    make_ring: Callable[[int], Any] | None = None
                    ) -> list[tuple[LiveStats, Any]]:
    """Capture on `iface` with `workers` processes until `stop_event` is set; returns, for
    each worker in order, its LiveStats and what its sink's flush returned. Raises
    CaptureError (one line) if a worker cannot capture; the others are stopped.
    `make_ring(i)`, if given, runs in worker i (after `make_sink(i)`) and returns its
    packet ring (collectors.packet.ring.PacketRing): each worker writes its own files."""
    if workers < 1:
        raise CaptureError(f"workers must be at least 1, not {workers}")
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    results = ctx.Queue()
    readies = [ctx.Event() for _ in range(workers)]
    group = os.getpid() & 0xFFFF  # one group per capture on this host
    procs = [ctx.Process(target=_worker, name=f"live-worker-{i}", daemon=True,
                         args=(i, iface, bpf, group, netns, promisc, make_sink, stop,
                               readies[i], results, make_ring))
             for i in range(workers)]
    for p in procs:
        p.start()
    out: dict[int, tuple[LiveStats, Any]] = {}
    error = None
    try:
        announced = False
        while len(out) < workers and error is None:
            if not announced and all(r.is_set() for r in readies):
                announced = True
                if ready is not None:
                    ready.set()
            if stop_event.is_set():
                stop.set()
            try:
                i, kind, value = results.get(timeout=0.2)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
                continue
            if kind == "error":
                error = value
            else:
                out[i] = value
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
    if error:
        raise CaptureError(error)
    missing = [i for i in range(workers) if i not in out]
    if missing:
        raise CaptureError(f"live capture worker {missing[0]} ended without a report")
    return [out[i] for i in range(workers)]


def _worker(i: int, iface: str, bpf: str | None, group: int, netns: str | None,
            promisc: bool, make_sink, stop, ready, results, make_ring=None) -> None:
    # the parent turns Ctrl-C / SIGTERM into `stop`; the worker ends through it only
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sink, finish = make_sink(i)
        try:
            ring = make_ring(i) if make_ring is not None else None
            # capture only calls is_set() / set(): the process-shared Events do
            stats = capture(iface, bpf, stop, sink, netns=netns, promisc=promisc,
                            ready=ready, fanout=group, ring=ring)
        finally:
            flushed = finish()
    except CaptureError as exc:
        ready.set()
        results.put((i, "error", str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        ready.set()
        results.put((i, "error", f"live capture worker {i}: {type(exc).__name__}: {exc}"))
        return
    results.put((i, "stats", (stats, flushed)))

