"""The embedded EventStore: one SQLite file in WAL mode, JSON documents with indexed hot
fields, FTS5 over `message`. One box, no server."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import orjson

from soc_core import ecs
from soc_core.config import sqlite_path
from soc_core.regex import RegexError, compile_regex
from soc_core.store.base import (
    EventStore,
    Page,
    Selection,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WriteResult,
    parse_duration,
)
from soc_core.store.sql import HOT_COLUMNS, VALUE_COLUMNS, Compiler, json_path, segment
from soc_core.textcase import sql_fold

# External content: the full-text index reads its text from docs.fts_text instead of keeping
# a second copy in a table of its own (queries only ask it for rowids). An external-content
# index forgets a row only when told the text it indexed: the triggers pass the old text, and
# only for rows that were indexed (fts_text not null).
# New rows reach the index in one INSERT ... SELECT per batch (see FTS_NEW), not through a
# row trigger: each execution of a statement that writes FTS5 flushes its pending terms as a
# new segment, so a trigger made one segment per event and cost 2/3 of ingest.
FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5 (fts_text, content = 'docs', "
    "content_rowid = 'rowid', tokenize = 'unicode61')",
    "DROP TRIGGER IF EXISTS docs_fts_insert",
    """CREATE TRIGGER IF NOT EXISTS docs_fts_update AFTER UPDATE OF doc ON docs BEGIN
    INSERT INTO docs_fts (docs_fts, rowid, fts_text)
    SELECT 'delete', old.rowid, old.fts_text WHERE old.fts_text IS NOT NULL;
    INSERT INTO docs_fts (rowid, fts_text)
    SELECT new.rowid, new.fts_text WHERE new.fts_text IS NOT NULL;
END""",
    """CREATE TRIGGER IF NOT EXISTS docs_fts_delete AFTER DELETE ON docs BEGIN
    INSERT INTO docs_fts (docs_fts, rowid, fts_text)
    SELECT 'delete', old.rowid, old.fts_text WHERE old.fts_text IS NOT NULL;
END""",
)
FTS_SCHEMA = "".join(f"{sql};\n" for sql in FTS_DDL)
DOCS_TS = "CREATE INDEX IF NOT EXISTS docs_ts ON docs (family, ts, dataset)"
# indexes of databases made before: the two time indexes docs_ts replaced, and the alert
# indexes on json_extract expressions the alert columns replaced (setup() replaces them)
_OLD_INDEXES = ("docs_time", "docs_dataset", "docs_alert_status", "docs_alert_changed")
# columns each holding a field of the document exactly as json_extract reads it (written by
# every insert; setup() adds them to a database made before them, filled from `doc`)
DERIVED_COLUMNS = {**VALUE_COLUMNS, "govsoc.alert.status": "alert_status",
                   "govsoc.alert.changed": "alert_changed"}
SCHEMA = f"""
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
    version INTEGER NOT NULL DEFAULT 1,  -- bumped by every replacement (write_if compares)
    -- sql.VALUE_COLUMNS: a flow's fields that groupings read (passive discovery, exposure,
    -- idle hosts), each as json_extract reads it from `doc`. No index: a column costs an
    -- insert almost nothing, an index ~2 us an event
    destination_port, transport, protocol, conn_state,
    -- sql.HOT_COLUMNS: the alert fields the analysts' lists read, indexed for alerts below
    alert_status, alert_changed,
    UNIQUE (family, id)
);
-- one index for time and dataset: time order serves the newest-first lists and paging
-- (ts, then id sorted within one millisecond), and a dataset is filtered inside the index
-- without reading rows. Two indexes (family, ts, id) and (family, dataset, ts, id) cost
-- ~4.5 us more an event, a quarter of an insert.
{DOCS_TS};
-- partial: many events have no host or address, and skipping them is ~10 % of ingest time;
-- `col = ?` implies `col IS NOT NULL`, so lookups still use these
CREATE INDEX IF NOT EXISTS docs_host ON docs (host_name, ts) WHERE host_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS docs_source_ip ON docs (source_ip, ts) WHERE source_ip IS NOT NULL;
CREATE INDEX IF NOT EXISTS docs_destination_ip ON docs (destination_ip, ts)
    WHERE destination_ip IS NOT NULL;
