"""The live alert queue: what consoles learn of alert changes without a reload.

A change an API worker makes (transition, assign, note, bulk) is published at once to the
consoles that worker serves (`AlertFeed`, in process: no store round trip; a waiting stream
is woken at once, so another analyst's open queue shows an acknowledgement as soon as it is
stored). Changes made
through another worker or machine reach them from the store: each stream asks, every
`console.live_poll_seconds` (default 2), for alerts whose `govsoc.alert.changed` (set by
detections.workflow on every analyst change) is newer than what it has seen.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

MAX_KEPT = 2000  # changes a slow stream can still catch up on


class AlertFeed:
    """The alert changes of this process, numbered; `since(n)` gives those after n."""

    def __init__(self) -> None:
        self.seq = 0
        self.items: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_KEPT)
        self.lock = threading.Lock()
        # streams waiting for the next change: their loop and event (publish runs in a
        # worker thread, the streams in the event loop)
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def publish(self, docs: list[dict[str, Any]]) -> None:
        with self.lock:
            for doc in docs:
                self.seq += 1
                self.items.append((self.seq, doc))
            waiting = list(self.waiters)
        for loop, event in waiting:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed: its stream is gone
                pass

    async def wait(self, after: int, timeout: float) -> None:
        """Until there is a change after `after`, or `timeout` seconds: a stream sends a
        change the moment this worker makes it, instead of at its next look."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self.lock:
            if self.seq > after:
                return
            self.waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), max(timeout, 0))
        except TimeoutError:
            pass
        finally:
            with self.lock:
                self.waiters.discard(waiter)

    def since(self, n: int) -> tuple[int, list[dict[str, Any]]]:
        with self.lock:
            return self.seq, [d for s, d in self.items if s > n]


_FEED_LOCK = threading.Lock()


def feed(app: Any) -> AlertFeed:
    """The app's feed (one per API worker)."""
    got = getattr(app.state, "alert_feed", None)
    if got is None:
        with _FEED_LOCK:
            got = getattr(app.state, "alert_feed", None)
            if got is None:
                got = app.state.alert_feed = AlertFeed()
    return got


def publish(request: Any, docs: list[dict[str, Any]]) -> None:
    """Tell this worker's open consoles about changed alerts (the documents as stored)."""
    if docs:
        feed(request.app).publish(docs)
