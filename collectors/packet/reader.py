"""`read_pcaps`: capture files -> ECS events through the fast or the tshark engine."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from collectors.packet.events import EventBuilder
from collectors.packet.pcapfile import open_capture
from collectors.packet.session import Session
from collectors.packet.stats import CaptureError, CaptureStats

ENGINES = ("fast", "tshark")
Progress = Callable[[int, int], None]


def read_pcaps(paths: Iterable[str | os.PathLike], engine: str = "fast",
               progress: Progress | None = None, *, ring: Any = None, **table_opts: Any,
               ) -> tuple[Iterator[dict[str, Any]], CaptureStats]:
    """Events of the given captures and the stats filled while they are consumed.

    Every file is opened and checked before the first event (CaptureError otherwise),
    so a bad path fails the whole command before anything is written. Each file has
    its own flow table: its events' ids derive from that file's content identity.
    `table_opts` go to FlowTable (active_timeout, idle, max_flows, sweep_every).
    `ring` (collectors.packet.ring.PacketRing, fast engine only): the packets are also
    written to the packet ring and each flow event says where (frame by frame, slower
    than the plain fast path); the same event ids as without it."""
    if engine not in ENGINES:
        raise CaptureError(f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    if ring is not None and engine != "fast":
        raise CaptureError("the packet ring is written by the fast engine only")
    caps = [open_capture(p) for p in paths]
    if engine == "tshark":
        from collectors.packet.tshark import check_tshark

        check_tshark()
    stats = CaptureStats()
    return _events(caps, engine, progress, stats, table_opts, ring), stats


def _events(caps, engine, progress, stats, table_opts, ring=None
            ) -> Iterator[dict[str, Any]]:
    total = sum(c.size for c in caps)
    done = 0
    t0 = time.perf_counter()
    try:
        for cap in caps:
            stats.files += 1
            session = Session(EventBuilder(cap.identity, cap.path.name), stats, **table_opts)
            cb = (lambda pos, base=done: progress(base + pos, total)) if progress else None
            if ring is not None:
                yield from _ring_file(cap, session, ring, cb)
            elif engine == "fast":
                from collectors.packet.fast import run_file

                yield from run_file(cap, session, cb)
            else:
                from collectors.packet.tshark import run_file as run_tshark

                yield from run_tshark(cap, session, cb)
            session.finish()
            yield from session.drain()
            done += cap.size
            if progress:
                progress(done, total)
            cap.close()
    finally:
        for cap in caps:
            cap.close()
        stats.elapsed = time.perf_counter() - t0
        if ring is not None:
            ring.close()


def _ring_file(cap, session: Session, ring: Any, progress) -> Iterator[dict[str, Any]]:
    """The fast engine frame by frame (as live capture runs it), each frame also written
    to the packet ring."""
    from collectors.packet.fast import Inspector

    frame = Inspector(session).frame
    write, buf = ring.write, cap.buf
    out, drain = session.out, session.drain
    next_tick = 0.0
    for n, (ts, linktype, start, end) in enumerate(cap.frames(session.stats)):
        write(int(ts * 1_000_000 + 0.5), buf[start:end], frame(ts, linktype, buf, start, end),
              linktype)
        if out:
            yield from drain()
        if not n & 0xFFFF:
            now = time.time()
            if now >= next_tick:
                next_tick = now + 1.0
                ring.tick(now)
                if progress:
                    progress(start)