-- the analysts' list: open alerts, newest first (partial: events never pay for it). On
-- columns, not on json_extract expressions: a statement writing an index on a function
-- that may fail must be able to undo itself, so SQLite gave every multi-row INSERT a
-- statement journal (a copy of each index page it touched), 30 % of the insert.
CREATE INDEX IF NOT EXISTS docs_alerts_by_status ON docs (alert_status, ts, id)
    WHERE family = 'alerts';
-- the console's live queue: alerts an analyst changed since a moment (partial, as above)
CREATE INDEX IF NOT EXISTS docs_alerts_by_change ON docs (alert_changed)
    WHERE family = 'alerts';
{FTS_SCHEMA}
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
PRAGMAS = (
    "journal_mode = WAL",
    "synchronous = NORMAL",  # with WAL: no fsync per commit, still crash-safe
    "temp_store = MEMORY",
    "cache_size = -65536",  # 64 MiB
    "mmap_size = 268435456",
    # no checkpoint inside a commit: SQLite's automatic one makes the committing writer wait
    # for two fsyncs, a third of the time of a batch here; the store's own thread does it
    # (see _Checkpointer)
    "wal_autocheckpoint = 0",
)
# a scratch store (`govsoc hunt` without --store: removed when the hunt ends) keeps nothing
# past the process: no WAL to copy back, no fsync, the rollback journal in memory (a
# failed batch still rolls back whole). Half of a hunt's system time went to the WAL file
# and its checkpoints.
SCRATCH_PRAGMAS = (
    "journal_mode = MEMORY",
    "synchronous = OFF",
    "temp_store = MEMORY",
    "cache_size = -65536",
)
_COLUMNS = ("family, id, ts, dataset, kind, host_name, source_ip, destination_ip, fts_text, "
            "doc, destination_port, transport, protocol, conn_state, alert_status, "
            "alert_changed")
# the document arrives as UTF-8 bytes (orjson's output), bound as a bytearray (see
# row_values) that SQLite takes as text itself: no decoding to a Python str and back
_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TEXT), ?, ?, ?, ?, ?, ?)"
# append families keep the first copy of an id; mutable ones take the newest
INSERT = f"INSERT INTO docs ({_COLUMNS}) {_VALUES} ON CONFLICT DO NOTHING"
UPSERT = (f"INSERT INTO docs ({_COLUMNS}) {_VALUES} "
          "ON CONFLICT (family, id) DO UPDATE SET ts = excluded.ts, dataset = excluded.dataset, "
          "kind = excluded.kind, host_name = excluded.host_name, source_ip = excluded.source_ip, "
          "destination_ip = excluded.destination_ip, fts_text = excluded.fts_text, "
          "doc = excluded.doc, destination_port = excluded.destination_port, "
          "transport = excluded.transport, protocol = excluded.protocol, "
          "conn_state = excluded.conn_state, alert_status = excluded.alert_status, "
          "alert_changed = excluded.alert_changed, version = docs.version + 1")
_INF = float("inf")
# Rows a statement for append families: INSERT ... VALUES (...), (...), ... Each execution
# of a statement opens a cursor on the table and on each of its 7 indexes, and seeks every
# index from its root; a statement of many rows opens them once and keeps them where the
# last row left them, so a row that lands beside the previous one (time order, appends)
# skips the seek: 20 % less CPU an insert than one row a statement (bench/ingest.py's
# events; 50 to 1,000 rows a statement alike). A shorter tail takes the largest size that
# fits, down to one.
_RUN_ROWS = (100, 10, 1)


# What a row binds for SQL NULL. Python's sqlite3 (3.11) binds only int, float, str and
# bytearray directly: any other value, None and bytes included, first goes through its
# adapter protocol, which looks up `__adapt__` and `__conform__` and formats two
# AttributeErrors on the way, ~2.5 K instructions a value, 4-5 values an event (a tenth of
# an event's whole ingest). A NaN binds as a float, and SQLite stores a NaN as NULL.
NULL = float("nan")


