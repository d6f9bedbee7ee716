"""The audit drain of other processes: moves the records that writers opened with
`drain="external"` spool (`AuditTrail`, one slot each) into the event store.

Why another process: the API's workers serve requests on an event loop that shares the
interpreter with any thread of theirs, and a drain thread there (reading batches, building
the store's rows, writing them, reconnecting to a store that is down) competes with it.
`govsoc api serve` with several workers runs this drain in its supervisor, which otherwise
only watches the workers; the workers hold no store connection for the trail, and a
worker that died leaves nothing waiting for a successor. Measured on 2 shared cores
(`bench/api_attrib.py`'s `full` against `full_inline`, alternating rounds): 0-7 % more
requests a second, not more: the drain's CPU stays, wherever it runs.

    drain = AuditDrain.from_config(cfg, name="api")   # or AuditDrain(directory, store)
    drain.start()              # a thread: a pass over every slot, each `interval` seconds
                               # (`audit.drain_interval`: by store, INTERVALS)
    drain.drain_once()         # one pass now: records moved, None when the store failed
                               # (`audit.drain_batch` records a store write, 250)
    drain.close(timeout)       # stop; a last pass moves what the writers left

Each pass takes a slot's drain lock (`Spool.drainer`): a slot whose owner drains itself,
or that another drain holds, is left alone. Guarantees are those of the inline drain: a
batch reaches the store only once it is durable in the spool, the slot's head (head.json)
is saved before the spool is acknowledged, a store that is down keeps every record waiting
on disk, and a record sent twice (a crash between store and acknowledgement) has the same
id and is not stored twice. The drain's state (store down, last error, redacted) is saved
in `<audit dir>/drain.json` for the writers' `status()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from soc_core.audit import (
    ACK_SECONDS,
    DRAIN_STATUS_FILE,
    StoreLink,
    audit_dir,
    check_retention,
    head_of,
    keep_rejected,
    read_back,
    save_head,
)
from soc_core.config import ConfigError
from soc_core.spool import FSYNC_POLICIES, Spool, SpoolError
from soc_core.store import backend_of

__all__ = ["AuditDrain"]


# Seconds between passes once caught up (`audit.drain_interval`), by store; the inline
# drain's is 1 s. Elasticsearch: a pass takes what the workers wrote meanwhile, batch after
# batch, and with the node on the API's 2 cores the ~13 bulks of 1 s of signing at once
# were a burst of the node's work that the signing p99 showed (22.8 ms against 15.6 ms
# at 0.2 s, one run each, `bench/api.py --store es`). SQLite: each pass costs the workers
# (`bench/api_attrib.py`, alternating rounds: 0.2 s served 3,505 requests/s against 3,756
# at 1 s, their CPU a request 501 against 456 µs), so passes stay a second apart.
INTERVALS = {"elasticsearch": 0.2, "sqlite": 1.0}


def default_interval(store: Any) -> float:
    """The pass interval for `store` (an EventStore or a URL)."""
    backend = getattr(store, "backend", None) or backend_of(str(store))
    return INTERVALS.get(backend, 1.0)


class AuditDrain:
    """Drains every slot `<directory>/<name>-<k>` into `store` (an EventStore, a URL or a
    factory; a URL or factory is connected, and reconnected, by the drain)."""

    def __init__(self, directory: str | os.PathLike[str], store: Any, *, name: str = "api",
                 batch: int = 250, interval: float | None = None, retry_max: float = 10.0,
                 fsync: str = "interval") -> None:
        self.root = Path(directory)
        self.name = name
        # the inline drain's 250: on Elasticsearch sharing the API's cores, bulks of 1,000
        # made the node's work come in bursts that the signing p99 showed (29-32 ms, once
        # 294, against 19-20 ms)
        self.batch = batch
        self.interval = default_interval(store) if interval is None else interval
        self.retry_max = retry_max
        self.fsync = fsync
        self.errors: deque[str] = deque(maxlen=100)  # redacted, newest last
        self.down = False
        self.moved = 0  # records stored since start (status, tests)
        self._link = StoreLink(store)
        self._saved_state: tuple[bool, str | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: Any, *, name: str = "api", store: Any = None) -> AuditDrain:
        """The drain of the trails `AuditTrail.from_config(cfg, name=name)` opens: the same
        `audit.dir`, fsync policy and `audit.drain_interval`; the store is `store` or
        `store_url`."""
        check_retention(cfg)
        fsync = str(cfg.get("audit.fsync", "interval"))
        if fsync not in FSYNC_POLICIES:
            raise ConfigError(f"audit trail: fsync policy {fsync!r}")
        interval = cfg.get("audit.drain_interval")
        return cls(audit_dir(cfg),
                   store if store is not None else cfg.store_url, name=name, fsync=fsync,
                   interval=None if interval is None else float(interval),
                   batch=int(cfg.get("audit.drain_batch", 250)))

    # -- one pass ---------------------------------------------------------------------
    def drain_once(self) -> int | None:
        """Every slot drained as far as one pass goes: the records moved, or None when the
        store failed (what it did not take waits on disk)."""
        moved = 0
        for slot in sorted(self.root.glob(f"{self.name}-*")):
            if not slot.is_dir():
                continue
            try:
                n = self._drain_slot(slot)
            except Exception as exc:  # noqa: BLE001 - down or broken: the records wait
                self._failed(exc)
                return None
            moved += n
        self.down = False
        self._save_state()
        return moved

    def _drain_slot(self, slot: Path) -> int:
        """Move a slot's records batch by batch until it is caught up (or a second went:
        the next pass goes on); each batch acknowledged once the store took it."""
        try:
            spool = Spool.drainer(slot, fsync=self.fsync)
        except SpoolError:  # its owner drains it itself, or another drain is at it
            return 0
        moved = 0
        try:
            began = time.monotonic()
            while True:
                recs = spool.peek_many(self.batch)
                if not recs:
                    break
                docs = [d for rec in recs for d in read_back(rec)]
                # durable in the spool first: after a power loss the chain must resume past
                # what the store holds, or it would reuse its ids
                spool.sync_to(recs[-1].segment, recs[-1].end)
                keep_rejected(slot, self._link.write(docs), self.errors)
                save_head(slot, head_of(docs), self.fsync)
                spool.ack_many(recs)
                moved += len(docs)
                self.moved += len(docs)
                if len(recs) < self.batch or time.monotonic() - began >= ACK_SECONDS:
                    break
        finally:
            for damage in spool.corruptions:  # skipped by the spool; named here
                self.errors.append(f"audit spool {slot.name}: {damage}"[:500])
            spool.close()
        return moved

    def _failed(self, exc: Exception) -> None:
        self._link.failed(exc, self.errors)
        self.down = True
        self._save_state()

    def _save_state(self) -> None:
        """drain.json, when the state changed: what the writers' `status()` report."""
        state = (self.down, self.errors[-1] if self.errors else None)
        if state == self._saved_state:
            return
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / (DRAIN_STATUS_FILE + ".tmp")
            tmp.write_text(json.dumps({"store_down": state[0], "last_error": state[1],
                                       "pid": os.getpid()}))
            os.replace(tmp, self.root / DRAIN_STATUS_FILE)
            self._saved_state = state

    # -- the thread -------------------------------------------------------------------
    def start(self) -> AuditDrain:
        self._thread = threading.Thread(target=self._run, name=f"audit-drain-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            moved = self.drain_once()
            if moved is None:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max)
                continue
            backoff = 0.5
            # every slot caught up (or cut at a second): let the next records gather
            self._stop.wait(self.interval if moved < self.batch else 0.05)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread, then drain what is left for up to `timeout` seconds (the
        writers stopped first: their last checkpoints go too); the rest waits on disk."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            moved = self.drain_once()
            if not moved:  # nothing left, or the store failed
                break
        self._link.close()
