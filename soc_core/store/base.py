"""The EventStore interface, shared by the SQLite and Elasticsearch backends.

Every read takes the same selection arguments (see `Selection`): a family (see
`soc_core.ecs`), an optional `event.dataset`, a time range on `@timestamp`, term/terms
filters, an analyst query (string or parsed AST) and free text over `message`.
Results are sorted by (`@timestamp`, `event.id`), which makes the cursor of
`search(..., after=cursor)` stable: deep pagination never skips or repeats a document.
"""

from __future__ import annotations

import abc
import copy
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from soc_core import ecs
from soc_core import query as q

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The store could not do what was asked (down, refused, misconfigured)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the caller may retry or spool."""


class VersionConflict(StoreError):
    """A versioned write lost the race: another writer stored that version first."""


# An opaque version token of a stored mutable document (SQLite: the row version;
# Elasticsearch: (seq_no, primary_term)); None: the document does not exist.
Version = Any


@dataclass
class Rejected:
    """A document the store refused, with the reason; never dropped silently."""

    id: str | None
    reason: str
    doc: Any = None


@dataclass
class WriteResult:
    written: int = 0  # newly stored (or replaced, for mutable families)
    duplicates: int = 0  # already present with the same id: not stored twice
    rejected: list[Rejected] = field(default_factory=list)
    # write_if: ids whose stored copy changed since it was read (not written; read again)
    conflicts: list[str] = field(default_factory=list)

    def merge(self, other: WriteResult) -> None:
        self.written += other.written
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        self.conflicts.extend(other.conflicts)


@dataclass
class Page:
    hits: list[dict[str, Any]]
    cursor: list[Any] | None  # pass as `after=` for the next page; None when exhausted


@dataclass
class Selection:
    family: str = "events"
    dataset: str | list[str] | None = None
    start: Any = None  # inclusive; datetime, ISO string, or "now-1h"
    end: Any = None  # exclusive
    filters: dict[str, Any] | None = None  # field -> value (term) or list (terms)
    query: str | q.Node | None = None
    text: str | None = None  # free text over `message`

    def __post_init__(self) -> None:
        if self.family not in ecs.FAMILIES:
            raise StoreError(f"unknown family {self.family!r}; one of {', '.join(ecs.FAMILIES)}")
        if isinstance(self.query, str):
            self.query = q.parse(self.query)
        self.start_ms = None if self.start is None else resolve_millis(self.start)
        self.end_ms = None if self.end is None else resolve_millis(self.end)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `180d`, `2w` -> timedelta."""
    text = text.strip()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise ValueError(f"bad duration {text!r}: use a number and s/m/h/d/w, e.g. 180d")
    try:
        return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    except OverflowError as exc:  # beyond timedelta's ~2.7 million years
        raise ValueError(f"duration {text!r} is out of range") from exc


def resolve_time(value: Any) -> datetime:
    """`now`, `now-1h`, `-15m`, ISO-8601, epoch seconds or datetime -> UTC datetime."""
    if isinstance(value, str):
        v = value.strip()
        if v == "now":
            return datetime.now(UTC)
        if v.startswith("now-") or (v.startswith("-") and v[-1:] in _UNITS):
            try:
                return datetime.now(UTC) - parse_duration(v.split("-", 1)[1])
            except OverflowError as exc:  # before year 1
                raise ValueError(f"time {value!r} is out of range") from exc
    try:
        return ecs.parse_time(value)
    except ecs.EventError as exc:
        raise ValueError(f"bad time {value!r}: use ISO-8601 or now-1h") from exc


def resolve_millis(value: Any) -> int:
    return ecs.to_millis(resolve_time(value))