def row_values(p: ecs.Prepared) -> tuple:
    """The values INSERT and UPSERT take for a prepared document: its indexed fields, the
    full-text (CJK segmented), the JSON and the columns of DERIVED_COLUMNS, each exactly
    what json_extract would read from the JSON; NULL for an absent value."""
    family, doc_id, millis, dataset, kind, host, src, dst_ip, msg, text, doc = p
    if msg is None:
        msg = NULL
    elif not msg.isascii():
        msg = segment(msg)
    port = transport = protocol = state = NULL
    sub = doc.get("destination")
    if type(sub) is dict:
        port = sub.get("port", NULL)  # absent or an int 0-65535 (ecs checked it)
        if port is None:
            port = NULL
    sub = doc.get("network")
    if type(sub) is dict:
        transport, protocol = sub.get("transport"), sub.get("protocol")
        if transport.__class__ is not str:
            transport = _extracted(transport)
        if protocol.__class__ is not str:
            protocol = _extracted(protocol)
    sub = doc.get("zeek")
    if type(sub) is dict:
        sub = sub.get("connection")
        if type(sub) is dict:
            state = _extracted(sub.get("state"))
    status = changed = NULL
    sub = doc.get("govsoc")
    if type(sub) is dict:
        sub = sub.get("alert")
        if type(sub) is dict:
            status, changed = _extracted(sub.get("status")), _extracted(sub.get("changed"))
    # a bytearray binds as a blob without the adapter lookup (CAST in _VALUES: text)
    return (family, doc_id, millis, dataset, kind, NULL if host is None else host,
            NULL if src is None else src, NULL if dst_ip is None else dst_ip, msg,
            bytearray(text), port, transport, protocol, state, status, changed)


def _extracted(value: Any) -> Any:
    """A JSON value as SQLite's json_extract returns it: scalars as themselves (true and
    false as 1 and 0, integers beyond 64 bits as reals), arrays and objects as JSON text."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return NULL
    if kind is bool:
        return int(value)
    if kind is int:
        return value if -(1 << 63) <= value < (1 << 63) else float(value)
    if kind is float:  # orjson writes NaN and infinities as null
        return value if value == value and abs(value) != _INF else NULL
    return orjson.dumps(value).decode()


# index the batch's new rows: rowids are assigned upwards, so they are those above the
# largest rowid before the batch (read under the write lock)
FTS_NEW = ("INSERT INTO docs_fts (rowid, fts_text) SELECT rowid, fts_text FROM docs "
           "WHERE rowid > ? AND fts_text IS NOT NULL")
# the full-text index of databases made before it read docs.fts_text: it kept its own copy
# of every message (column `message`); setup() replaces it, in one transaction
_FTS_OLD = ("DROP TRIGGER IF EXISTS docs_fts_update", "DROP TRIGGER IF EXISTS docs_fts_delete",
            "DROP TABLE docs_fts")
_CHUNK = 500  # ids per statement (below SQLite's bound-parameter limit)


@functools.cache
def _insert_sql(rows: int) -> str:
    # OR FAIL: a NOT NULL violation (none is expected: ecs.prepare sets every such field)
    # stops the statement without undoing its earlier rows, so SQLite needs no statement
    # journal for it; the caller's transaction still rolls the whole batch back on the error
    return (f"INSERT OR FAIL INTO docs ({_COLUMNS}) VALUES "
            + ", ".join([_VALUES.removeprefix("VALUES ")] * rows) + " ON CONFLICT DO NOTHING")


def insert_rows(conn: sqlite3.Connection, rows: list[tuple]) -> int:
    """INSERT (append families: the first copy of an id stays) `row_values` rows, in their
    order, many a statement (see _RUN_ROWS); returns how many were new."""
    written = done = 0
    left = len(rows)
    flat = chain.from_iterable
    for size in _RUN_ROWS:
        runs = left // size
        if not runs:
            continue
        end = done + runs * size
        if size == 1:
            params: Iterable[tuple] = rows[done:end]
        else:
            params = [tuple(flat(rows[i:i + size])) for i in range(done, end, size)]
        # rowcount: the rows these statements inserted (a conflict inserts none)
        written += max(conn.executemany(_insert_sql(size), params).rowcount, 0)
        done, left = end, left - runs * size
    return written


def connect(path, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection with the SQL functions compiled queries use (Sigma `|re` -> REGEXP,
    case folding beyond ASCII -> FOLD_CASE)."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.create_function("REGEXP", 2, _regexp, deterministic=True)
    # Sigma's case-insensitive match of a pattern with non-ASCII letters (LIKE folds ASCII)
    conn.create_function("FOLD_CASE", 1, sql_fold, deterministic=True)
    return conn


def set_pragmas(conn: sqlite3.Connection, pragmas: Iterable[str], timeout: float) -> None:
    """Set a connection's PRAGMAs. Two processes opening a new database at once race to
    switch it to WAL, and SQLite answers the loser "database is locked" without waiting on
    its busy timeout: retry within that timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for pragma in pragmas:
                conn.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_refused = threading.local()  # SQLite reports a function's exception without its text


