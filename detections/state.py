"""Detection state, kept in the store (family `state`, dataset `govsoc.state.detection`) so
every engine and every API worker sees the same decisions at once, on either backend.

Two documents, one per writer, so the engine's pass and an analyst's change never contend:

    detection-engine   checkpoints, health, examined, coverage   (written by the leading engine)
    detection-tuning   exceptions, snoozes, disabled              (written by the API and the CLI)

Each is read and replaced with the store's compare-and-set (`EventStore.modify` semantics):
`update(fn)` re-runs `fn` on a fresh copy when another process changed the part meanwhile,
so nothing anyone wrote is lost. The payload is kept as one JSON text, not as fields: its
keys (rule ids, dataset groups like `network.flow,auth`, day numbers) must never become
field names in an Elasticsearch mapping nor be taken for dotted ECS paths.

A state file of an earlier version (`detections-state-<key>.json` in the data directory) is
moved into the store the first time the state of that store is opened."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from soc_core import ecs
from soc_core.config import ConfigError, load_config, sqlite_path
from soc_core.store import EventStore, VersionConflict

log = logging.getLogger(__name__)

DATASET = "govsoc.state.detection"
PARTS = {
    "engine": ("checkpoints", "health", "examined", "coverage"),
    "tuning": ("exceptions", "snoozes", "disabled"),
}
_ATTEMPTS = 100
_migrated: set[str] = set()  # stores whose legacy file was looked for in this process


def empty() -> dict[str, Any]:
    return {"checkpoints": {}, "health": {}, "exceptions": {}, "snoozes": {},
            "disabled": {},  # rule id -> {by, reason, at}: the engine does not run it
            "examined": {},  # rule id -> the earliest time (ms) it examined
            "coverage": {}}  # dataset group -> events examined per day (detections.coverage)


def legacy_path(store: EventStore) -> Path:
    """Where an earlier version kept this store's state as a JSON file."""
    if store.url.startswith("sqlite:///"):
        base = sqlite_path(store.url).parent
    else:
        base = load_config().data_dir
    key = ecs.stable_id(store.url, getattr(store, "namespace", ""))[:16]
    return base / f"detections-state-{key}.json"


def _doc(part: str, section: dict[str, Any]) -> dict[str, Any]:
    return {"@timestamp": ecs.now_iso(),
            "event": {"kind": "state", "dataset": DATASET, "id": f"detection-{part}"},
            "govsoc": {"detection_state": orjson.dumps(section).decode()}}


def _section(doc: dict[str, Any] | None, part: str) -> dict[str, Any]:
    if doc is None:
        return {k: {} for k in PARTS[part]}
    try:
        data = orjson.loads(doc["govsoc"]["detection_state"])
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"detection state document detection-{part} is corrupt: {exc}"
                         ) from exc
    return {k: data.get(k) or {} for k in PARTS[part]}


class DetectionState:
    """`load()` the whole state as one dict; `update(fn)` change it safely. `fn` changes
    one part (the engine's or the tuning's) per call."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    @classmethod
    def for_store(cls, store: EventStore) -> DetectionState:
        state = cls(store)
        state.migrate_legacy()
        return state

    def _read(self) -> tuple[dict[str, Any], dict[str, Any]]:
        data, versions = {}, {}
        for part in PARTS:
            doc, versions[part] = self.store.read_versioned("state", f"detection-{part}")
            data.update(_section(doc, part))
        return data, versions

    def load(self) -> dict[str, Any]:
        return self._read()[0]

    def update(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        """Read, change with `fn`, write back the changed part if nobody changed it
        meanwhile; otherwise again, with the fresher state. Returns what `fn` returned."""
        for _ in range(_ATTEMPTS):
            before, versions = self._read()
            data = orjson.loads(orjson.dumps(before))  # a deep copy `fn` may change
            result = fn(data)
            changed = [p for p, keys in PARTS.items()
                       if any(data.get(k) != before[k] for k in keys)]
            if len(changed) > 1:
                raise ValueError("one detection state update changes one part: "
                                 f"{', '.join(changed)} changed together")
            if not changed:
                return result
            part = changed[0]
            try:
                self.store.write_if(_doc(part, {k: data.get(k) or {} for k in PARTS[part]}),
                                    versions[part])
            except VersionConflict:
                continue
            return result
        raise VersionConflict(f"detection state still contended after {_ATTEMPTS} attempts")

    def migrate_legacy(self) -> bool:
        """Move a state file of an earlier version into the store (once; a store that
        already has state keeps it). The file is renamed `*.migrated`, not deleted."""
        key = f"{self.store.url} {getattr(self.store, 'namespace', '')}"
        if key in _migrated:  # looked at once per process: not at every API request
            return False
        _migrated.add(key)
        try:
            path = legacy_path(self.store)
        except (ConfigError, OSError):
            return False
        try:
            data = {**empty(), **orjson.loads(path.read_bytes())}
        except FileNotFoundError:
            return False
        except orjson.JSONDecodeError as exc:
            log.warning("legacy detection state %s is corrupt, not migrated: %s", path, exc)
            return False
        moved = False
        for part, keys in PARTS.items():
            try:
                self.store.write_if(_doc(part, {k: data.get(k) or {} for k in keys}), None)
                moved = True
            except VersionConflict:  # the store has state already (or another process migrated)
                pass
        os.replace(path, path.with_name(path.name + ".migrated"))
        log.info("detection state moved from %s into the store", path)
        return moved
