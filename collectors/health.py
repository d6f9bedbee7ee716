"""A collector's own health: counters, the snapshot file `govsoc collect status` reads,
and the `event.kind: metric` document the shipper writes to the store."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import asdict, dataclass, field
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
        with self._lock:
            data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
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


def health_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "collectors"


def save_snapshot(data_dir: str | os.PathLike[str], snap: dict[str, Any]) -> Path:
    """Atomically replace `<data_dir>/collectors/<name>.health.json`."""
    d = health_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{snap['name']}.health.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(orjson.dumps(snap, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
    return path


def load_snapshots(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    out = []
    for p in sorted(health_dir(data_dir).glob("*.health.json")):
        try:
            out.append(orjson.loads(p.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue
    return out
