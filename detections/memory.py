"""The detection engine over matches found in memory (`govsoc hunt`).

`Matches` is an import sink: every event goes through the `Evaluator` once and the events a
rule matches are kept per rule. `MemoryEngine` is the store-backed `Engine` with one change:
a rule's events in a window come from those matches instead of a store query. Everything
after the match (exceptions, suppression buckets, grouping, correlations, alert documents,
checkpoints) is the engine's own code, so a hunt raises what `detect run` would.

`hunt_rules(paths, backend)` loads a pack and compiles it for the evaluator, through a
cache keyed by the rules' content: SigmaHQ's Windows tree takes ~15 s to load and compile,
a cached copy ~2 s.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detections.engine import Engine, _doc_order, _doc_ts
from detections.evaluator import Compiled, Evaluator, compile_rules
from detections.rules import RulePack, load_pack, rule_files
from soc_core import ecs
from soc_core.records import SourceRecord, UnmatchedRecords
from soc_core.store import Rejected, WriteResult

CACHE_VERSION = 1
CACHE_KEEP = 8  # compiled rule sets kept (one per set of rule files in use)


class Matches:
    """Import sink: each event (an ECS document or a `SourceRecord`) evaluated once; the
    matched events kept per rule id (and `UnmatchedRecords` only counted)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.by_rule: dict[str, list[dict[str, Any]]] = {}
        self.events: dict[str, dict[str, Any]] = {}  # every matched event, by id
        self.seen: set[str] = set()
        self.read = 0  # events handed in, duplicates too: their position names their file
        self.positions: dict[str, list[int]] = {}  # matched event id -> where it was read

    def __call__(self, event: dict[str, Any] | SourceRecord) -> None:
        self.feed((event,))

    def feed(self, events: Iterable[dict[str, Any] | SourceRecord]) -> None:
        """`self(event)` for each of `events`, in order (one call for a batch: a hunt
        feeds every record through here)."""
        seen, positions, match = self.seen, self.positions, self.evaluator.match
        pos = self.read
        for event in events:
            if type(event) is UnmatchedRecords:  # no rule matches them: kept as seen
                ids = event.ids
                if positions.keys().isdisjoint(ids):
                    seen.update(ids)
                    pos += len(ids)
                    continue
                for eid in ids:  # some are copies of matched events: where they were read
                    if eid in positions:
                        positions[eid].append(pos)
                    seen.add(eid)
                    pos += 1
                continue
            record = isinstance(event, SourceRecord)
            eid = event.id if record else event["event"]["id"]
            if eid in seen:  # the same record twice: the store would keep one
                if eid in positions:
                    positions[eid].append(pos)
                pos += 1
                continue
            seen.add(eid)
            hit = match(event)
            if hit:
                rules = self.evaluator.rules
                if record:  # the event itself, built for the records a rule keeps
                    event = event.event()
                self.events[eid] = event
                positions[eid] = [pos]
                for i in hit:
                    self.by_rule.setdefault(rules[i].id, []).append(event)
            pos += 1
        self.read = pos

    @property
    def count(self) -> int:
        """Distinct events handed in."""
        return len(self.seen)

    def finish(self) -> None:
        """In the stores' order (time, then id), as the engine reads a query's result."""
        for docs in self.by_rule.values():
            docs.sort(key=_doc_order)


class AlertTable:
    """The alerts of a hunt whose store is thrown away when it ends: kept in memory, read
    and written (compare-and-set) as a store answers `read_versioned_many` and
    `write_many_if`, each checked and completed by `ecs.prepare` as a store keeps it.
    Writing them into the scratch store and reading them back was about a tenth of a
    hunt's CPU (its indexes, full-text index and JSON both ways)."""

    def __init__(self, departments: Any = None) -> None:
        self._docs: dict[str, tuple[dict[str, Any], int]] = {}  # id -> (alert, version)
        # stamped with their departments as the store would (`EventStore.departments`)
        self._stamp = departments.stamp_prepared if departments else None

    def read_versioned_many(self, family: str, ids: Iterable[str]
                            ) -> dict[str, tuple[dict[str, Any], int]]:
        if family != "alerts":
            raise ValueError(f"an alert table holds alerts, not {family}")
        docs = self._docs
        return {i: docs[i] for i in ids if i in docs}

    def write_many_if(self, pairs: Iterable[tuple[dict[str, Any], Any]], *,
                      refresh: bool = False) -> WriteResult:
        result = WriteResult()
        docs = self._docs
        for doc, version in pairs:
            try:
                prepared = ecs.prepare(doc)
            except (ecs.EventError, ValueError, TypeError, OverflowError) as exc:
                result.rejected.append(Rejected(None, str(exc), doc))
                continue
            if self._stamp is not None:
                prepared = self._stamp(prepared)
            if prepared.family != "alerts":
                result.rejected.append(Rejected(prepared.id, "not an alert", doc))
                continue
            held = docs.get(prepared.id)
            if (held[1] if held else None) != version:
                result.conflicts.append(prepared.id)
                continue
            docs[prepared.id] = (prepared.doc, held[1] + 1 if held else 1)
            result.written += 1
        return result

    def alerts(self) -> list[dict[str, Any]]:
        return [doc for doc, _ in self._docs.values()]


