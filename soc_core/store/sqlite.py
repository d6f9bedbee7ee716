"""The embedded EventStore: one SQLite file in WAL mode, JSON documents with indexed hot
fields, FTS5 over `message`. One box, no server."""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from soc_core import ecs
from soc_core.config import sqlite_path
from soc_core.store.base import (
    EventStore,
    Page,
    Selection,
    StoreError,
    StoreUnavailable,
    WriteResult,
    parse_duration,
)
from soc_core.store.sql import Compiler, json_path, segment

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY,
    family TEXT NOT NULL,
    id TEXT NOT NULL,
    ts INTEGER NOT NULL,            -- @timestamp in epoch milliseconds (UTC)
    dataset TEXT NOT NULL,
    kind TEXT,
    host_name TEXT,
    source_ip TEXT,
    destination_ip TEXT,
    fts_text TEXT,                  -- `message` segmented for FTS5 (see sql.segment)
    doc TEXT NOT NULL,              -- the ECS document, JSON
    UNIQUE (family, id)
);
CREATE INDEX IF NOT EXISTS docs_time ON docs (family, ts, id);
CREATE INDEX IF NOT EXISTS docs_dataset ON docs (family, dataset, ts, id);
-- partial: many events have no host or address, and skipping them is ~10 % of ingest time;
-- `col = ?` implies `col IS NOT NULL`, so lookups still use these
CREATE INDEX IF NOT EXISTS docs_host ON docs (host_name, ts) WHERE host_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS docs_source_ip ON docs (source_ip, ts) WHERE source_ip IS NOT NULL;
CREATE INDEX IF NOT EXISTS docs_destination_ip ON docs (destination_ip, ts)
    WHERE destination_ip IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5 (message, tokenize = 'unicode61');
-- the full-text index follows the documents
CREATE TRIGGER IF NOT EXISTS docs_fts_insert AFTER INSERT ON docs
WHEN new.fts_text IS NOT NULL BEGIN
    INSERT INTO docs_fts (rowid, message) VALUES (new.rowid, new.fts_text);
END;
CREATE TRIGGER IF NOT EXISTS docs_fts_update AFTER UPDATE OF doc ON docs BEGIN
    DELETE FROM docs_fts WHERE rowid = old.rowid;
    INSERT INTO docs_fts (rowid, message)
    SELECT new.rowid, new.fts_text WHERE new.fts_text IS NOT NULL;
END;
CREATE TRIGGER IF NOT EXISTS docs_fts_delete AFTER DELETE ON docs BEGIN
    DELETE FROM docs_fts WHERE rowid = old.rowid;
END;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
PRAGMAS = (
    "journal_mode = WAL",
    "synchronous = NORMAL",  # with WAL: no fsync per commit, still crash-safe
    "temp_store = MEMORY",
    "cache_size = -65536",  # 64 MiB
    "mmap_size = 268435456",
    # checkpoint every 64 MiB of WAL, not 4 MiB: batches of random-id index pages are
    # rewritten far less often during bulk ingest
    "wal_autocheckpoint = 16384",
)
_COLUMNS = ("family, id, ts, dataset, kind, host_name, source_ip, destination_ip, fts_text, "
            "doc")
_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# append families keep the first copy of an id; mutable ones take the newest
INSERT = f"INSERT INTO docs ({_COLUMNS}) {_VALUES} ON CONFLICT DO NOTHING"
UPSERT = (f"INSERT INTO docs ({_COLUMNS}) {_VALUES} "
          "ON CONFLICT (family, id) DO UPDATE SET ts = excluded.ts, dataset = excluded.dataset, "
          "kind = excluded.kind, host_name = excluded.host_name, source_ip = excluded.source_ip, "
          "destination_ip = excluded.destination_ip, fts_text = excluded.fts_text, "
          "doc = excluded.doc")
_CHUNK = 500  # ids per statement (below SQLite's bound-parameter limit)


def connect(path, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection with the SQL functions compiled queries use (Sigma `|re` -> REGEXP)."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.create_function("REGEXP", 2, _regexp, deterministic=True)
    return conn


@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: Any) -> bool:
    """`value REGEXP pattern`: Python's re.search (unanchored, like grep)."""
    return value is not None and _pattern(pattern).search(str(value)) is not None


def row_of(doc: dict[str, Any]) -> tuple:
    """The hot columns of a normalized document (shared with the ingest benchmark)."""
    ev = doc["event"]
    host = doc.get("host")
    src = doc.get("source")
    dst = doc.get("destination")
    return (
        ecs.to_millis(doc["@timestamp"]),
        ev["dataset"],
        ev.get("kind"),
        host.get("name") if isinstance(host, dict) else None,
        _scalar(src.get("ip")) if isinstance(src, dict) else None,
        _scalar(dst.get("ip")) if isinstance(dst, dict) else None,
        segment(doc["message"]) if doc.get("message") else None,
    )


def _scalar(v: Any) -> Any:
    return v[0] if isinstance(v, list) and v else v