def _regexp(pattern: str, value: Any) -> bool:
    """`value REGEXP pattern`: an RE2 search (unanchored, like grep; linear time)."""
    try:
        return value is not None and compile_regex(pattern).search(str(value)) is not None
    except RegexError as exc:
        _refused.reason = str(exc)
        raise


class SqliteStore(EventStore):
    backend = "sqlite"

    def __init__(self, url: str, *, timeout: float = 30.0, scratch: bool = False) -> None:
        """`scratch`: a store that is thrown away with its process (see SCRATCH_PRAGMAS):
        never for data anyone keeps."""
        self.url = url
        self.path = sqlite_path(url)
        self.timeout = timeout
        self.scratch = scratch
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = connect(self.path, timeout)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self.lock = threading.RLock()
        self._checkpointer: _Checkpointer | None = None
        self._grouper: sqlite3.Connection | None = None

    # -- lifecycle ---------------------------------------------------------------
    def setup(self) -> None:
        with self.lock:
            c = self.conn
            try:
                self._pragmas()
                self._replace_old_fts()
                self._migrate_columns_and_indexes()
                c.executescript(SCHEMA)
                self._add_version_column()
                c.execute("PRAGMA analysis_limit = 1000")  # sampled: milliseconds on any size
                c.execute("PRAGMA optimize")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} is not a usable govsoc database: {exc}") from exc
            if self._checkpointer is None and not self.scratch:
                self._checkpointer = _Checkpointer(self.path)

    def _replace_old_fts(self) -> None:
        """A full-text index that keeps its own copy of the text (made before it read
        docs.fts_text) is replaced by the current one, filled from docs, in one transaction:
        a one-off on the first start of a new version (seconds per million messages).
        Another process may have just done it: checked again under the write lock."""
        if not self._old_fts():
            return
        with self._tx():
            if self._old_fts():
                for sql in (*_FTS_OLD, *FTS_DDL):
                    self.conn.execute(sql)
                self.conn.execute(FTS_NEW, (0,))

    def _migrate_columns_and_indexes(self) -> None:
        """Databases made before the derived columns (DERIVED_COLUMNS), the one time index
        or the alert indexes on columns: add the columns, fill them from the stored
        documents, and drop the old indexes (docs_ts replaces the two time indexes; SCHEMA
        then makes the alert indexes), in one transaction (a one-off on the first start of a
        new version: seconds per million documents). Another process may have just done
        it: checked again under the lock."""
        if not self._outdated():
            return
        with self._tx():
            if not self._outdated():
                return
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(docs)")}
            missing = [(f, c) for f, c in DERIVED_COLUMNS.items() if c not in have]
            for _, col in missing:
                self.conn.execute(f"ALTER TABLE docs ADD COLUMN {col}")
            if missing:
                # only rows that gain a value are rewritten (SQLite reuses the parse of a
                # document across the json_extract calls of one row), and only documents
                # whose text names a field's last key are parsed at all
                values = [f"json_extract(doc, '{json_path(f)}')" for f, _ in missing]
                keys = sorted({f.rsplit(".", 1)[-1] for f, _ in missing})
                sets = ", ".join(f"{c} = {v}" for (_, c), v in zip(missing, values, strict=True))
                self.conn.execute(f"UPDATE docs SET {sets} WHERE ("
                                  + " OR ".join(f"instr(doc, '\"{k}\"')" for k in keys)
                                  + ") AND ("
                                  + " OR ".join(f"{v} IS NOT NULL" for v in values) + ")")
            for name in _OLD_INDEXES:
                self.conn.execute(f"DROP INDEX IF EXISTS {name}")
            self.conn.execute(DOCS_TS)

    def _outdated(self) -> bool:
        names = {r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'docs' AND type = 'index'")}
        if names and (names.isdisjoint({"docs_ts"}) or not names.isdisjoint(_OLD_INDEXES)):
            return True
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(docs)")}
        return bool(have) and not have.issuperset(DERIVED_COLUMNS.values())

    def _old_fts(self) -> bool:
        row = self.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'docs_fts'").fetchone()
        return row is not None and "content" not in row[0]

    def _add_version_column(self) -> None:
        """Databases made before conditional writes lack the row version: add it (every
        existing row starts at version 1). Another process may have just done it."""
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(docs)")}
        if "version" not in cols:
            try:
                self.conn.execute("ALTER TABLE docs ADD COLUMN version INTEGER NOT NULL "
                                  "DEFAULT 1")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise

    def _pragmas(self) -> None:
        set_pragmas(self.conn, SCRATCH_PRAGMAS if self.scratch else PRAGMAS, self.timeout)

    def close(self) -> None:
        with self.lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._grouper is not None:
                self._grouper.close()
                self._grouper = None
            self.conn.close()  # the last connection to close checkpoints and removes the WAL

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
    # each valid document's row is made as soon as it is validated (base.EventStore)
    _convert = staticmethod(row_values)

    def _write_valid(self, docs: list[tuple], *, refresh: bool) -> WriteResult:
        """Store rows (`row_values`), family and id first."""
        result = WriteResult()
        append: list[tuple] = []
        mutable: dict[tuple[str, str], tuple] = {}  # the newest copy of an id in the batch
        families = ecs.MUTABLE_FAMILIES
        for row in docs:
            if row[0] in families:
                mutable[row[0], row[1]] = row
            else:
                append.append(row)
        with self.lock, self._tx():
            last = self.conn.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0]
            result.written = insert_rows(self.conn, append)
            result.duplicates = len(append) - result.written
            if mutable:
                # one row per id, so an update here only meets a row from an earlier batch,
                # whose index entry the update trigger replaces
                self.conn.executemany(UPSERT, mutable.values())
                result.written += len(docs) - len(append)
            self.conn.execute(FTS_NEW, (last,))
        if self._checkpointer is not None:
            self._checkpointer.poke()
        return result

    def _write_many_if(self, docs: list[ecs.Prepared], versions: list[Any], *,
                       refresh: bool) -> WriteResult:
        result = WriteResult()
        conn = self.conn
        # under the write lock (BEGIN IMMEDIATE) the compares and the writes are one step
        # for every process sharing the file: the stored versions are read in one query
        # per family and chunk, the absent documents inserted many rows a statement
        with self.lock, self._tx():
            last = conn.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0]
            stored: dict[tuple[str, str], int] = {}
            wanted: dict[str, list[str]] = {}
            for p in docs:
                wanted.setdefault(p.family, []).append(p.id)
            for family, ids in wanted.items():
                for i in range(0, len(ids), _CHUNK):
                    chunk = ids[i:i + _CHUNK]
                    for doc_id, version in conn.execute(
                            "SELECT id, version FROM docs WHERE family = ? AND id IN "
                            f"({','.join('?' * len(chunk))})", (family, *chunk)):
                        stored[family, doc_id] = version
            new: list[tuple] = []
            replace: list[tuple] = []
            for p, version in zip(docs, versions, strict=True):
                key = (p.family, p.id)
                found = stored.get(key)
                if found != version:
                    result.conflicts.append(p.id)
                    continue
                # as stored after this write: a second copy of the id in the batch is
                # compared against it, as if written one after the other
                stored[key] = 1 if found is None else found + 1
                (new if found is None else replace).append(row_values(p))
            # the new rows first: a later copy of one of them replaces it, in batch order
            insert_rows(conn, new)
            if replace:
                conn.executemany(UPSERT, replace)
            result.written = len(new) + len(replace)
            conn.execute(FTS_NEW, (last,))
        if self._checkpointer is not None:
            self._checkpointer.poke()
        return result

    def _read_versioned_many(self, family: str, ids: list[str]
                             ) -> dict[str, tuple[dict[str, Any], Any]]:
        out: dict[str, tuple[dict[str, Any], Any]] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for doc_id, text, version in self._rows(
                    f"SELECT id, doc, version FROM docs WHERE family = ? AND id IN ({marks})",
                    [family, *chunk]):
                out[doc_id] = (orjson.loads(text), version)
        return out

    def _tx(self):
        return _Transaction(self.conn)

    def _read_versioned(self, family: str, doc_id: str
                        ) -> tuple[dict[str, Any] | None, Any]:
        rows = self._rows("SELECT doc, version FROM docs WHERE family = ? AND id = ?",
                          [family, doc_id])
        return (orjson.loads(rows[0][0]), rows[0][1]) if rows else (None, None)

    def _write_if(self, p: ecs.Prepared, version: Any) -> Any:
        """Compare and replace under one write transaction (BEGIN IMMEDIATE takes the
        database's write lock, so no other process can change the row in between)."""
        values = row_values(p)
        with self.lock, self._tx():
            found = self.conn.execute("SELECT version FROM docs WHERE family = ? AND id = ?",
                                      (p.family, p.id)).fetchone()
            current = None if found is None else found[0]
            if current != version:
                raise VersionConflict(f"{p.family}/{p.id} changed: version {current}, "
                               f"expected {version}")
            if found is None:
                last = self.conn.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0]
                self.conn.execute(INSERT, values)
                self.conn.execute(FTS_NEW, (last,))
                return 1
            self.conn.execute(UPSERT, values)
            return current + 1

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
    def _rows(self, sql: str, params: list[Any], *, grouping: bool = False) -> list[tuple]:
        with self.lock:
            _refused.reason = None
            try:
                conn = self._grouping() if grouping else self.conn
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreError(f"query failed: {_refused.reason or exc}") from exc

    def _grouping(self) -> sqlite3.Connection:
        """The connection aggregations (GROUP BY) read through: temporary data in files and
        SQLite's default page cache, so its sorter sorts cache-sized runs and merges them.
        On the store's own connection (temporary data in memory, 64 MiB of cache for the
        writes) it sorts every row in one run: 1.3-2x the CPU over a million flows."""
        if self._grouper is None:
            conn = connect(self.path, self.timeout)
            conn.execute("PRAGMA temp_store = FILE")
            conn.execute("PRAGMA mmap_size = 268435456")
            self._grouper = conn
        return self._grouper

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
        return [(v, n) for v, n in self._rows(sql, comp.params, grouping=True)]

    def groups(self, fields: list[str], sel: Selection | None = None
               ) -> list[tuple[tuple[Any, ...], int, int, int]]:
        if not fields:
            raise StoreError("groups needs at least one field")
        comp = Compiler()
        where = comp.selection(sel or Selection())
        hot = [HOT_COLUMNS.get(f) or VALUE_COLUMNS.get(f) for f in fields]
        cold = [f for f, h in zip(fields, hot, strict=True) if h is None]
        exprs = [h for h in hot if h is not None]
        if cold:
            # one json_extract with every path parses the document once (a JSON array of
            # the values), instead of once per field
            exprs.append("json_extract(doc, " + ", ".join(f"'{json_path(f)}'" for f in cold)
                         + ")")
        cols = ", ".join(exprs)
        rows = self._rows(f"SELECT {cols}, count(*), min(ts), max(ts) FROM docs WHERE {where} "
                          f"GROUP BY {cols}", comp.params, grouping=True)
        out = []
        loads = orjson.loads
        for row in rows:
            it = iter(row[:len(exprs) - 1] if cold else row[:len(exprs)])
            if cold:
                packed = row[len(exprs) - 1]
                # a single path returns the value itself, several return a JSON array
                rest = iter(loads(packed) if len(cold) > 1 else [packed])
            values = tuple(next(it) if h is not None else next(rest) for h in hot)
            out.append((values, row[-3], row[-2], row[-1]))
        return out

    def histogram(self, interval: str, sel: Selection | None = None) -> list[tuple[str, int]]:
        step = int(parse_duration(interval).total_seconds() * 1000)
        comp = Compiler()
        where = comp.selection(sel or Selection())
        sql = (f"SELECT (ts / {step}) * {step} AS b, count(*) FROM docs WHERE {where} "
               f"GROUP BY b ORDER BY b")
        return [(ecs.format_time(ecs.parse_time(b / 1000)), n)
                for b, n in self._rows(sql, comp.params, grouping=True)]

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


class _Checkpointer:
    """Copies committed pages from the WAL back into the database file, from a thread and
    connection of its own, at most once a second while writes come in. A passive checkpoint
    never blocks the writer; but one that overlaps writes cannot let the WAL start over, so
    past WAL_LIMIT frames a RESTART checkpoint briefly holds writers back to bound the file."""

    INTERVAL = 1.0
    WAL_LIMIT = 65536  # frames (pages): 256 MiB at the default page size

    def __init__(self, path) -> None:
        # a short busy wait: a RESTART that meets a long reader gives up and tries again
        # later, rather than holding writers back for long
        self.conn = connect(path, timeout=1.0)
        self.wake = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self.thread.start()

    def poke(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.done.set()
        self.wake.set()
        self.thread.join()
        self.conn.close()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            if self.done.is_set():
                return
            self.wake.clear()
            try:
                _, frames, _ = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames > self.WAL_LIMIT:
                    self.conn.execute("PRAGMA wal_checkpoint(RESTART)")
            except sqlite3.Error:  # busy or closing: the next write pokes again
                pass
            self.done.wait(self.INTERVAL)


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