class EventStore(abc.ABC):
    """One interface, two backends. Obtain one with `soc_core.store.open_store(url)`."""

    backend: str = ""
    url: str = ""
    # set by open_store from the config's [[departments]]; None or empty: no stamping
    departments: Any = None
    # families whose searches first make every acknowledged write visible, so a write to
    # them needs no refresh of its own (Elasticsearch's `es_alert_refresh = "search"`;
    # SQLite: a write is visible once committed, nothing to do either way)
    fresh_families: frozenset[str] = frozenset()

    # -- lifecycle ---------------------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Create schema / templates; idempotent, called by open_store."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def optimize(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Refresh query-planner statistics; a no-op where the server keeps its own."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------
    # What a backend's `_write_valid` takes for each valid document, made right after its
    # validation while the document is still in the CPU's caches (None: the Prepared
    # itself). For SQLite, its row: one pass instead of a second walk over the batch took
    # validation and row building from 5.5 to 4.7 us an event (bench/ingest.py's
    # documents, measured alone).
    _convert: Callable[[ecs.Prepared], Any] | None = None

    def write(self, docs: Iterable[dict[str, Any]], *, refresh: bool = False) -> WriteResult:
        """Validate and store a batch. Append families keep the first copy of an id
        (a repeat counts as a duplicate); mutable families (alerts, assets, playbook
        runs) replace the stored document. Invalid documents are rejected, the rest kept.
        An `ecs.Prepared` in the batch is stored as it is, unchecked and unstamped: only
        the core's own writers that build every field make one (the audit trail)."""
        result = WriteResult()
        valid = self._prepare(docs, result, self._convert)
        if valid:
            result.merge(self._write_valid(valid, refresh=refresh))
        return result

    def _prepare(self, docs: Iterable[dict[str, Any]], result: WriteResult,
                 convert: Callable[[ecs.Prepared], Any] | None = None) -> list[Any]:
        """The valid documents, each prepared, stamped, and `convert`ed if given; the
        invalid ones are added to `result` as rejected."""
        valid: list[Any] = []
        # every write path comes through here: the one place departments are stamped
        departments, stamp = self.departments, None
        if departments:
            if departments.reload_due():
                self._reload_assignments()
            stamp = departments.stamp_prepared
        for doc in docs:
            if type(doc) is ecs.Prepared:  # made by the core itself (the audit trail's
                # drain): checked and serialized already, still made into the backend's row
                valid.append(doc if convert is None else convert(doc))
                continue
            try:
                prepared = ecs.prepare(doc)
            except ecs.EventError as exc:
                result.rejected.append(Rejected(_id_of(doc), str(exc), doc))
                continue
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                # an odd value the checks above did not foresee: still this line's fault,
                # never the batch's
                result.rejected.append(Rejected(_id_of(doc), f"invalid value: {exc}", doc))
                continue
            # stamped and converted while the document is still in the CPU's caches
            if stamp is not None:
                prepared = stamp(prepared)
            valid.append(prepared if convert is None else convert(prepared))
        return valid

    def write_many_if(self, docs: Iterable[tuple[dict[str, Any], Version]], *,
                      refresh: bool = False) -> WriteResult:
        """`write_if` for a batch (the engine's alerts, a bulk alert change): each
        (document, version from `read_versioned[_many]`) is written only if its stored copy
        still has that version (None: only if absent). A document changed meanwhile is not
        written: its id is in `conflicts`, and the caller reads it again and redoes its
        change. Departments are stamped as by `write` (alerts belong to departments)."""
        pairs = list(docs)
        result = WriteResult()
        valid = self._prepare([d for d, _ in pairs], result)
        wanted = {_id_of(d): v for d, v in pairs}
        for p in valid:
            self._check_mutable(p.family)
        if valid:
            result.merge(self._write_many_if(valid, [wanted.get(p.id) for p in valid],
                                             refresh=refresh))
        return result

    def read_versioned_many(self, family: str, ids: Iterable[str]
                            ) -> dict[str, tuple[dict[str, Any], Version]]:
        """`read_versioned` for many ids at once: the stored ones, each with its version."""
        self._check_mutable(family)
        return self._read_versioned_many(family, list(ids))

    @abc.abstractmethod
    def _write_many_if(self, docs: list[ecs.Prepared], versions: list[Version], *,
                       refresh: bool) -> WriteResult: ...

    @abc.abstractmethod
    def _read_versioned_many(self, family: str, ids: list[str]
                             ) -> dict[str, tuple[dict[str, Any], Version]]: ...

    def use_departments(self, departments: Any) -> None:
        """Stamp departments on what this store writes (`soc_core.departments`), with the
        asset registry's assignments read from the store now."""
        self.departments = departments
        if departments:
            departments.load_assignments(self.scan(Selection(family="assets")))

    def _reload_assignments(self) -> None:
        try:
            self.departments.load_assignments(self.scan(Selection(family="assets")))
        except StoreError as exc:  # keep the assignments known so far; retried next batch
            log.warning("department assignments not reloaded: %s", exc)

    @abc.abstractmethod
    def _write_valid(self, docs: list[Any], *, refresh: bool) -> WriteResult:
        """Store valid documents: what `_convert` made of each (by default its Prepared)."""

    # -- conditional writes (compare-and-set) on mutable families --------------------
    def read_versioned(self, family: str, doc_id: str
                       ) -> tuple[dict[str, Any] | None, Version]:
        """A document and its version token, read in real time (no refresh needed);
        (None, None) when absent. Pass the token to `write_if`."""
        self._check_mutable(family)
        return self._read_versioned(family, doc_id)

    def write_if(self, doc: dict[str, Any], version: Version, *, refresh: bool = False
                 ) -> Version:
        """Store `doc` (a mutable family: state, alerts, assets, playbook runs) only if
        its stored version is still `version` (None: only if no document has its id);
        returns the new version. Raises `VersionConflict` if another writer got there first,
        `StoreError` if the document is invalid. Departments are not stamped: this is
        for platform state, not for what a department owns."""
        try:
            prepared = ecs.prepare(doc)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"invalid document: {exc}") from exc
        self._check_mutable(prepared.family)
        new = self._write_if(prepared, version)
        if refresh:  # searches see it at once (a read by id always does)
            self.refresh()
        return new

    def modify(self, family: str, doc_id: str, fn: Any, *, attempts: int = 50) -> Any:
        """Read-modify-write under optimistic concurrency: `fn(doc or None)` returns the
        new document (or None to leave it as it is) and may be called again with a
        fresher copy when another writer won; returns (document as stored, version).
        Nothing another writer did is lost."""
        for _ in range(attempts):
            doc, version = self.read_versioned(family, doc_id)
            new = fn(None if doc is None else copy.deepcopy(doc))
            if new is None:
                return doc, version
            try:
                return new, self.write_if(new, version)
            except VersionConflict:
                time.sleep(random.uniform(0.0, 0.02))  # desynchronise the contenders
        raise VersionConflict(f"{family}/{doc_id}: still contended after {attempts} attempts")

    @staticmethod
    def _check_mutable(family: str) -> None:
        if family not in ecs.MUTABLE_FAMILIES:
            raise StoreError(f"conditional writes are for mutable families "
                             f"({', '.join(sorted(ecs.MUTABLE_FAMILIES))}), not {family!r}")

    @abc.abstractmethod
    def _read_versioned(self, family: str, doc_id: str
                        ) -> tuple[dict[str, Any] | None, Version]: ...

    @abc.abstractmethod
    def _write_if(self, doc: ecs.Prepared, version: Version) -> Version: ...

    @abc.abstractmethod
    def delete(self, family: str, ids: Iterable[str]) -> int:
        """Delete documents by id; returns how many existed."""

    @abc.abstractmethod
    def refresh(self) -> None:
        """Make every write so far visible to reads (a no-op where it always is)."""

    # -- reads -------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, family: str, doc_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def search(self, sel: Selection | None = None, *, size: int = 100,
               after: list[Any] | None = None, descending: bool = False) -> Page: ...

    def scan(self, sel: Selection | None = None, *, page_size: int = 1000,
             descending: bool = False) -> Iterator[dict[str, Any]]:
        """Every matching document, page by page (search_after)."""
        cursor = None
        while True:
            page = self.search(sel, size=page_size, after=cursor, descending=descending)
            yield from page.hits
            if page.cursor is None:
                return
            cursor = page.cursor

    @abc.abstractmethod
    def count(self, sel: Selection | None = None) -> int: ...

    @abc.abstractmethod
    def terms(self, field: str, sel: Selection | None = None, *, size: int = 10
              ) -> list[tuple[Any, int]]:
        """Top values of a field with counts (a terms aggregation), most frequent first."""

    @abc.abstractmethod
    def groups(self, fields: list[str], sel: Selection | None = None
               ) -> list[tuple[tuple[Any, ...], int, int, int]]:
        """Every distinct combination of the fields' values among the selected documents
        (a GROUP BY; a missing field groups as None), with its document count and its first
        and last `@timestamp` in epoch ms: [(values, count, first_ms, last_ms)], unordered.
        Scalar fields only (an array value groups as a whole on SQLite)."""

    @abc.abstractmethod
    def histogram(self, interval: str, sel: Selection | None = None
                  ) -> list[tuple[str, int]]:
        """Counts per fixed `interval` (`1h`, `1d`...) bucket of `@timestamp`, oldest first,
        as (bucket start ISO-8601 UTC, count); empty buckets are left out."""

    @abc.abstractmethod
    def native(self, native_query: Any, sel: Selection | None = None, *, size: int = 1000,
               after: list[Any] | None = None) -> Page:
        """Run a backend-compiled query (a Sigma rule compiled by pySigma) inside the
        selection. Elasticsearch: a Lucene string or a query-DSL dict. SQLite: a SQL boolean
        expression over table `docs` where a field is `json_extract(doc, '$.a.b')`."""

    # -- retention / info --------------------------------------------------------
    @abc.abstractmethod
    def prune(self, older_than_days: int, families: Iterable[str] = ("events", "metrics",
              "audit", "playbook_runs")) -> int:
        """Delete documents whose @timestamp is older than N days; returns how many.
        Alerts and assets are state, not logs, and are kept."""

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """Backend, version, and per family/dataset document counts."""


def _id_of(doc: Any) -> str | None:
    if isinstance(doc, dict):
        ev = doc.get("event")
        if isinstance(ev, dict) and isinstance(ev.get("id"), str):
            return ev["id"]
        if isinstance(doc.get("event.id"), str):
            return doc["event.id"]
    return None
