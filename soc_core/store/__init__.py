"""EventStore: one interface, two backends chosen by URL.

    sqlite:///relative/path.db   sqlite:////absolute/path.db   (embedded default)
    http://host:9200  https://host:9200                          (Elasticsearch 8)

Times: resolve_time / resolve_millis ("now-1h", ISO-8601, epoch) for selections. For SQL
compiled against the SQLite store (the detection backend): field_expr(field) is a field's
value in that store's SQL (an indexed column for hot fields), json_path(field) its JSON path;
in SQL, FOLD_CASE(x) is soc_core.textcase.fold_case. For Lucene against the Elasticsearch
store: keyword_field(field) says whether the field is an indexed keyword.

Conditional writes (compare-and-set) on mutable families, for state that several processes
change (detection state, leases, cases, run requests); a lost race raises VersionConflict:
read_versioned(family, id) -> (doc, Version token), write_if(doc, token) -> new token
(SQLite: the row version; Elasticsearch: if_seq_no/if_primary_term), and modify(family,
id, fn), the retrying read-modify-write built on them. For batches (the engine's alerts,
bulk alert changes): read_versioned_many(family, ids) -> {id: (doc, token)} and
write_many_if([(doc, token)...]) -> WriteResult whose `conflicts` lists the lost races.
"""

from __future__ import annotations

from typing import Any

from soc_core.store.base import (
    EventStore,
    Page,
    Rejected,
    Selection,
    StoreError,
    StoreUnavailable,
    Version,
    VersionConflict,
    WriteResult,
    parse_duration,
    resolve_millis,
    resolve_time,
)
from soc_core.store.es_mappings import keyword_field
from soc_core.store.sql import field_expr, json_path

__all__ = ["EventStore", "Page", "Rejected", "Selection", "StoreError", "StoreUnavailable",
           "Version", "VersionConflict", "WriteResult", "backend_of", "field_expr", "json_path",
           "keyword_field", "open_store", "parse_duration", "resolve_millis", "resolve_time"]


def backend_of(url: str) -> str | None:
    """The backend a store URL names ("sqlite", "elasticsearch"), or None."""
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("http://", "https://")):
        return "elasticsearch"
    return None


def open_store(url: str | None = None, *, departments: Any = None, **options) -> EventStore:
    """Open (and set up) the store named by `url`, or by the config's `store_url`.
    Documents it writes are stamped with their department (`soc_core.departments`):
    `departments` given, else the config's `[[departments]]` (none configured: nothing
    is stamped)."""
    from soc_core.config import load_config

    cfg = None
    if url is None:
        cfg = load_config()
        url = cfg.store_url
    if departments is None:
        from soc_core.departments import Departments

        departments = Departments.from_config(cfg or load_config())
    backend = backend_of(url)
    if backend == "sqlite":
        from soc_core.store.sqlite import SqliteStore

        store: EventStore = SqliteStore(url, **options)
    elif backend == "elasticsearch":
        from soc_core.store.elastic import ElasticStore

        store = ElasticStore(url, **options)
    else:
        from soc_core.config import redact_url

        raise StoreError(f"unsupported store URL {redact_url(url)!r}: "
                         "use sqlite:///path.db or http(s)://host:9200")
    store.setup()
    if departments:
        try:
            store.use_departments(departments)
        except BaseException:
            store.close()
            raise
    return store
