"""The live alert queue: what consoles learn of alert changes without a reload.

A change an API worker makes (transition, assign, note, bulk) is published at once to the
consoles that worker serves (`AlertFeed`, in process: no store round trip, so another
analyst's open queue shows an acknowledgement within the stream's tick). Changes made
through another worker or machine reach them from the store: each stream asks, every
`console.live_poll_seconds` (default 2), for alerts whose `govsoc.alert.changed` (set by
detections.workflow on every analyst change) is newer than what it has seen.
"""

from __future__ import annotations

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

    def publish(self, docs: list[dict[str, Any]]) -> None:
        with self.lock:
            for doc in docs:
                self.seq += 1
                self.items.append((self.seq, doc))

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
