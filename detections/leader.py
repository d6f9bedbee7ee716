"""One leader per rule set among any number of engines over one store.

The leader holds a lease: a state document (`govsoc.state.lease`, id `lease:<name>`) it
rewrites every `ttl/3` seconds with the store's compare-and-set. A follower polls it every
`ttl/4` and takes it over (compare-and-set on the version it saw) once that version has not
changed for `ttl` seconds of the follower's own clock — so clocks of different hosts never
need to agree — or at once when the leader released it on a clean stop.

The leader counts itself leader only until `ttl × 0.8` after the start of its last
successful renewal; a follower cannot take over before `ttl` after it saw that renewal, so
two engines never both believe they lead. Windows are never missed (the next leader starts
from the stored checkpoints) nor alerts doubled (alerts have deterministic ids and are
recomputed whole); an engine that loses its lease mid-pass drops the pass unsaved
(`Engine.fence`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from detections.engine import Engine, LeaseLost, RunSummary
from soc_core import ecs
from soc_core.store import EventStore, Selection, StoreError, VersionConflict, open_store

log = logging.getLogger(__name__)

DATASET = "govsoc.state.lease"
SAFETY = 0.8  # the leader stops trusting its lease this far into the ttl


def ruleset_name(engine: Engine) -> str:
    """The rule set an engine runs, named by the ids of its runnable rules: engines with
    the same packs compete for one lease, engines with other packs lead their own."""
    ids = sorted(r.id for r in engine.pack.runnable(engine.backend)
                 if r.is_correlation or r.generate)
    return "detections:" + ecs.stable_id(*ids)[:16]


def leaders(store: EventStore) -> list[dict[str, Any]]:
    """Every rule set's lease as last written: name, holder (None: released), term, ttl_s,
    and when it was written (`renewed`); for health views."""
    store.refresh()
    sel = Selection(family="state", dataset=DATASET)
    return [{**d["govsoc"]["lease"], "renewed": d["@timestamp"]} for d in store.scan(sel)]


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(self, store: EventStore, name: str, *, ttl_s: float = 10.0,
                 holder: str | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("lease ttl must be positive")
        self.store, self.name, self.ttl = store, name, float(ttl_s)
        self.holder = holder or holder_id()
        self.id = "lease:" + name
        self._valid_until = 0.0  # monotonic; > now: we lead
        self._seen: tuple[Any, float] | None = None  # (version, monotonic when first seen)
        self._lock = threading.Lock()

    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def _doc(self, term: int, holder: str | None) -> dict[str, Any]:
        return {"@timestamp": ecs.now_iso(),
                "event": {"kind": "state", "dataset": DATASET, "id": self.id},
                "govsoc": {"lease": {"name": self.name, "holder": holder, "term": term,
                                     "ttl_s": self.ttl}}}

    def try_acquire(self) -> bool:
        """Take or renew the lease if it is ours to take; returns whether we lead now."""
        with self._lock:
            started = time.monotonic()
            try:
                doc, version = self.store.read_versioned("state", self.id)
                lease = (doc or {}).get("govsoc", {}).get("lease") or {}
                if doc is not None and lease.get("holder") not in (None, self.holder):
                    if self._seen is None or self._seen[0] != version:
                        self._seen = (version, started)  # the leader is alive: wait
                        return self.held()
                    if started - self._seen[1] < self.ttl:
                        return self.held()
                    log.warning("lease %s: %s stopped renewing, taking over", self.name,
                                lease.get("holder"))
                term = int(lease.get("term", 0)) + (lease.get("holder") != self.holder)
                self.store.write_if(self._doc(term, self.holder), version)
            except VersionConflict:
                self._seen = None
                self._valid_until = 0.0
                return False
            except StoreError as exc:  # the store is down: our lease runs out by itself
                log.warning("lease %s not renewed: %s", self.name, exc)
                return self.held()
            self._seen = None
            self._valid_until = started + self.ttl * SAFETY
            return True

    def release(self) -> None:
        """Hand the lease over at once (a clean stop): followers need not wait out the ttl."""
        with self._lock:
            self._valid_until = 0.0
            try:
                doc, version = self.store.read_versioned("state", self.id)
                lease = (doc or {}).get("govsoc", {}).get("lease") or {}
                if lease.get("holder") == self.holder:
                    self.store.write_if(self._doc(int(lease.get("term", 0)), None), version)
            except StoreError as exc:  # VersionConflict included: someone else has it already
                log.info("lease %s not released: %s", self.name, exc)

    def keep(self, stop: threading.Event, on_change: Callable[[bool], None] | None = None
             ) -> threading.Thread:
        """A thread that renews the lease (every ttl/3) or waits to take it (every ttl/4)
        until `stop`, then releases it."""
        def loop() -> None:
            leading = False
            try:
                while not stop.is_set():
                    now = self.try_acquire()
                    if now != leading and on_change is not None:
                        on_change(now)
                    leading = now
                    stop.wait(self.ttl / (3 if now else 4))
            finally:
                self.release()

        t = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        t.start()
        return t


def run_scheduled(engine: Engine, stop: threading.Event, interval: float, *,
                  ttl_s: float = 10.0, on_pass: Callable[[RunSummary], None] | None = None,
                  on_change: Callable[[bool], None] | None = None,
                  first: dict[str, Any] | None = None) -> None:
    """Run passes every `interval` seconds while this engine leads its rule set, until
    `stop`. `first`: keyword arguments of the first pass this engine leads (backfill)."""
    store = engine.store
    # SQLite: a connection of the lease's own, so a long query of the pass (which holds
    # the engine's connection) never delays a renewal; Elasticsearch clients are pooled
    own = open_store(store.url, departments=[]) if store.backend == "sqlite" else None
    lease = Lease(own or store, ruleset_name(engine), ttl_s=ttl_s)
    engine.fence, engine.name = lease.held, lease.holder
    halt = threading.Event()  # ours: `stop` may be shared with other services
    keeper = lease.keep(halt, on_change)
    pending = dict(first or {})
    try:
        while not stop.is_set():
            if not lease.held():
                stop.wait(min(1.0, lease.ttl / 4))
                continue
            t0 = time.monotonic()
            try:
                summary = engine.run_once(**pending)
            except LeaseLost as exc:
                log.warning("%s", exc)
                continue
            except StoreError as exc:  # store down: retry next period, checkpoints hold
                log.warning("detection pass failed: %s", exc)
            else:
                pending = {}
                if on_pass is not None:
                    on_pass(summary)
            stop.wait(max(0.0, interval - (time.monotonic() - t0)))
    finally:
        halt.set()
        keeper.join()
        if own is not None:
            own.close()