class MemoryEngine(Engine):
    """`Engine` reading each rule's matches from `Matches` instead of querying the store;
    with `alerts`, keeping its alerts there instead of in the store."""

    def __init__(self, store: Any, pack: RulePack, matches: Matches, *,
                 alerts: AlertTable | None = None, **kw: Any) -> None:
        super().__init__(store, pack, **kw)
        if alerts is not None:
            self.alert_store = alerts
        self._matches = matches
        times: dict[str, list[int]] = {}
        for doc in matches.events.values():
            times.setdefault(doc["event"]["dataset"], []).append(_doc_ts(doc))
        self._times = {ds: sorted(ts) for ds, ts in times.items()}

    def _fetch(self, rule: Any, start: int, end: int) -> list[dict[str, Any]]:
        docs = self._matches.by_rule.get(rule.id, [])
        lo = bisect.bisect_left(docs, start, key=_doc_ts)
        hi = bisect.bisect_left(docs, end, lo=lo, key=_doc_ts)
        out = docs[lo:hi]
        self._check_noise(out)
        return out

    def _oldest(self, datasets: tuple[str, ...] | None, before: int | None = None,
                after: int | None = None) -> int | None:
        # the next matched event: a slice without one raises nothing, so skipping to it
        # is what slicing over the store does for the events a rule reads
        best = None
        for ds, ts in self._times.items():
            if datasets and ds not in datasets:
                continue
            i = bisect.bisect_left(ts, after) if after is not None else 0
            if i < len(ts) and (before is None or ts[i] < before):
                best = ts[i] if best is None else min(best, ts[i])
        return best


def _cache_dir() -> Path:
    base = os.environ.get("GOVSOC_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or \
        str(Path.home() / ".cache")
    return Path(base) / ("" if os.environ.get("GOVSOC_CACHE_DIR") else "govsoc") / "hunt"


def _key(files: list[Path], backend: str) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}\0{backend}\0".encode())
    here = Path(__file__).resolve().parent
    # the code that loads and compiles is part of what the cache holds
    for mod in ("rules.py", "evaluator.py", "pipelines.py", "backends.py", "logsources.py"):
        h.update((here / mod).read_bytes())
    for f in files:
        h.update(str(f).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:32]


def hunt_rules(paths: Iterable[str | Path], backend: str, *, cache: bool = True
               ) -> tuple[RulePack, list[Compiled], dict[str, str]]:
    """The pack, its query rules compiled for the evaluator, and the rules the evaluator
    cannot express (id -> why); cached by the rule files' content (`GOVSOC_CACHE_DIR`,
    default ~/.cache/govsoc/hunt)."""
    paths = [str(p) for p in paths]
    files = rule_files(paths)
    path = _cache_dir() / f"{_key(files, backend)}.pickle" if cache else None
    if path is not None and path.is_file():
        try:
            with path.open("rb") as fh:
                found = pickle.load(fh)
            os.utime(path)  # used now: kept by `_prune` before older entries
            return found
        except Exception:  # a damaged or foreign cache entry: rebuild it
            pass
    pack = load_pack(paths, backends=[backend])
    compiled, errors = compile_rules(r for r in pack.runnable(backend) if not r.is_correlation)
    out = (pack, compiled, errors)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
            _prune(path.parent, CACHE_KEEP)
        except OSError:  # a read-only home: hunt runs, uncached
            pass
    return out


def _prune(folder: Path, keep: int) -> None:
    """Remove all but the `keep` most recently used entries: each change of a rule file
    (or of this code) makes a new one of ~20 MB, and the old ones are never read again."""
    entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)

