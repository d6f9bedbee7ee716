"""Source records whose ECS event is built only when asked for.

An importer that knows which of its event's fields it can read straight from the source
record hands a `SourceRecord` instead of the event to a sink that accepts them (`govsoc
hunt`): the sink matches rules against `fields` and builds the whole event (`event()`)
only for the records it keeps. A hunt over 400,000 EVTX records keeps a few percent.

The contract an importer's subclass must keep (its tests hold it to it):
- `dataset`, `id` and `timestamp` are the event's `event.dataset`, `event.id` and
  `@timestamp` (in the stored form, `ecs.format_time`'s: fixed width, so the text order of
  timestamps is their time order);
- `get(path)` is what the event holds at that dotted path (None: nothing there), read
  from the record without building the event for the paths `covers` accepts;
- `fill(into)`, when it returns True, has put exactly the covered paths `get` answers with
  a value, with that value;
- `candidates`, when not None, names the only rules (the evaluator's indexes) left to
  evaluate on the record, and `matched` those already found true, as a prefilter that
  read the record before it became this object worked out (`detections.prefilter`);
  None: any rule may match;
- `scan_text()` is JSON text that holds `"<leaf>":<value>` (the value as JSON) for every
  covered field the event has, `<leaf>` being the path's last segment: what a prefilter
  looking for a field's literals in the event's JSON finds there too.

Records a prefilter read and found no rule for may reach such a sink together, as one
`UnmatchedRecords`: their dataset, ids in the order read, and the earliest and latest of
their timestamps. The sink counts them and keeps their ids (a later copy of one is a
duplicate), nothing more: most of a hunt's records arrive so.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SourceRecord", "UnmatchedRecords"]


class SourceRecord:
    """One source record: some fields now, the whole ECS event on demand (cached)."""

    __slots__ = ("dataset", "id", "timestamp", "_event", "candidates", "matched")

    # the paths a subclass's `get` answers without the event: exact paths and path
    # prefixes (ending in ".")
    COVERED: frozenset[str] = frozenset()
    COVERED_PREFIXES: tuple[str, ...] = ()

    def __init__(self, dataset: str, id: str, timestamp: str) -> None:
        self.dataset = dataset
        self.id = id
        self.timestamp = timestamp
        self._event: dict[str, Any] | None = None
        self.candidates: list[int] | tuple[int, ...] | None = None
        self.matched: list[int] | tuple[int, ...] = ()

    @classmethod
    def covers(cls, path: str) -> bool:
        return path in cls.COVERED or path.startswith(cls.COVERED_PREFIXES)

    def event(self) -> dict[str, Any]:
        if self._event is None:
            self._event = self.build()
        return self._event

    def get(self, path: str) -> Any:
        node: Any = self.event()
        for part in path.split("."):
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    # covered paths whose values `shape()` determines (see there)
    SHAPED: frozenset[str] = frozenset()

    @classmethod
    def shape_layout(cls, shape: Any) -> tuple[tuple[Any, ...], tuple[str, ...],
                                                tuple[str, ...] | None,
                                                tuple[str, ...]] | None:
        """For a `shape()` of this class: the `SHAPED` values it fixes (in the order of
        the `fill` paths), the names of the record's data block and of its user-data
        block (None: it has none) in their order, and every path `fill` puts, in order;
        None when this class cannot say."""
        return None

    def shape(self) -> Any:
        """None, or a hashable naming what records of this class share when it is equal:
        the same `dataset`, the same values at the `SHAPED` paths, and a `fill` that
        succeeds and puts the same paths (values aside). A matcher keys its per-group
        work by it without reading the record's fields."""
        return None

    def fill(self, into: dict[str, Any]) -> bool:
        """Put every covered path the record holds into `into` (path -> the value `get`
        gives; a covered path not put there is absent) and return True; or put nothing
        and return False: then ask `get` path by path."""
        return False

    def build(self) -> dict[str, Any]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def scan_text(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def scan_json(self, fields: frozenset[str] | None = None) -> bytes:
        """`scan_text()` as UTF-8 (a subclass may make it without the round trip). With
        `fields`, only the covered fields among them must be there: a subclass may leave
        the rest out (a prefilter for rules that read only those fields loses nothing)."""
        return self.scan_text().encode()


class UnmatchedRecords:
    """Consecutive records of one dataset that no rule can match: their events' ids in
    the order read and the earliest and latest of their timestamps (stored form)."""

    __slots__ = ("dataset", "ids", "earliest", "latest")

    def __init__(self, dataset: str, ids: list[str], earliest: str, latest: str) -> None:
        self.dataset, self.ids, self.earliest, self.latest = dataset, ids, earliest, latest
