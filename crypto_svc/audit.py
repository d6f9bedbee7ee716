"""Audit events of key use: ECS documents in the `audit` family (`event.dataset:
govsoc.audit`), one per use of a key — who, which key and version, which operation, the
outcome and the SM3 digest and size of the input. Never the input, the output or any key
material.

Events are written through an EventStore when one is given. Writing each event on its own
would cap the signing rate at the store's commit rate, so events are queued and written in
batches by a background thread (at most `flush_interval` seconds late) and on `flush()` /
`close()`. Without a store, events stay in memory (the newest `keep` of them) for tests and
for callers that ship them elsewhere.

While the store is down, events wait in memory and are retried. The wait is bounded: with
`max_pending` events waiting, `check()` raises AuditUnavailable and the service refuses key
use (fail closed: no unrecorded use, no memory growing without end).
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from crypto_svc.errors import AuditUnavailable
from soc_core import ecs
from soc_core.config import redact_url

DATASET = "govsoc.audit"
# orders events of one process that share a millisecond (ECS event.sequence)
_SEQUENCE = itertools.count(1)


def key_event(*, action: str, outcome: str, user: str, key_id: str | None = None,
              version: int | None = None, purpose: str | None = None,
              input_sm3: str | None = None, input_bytes: int | None = None,
              reason: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One audit document. `reason` must be a safe text (our own error messages are)."""
    crypto: dict[str, Any] = {"operation": action}
    if key_id is not None:
        crypto["key"] = {"id": key_id, "version": version, "purpose": purpose}
    if input_sm3 is not None:
        crypto["input"] = {"sm3": input_sm3, "bytes": input_bytes}
    if extra:
        crypto.update(extra)
    subject = f"key {key_id}" + (f" v{version}" if version else "") if key_id else "crypto"
    doc: dict[str, Any] = {
        "@timestamp": ecs.format_time(datetime.now(UTC)),
        "event": {"dataset": DATASET, "kind": "event", "id": uuid.uuid4().hex,
                  "action": f"crypto.{action}", "outcome": outcome,
                  "sequence": next(_SEQUENCE),
                  "category": ["configuration"] if action in _KEY_ADMIN else ["process"],
                  "type": ["change"] if action in _KEY_ADMIN else ["access"]},
        "user": {"name": user},
        "message": f"{action} with {subject} by {user}: {outcome}"
                   + (f" ({reason})" if reason else ""),
        "govsoc": {"crypto": crypto},
    }
    if reason:
        doc["event"]["reason"] = reason
    return doc


_KEY_ADMIN = frozenset({"keygen", "rotate", "disable", "enable", "destroy"})


class AuditLog:
    def __init__(self, store: Any = None, *, flush_interval: float = 0.5,
                 batch: int = 1000, keep: int = 10_000, max_pending: int = 100_000) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._in_flight = 0  # taken from _pending by a write still under way
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.errors: deque[str] = deque(maxlen=100)
        self._cv = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        if store is not None:
            self._thread = threading.Thread(target=self._run, name="crypto-audit", daemon=True)
            self._thread.start()

    def check(self) -> None:
        """Raise AuditUnavailable when the backlog of unwritten events is full."""
        if self.store is None:
            return
        with self._cv:
            waiting = len(self._pending) + self._in_flight
        if waiting >= self.max_pending:
            # the store's own error text stays out: it may name the store URL and its user
            raise AuditUnavailable(f"audit events cannot be written to the event store "
                                   f"({waiting} waiting): key use is refused until it recovers")

    def record(self, doc: dict[str, Any]) -> None:
        self.recent.append(doc)
        if self.store is None:
            return
        with self._cv:
            self._pending.append(doc)
            if len(self._pending) >= self.batch:
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                if not self._closed:
                    self._cv.wait(self.flush_interval)
                closed = self._closed
            self.flush()
            if closed:
                return

    def flush(self) -> int:
        """Write what is queued now; returns the number written. A store error keeps the
        events queued for the next try (and is remembered in `errors`)."""
        if self.store is None:
            return 0
        with self._write_lock:
            with self._cv:
                docs, self._pending = self._pending, []
                self._in_flight = len(docs)
            if not docs:
                return 0
            try:
                result = self.store.write(docs)
            except Exception as exc:  # noqa: BLE001 - store down or broken: keep the events
                # (anything escaping here would end the writer thread and drop this batch)
                with self._cv:
                    self._pending[:0] = docs
                    self._in_flight = 0
                self.errors.append(redact_url(f"audit write failed: "
                                                 f"{type(exc).__name__}: {exc}"))
                return 0
            with self._cv:
                self._in_flight = 0
            for rej in result.rejected:
                self.errors.append(redact_url(f"audit event rejected: {rej.reason}"))
            return result.written + result.duplicates

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
