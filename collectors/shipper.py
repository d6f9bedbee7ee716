"""Delivery: a bounded queue -> batches -> `EventStore.write`, with a disk spool for when
the store is slow or down.

Sources call `put()` (blocking when the queue is full: back-pressure) and `checkpoint(fn)`
to learn when everything they put before is durable — in the store or in the spool —
so they may persist their read position. A batch the store cannot take goes to the spool;
while the spool holds anything, new batches are appended behind it so order is kept,
and a retry loop drains it oldest first once the store answers again. Event ids are
deterministic, so a batch delivered twice (crash between write and acknowledgement) is
stored once.

Batch size adapts to the queue: a batch is written once it holds `batch_size` documents
and nothing more is waiting, or `flush_interval` seconds after its first document (the
latency bound when the queue is shallow). While more is waiting (a source ahead of the
store) the batch takes it, up to `max_batch_size`: every store commit has a cost that does
not shrink with the batch (SQLite rewrites each random-key index page the commit touched),
so a deep queue drains in fewer, larger commits (`bench/ingest.py --shipper` measures it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import orjson

from collectors.health import HEALTH_DATASET, Health, save_snapshot
from soc_core.config import Config, ConfigError
from soc_core.spool import Spool, SpoolError, SpoolFull
from soc_core.store import EventStore, StoreError, open_store

log = logging.getLogger("govsoc.shipper")

# Failures that mean "not now" rather than "never": the batch is spooled and retried.
TRANSIENT = (StoreError, OSError, ConnectionError, TimeoutError)


@dataclass
class _Marker:
    callback: Callable[[], Any] | None
    done: threading.Event


_STOP = object()

# The `[collectors]` keys a shipper reads: (Shipper argument, config key, type, default).
# One table for `govsoc collect ...` and the `govsoc up` agent alike.
SETTINGS: tuple[tuple[str, str, type, Any], ...] = (
    ("batch_size", "collectors.batch_size", int, 1000),
    ("max_batch_size", "collectors.max_batch_size", int, 20_000),
    ("queue_size", "collectors.queue_size", int, 20_000),
    ("flush_interval", "collectors.flush_interval", float, 1.0),
    ("fsync", "collectors.spool_fsync", str, "interval"),
    ("spool_max_mb", "collectors.spool_max_mb", int, 2048),
)
FSYNC_MODES = ("always", "interval", "never")
_KIND_NAMES = {int: "an integer", float: "a number", str: "a text"}


class Shipper:
    """Deliver documents to a store, at least once, in order, surviving store outages."""

    def __init__(self, store: str | Callable[[], EventStore], *, name: str = "collector",
                 data_dir: str | Path = "data", batch_size: int = 1000,
                 max_batch_size: int | None = 20_000, flush_interval: float = 1.0,
                 queue_size: int = 20_000, fsync: str = "interval",
                 spool_max_bytes: int | None = 2 * 1024**3, metric_interval: float = 30.0,
                 retry_max: float = 10.0, emit_metrics: bool = True) -> None:
        self._connect: Callable[[], EventStore] = (
            (lambda: open_store(store)) if isinstance(store, str) else store)
        self.name = name
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.max_batch_size = max(batch_size, max_batch_size or batch_size)
        self.flush_interval = flush_interval
        self.metric_interval = metric_interval
        self.retry_max = retry_max
        self.emit_metrics = emit_metrics
        self.spool = Spool(self.data_dir / "spool" / name, fsync=fsync,
                           max_bytes=spool_max_bytes)
        # the bounded queue: a deque under one lock. Producers append one item each; the
        # delivery thread takes everything waiting in one go. (queue.Queue took 0.9 us of
        # CPU a put and 0.75 us a get, a tenth of an event's whole delivery into SQLite;
        # this put takes 0.5 us and the take a few ns an item.)
        self._items: deque[Any] = deque()
        # control items (checkpoint markers, stop) waiting: while there are none, a take is
        # all documents and joins the batch in one C call instead of a Python test an item
        self._controls = 0
        self._maxsize = queue_size
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        # what this shipper runs with, as `govsoc collect status` shows it
        self.health = Health(name=name, settings={
            "batch_size": self.batch_size, "max_batch_size": self.max_batch_size,
            "queue_size": self._maxsize, "flush_interval": self.flush_interval,
            "spool_fsync": fsync, "spool_max_bytes": self.spool.max_bytes})
        self._store: EventStore | None = None
        self._retry_at = 0.0  # monotonic time before which the store is not tried again
        self._backoff = 0.5
        self._thread = threading.Thread(target=self._run, name=f"shipper-{name}", daemon=True)
        self._started = False
        self._failure: BaseException | None = None
        self._drain_deadline = 0.0
        self._corruptions_noted = 0

    @classmethod
    def from_config(cls, store: str | Callable[[], EventStore], name: str, cfg: Config,
                    **overrides: Any) -> Shipper:
        """A shipper (not started) for collector `name` with every `[collectors]` setting
        of `cfg` (file and GOVSOC_COLLECTORS_* overrides). Raises ConfigError, naming the
        key, for a value that cannot work."""
        kw: dict[str, Any] = {}
        for arg, key, kind, default in SETTINGS:
            try:
                raw = cfg.get(key, default)
            except ValueError as exc:  # an environment value of the wrong type
                raise ConfigError(f"{key}: {exc}") from None
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: expected {_KIND_NAMES[kind]}, got {raw!r}") from None
            if kind is str:
                if value not in FSYNC_MODES:
                    raise ConfigError(f"{key}: expected one of {', '.join(FSYNC_MODES)}, "
                                      f"got {value!r}")
            elif value <= 0:
                raise ConfigError(f"{key}: must be above 0, got {raw!r}")
            kw[arg] = value
        kw["spool_max_bytes"] = kw.pop("spool_max_mb") * 1024 * 1024
        kw.update(overrides)
        return cls(store, name=name, data_dir=cfg.data_dir, **kw)

    # -- producer side ---------------------------------------------------------------
    def start(self) -> Shipper:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def put(self, doc: dict[str, Any], *, block: bool = True) -> bool:
        """Queue one document. With block=False a full queue drops it (counted)."""
        if self._failure is not None:
            raise RuntimeError(f"shipper {self.name} stopped: {self._failure}")
        with self._lock:  # several sources may share one shipper
            items = self._items
            if len(items) >= self._maxsize:
                if not self._wait_for_room(block):
                    self.health.dropped += 1
                    return False
                items = self._items  # a take while this waited may have replaced it
            items.append(doc)
            self.health.events_in += 1
            if len(items) == 1:  # the delivery thread may be waiting for it
                self._not_empty.notify()
        return True

    def _enqueue(self, item: Any) -> None:
        """A control item (checkpoint marker, stop), in order behind the documents."""
        with self._lock:
            if len(self._items) >= self._maxsize:
                self._wait_for_room(True)
            self._items.append(item)
            self._controls += 1
            self._not_empty.notify()

    def _wait_for_room(self, block: bool) -> bool:
        """With the lock held and the queue full: wait for room (back-pressure)."""
        while block and len(self._items) >= self._maxsize and self._failure is None:
            self._not_full.wait()
        if self._failure is not None:
            raise RuntimeError(f"shipper {self.name} stopped: {self._failure}")
        return len(self._items) < self._maxsize

    def put_many(self, docs: Iterable[dict[str, Any]]) -> None:
        for doc in docs:
            self.put(doc)

    def checkpoint(self, callback: Callable[[], Any] | None = None) -> threading.Event:
        """Run `callback` in the delivery thread once every document put before is in
        the store or on disk in the spool. Returns an Event set at that moment."""
        marker = _Marker(callback, threading.Event())
        self._enqueue(marker)
        return marker.done

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is durable (store or spool)."""
        return self.checkpoint().wait(timeout)

    def close(self, drain_timeout: float = 30.0) -> dict[str, Any]:
        """Deliver what is queued, try to empty the spool for up to `drain_timeout`
        seconds (what remains stays on disk for the next run), stop, and return the
        final health snapshot."""
        if self._started:
            self._drain_deadline = time.monotonic() + drain_timeout
            self._enqueue(_STOP)
            self._thread.join()
        snap = self._refresh_health()
        try:
            save_snapshot(self.data_dir, snap)
        except OSError as exc:
            log.warning("cannot save collector health: %s", exc.strerror)
        self.spool.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._failure is not None:
            raise RuntimeError(f"shipper {self.name} failed: {self._failure}") from self._failure
        return snap

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- delivery thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # keep the reason for close(); never hang producers
            log.exception("shipper %s stopped", self.name)
            with self._lock:
                self._failure = exc
                left, self._items = self._items, deque()
                self._controls = 0
                self._not_full.notify_all()  # blocked producers now see the failure
            for item in left:  # release anyone waiting on a checkpoint
                if isinstance(item, _Marker):
                    item.done.set()

    def _take(self, limit: int, timeout: float) -> tuple[deque[Any] | list[Any], bool]:
        """Up to `limit` waiting items, oldest first, after waiting up to `timeout`
        seconds for the first one, and whether control items may be among them."""
        with self._lock:
            items = self._items
            if not items and timeout > 0:
                self._not_empty.wait(timeout)
                items = self._items
            full = len(items) >= self._maxsize
            if len(items) <= limit:
                self._items = deque()
                taken: deque[Any] | list[Any] = items
            else:
                pop = items.popleft
                taken = [pop() for _ in range(limit)]
            if full:
                self._not_full.notify_all()
            return taken, self._controls > 0

    def _took_control(self) -> None:
        with self._lock:
            self._controls -= 1

    def _loop(self) -> None:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval
        next_health = time.monotonic()
        next_metric = time.monotonic() + self.metric_interval
        stopping = False
        while True:
            now = time.monotonic()
            timeout = max(0.0, min(deadline, next_health) - now)
            if self._spooled() and not stopping:
                timeout = min(timeout, max(0.0, self._retry_at - now), 0.2)
            # what is waiting, in one go (intake keeps pace with a drain); a deep queue
            # grows the batch past batch_size, up to max_batch_size (module docstring)
            taken, controls = self._take(self.max_batch_size - len(batch), timeout)
            if not controls:
                batch.extend(taken)
                taken = ()
            append = batch.append
            for item in taken:
                if item.__class__ is dict:
                    append(item)
                elif item is _STOP:
                    self._took_control()
                    stopping = True
                elif isinstance(item, _Marker):
                    self._took_control()
                    self._deliver(batch)
                    batch = []
                    append = batch.append
                    self.spool.sync()
                    if item.callback is not None:
                        item.callback()
                    item.done.set()
                else:
                    append(item)  # a mapping of another class
            now = time.monotonic()
            # a full batch goes now: either nothing more was waiting or it reached its
            # largest size
            if len(batch) >= self.batch_size or (batch and now >= deadline) or stopping:
                self._deliver(batch)
                batch = []
                deadline = now + self.flush_interval
            elif not batch:
                deadline = now + self.flush_interval
            self._drain(budget=0.5)
            if self.emit_metrics and (now >= next_metric or stopping):
                self._deliver([self.health.metric_doc()], count=False, own=1)
                next_metric = now + self.metric_interval
            if now >= next_health:
                try:
                    save_snapshot(self.data_dir, self._refresh_health())
                except OSError as exc:  # status display is not worth losing events over
                    log.warning("cannot save collector health: %s", exc.strerror)
                next_health = now + 2.0
            if stopping and not self._items:
                while self._spooled() and time.monotonic() < self._drain_deadline:
                    self._drain(budget=1.0)
                    if self._spooled():
                        time.sleep(min(0.5, max(0.0, self._retry_at - time.monotonic())))
                return

    def _deliver(self, batch: list[dict[str, Any]], *, count: bool = True, own: int = 0) -> None:
        if not batch:
            return
        if (not self._spooled() and time.monotonic() >= self._retry_at
                and self._write(batch, own)):
            return
        self._to_spool(batch, count)

    def _spooled(self) -> bool:
        return self.spool.pending_bytes > 0

    def _to_spool(self, batch: list[dict[str, Any]], count: bool) -> None:
        payload = orjson.dumps(batch, default=str)
        try:
            self.spool.append(payload)
        except SpoolFull as exc:
            with self._lock:  # producers count their drops too
                self.health.dropped += len(batch)
            self.health.note(f"dropped {len(batch)} events: {exc}")
            return
        except (SpoolError, OSError) as exc:
            with self._lock:
                self.health.dropped += len(batch)
            self.health.note(f"dropped {len(batch)} events: spool failed: {exc}")
            return
        if count:
            self.health.spooled += len(batch)

    def _write(self, batch: list[dict[str, Any]], own: int | None = None) -> bool:
        """One write attempt; False (store marked down) on a transient failure. `own`:
        how many of the batch are this shipper's health documents (None: count them)."""
        try:
            if self._store is None:
                self._store = self._connect()
            result = self._store.write(batch)
        except TRANSIENT as exc:
            self.health.errors += 1
            self.health.store_up = False
            self.health.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if self.health.errors == 1 or self._backoff >= self.retry_max:
                log.warning("store write failed (%s); spooling", self.health.last_error)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.retry_max)
            if self._store is not None and not isinstance(exc, StoreError):
                self._drop_store()
            return False
        self._backoff = 0.5
        self.health.store_up = True
        if own is None:  # health docs are not traffic
            own = sum(1 for d in batch if _is_own_metric(d))
        self.health.batches += 1
        self.health.largest_batch = max(self.health.largest_batch, len(batch))
        self.health.events_out += result.written + result.duplicates - own
        self.health.duplicates += result.duplicates
        if result.rejected:
            self.health.rejected += len(result.rejected)
            for rej in result.rejected[:10]:
                self.health.note(f"rejected {rej.id or '(no id)'}: {rej.reason}")
        return True

    def _drop_store(self) -> None:
        # closing a broken connection may fail too; it is discarded either way
        with contextlib.suppress(Exception):
            self._store.close()  # type: ignore[union-attr]
        self._store = None

    def _drain(self, budget: float) -> None:
        """Deliver spooled batches oldest first for up to `budget` seconds."""
        end = time.monotonic() + budget
        while time.monotonic() < end and time.monotonic() >= self._retry_at:
            rec = self.spool.peek()
            if rec is None:
                return
            batch = orjson.loads(rec.payload)
            if not self._write(batch):
                return
            self.spool.ack(rec)
            self.health.drained += sum(1 for d in batch if not _is_own_metric(d))

    def _refresh_health(self) -> dict[str, Any]:
        h = self.health
        h.spool_bytes = self.spool.pending_bytes
        h.queued = len(self._items)
        h.spool_corruptions = len(self.spool.corruptions)
        h.spool_lost_bytes = sum(c.skipped_bytes for c in self.spool.corruptions)
        for c in self.spool.corruptions[self._corruptions_noted:]:
            h.note(f"spool damage: {c}")
            log.warning("spool damage: %s", c)
        self._corruptions_noted = len(self.spool.corruptions)
        oldest = self.spool.oldest_ms() if h.spool_bytes else None
        h.lag_seconds = round(max(0.0, time.time() - oldest / 1000), 3) if oldest else 0.0
        return h.snapshot()


def _is_own_metric(doc: dict[str, Any]) -> bool:
    ev = doc.get("event")
    return isinstance(ev, dict) and ev.get("dataset") == HEALTH_DATASET
