"""Detection state that must survive a restart: per-rule checkpoints and health, exceptions
and snoozes. One small JSON file per store in the data directory, replaced atomically
under a file lock, so the scheduler and a CLI command can both update it safely. It works
the same whichever backend holds the events."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from soc_core import ecs
from soc_core.config import load_config, sqlite_path
from soc_core.store import EventStore


def state_path(store: EventStore) -> Path:
    if store.url.startswith("sqlite:///"):
        base = sqlite_path(store.url).parent
    else:
        base = load_config().data_dir
    key = ecs.stable_id(store.url, getattr(store, "namespace", ""))[:16]
    return base / f"detections-state-{key}.json"


def empty() -> dict[str, Any]:
    return {"checkpoints": {}, "health": {}, "exceptions": {}, "snoozes": {},
            "examined": {},  # rule id -> the earliest time (ms) it examined
            "coverage": {}}  # dataset group -> events examined per day (detections.coverage)


class DetectionState:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_store(cls, store: EventStore) -> DetectionState:
        return cls(state_path(store))

    def load(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return empty()
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"detection state {self.path} is corrupt: {exc}") from exc
        base = empty()
        base.update(data)
        return base

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        """Read, change with `fn`, write back atomically (temp file + rename)."""
        with self._locked():
            data = self.load()
            result = fn(data)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            os.replace(tmp, self.path)
            return result