class SqliteStore(EventStore):
    backend = "sqlite"

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self.path = sqlite_path(url)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = connect(self.path, timeout)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self.lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------
    def setup(self) -> None:
        with self.lock:
            c = self.conn
            try:
                for pragma in PRAGMAS:
                    c.execute(f"PRAGMA {pragma}")
                c.executescript(SCHEMA)
                c.execute("PRAGMA analysis_limit = 1000")  # sampled: milliseconds on any size
                c.execute("PRAGMA optimize")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} is not a usable govsoc database: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def optimize(self) -> None:
        """Refresh the planner's statistics (a sampled ANALYZE). Without them SQLite may walk
        the time index of every event for a query on one dataset, to save a sort."""
        with self.lock:
            try:
                self.conn.execute("PRAGMA analysis_limit = 1000")
                self.conn.execute("ANALYZE docs")
            except sqlite3.OperationalError:  # busy: the next call tries again
                pass

    # -- writes ------------------------------------------------------------------
    def _write_valid(self, docs: list[tuple[str, dict[str, Any]]], *, refresh: bool
                     ) -> WriteResult:
        result = WriteResult()
        append, mutable = [], []
        for family, doc in docs:
            row = (family, doc["event"]["id"], *row_of(doc), orjson.dumps(doc).decode())
            (mutable if family in ecs.MUTABLE_FAMILIES else append).append(row)
        with self.lock, self._tx():
            # rowcount counts the rows this statement inserted, not the triggers' work
            result.written = max(self.conn.executemany(INSERT, append).rowcount, 0)
            result.duplicates = len(append) - result.written
            if mutable:
                self.conn.executemany(UPSERT, mutable)
                result.written += len(mutable)
        return result

    def _tx(self):
        return _Transaction(self.conn)

    def delete(self, family: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        n = 0
        with self.lock, self._tx():
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                n += self.conn.execute(f"DELETE FROM docs WHERE family = ? AND id IN ({marks})",
                                       (family, *chunk)).rowcount
        return n

    def refresh(self) -> None:
        """Writes are visible when their transaction commits."""

    # -- reads -------------------------------------------------------------------
    def _rows(self, sql: str, params: list[Any]) -> list[tuple]:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreError(f"query failed: {exc}") from exc

    def get(self, family: str, doc_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT doc FROM docs WHERE family = ? AND id = ?", [family, doc_id])
        return orjson.loads(rows[0][0]) if rows else None

    def _page(self, where: str, comp: Compiler, size: int, after: list[Any] | None,
              descending: bool) -> Page:
        if after is not None:
            op = "<" if descending else ">"
            where += f" AND (ts, id) {op} ({comp.p(int(after[0]))}, {comp.p(str(after[1]))})"
        order = "DESC" if descending else "ASC"
        sql = (f"SELECT ts, id, doc FROM docs WHERE {where} ORDER BY ts {order}, id {order} "
               f"LIMIT {comp.p(size)}")
        rows = self._rows(sql, comp.params)
        hits = [orjson.loads(r[2]) for r in rows]
        cursor = [rows[-1][0], rows[-1][1]] if len(rows) == size and rows else None
        return Page(hits, cursor)

    def search(self, sel: Selection | None = None, *, size: int = 100,
               after: list[Any] | None = None, descending: bool = False) -> Page:
        comp = Compiler()
        return self._page(comp.selection(sel or Selection()), comp, size, after, descending)

    def native(self, native_query: Any, sel: Selection | None = None, *, size: int = 1000,
               after: list[Any] | None = None) -> Page:
        comp = Compiler()
        where = comp.selection(sel or Selection())
        sql, params = native_query if isinstance(native_query, tuple) else (native_query, ())
        # the native expression's own parameters come right after the selection's
        where += f" AND ({sql})"
        comp.params.extend(params)
        return self._page(where, comp, size, after, False)

    def count(self, sel: Selection | None = None) -> int:
        comp = Compiler()
        where = comp.selection(sel or Selection())
        return self._rows(f"SELECT count(*) FROM docs WHERE {where}", comp.params)[0][0]

    def terms(self, field: str, sel: Selection | None = None, *, size: int = 10
              ) -> list[tuple[Any, int]]:
        comp = Compiler()
        where = comp.selection(sel or Selection())
        sql = (f"SELECT je.value, count(*) AS n FROM docs, json_each(docs.doc, "
               f"'{json_path(field)}') AS je WHERE {where} AND je.type NOT IN ('object', 'array')"
               f" GROUP BY je.value ORDER BY n DESC, je.value LIMIT {int(size)}")
        return [(v, n) for v, n in self._rows(sql, comp.params)]

    def histogram(self, interval: str, sel: Selection | None = None) -> list[tuple[str, int]]:
        step = int(parse_duration(interval).total_seconds() * 1000)
        comp = Compiler()
        where = comp.selection(sel or Selection())
        sql = (f"SELECT (ts / {step}) * {step} AS b, count(*) FROM docs WHERE {where} "
               f"GROUP BY b ORDER BY b")
        return [(ecs.format_time(ecs.parse_time(b / 1000)), n)
                for b, n in self._rows(sql, comp.params)]

    # -- retention / info --------------------------------------------------------
    def prune(self, older_than_days: int, families: Iterable[str] = ("events", "metrics",
              "audit", "playbook_runs")) -> int:
        cutoff = ecs.to_millis(datetime.now(UTC) - timedelta(days=older_than_days))
        families = list(families)
        marks = ",".join("?" * len(families))
        where = f"family IN ({marks}) AND ts < ?"
        with self.lock, self._tx():
            return self.conn.execute(f"DELETE FROM docs WHERE {where}",
                                     (*families, cutoff)).rowcount

    def info(self) -> dict[str, Any]:
        families: dict[str, dict[str, int]] = {f: {} for f in ecs.FAMILIES}
        for family, dataset, n in self._rows(
                "SELECT family, dataset, count(*) FROM docs GROUP BY family, dataset", []):
            families.setdefault(family, {})[dataset] = n
        return {"backend": self.backend, "version": f"SQLite {sqlite3.sqlite_version}",
                "url": self.url, "families": families}

    def drop_all(self) -> None:
        with self.lock, self._tx():
            self.conn.execute("DELETE FROM docs")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so concurrent writers queue on the write lock instead of
    failing half-way; any error rolls the whole batch back (nothing half-written)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"database is busy: {exc}") from exc

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
