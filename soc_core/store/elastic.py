"""The Elasticsearch 8 EventStore: data streams for events and metrics
(`logs-govsoc.<dataset>-<namespace>`, `metrics-govsoc.<dataset>-<namespace>`), plain
indices for alerts, assets, audit and playbook runs (`govsoc-<family>-<namespace>`).

`url` is one node's URL or several, comma-separated (`http://a:9200,http://b:9200`): the
client spreads requests over them and a request whose node is unreachable goes at once to
the next one (elastic-transport marks the node dead for a while; reads by id and bulk
writes go over the store's own keep-alive connections to the same nodes, with the same
failover, see `es_direct`, `_read_by_id` and `_send_bulk`). On a cluster of more
than one data node govsoc's templates ask for one replica (`es_replicas` overrides), so a
node's death loses nothing acknowledged.

Writes are bulk requests with deterministic `_id`s: `create` for append families (a
repeat is a 409, counted as a duplicate), `index` for mutable ones. Rejections are
returned, never dropped; overload (429) and connection loss are retried with backoff.

A data stream deduplicates `create` only within its write index, so after a rollover the
ids of a batch are first looked up in the older backing indices (see
`_stored_in_older_backing_indices`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from soc_core import ecs
from soc_core import query as q
from soc_core.config import load_config, redact_url
from soc_core.store import es_mappings
from soc_core.store.base import (
    EventStore,
    Page,
    Rejected,
    Selection,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WriteResult,
    parse_duration,
)
from soc_core.store.es_direct import DirectReads

log = logging.getLogger(__name__)
_STREAM_FAMILIES = {"events": "logs", "metrics": "metrics"}
_MAX_BATCH_BYTES = 8 * 1024 * 1024
_RETRY_STATUS = {429, 502, 503, 504}
_MGET_MAX_INDICES = 64  # a GET by id of a stream document: one multi-get over this many
_COMPAT = "application/vnd.elasticsearch+json; compatible-with=8"
_BACKING_TTL = 10.0  # seconds a family's list of backing indices is reused


class ElasticStore(EventStore):
    backend = "elasticsearch"

    def __init__(self, url: str, *, namespace: str | None = None, retries: int | None = None,
                 retention_days: int | None = None, retention: str | None = None,
                 request_timeout: float = 60.0, alert_refresh: str | None = None) -> None:
        cfg = load_config()
        self.url = url
        self.namespace = namespace or cfg.get("es_namespace", "default")
        if not self.namespace.replace("_", "").isalnum() or not self.namespace.islower():
            raise StoreError(f"bad namespace {self.namespace!r}: lowercase letters and digits")
        self.retries = int(cfg.get("es_retries", 4)) if retries is None else retries
        self.retention_days = retention_days or int(cfg.get("retention_days", 180))
        hosts = split_hosts(url)
        self.replicas_request = str(cfg.get("es_replicas", "auto"))
        # connection errors fail over to the next node inside the client; statuses (429,
        # 503...) are left to _call and _bulk, which back off
        self.es = Elasticsearch(hosts, request_timeout=request_timeout,
                                max_retries=len(hosts) - 1, retry_on_status=(),
                                retry_on_timeout=False)
        self._direct = DirectReads([n.config for n in self.es.transport.node_pool.all()],
                                   request_timeout)
        self.replicas = 0
        self.retention_request = retention or str(cfg.get("es_retention", "auto"))
        self.retention_mode = "govsoc"
        self.version = ""
        self._backing: dict[str, tuple[float, list[str]]] = {}
        # `es_alert_refresh`: when an alert change becomes searchable. "write": the change
        # refreshes the alerts index (the writer pays a refresh, about a new Lucene segment,
        # per change); "search": changes are written without one and every alert search
        # refreshes the alerts index first (a no-op round trip when nothing changed; the
        # first search after changes pays one refresh for all of them). Both keep
        # read-your-writes for every process that searches through a store. "search" is
        # the default: an analyst waits on the change, while lists are polled and one
        # refresh serves every change made since the last search.
        mode = str(alert_refresh or cfg.get("es_alert_refresh", "search"))
        if mode not in ("write", "search"):
            raise StoreError(f"es_alert_refresh {mode!r}: use write or search")
        self.alert_refresh = mode
        self.fresh_families = frozenset({"alerts"}) if mode == "search" else frozenset()

    # -- naming ------------------------------------------------------------------
    def index_for(self, family: str, dataset: str) -> str:
        kind = _STREAM_FAMILIES.get(family)
        if kind:
            return f"{kind}-govsoc.{dataset}-{self.namespace}"
        return f"govsoc-{family}-{self.namespace}"

    def pattern(self, sel: Selection) -> str:
        kind = _STREAM_FAMILIES.get(sel.family)
        if not kind:
            return f"govsoc-{sel.family}-{self.namespace}"
        if sel.dataset:
            datasets = [sel.dataset] if isinstance(sel.dataset, str) else sel.dataset
            return ",".join(f"{kind}-govsoc.{d}-{self.namespace}" for d in datasets)
        return f"{kind}-govsoc.*-{self.namespace}"

    # -- lifecycle ---------------------------------------------------------------
    def _call(self, fn, *args, **kwargs):
        """One API call; connection problems are retried, then StoreUnavailable."""
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except ApiError as exc:
                if exc.meta.status in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise StoreError(_api_reason(exc)) from exc
            except TransportError as exc:
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise StoreUnavailable(f"Elasticsearch at {redact_url(self.url)} unreachable: "
                                       f"{type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    def setup(self) -> None:
        nodes = self._call(self.es.nodes.info, metric="plugins,settings",
                           filter_path="nodes.*.version,nodes.*.modules.name,nodes.*.roles")
        node = next(iter(nodes.get("nodes", {}).values()), {})
        self.replicas = self._choose_replicas(nodes.get("nodes", {}).values())
        self.version = node.get("version", "")
        if not self.version.startswith("8."):
            raise StoreError(f"Elasticsearch {self.version} found; govsoc needs 8.x")
        modules = {m["name"] for m in node.get("modules", [])}
        retention = f"{self.retention_days}d"
        self.retention_mode = self._choose_retention(modules)
        ilm = None
        if self.retention_mode == "ilm":
            ilm = "govsoc-logs"
            self._call(self.es.ilm.put_lifecycle, name=ilm, policy={"phases": {
                "hot": {"actions": {"rollover": {"max_age": "1d",
                                                 "max_primary_shard_size": "50gb"}}},
                "delete": {"min_age": retention, "actions": {"delete": {}}}}})
        dsl = retention if self.retention_mode == "data_stream_lifecycle" else None
        for name, patterns, stream in (
            ("govsoc-logs", ["logs-govsoc.*-*"], True),
            ("govsoc-metrics", ["metrics-govsoc.*-*"], True),
            ("govsoc-state", ["govsoc-*"], False),
            ("govsoc-audit", ["govsoc-audit-*"], False),
        ):
            body = es_mappings.template(patterns, data_stream=stream, retention=dsl,
                                        ilm_policy=ilm if stream else None,
                                        replicas=self.replicas, audit=name == "govsoc-audit")
            self._call(self.es.indices.put_index_template, name=name, **body)

    def _choose_replicas(self, nodes: Iterable[dict[str, Any]]) -> int:
        """`es_replicas`: auto (1 when the cluster has more than one data node, else 0: a
        single node cannot hold a replica and would stay yellow) or a number."""
        wanted = self.replicas_request.strip().lower()
        if wanted == "auto":
            data = sum(1 for n in nodes
                       if any(r == "data" or r.startswith("data_") for r in n.get("roles", [])))
            return 1 if data > 1 else 0
        if not wanted.isdigit():
            raise StoreError(f"es_replicas {self.replicas_request!r}: use auto or a number")
        return int(wanted)

    def _choose_retention(self, modules: set[str]) -> str:
        """`es_retention`: auto (ILM, else data-stream lifecycle, else govsoc's pruning),
        or one of them by name; a feature the node lacks is a clear error."""
        wanted = self.retention_request
        offered = {"ilm": "x-pack-ilm" in modules,
                   "data_stream_lifecycle": "data-streams" in modules, "govsoc": True}
        if wanted == "auto":
            return next(mode for mode, ok in offered.items() if ok)
        if wanted not in offered:
            raise StoreError(f"es_retention {wanted!r}: use auto, ilm, "
                             "data_stream_lifecycle or govsoc")
        if not offered[wanted]:
            raise StoreError(f"es_retention {wanted!r}: this Elasticsearch node lacks that "
                             "feature (minimal distribution?); use auto or govsoc")
        return wanted

    def close(self) -> None:
        self._direct.close()
        self.es.close()

    # -- writes ------------------------------------------------------------------
    def _write_valid(self, docs: list[ecs.Prepared], *, refresh: bool) -> WriteResult:
        result = WriteResult()
        seen = self._stored_in_older_backing_indices(docs)
        lines: list[bytes] = []
        batch: list[tuple[str, dict[str, Any]]] = []
        size = 0
        for p in docs:
            family, doc, body = p.family, p.doc, p.json
            index = self.index_for(family, p.dataset)
            if (index, p.id) in seen:
                result.duplicates += 1
                continue
            op = "index" if family in ecs.MUTABLE_FAMILIES else "create"
            action = orjson.dumps({op: {"_index": index, "_id": p.id}})
            lines.append(action)
            lines.append(body)
            batch.append((family, doc))
            size += len(action) + len(body) + 2
            if size >= _MAX_BATCH_BYTES:
                result.merge(self._bulk(lines, batch))
                lines, batch, size = [], [], 0
        if batch:
            result.merge(self._bulk(lines, batch))
        if refresh:
            self.refresh()
        return result

    def _read_versioned(self, family: str, doc_id: str
                        ) -> tuple[dict[str, Any] | None, Any]:
        # a real-time GET: sees the latest write without a refresh
        resp = self._call(self._read_by_id, self._doc_path(family, doc_id))
        if resp is None:
            return None, None
        return resp["_source"], (resp["_seq_no"], resp["_primary_term"])

    def _write_if(self, p: ecs.Prepared, version: Any) -> Any:
        """Optimistic concurrency: `if_seq_no`/`if_primary_term` on an index request, or
        `op_type=create` for a document that must not exist yet; a 409 is a lost race."""
        index = self.index_for(p.family, p.dataset)
        cond: dict[str, Any] = ({"op_type": "create"} if version is None else
                                {"if_seq_no": version[0], "if_primary_term": version[1]})
        try:
            resp = self._call(self.es.index, index=index, id=p.id, document=p.json, **cond)
        except StoreError as exc:
            if isinstance(exc.__cause__, ConflictError):
                raise VersionConflict(f"{p.family}/{p.id} changed since version {version}") from exc
            raise
        return resp["_seq_no"], resp["_primary_term"]

    def _stored_in_older_backing_indices(self, docs: list[ecs.Prepared]
                                         ) -> set[tuple[str, str]]:
        """`create` deduplicates only within a data stream's write index. For a stream that
        has rolled over, look the batch's ids up in the older backing indices first, so a
        redelivery after a rollover is still a duplicate, not a second copy."""
        by_stream: dict[str, list[str]] = {}
        for p in docs:
            if p.family in _STREAM_FAMILIES:
                index = self.index_for(p.family, p.dataset)
                by_stream.setdefault(index, []).append(p.id)
        found: set[tuple[str, str]] = set()
        for stream, ids in by_stream.items():
            older = self._older_backing_indices(stream)
            if not older:
                continue
            for i in range(0, len(ids), 10_000):
                chunk = ids[i:i + 10_000]
                hits = self._call(self.es.search, index=",".join(older), size=len(chunk),
                                  query={"ids": {"values": chunk}}, source=False,
                                  ignore_unavailable=True)["hits"]["hits"]
                found.update((stream, h["_id"]) for h in hits)
        return found

    def _older_backing_indices(self, stream: str) -> list[str]:
        """Backing indices other than the write index, cached for a minute (rollovers are
        rare; a stale answer only delays the lookup by that much)."""
        now = time.monotonic()
        cached = self._backing.get(stream)
        if cached and now - cached[0] < 60:
            return cached[1]
        # a wildcard, so a stream that does not exist yet answers empty instead of 404
        resolved = self._call(self.es.indices.resolve_index, name=stream + "*")
        older: list[str] = []
        for ds in resolved.get("data_streams", []):
            if ds["name"] == stream:
                older = list(ds["backing_indices"][:-1])
        self._backing[stream] = (now, older)
        return older

    def _bulk(self, lines: list[bytes], batch: list[tuple[str, dict[str, Any]]]) -> WriteResult:
        result = WriteResult()
        delay = 0.5
        for attempt in range(self.retries + 1):
            resp = self._call(self._send_bulk, lines, "errors,items.*.status,items.*.error")
            if not resp.get("errors"):
                result.written += len(batch)
                return result
            retry_lines: list[bytes] = []
            retry_batch = []
            for i, item in enumerate(resp["items"]):
                (op, info), = item.items()
                status = info.get("status", 0)
                if status in (200, 201):
                    result.written += 1
                elif status == 409 and op == "create":
                    result.duplicates += 1
                elif status in _RETRY_STATUS and attempt < self.retries:
                    retry_lines += lines[2 * i:2 * i + 2]
                    retry_batch.append(batch[i])
                else:
                    err = info.get("error", {})
                    doc = batch[i][1]
                    reason = f"{err.get('type', status)}: {err.get('reason', '')}".strip()
                    result.rejected.append(Rejected(doc["event"]["id"], reason, doc))
            if not retry_batch:
                return result
            lines, batch = retry_lines, retry_batch
            time.sleep(delay)
            delay *= 2
        return result

    def _send_bulk(self, lines: list[bytes], filter_path: str, refresh: bool = False
                   ) -> dict[str, Any]:
        """One bulk request, over the store's keep-alive connections (`es_direct`): the
        client spends about 1.4 ms of CPU on a bulk of 250 audit records, this path 0.8
        (the audit drain sends several a second from every API worker, holding the
        interpreter lock meanwhile). When no node answers there, or the answer is not a 200
        (429, 5xx...), the same bulk goes through the client, whose failover, errors and the
        callers' retries stay the store's. Sending a bulk again is safe: its ids are
        deterministic (a repeated `create` is a 409 duplicate; a repeated versioned `index`
        a conflict, which the caller reads again)."""
        path = f"/_bulk?filter_path={filter_path}" + ("&refresh=true" if refresh else "")
        got = self._direct.request("POST", path, b"\n".join(lines) + b"\n")
        if got is not None and got[0] == 200:
            return orjson.loads(got[1])
        return self.es.bulk(operations=lines, filter_path=filter_path, refresh=refresh).body

    def _write_many_if(self, docs: list[ecs.Prepared], versions: list[Any], *,
                       refresh: bool) -> WriteResult:
        result = WriteResult()
        start, size = 0, 0
        for n, p in enumerate(docs):  # requests of at most ~8 MiB, like _write_valid's
            size += len(p.json)
            if size >= _MAX_BATCH_BYTES or n == len(docs) - 1:
                result.merge(self._bulk_if(docs[start:n + 1], versions[start:n + 1], refresh))
                start, size = n + 1, 0
        return result

    def _bulk_if(self, docs: list[ecs.Prepared], versions: list[Any], refresh: bool
                 ) -> WriteResult:
        result = WriteResult()
        lines: list[bytes] = []
        for p, version in zip(docs, versions, strict=True):
            meta: dict[str, Any] = {"_index": self.index_for(p.family, p.dataset), "_id": p.id}
            if version is None:  # only if absent: `create` answers 409 otherwise
                lines.append(orjson.dumps({"create": meta}))
            else:
                meta["if_seq_no"], meta["if_primary_term"] = version
                lines.append(orjson.dumps({"index": meta}))
            lines.append(p.json)
        if refresh and {p.family for p in docs} <= self.fresh_families:
            refresh = False  # their searches refresh first (es_alert_refresh = "search")
        # refresh=True refreshes only the shards written (the alerts index), not the world
        resp = self._call(self._send_bulk, lines, "items.*.status,items.*.error", refresh)
        for p, item in zip(docs, resp["items"], strict=True):
            info = next(iter(item.values()))
            status = info.get("status", 0)
            if status in (200, 201):
                result.written += 1
            elif status in (409, *_RETRY_STATUS):  # changed meanwhile, or overloaded: again
                result.conflicts.append(p.id)
            else:
                err = info.get("error", {})
                result.rejected.append(Rejected(p.id, f"{err.get('type', status)}: "
                                                      f"{err.get('reason', '')}".strip(), p.doc))
        return result

    def _read_versioned_many(self, family: str, ids: list[str]
                             ) -> dict[str, tuple[dict[str, Any], Any]]:
        out: dict[str, tuple[dict[str, Any], Any]] = {}
        if not ids or family in _STREAM_FAMILIES:
            return out
        index = self.index_for(family, "")
        for i in range(0, len(ids), 1000):
            resp = self._call(self._read_by_id, f"/{quote(index, safe=',*')}/_mget",
                              orjson.dumps({"ids": ids[i:i + 1000]}))
            if resp is None:  # no such index
                return out
            for d in resp["docs"]:
                if d.get("found"):
                    out[d["_id"]] = (d["_source"], (d["_seq_no"], d["_primary_term"]))
        return out

    def delete(self, family: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        sel = Selection(family=family)
        self._fresh(sel)  # a search by ids: it finds only what a refresh made visible
        hits = self._call(self.es.search, index=self.pattern(sel), size=len(ids),
                          query={"ids": {"values": ids}}, source=False,
                          ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"]
        return self._delete_hits(hits)

    def _delete_hits(self, hits: list[dict[str, Any]]) -> int:
        if not hits:
            return 0
        ops = [orjson.dumps({"delete": {"_index": h["_index"], "_id": h["_id"]}}) for h in hits]
        resp = self._call(self.es.bulk, operations=ops, refresh=True,
                          filter_path="items.*.status")
        return sum(1 for it in resp.get("items", []) if next(iter(it.values()))["status"] == 200)

    def refresh(self) -> None:
        self._call(self.es.indices.refresh, index=self._all_indices(),
                   ignore_unavailable=True, allow_no_indices=True)

    def _all_indices(self) -> str:
        ns = self.namespace
        return f"logs-govsoc.*-{ns},metrics-govsoc.*-{ns},govsoc-*-{ns}"

    # -- reads -------------------------------------------------------------------
    def get(self, family: str, doc_id: str) -> dict[str, Any] | None:
        if family not in _STREAM_FAMILIES:
            # one index per family: a real-time GET sees a write before any refresh
            try:
                resp = self._read_by_id(self._doc_path(family, doc_id))
            except (ApiError, TransportError):
                pass  # the search below reports it with the store's own retries
            else:
                return None if resp is None else resp["_source"]
        else:
            found = self._get_from_backing_indices(family, doc_id)
            if found is not None:
                return found
        # not found (or a backing index newer than the cached list): the search decides
        hits = self._search(Selection(family=family), {"ids": {"values": [doc_id]}}, size=1)
        return hits[0]["_source"] if hits else None

    def _get_from_backing_indices(self, family: str, doc_id: str) -> dict[str, Any] | None:
        """A stream document by id through a real-time multi-get on each backing index:
        a data stream answers no GET by id, and a search for one id costs Elasticsearch
        several times a GET (query and fetch phases on a search thread). None when not
        found this way, or when there are too many backing indices for it to pay."""
        indices = self._stream_backing_indices(family)
        if not indices or len(indices) > _MGET_MAX_INDICES:
            return None
        try:
            resp = self._read_by_id("/_mget?filter_path=docs.found,docs._source", orjson.dumps(
                {"docs": [{"_index": i, "_id": doc_id} for i in indices]}))
        except (ApiError, TransportError):
            return None  # the search after it reports it, with the store's own retries
        for d in (resp or {}).get("docs", []):
            if d.get("found"):
                return d["_source"]
        return None

    def _doc_path(self, family: str, doc_id: str) -> str:
        return f"/{quote(self.index_for(family, ''), safe=',*')}/_doc/{quote(doc_id, safe=',*')}"

    def _read_by_id(self, path: str, body: bytes | None = None) -> dict[str, Any] | None:
        """Every read by id (a GET, or a multi-get when `body` is given): the answer, or None
        for a 404 (no such document or index). Over the store's keep-alive connections
        (`es_direct`: a quarter of the client's CPU); when no node answers there, or the
        answer is not a 200 or 404 (429, 5xx...), the same request goes through the client,
        so its failover, errors (ApiError, TransportError: a timeout is one, from either
        path) and the callers' retries and messages stay what they were."""
        method = "GET" if body is None else "POST"
        got = self._direct.request(method, path, body)
        if got is not None and got[0] in (200, 404):
            return orjson.loads(got[1]) if got[0] == 200 else None
        headers = {"accept": _COMPAT}
        if body is not None:
            headers["content-type"] = _COMPAT
        try:
            return self.es.perform_request(method, path, headers=headers, body=body).body
        except NotFoundError:
            return None

    def _stream_backing_indices(self, family: str) -> list[str]:
        """Every backing index of the family's data streams, cached briefly (a new stream or
        a rollover since only means a miss, which the search then answers)."""
        key = "*" + family
        now = time.monotonic()
        cached = self._backing.get(key)
        if cached and now - cached[0] < _BACKING_TTL:
            return cached[1]
        try:
            resolved = self.es.indices.resolve_index(
                name=f"{_STREAM_FAMILIES[family]}-govsoc.*-{self.namespace}")
        except (ApiError, TransportError):
            return []
        indices = [i for ds in resolved.get("data_streams", [])
                   for i in ds.get("backing_indices", [])]
        self._backing[key] = (now, indices)
        return indices

    def _search(self, sel: Selection, extra: dict[str, Any] | None, *, size: int,
                after: list[Any] | None = None, descending: bool = False,
                sort: bool = True) -> list[dict[str, Any]]:
        if after is None:  # a cursor's later pages go on from what the first one saw
            self._fresh(sel)
        body: dict[str, Any] = {"query": self._query(sel, extra), "size": size}
        if sort:
            order = "desc" if descending else "asc"
            body["sort"] = [{"@timestamp": {"order": order}}, {"event.id": {"order": order}}]
        if after is not None:
            body["search_after"] = after
        resp = self._call(self.es.search, index=self.pattern(sel), ignore_unavailable=True,
                          allow_no_indices=True, track_total_hits=False, **body)
        return resp["hits"]["hits"]

    def _page(self, sel: Selection, extra: dict[str, Any] | None, size: int,
              after: list[Any] | None, descending: bool) -> Page:
        hits = self._search(sel, extra, size=size, after=after, descending=descending)
        cursor = list(hits[-1]["sort"]) if hits and len(hits) == size else None
        return Page([h["_source"] for h in hits], cursor)

    def search(self, sel: Selection | None = None, *, size: int = 100,
               after: list[Any] | None = None, descending: bool = False) -> Page:
        return self._page(sel or Selection(), None, size, after, descending)

    def native(self, native_query: Any, sel: Selection | None = None, *, size: int = 1000,
               after: list[Any] | None = None) -> Page:
        if isinstance(native_query, str):
            clause = {"query_string": {"query": native_query, "default_field": "message"}}
        elif isinstance(native_query, dict):
            clause = native_query
        else:
            raise StoreError("Elasticsearch native query must be a Lucene string or a DSL dict")
        return self._page(sel or Selection(), clause, size, after, False)

    def _fresh(self, sel: Selection) -> None:
        """Before a search of a family in `fresh_families`: refresh its index, so the search
        sees every write acknowledged before it (from any process)."""
        if sel.family in self.fresh_families:
            self._call(self.es.indices.refresh, index=self.index_for(sel.family, ""),
                       ignore_unavailable=True, allow_no_indices=True)

    def count(self, sel: Selection | None = None) -> int:
        sel = sel or Selection()
        self._fresh(sel)
        resp = self._call(self.es.count, index=self.pattern(sel), query=self._query(sel, None),
                          ignore_unavailable=True, allow_no_indices=True)
        return resp["count"]

    def terms(self, field: str, sel: Selection | None = None, *, size: int = 10
              ) -> list[tuple[Any, int]]:
        sel = sel or Selection()
        self._fresh(sel)
        resp = self._call(self.es.search, index=self.pattern(sel), size=0,
                          query=self._query(sel, None), ignore_unavailable=True,
                          allow_no_indices=True,
                          aggs={"t": {"terms": {"field": field, "size": size,
                                                "order": [{"_count": "desc"}, {"_key": "asc"}]}}})
        buckets = resp.get("aggregations", {}).get("t", {}).get("buckets", [])
        return [(b.get("key_as_string", b["key"]) if isinstance(b["key"], str) else b["key"],
                 b["doc_count"]) for b in buckets]

    def groups(self, fields: list[str], sel: Selection | None = None
               ) -> list[tuple[tuple[Any, ...], int, int, int]]:
        if not fields:
            raise StoreError("groups needs at least one field")
        sel = sel or Selection()
        sources = [{f"f{i}": {"terms": {"field": f, "missing_bucket": True}}}
                   for i, f in enumerate(fields)]
        out: list[tuple[tuple[Any, ...], int, int, int]] = []
        after = None
        self._fresh(sel)
        while True:  # a composite aggregation, page by page
            comp: dict[str, Any] = {"size": 5000, "sources": sources}
            if after is not None:
                comp["after"] = after
            resp = self._call(self.es.search, index=self.pattern(sel), size=0,
                              query=self._query(sel, None), ignore_unavailable=True,
                              allow_no_indices=True,
                              aggs={"g": {"composite": comp, "aggs": {
                                  "first": {"min": {"field": "@timestamp"}},
                                  "last": {"max": {"field": "@timestamp"}}}}})
            agg = resp.get("aggregations", {}).get("g", {})
            for b in agg.get("buckets", []):
                key = b["key"]
                out.append((tuple(key[f"f{i}"] for i in range(len(fields))), b["doc_count"],
                            int(b["first"]["value"]), int(b["last"]["value"])))
            after = agg.get("after_key")
            if not agg.get("buckets") or after is None:
                return out

    def histogram(self, interval: str, sel: Selection | None = None) -> list[tuple[str, int]]:
        sel = sel or Selection()
        seconds = int(parse_duration(interval).total_seconds())
        self._fresh(sel)
        resp = self._call(self.es.search, index=self.pattern(sel), size=0,
                          query=self._query(sel, None), ignore_unavailable=True,
                          allow_no_indices=True,
                          aggs={"h": {"date_histogram": {"field": "@timestamp",
                                                         "fixed_interval": f"{seconds}s",
                                                         "min_doc_count": 1}}})
        buckets = resp.get("aggregations", {}).get("h", {}).get("buckets", [])
        return [(ecs.format_time(ecs.parse_time(b["key"] / 1000)), b["doc_count"])
                for b in buckets]

    # -- query compilation ---------------------------------------------------------
    def _query(self, sel: Selection, extra: dict[str, Any] | None) -> dict[str, Any]:
        filters: list[dict[str, Any]] = []
        if sel.dataset:
            datasets = [sel.dataset] if isinstance(sel.dataset, str) else list(sel.dataset)
            filters.append({"terms": {"event.dataset": datasets}})
        rng: dict[str, Any] = {}
        if sel.start_ms is not None:
            rng["gte"] = sel.start_ms
        if sel.end_ms is not None:
            rng["lt"] = sel.end_ms
        if rng:
            filters.append({"range": {"@timestamp": {**rng, "format": "epoch_millis"}}})
        for field, value in (sel.filters or {}).items():
            values = list(value) if isinstance(value, (list, tuple, set)) else [value]
            filters.append(_terms(field, values))
        if sel.query is not None:
            filters.append(_node(sel.query))
        if sel.text:
            filters.append(_node(q.parse(sel.text)))
        if extra is not None:
            filters.append(extra)
        return {"bool": {"filter": filters}} if filters else {"match_all": {}}

    # -- retention / info --------------------------------------------------------
    def prune(self, older_than_days: int, families: Iterable[str] = ("events", "metrics",
              "audit", "playbook_runs")) -> int:
        """govsoc's own pruning, for servers without ILM / data-stream lifecycle (and for
        an operator's explicit `store prune`): whole backing indices that hold only old
        data are deleted; older documents in the others are deleted by id."""
        cutoff = ecs.to_millis(datetime.now(UTC) - timedelta(days=older_than_days))
        deleted = 0
        for family in families:
            sel = Selection(family=family, end=cutoff / 1000)
            deleted += self._drop_old_backing_indices(sel, cutoff)
            while True:
                hits = self._search(sel, None, size=5000, sort=False)
                if not hits:
                    break
                deleted += self._delete_hits(hits)
        return deleted

    def _drop_old_backing_indices(self, sel: Selection, cutoff: int) -> int:
        if sel.family not in _STREAM_FAMILIES:
            return 0
        resolved = self._call(self.es.indices.resolve_index, name=self.pattern(sel))
        deleted = 0
        for stream in resolved.get("data_streams", []):
            for index in stream["backing_indices"][:-1]:  # never the write index
                resp = self._call(self.es.search, index=index, size=0, aggs={
                    "newest": {"max": {"field": "@timestamp"}}}, track_total_hits=True)
                newest = resp["aggregations"]["newest"]["value"]
                if newest is not None and newest < cutoff:
                    deleted += resp["hits"]["total"]["value"]
                    self._call(self.es.indices.delete, index=index)
        return deleted

    def info(self) -> dict[str, Any]:
        families: dict[str, dict[str, int]] = {}
        for family in ecs.FAMILIES:
            families[family] = dict(self.terms("event.dataset", Selection(family=family),
                                               size=1000))
        return {"backend": self.backend, "version": f"Elasticsearch {self.version}",
                "url": redact_url(self.url), "namespace": self.namespace,
                "retention": self.retention_mode, "families": families}

    def drop_all(self) -> None:
        """Remove this namespace's plain indices and data-stream documents (tests)."""
        ns = self.namespace
        self._call(self.es.indices.delete, index=f"govsoc-*-{ns}", ignore_unavailable=True,
                   allow_no_indices=True, expand_wildcards="all")
        for kind in ("logs", "metrics"):
            try:
                self.es.indices.delete_data_stream(name=f"{kind}-govsoc.*-{ns}")
            except ApiError:  # no data-streams module: the write indices stay, tiny
                pass


def split_hosts(url: str) -> list[str]:
    """The node URLs of `url` (one, or several comma-separated); StoreError for a part
    that is not an http(s) URL."""
    hosts = [part.strip() for part in url.split(",") if part.strip()]
    bad = [h for h in hosts if not h.startswith(("http://", "https://"))
           or not h.split("://", 1)[1].strip("/")]
    if not hosts or bad:
        raise StoreError(f"bad Elasticsearch URL {redact_url(bad[0] if bad else url)!r}: "
                         "use http(s)://host:9200, several separated by commas")
    return hosts


def _api_reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error", {})
    if isinstance(err, dict):
        root = (err.get("root_cause") or [err])[0]
        return f"{root.get('type', exc.meta.status)}: {root.get('reason', '')}"
    return f"{exc.meta.status}: {err or exc.message}"


def _terms(field: str, values: list[Any]) -> dict[str, Any]:
    if field == "message":
        return {"bool": {"should": [{"match_phrase": {"message": str(v)}} for v in values],
                         "minimum_should_match": 1}}
    return {"terms": {field: values}}


def _node(n: Any) -> dict[str, Any]:
    if isinstance(n, q.And):
        return {"bool": {"filter": [_node(i) for i in n.items]}}
    if isinstance(n, q.Or):
        return {"bool": {"should": [_node(i) for i in n.items], "minimum_should_match": 1}}
    if isinstance(n, q.Not):
        return {"bool": {"must_not": [_node(n.item)]}}
    if isinstance(n, q.Term):
        field = n.field or "message"
        if field == "message":
            return {"match_phrase": {"message": n.value}}
        return {"term": {field: n.value}}
    if isinstance(n, q.Wildcard):
        field = n.field or "message"
        if field == "message":
            return {"wildcard": {"message": {"value": n.pattern, "case_insensitive": True}}}
        return {"wildcard": {field: {"value": n.pattern}}}
    if isinstance(n, q.Range):
        rng: dict[str, Any] = {}
        if n.low is not None:
            rng["gte" if n.include_low else "gt"] = n.low
        if n.high is not None:
            rng["lte" if n.include_high else "lt"] = n.high
        return {"range": {n.field: rng}} if rng else {"exists": {"field": n.field}}
    if isinstance(n, q.Exists):
        return {"exists": {"field": n.field}}
    raise q.QueryError(f"unsupported query element {n!r}")
