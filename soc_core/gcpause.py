"""Pausing Python's cycle collector around work that builds a large, long-lived object
graph: `with cyclic_gc_paused(): ...`.

Why: each time allocations pile up, the collector re-walks every container object still
alive, and work that keeps what it builds (a detection pass's decoded matches, a PDF
engine's box tree) makes those walks longer and more frequent as it goes, for nothing
(it is freed by reference counting, or in one collection at the end).

Measured:
- detections (bench/detect.py): on SQLite, 100,000 events and 100 rules, 11.2 s with the
  collector running (227 young, 20 middle and 1 full collection) against 10.1 s paused,
  the same run alternating; on Elasticsearch engine/raw 1.3x running, 1.2x paused.
- reports (bench/report.py): WeasyPrint rendering the 1,000-asset register, a fifth to a
  quarter of the render went to the collector (see cloud_inventory.reports.render).

Scope: CPython has one collector per process, so other threads (under `govsoc up`, the
collectors, the API) run paused too while one pause lasts. Measured: the `govsoc up`
agent tailing 10,550 log lines and making three host cycles in 30 s with the collector
paused left 0 unreachable objects for the next collection (its events are trees), so the
pause holds no memory back from them. Pauses in several threads nest: the collector
resumes (if it was on) when the last one ends, and collects whatever cycles were made
meanwhile at its next turn.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["cyclic_gc_paused"]

_lock = threading.Lock()
_pauses = 0  # pauses in effect now, in any thread; the collector resumes after the last
_was_enabled = False


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
