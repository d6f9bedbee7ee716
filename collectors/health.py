"""A collector's own health: counters, the snapshot file `govsoc collect status` reads,
and the `event.kind: metric` document the shipper writes to the store."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from soc_core import ecs

HEALTH_DATASET = "govsoc.collector"
_MAX_REASONS = 100


@dataclass
class Health:
    name: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: str = field(default_factory=lambda: ecs.now_iso())
    events_in: int = 0  # accepted from the source
    events_out: int = 0  # delivered to the store (new or already there)
    duplicates: int = 0  # delivered, and the store already had that id (a redelivery)
    rejected: int = 0  # refused by the store as invalid, with reasons
    spooled: int = 0  # events that went to the disk spool (cumulative)
    drained: int = 0  # events delivered out of the spool (cumulative)
    dropped: int = 0  # lost on purpose: queue or spool full
    errors: int = 0  # failed store writes (each then spooled and retried)
    batches: int = 0  # successful store writes
    largest_batch: int = 0  # documents in the largest of them (grows with a deep queue)
    queued: int = 0  # accepted, in memory, not yet written or spooled
    spool_bytes: int = 0  # not yet delivered, on disk
    spool_corruptions: int = 0
    spool_lost_bytes: int = 0  # in damaged spool regions: found, reported, not delivered
    lag_seconds: float = 0.0  # age of the oldest event not yet delivered
    store_up: bool = True
    last_error: str = ""
    updated: str = ""
    reasons: list[str] = field(default_factory=list)  # why documents were rejected/dropped
    settings: dict[str, Any] = field(default_factory=dict)  # the shipper's configuration
    # the packet ring this collector writes (collectors.packet.ring): writing or stopped, why
    ring: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self._lock:
            if len(self.reasons) < _MAX_REASONS:
                self.reasons.append(reason)

    def snapshot(self) -> dict[str, Any]:
        """Every field, as a new dict (its lists and dicts copied: they hold scalars), with
        `updated` now. (dataclasses.asdict took 40 us where this takes a tenth.)"""
        with self._lock:
            data = {k: getattr(self, k) for k in _FIELDS}
        for k in _CONTAINERS:
            data[k] = data[k].copy()
        data["updated"] = ecs.now_iso()
        return data

    def metric_doc(self) -> dict[str, Any]:
        """The health as a metrics-family ECS document (id: name, host, time)."""
        snap = self.snapshot()
        now = snap["updated"]
        fields = {
            "host": {"name": self.host},
            "event": {"module": "govsoc"},
            "govsoc": {"collector": {
                "name": self.name, "pid": self.pid,
                "events": {k: snap[k] for k in (
                    "events_in", "events_out", "duplicates", "rejected", "spooled",
                    "drained", "dropped")},
                "errors": snap["errors"], "lag_seconds": snap["lag_seconds"],
                "queued": snap["queued"],
                "spool": {"bytes": snap["spool_bytes"],
                          "corruptions": snap["spool_corruptions"]},
                "store_up": snap["store_up"],
            }},
        }
        if snap["ring"]:
            fields["govsoc"]["collector"]["ring"] = snap["ring"]
        return ecs.make_event(HEALTH_DATASET, now, (self.name, self.host, self.pid, now),
                              fields, kind="metric")


REWRITE_S = 10.0
_made: set[Path] = set()  # directories this process made (no mkdir per snapshot)
# path -> (the last snapshot written there, but for `updated`; when; the file's mtime)
_written: dict[Path, tuple[bytes, float, int]] = {}
_FIELDS = tuple(f.name for f in fields(Health))
_CONTAINERS = tuple(f.name for f in fields(Health) if f.default_factory in (list, dict))


def health_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "collectors"


def save_snapshot(data_dir: str | os.PathLike[str], snap: dict[str, Any]) -> Path:
    """Atomically replace `<data_dir>/collectors/<name>.health.json`.

    A snapshot that differs from the one this process last wrote there only by its
    `updated` time is written again only after REWRITE_S seconds (a shipper refreshes every
    2 s; an idle one then costs a stat instead of a file replaced), unless that file was
    removed or replaced meanwhile."""
    d = health_dir(data_dir)
    path = d / f"{snap['name']}.health.json"
    body = orjson.dumps({k: v for k, v in snap.items() if k != "updated"})
    now = time.monotonic()
    last = _written.get(path)
    if last is not None and last[0] == body and now - last[1] < REWRITE_S:
        try:
            if os.stat(path).st_mtime_ns == last[2]:
                return path
        except OSError:
            pass
    if d not in _made:
        d.mkdir(parents=True, exist_ok=True)
        _made.add(d)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_bytes(orjson.dumps(snap, option=orjson.OPT_INDENT_2))
    except FileNotFoundError:  # the directory went away: made again
        d.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(snap, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
    _written[path] = (body, now, os.stat(path).st_mtime_ns)
    return path


def load_snapshots(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    out = []
    for p in sorted(health_dir(data_dir).glob("*.health.json")):
        try:
            out.append(orjson.loads(p.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue
    return out
