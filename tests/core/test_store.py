"""The store contract, run unchanged against SQLite and Elasticsearch (`store` fixture)."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from tcp_relay import TcpRelay

from soc_core import ecs
from soc_core import query as q
from soc_core.query import QueryError
from soc_core.store import Selection, StoreError, StoreUnavailable, open_store

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ev(i: int, *, dataset: str = "network.flow", minutes: float | None = None, **fields):
    doc = {
        "@timestamp": ecs.format_time(T0 + timedelta(minutes=i if minutes is None else minutes)),
        "event": {"dataset": dataset, "id": f"{dataset}-{i}"},
        "source": {"ip": f"10.1.{i % 3}.{i % 250 + 1}", "port": 40000 + i % 1000},
        "destination": {"ip": "10.9.0.1", "port": [22, 443, 3306][i % 3]},
        "host": {"name": f"web-{i % 4}"},
    }
    for key, value in fields.items():
        ecs.set_field(doc, key.replace("__", "."), value)
    return doc


def test_idempotent_batch_and_rejects(store):
    docs = [ev(i) for i in range(50)] + [{"@timestamp": "yesterday", "event": {"dataset": "x"}}]
    first = store.write(docs, refresh=True)
    assert (first.written, first.duplicates, len(first.rejected)) == (50, 0, 1)
    assert "@timestamp" in first.rejected[0].reason
    again = store.write([ev(i) for i in range(60)], refresh=True)
    assert (again.written, again.duplicates) == (10, 50)
    assert store.count() == 60
    assert store.get("events", "network.flow-7")["source"]["port"] == 40007


def test_duplicate_inside_one_batch(store):
    result = store.write([ev(1), ev(1), ev(2)], refresh=True)
    assert (result.written, result.duplicates) == (2, 1)
    assert store.count() == 2


def test_mutable_family_replaces(store):
    alert = {"@timestamp": ecs.format_time(T0), "event": {"kind": "alert", "id": "a-1",
             "dataset": "govsoc.alert"}, "govsoc": {"status": "open"}}
    store.write([alert], refresh=True)
    alert2 = {**alert, "event": dict(alert["event"]), "govsoc": {"status": "closed"}}
    assert store.write([alert2], refresh=True).written == 1
    assert store.count(Selection(family="alerts")) == 1
    assert store.get("alerts", "a-1")["govsoc"]["status"] == "closed"
    assert store.count(Selection(family="events")) == 0


def test_full_text_follows_replacements_and_deletes(store):
    """Text search sees a mutable document's newest message only: across batches, twice in
    one batch, beside new documents in that batch, and not after a delete."""
    def alert(msg: str, i: int = 1) -> dict:
        return {"@timestamp": ecs.format_time(T0), "message": msg,
                "event": {"kind": "alert", "id": f"a-{i}", "dataset": "govsoc.alert"}}

    def hits(text: str) -> list[str]:
        return sorted(d["event"]["id"] for d in store.search(
            Selection(family="alerts", text=text)).hits)

    store.write([alert("暴力破解 first")], refresh=True)
    store.write([alert("second"), alert("暴力破解 third"), alert("fourth", 2)], refresh=True)
    assert (hits("first"), hits("second"), hits("third"), hits("fourth")) == (
        [], [], ["a-1"], ["a-2"])
    assert hits("暴力破解") == ["a-1"]
    store.write([alert("fifth", 2), ev(7, message="fifth")], refresh=True)
    assert (hits("fourth"), hits("fifth")) == ([], ["a-2"])
    assert store.count(Selection(text="fifth")) == 1  # the event, in its own family
    assert store.delete("alerts", ["a-1"]) == 1
    store.refresh()
    assert hits("暴力破解") == []
    if store.backend == "sqlite":  # the index agrees with the text it was told of
        _fts_consistent(store.path)


def test_filters_time_range_and_dataset(store):
    store.write([ev(i) for i in range(30)] + [ev(i, dataset="network.dns") for i in range(10)],
                refresh=True)
    assert store.count(Selection(dataset="network.dns")) == 10
    assert store.count(Selection(dataset=["network.dns", "network.flow"])) == 40
    window = Selection(start=T0 + timedelta(minutes=5), end=T0 + timedelta(minutes=10))
    assert store.count(window) == 10  # 5..9 of each dataset, end exclusive
    assert store.count(Selection(filters={"destination.port": 22})) == 14
    assert store.count(Selection(filters={"destination.port": [22, 443]})) == 27
    web1_dns = Selection(filters={"host.name": "web-1", "event.dataset": "network.dns"})
    assert store.count(web1_dns) == 3


@pytest.mark.parametrize("query,expected", [
    ("destination.port:22", 10),
    ("destination.port:22 AND host.name:web-0", 3),
    ("destination.port:22 OR destination.port:443", 20),
    ("NOT destination.port:22", 20),
    ("-destination.port:22", 20),
    ("host.name:(web-1 OR web-2)", 15),
    ("host.name:web-*", 30),
    ("source.ip:10.1.0.1", 1),
    ("source.port:[40005 TO 40009]", 5),
    ("source.port:{40005 TO 40009}", 3),
    ("source.port:>=40025", 5),
    ('user.name:"张 三"', 1),
    ("user.name:*", 1),
    ("@timestamp:[2026-03-01T08:10:00Z TO *]", 20),
])
def test_query_language(store, query, expected):
    docs = [ev(i) for i in range(30)]
    docs[4]["user"] = {"name": "张 三"}
    store.write(docs, refresh=True)
    assert store.count(Selection(query=query)) == expected


def test_malformed_queries_are_clear_errors():
    for bad in ["a:(b", 'a:"open', "AND x", "a:", "a:[1 TO"]:
        with pytest.raises(QueryError):
            Selection(query=bad)


def test_chinese_free_text(store):
    docs = [
        ev(1, message="用户 admin 登录失败，来源 10.1.1.1"),
        ev(2, message="用户 admin 登录成功"),
        ev(3, message="Failed password for root from 10.2.2.2 port 22 ssh2"),
    ]
    store.write(docs, refresh=True)
    assert [d["event"]["id"] for d in store.search(Selection(text="登录失败")).hits] == [
        "network.flow-1"]
    assert store.count(Selection(text="登录")) == 2
    assert store.count(Selection(text="失败登录")) == 0
    assert store.count(Selection(query='message:"failed password"')) == 1
    assert store.count(Selection(query="fail*")) == 1
    assert store.count(Selection(query="admin AND NOT 成功")) == 1


def test_deep_pagination_no_loss_no_repeat(store):
    # 12,000 documents, many sharing a timestamp, so the id tie-break matters
    docs = [ev(i, minutes=i // 7) for i in range(12_000)]
    for i in range(0, len(docs), 4000):
        assert store.write(docs[i:i + 4000]).written == 4000
    store.refresh()
    for descending in (False, True):
        seen: list[str] = []
        cursor = None
        while True:
            page = store.search(size=997, after=cursor, descending=descending)
            seen += [d["event"]["id"] for d in page.hits]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert len(seen) == 12_000
        assert len(set(seen)) == 12_000
        stamps = [int(s.split("-")[1]) // 7 for s in seen]
        assert stamps == sorted(stamps, reverse=descending)
    assert sum(1 for _ in store.scan(page_size=5000)) == 12_000


def test_aggregations(store):
    store.write([ev(i) for i in range(48)], refresh=True)
    top = store.terms("destination.port")
    assert top == [(22, 16), (443, 16), (3306, 16)]
    assert store.terms("host.name", size=2) == [("web-0", 12), ("web-1", 12)]
    hourly = store.histogram("1h")
    assert hourly == [("2026-03-01T08:00:00.000Z", 48)]
    ten = store.histogram("10m")
    assert [n for _, n in ten] == [10, 10, 10, 10, 8]
    assert ten[1][0] == "2026-03-01T08:10:00.000Z"


def test_native_query_hook(store):
    store.write([ev(i) for i in range(9)], refresh=True)
    if store.backend == "sqlite":
        native = ("json_extract(doc, '$.destination.port') = ?", (3306,))
    else:
        native = "destination.port:3306"
    page = store.native(native, Selection(start=T0 + timedelta(minutes=3)))
    assert sorted(d["event"]["id"] for d in page.hits) == ["network.flow-5", "network.flow-8"]


def test_retention_prunes_only_old_logs(store):
    now = datetime.now(UTC)
    old = [ev(i, minutes=0) for i in range(20)]
    for d in old:
        d["@timestamp"] = ecs.format_time(now - timedelta(days=200))
    fresh = [ev(i + 100) for i in range(5)]
    for d in fresh:
        d["@timestamp"] = ecs.format_time(now - timedelta(days=1))
    alert = {"@timestamp": ecs.format_time(now - timedelta(days=400)),
             "event": {"kind": "alert", "dataset": "govsoc.alert", "id": "old-alert"}}
    store.write(old + fresh + [alert], refresh=True)
    assert store.prune(180) == 20
    store.refresh()
    assert store.count() == 5
    assert store.count(Selection(family="alerts")) == 1
    assert store.prune(180) == 0


def test_concurrent_writers(store):
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            other = open_store(store.url, **({"namespace": store.namespace}
                                             if store.backend == "elasticsearch" else {}))
            for start in range(0, 1000, 100):
                # writers overlap: each writes ids [k*500, k*500+1000)
                other.write([ev(k * 500 + start + j) for j in range(100)])
            other.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store.refresh()
    assert store.count() == 2500


def test_info_counts(store):
    store.write([ev(i) for i in range(3)] + [ev(i, dataset="system.auth") for i in range(2)],
                refresh=True)
    info = store.info()
    assert info["backend"] == store.backend
    assert info["families"]["events"] == {"network.flow": 3, "system.auth": 2}


def test_bad_selection():
    with pytest.raises(StoreError):
        Selection(family="nope")
    with pytest.raises(ValueError):
        Selection(start="last tuesday")


def test_sqlite_checkpoints_off_the_commit_path(tmp_path):
    """Commits leave the WAL alone (no fsync wait in the writer); the store's own thread
    copies it back into the database file soon after, and closing leaves no WAL behind."""
    db = tmp_path / "ckpt.db"
    store = open_store(f"sqlite:///{db}")
    empty = db.stat().st_size
    store.write([ev(i, message="x" * 500) for i in range(3000)])
    deadline = time.monotonic() + 20
    while db.stat().st_size < empty + 1_500_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size >= empty + 1_500_000  # 3000 documents of > 500 bytes
    other = open_store(f"sqlite:///{db}")  # a reader meanwhile sees everything committed
    assert other.count() == 3000
    other.close()
    store.close()
    assert not (tmp_path / "ckpt.db-wal").exists()
    assert open_store(f"sqlite:///{db}").count(Selection(text="x" * 500)) == 3000



def test_sqlite_scratch_store_keeps_no_wal_and_still_rolls_back(tmp_path):
    """`govsoc hunt`'s scratch store (thrown away with the hunt) writes straight into its
    file, without WAL, checkpoint thread or fsync; a transaction that fails still leaves
    nothing of itself behind."""
    db = tmp_path / "scratch.db"
    store = open_store(f"sqlite:///{db}", scratch=True)
    assert store.write([ev(i) for i in range(100)]).written == 100
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "memory"
    assert store._checkpointer is None
    assert not (tmp_path / "scratch.db-wal").exists()
    with pytest.raises(RuntimeError), store.lock, store._tx():
        store.conn.execute("DELETE FROM docs")
        raise RuntimeError("a batch failing half-way")
    assert store.count() == 100
    store.close()


def _fts_consistent(db) -> None:
    """FTS5's own check that the full-text index is whole (an external-content index told
    the wrong text on delete is not). Its comparison with the text (rank 1) would count the
    documents without a message, which are left out of the index on purpose."""
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO docs_fts (docs_fts) VALUES ('integrity-check')")
    conn.close()


def test_sqlite_full_text_of_an_older_database_is_rebuilt(tmp_path):
    """A database whose full-text index kept its own copy of each message (before it read
    docs.fts_text) gets the current index on open, filled from the stored documents: search,
    replacement and delete keep working on it, and the old copy is gone."""
    db = tmp_path / "old.db"
    store = open_store(f"sqlite:///{db}")
    store.write([ev(i, message=f"login failed 暴力破解 n{i}") for i in range(40)]
                + [ev(100 + i) for i in range(10)])
    store.close()
    conn = sqlite3.connect(db, isolation_level=None)  # back to the old layout
    conn.executescript("""
        DROP TRIGGER docs_fts_update; DROP TRIGGER docs_fts_delete; DROP TABLE docs_fts;
        CREATE VIRTUAL TABLE docs_fts USING fts5 (message, tokenize = 'unicode61');
        INSERT INTO docs_fts (rowid, message) SELECT rowid, fts_text FROM docs
            WHERE fts_text IS NOT NULL;
        CREATE TRIGGER docs_fts_delete AFTER DELETE ON docs BEGIN
            DELETE FROM docs_fts WHERE rowid = old.rowid; END;""")
    conn.close()
    store = open_store(f"sqlite:///{db}")
    assert store.count(Selection(text="暴力破解")) == 40
    assert store.count(Selection(text="n7")) == 1
    assert store.delete("events", ["network.flow-7"]) == 1
    assert store.count(Selection(text="暴力破解")) == 39
    store.write([ev(200, message="暴力破解 again")])
    assert store.count(Selection(text="暴力破解")) == 40
    store.close()
    _fts_consistent(db)
    conn = sqlite3.connect(db)
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'docs_fts_content'"
                            ).fetchall()
    conn.close()


# flow fields that EventStore.groups reads from the SQLite value columns; odd values too
# (arrays, objects, booleans, numbers where text is usual, a document without the object)
_ODD = [{"network": {"transport": ["tcp", "udp"], "protocol": {"x": 1}}},
        {"network": {"transport": True, "protocol": 7}, "zeek": {"connection": "gone"}},
        {"network": {"transport": 2 ** 64 - 1, "protocol": 1.5}, "destination": {"port": 0}},
        {"network": "flat", "zeek": {"connection": {"state": ["S0", 1]}}}]
_VALUES = ("destination_port IS NOT json_extract(doc, '$.destination.port') OR "
           "transport IS NOT json_extract(doc, '$.network.transport') OR "
           "protocol IS NOT json_extract(doc, '$.network.protocol') OR "
           "conn_state IS NOT json_extract(doc, '$.zeek.connection.state')")


def _flows() -> list[dict]:
    docs = [ev(i, network__transport="tcp", zeek__connection__state=["SF", "S0"][i % 2],
               **({"network__protocol": "ssh"} if i % 3 == 0 else {})) for i in range(30)]
    for i, extra in enumerate(_ODD):
        docs.append({**ev(500 + i), **extra})
    return docs


def test_sqlite_value_columns_and_one_time_index_reach_older_databases(tmp_path):
    """The flow fields groupings read are columns holding exactly what json_extract reads
    (written by every insert, filled from the documents for a database made before them);
    an older database's two time indexes become docs_ts; lists, dedupe and groupings give
    the same answers before and after."""
    db = tmp_path / "old.db"
    store = open_store(f"sqlite:///{db}")
    assert not store.write(_flows()).rejected
    conn = sqlite3.connect(db)
    assert conn.execute(f"SELECT count(*) FROM docs WHERE {_VALUES}").fetchone() == (0,)
    conn.close()
    fields = ["destination.ip", "destination.port", "network.transport", "network.protocol",
              "zeek.connection.state"]
    grouped = sorted(store.groups(fields, Selection(dataset="network.flow")), key=repr)
    assert ((("10.9.0.1", 22, "tcp", "ssh", "SF"), 5, ecs.to_millis(ev(0)["@timestamp"]),
             ecs.to_millis(ev(24)["@timestamp"])) in grouped)
    newest = store.search(Selection(dataset="network.flow"), size=7, descending=True).hits
    store.close()
    conn = sqlite3.connect(db, isolation_level=None)  # back to the layout before
    conn.executescript("""
        DROP INDEX docs_ts;
        ALTER TABLE docs DROP COLUMN destination_port; ALTER TABLE docs DROP COLUMN transport;
        ALTER TABLE docs DROP COLUMN protocol; ALTER TABLE docs DROP COLUMN conn_state;
        CREATE INDEX docs_time ON docs (family, ts, id);
        CREATE INDEX docs_dataset ON docs (family, dataset, ts, id);""")
    conn.close()
    store = open_store(f"sqlite:///{db}")
    assert sorted(store.groups(fields, Selection(dataset="network.flow")), key=repr) == grouped
    assert store.search(Selection(dataset="network.flow"), size=7, descending=True
                        ).hits == newest
    again = store.write(_flows())  # every id is there already: exactly once
    assert (again.written, again.duplicates) == (0, len(_flows()))
    store.close()
    conn = sqlite3.connect(db)
    assert conn.execute(f"SELECT count(*) FROM docs WHERE {_VALUES}").fetchone() == (0,)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "docs_ts" in indexes and not indexes & {"docs_time", "docs_dataset"}
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT doc FROM docs WHERE family = 'events' AND "
                        "dataset = 'network.flow' ORDER BY ts DESC, id DESC LIMIT 7").fetchall()
    assert "docs_ts" in plan[0][3]
    conn.close()


def _alert(i: int, status: str) -> dict:
    return {"@timestamp": f"2026-01-01T00:00:{i:02d}.000Z", "message": f"alert n{i}",
            "event": {"kind": "alert", "dataset": "govsoc.alert", "id": f"a-{i}"},
            "govsoc": {"alert": {"status": status, "changed": f"2026-01-02T00:00:{i:02d}.000Z"}}}


def test_sqlite_alert_columns_reach_older_databases(tmp_path):
    """A database made when the alert indexes were on json_extract expressions (no alert
    columns) opens with the columns filled from the stored alerts and the indexes on them;
    the open-alert list, the changed-since query, dedupe and search answer as before, and
    appends write the columns."""
    db = tmp_path / "old.db"
    store = open_store(f"sqlite:///{db}")
    assert not store.write([_alert(i, ["open", "closed"][i % 2]) for i in range(10)]
                           + [ev(i, message=f"login failed n{i}") for i in range(20)]).rejected
    store.close()
    conn = sqlite3.connect(db, isolation_level=None)  # back to the layout before
    conn.executescript("""
        DROP INDEX docs_alerts_by_status; DROP INDEX docs_alerts_by_change;
        ALTER TABLE docs DROP COLUMN alert_status; ALTER TABLE docs DROP COLUMN alert_changed;
        CREATE INDEX docs_alert_status ON docs
            (json_extract(doc, '$."govsoc"."alert"."status"'), ts, id) WHERE family = 'alerts';
        CREATE INDEX docs_alert_changed ON docs
            (json_extract(doc, '$."govsoc"."alert"."changed"')) WHERE family = 'alerts';""")
    conn.close()
    store = open_store(f"sqlite:///{db}")
    open_ = Selection(family="alerts", filters={"govsoc.alert.status": "open"})
    assert sorted(h["event"]["id"] for h in store.search(open_).hits) == [
        f"a-{i}" for i in range(0, 10, 2)]
    since = Selection(family="alerts", query=q.Range("govsoc.alert.changed",
                                                     "2026-01-02T00:00:06.000Z", None,
                                                     include_low=False))
    assert store.count(since) == 3
    again = store.write([_alert(i, "open") for i in range(10, 12)] + [ev(i) for i in range(20)])
    assert (again.written, again.duplicates) == (2, 20)  # the events: exactly once
    assert store.count(open_) == 7
    assert store.count(Selection(text="n7")) == 1
    store.close()
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT count(*) FROM docs WHERE alert_status IS NOT "
        "json_extract(doc, '$.govsoc.alert.status') OR alert_changed IS NOT "
        "json_extract(doc, '$.govsoc.alert.changed')").fetchone() == (0,)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"docs_alerts_by_status", "docs_alerts_by_change"} <= indexes
    assert not indexes & {"docs_alert_status", "docs_alert_changed"}
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT doc FROM docs WHERE family = 'alerts' AND "
                        "alert_status = 'open' ORDER BY ts DESC, id DESC LIMIT 5").fetchall()
    assert "docs_alerts_by_status" in plan[0][3]
    conn.close()


@pytest.mark.es
def test_es_partial_failure_is_reported(es_store):
    docs = [ev(i) for i in range(5)]
    docs[2]["network"] = {"bytes": "lots"}  # mapped as long: the node rejects this one
    result = es_store.write(docs, refresh=True)
    assert result.written == 4
    assert [r.id for r in result.rejected] == ["network.flow-2"]
    assert "network.bytes" in result.rejected[0].reason
    assert es_store.count() == 4


@pytest.mark.es
def test_es_data_streams_and_templates(es_store):
    es_store.write([ev(1), ev(2, dataset="network.dns")], refresh=True)
    resolved = es_store.es.indices.resolve_index(name=f"logs-govsoc.*-{es_store.namespace}")
    names = sorted(s["name"] for s in resolved["data_streams"])
    assert names == [f"logs-govsoc.network.dns-{es_store.namespace}",
                     f"logs-govsoc.network.flow-{es_store.namespace}"]
    mapping = es_store.es.indices.get_mapping(index=names[0])
    props = next(iter(mapping.body.values()))["mappings"]["properties"]
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["@timestamp"]["type"] == "date"


def test_store_down_is_a_clear_error(tmp_path):
    with pytest.raises(StoreUnavailable) as err:
        open_store("http://127.0.0.1:9", retries=0)
    assert "unreachable" in str(err.value)
    bad = tmp_path / "not-a-db.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as err2:
        open_store(f"sqlite:///{bad}")
    assert "not a usable govsoc database" in str(err2.value)
    with pytest.raises(StoreError):
        open_store("ftp://example")


@pytest.mark.es
def test_es_retention_mode_follows_the_node(es_url, es_store):
    from soc_core.store import es_mappings

    # the test distribution has neither ILM nor the data-stream lifecycle module
    assert es_store.retention_mode == "govsoc"
    assert es_store.info()["retention"] == "govsoc"
    with pytest.raises(StoreError) as err:
        open_store(es_url, namespace=es_store.namespace, retention="ilm")
    assert "lacks that feature" in str(err.value)
    assert es_store._choose_retention({"x-pack-ilm", "data-streams"}) == "ilm"
    assert es_store._choose_retention({"data-streams"}) == "data_stream_lifecycle"
    # the lifecycle template govsoc writes where the module exists is valid for an 8.x node
    name = f"govsoc-test-{es_store.namespace}"
    body = es_mappings.template([f"logs-{es_store.namespace}.*-*"], data_stream=True,
                                retention="180d")
    es_store.es.indices.put_index_template(name=name, **body)
    got = es_store.es.indices.get_index_template(name=name)["index_templates"][0]
    assert got["index_template"]["template"]["lifecycle"]["data_retention"] == "180d"
    es_store.es.indices.delete_index_template(name=name)


@pytest.mark.es
def test_es_alert_refresh_search_mode_sees_changes_written_without_refresh(es_url, es_store):
    """es_alert_refresh = "search": alert changes are written without a refresh, and every
    alert read by search (page, count, terms, histogram, groups, delete by id) still sees
    each change acknowledged before it, through another store connection too."""
    with pytest.raises(StoreError) as err:
        open_store(es_url, namespace=es_store.namespace, alert_refresh="later")
    assert "use write or search" in str(err.value)
    writer = open_store(es_url, namespace=es_store.namespace, alert_refresh="search")
    reader = open_store(es_url, namespace=es_store.namespace, alert_refresh="search")
    try:
        alerts = Selection(family="alerts", filters={"govsoc.status": "closed"})
        for i in range(3):  # the refresh asked for is skipped; the next search refreshes
            doc = {"@timestamp": ecs.format_time(T0), "govsoc": {"status": "closed"},
                   "event": {"kind": "alert", "id": f"a-{i}", "dataset": "govsoc.alert"}}
            assert writer.write_many_if([(doc, None)], refresh=True).written == 1
            assert reader.count(alerts) == i + 1
            assert [d["event"]["id"] for d in reader.search(alerts).hits][-1] == f"a-{i}"
            assert reader.terms("govsoc.status", alerts) == [("closed", i + 1)]
            assert sum(n for _, n in reader.histogram("1h", alerts)) == i + 1
            assert reader.groups(["govsoc.status"], alerts)[0][1] == i + 1
        doc = {"@timestamp": ecs.format_time(T0), "govsoc": {"status": "closed"},
               "event": {"kind": "alert", "id": "a-3", "dataset": "govsoc.alert"}}
        writer.write_many_if([(doc, None)], refresh=True)
        assert reader.delete("alerts", ["a-3"]) == 1
    finally:
        writer.close()
        reader.close()


@pytest.mark.es
def test_es_redelivery_after_rollover_is_still_a_duplicate(es_store):
    docs = [ev(i) for i in range(20)]
    assert es_store.write(docs, refresh=True).written == 20
    stream = f"logs-govsoc.network.flow-{es_store.namespace}"
    es_store.es.indices.rollover(alias=stream)
    es_store._backing.clear()
    again = es_store.write([ev(i) for i in range(25)], refresh=True)
    assert (again.written, again.duplicates) == (5, 20)
    assert es_store.count() == 25


@pytest.mark.es
def test_es_get_event_by_id_across_backing_indices(es_store):
    """A stream document by id: a multi-get over the backing indices (real time), and a
    search when the cached list of backing indices is older than the document's index."""
    assert es_store.write([ev(i) for i in range(5)], refresh=True).written == 5
    assert es_store.get("events", "network.flow-3")["source"]["port"] == 40003  # caches
    es_store.es.indices.rollover(alias=f"logs-govsoc.network.flow-{es_store.namespace}")
    assert es_store.write([ev(i) for i in range(5, 8)], refresh=True).written == 3
    assert es_store.get("events", "network.flow-6")["source"]["port"] == 40006  # search
    assert es_store.get("events", "network.flow-9") is None
    es_store._backing.clear()
    assert es_store.write([ev(9)]).written == 1  # no refresh: only a real-time read sees it
    assert es_store.get("events", "network.flow-9")["source"]["port"] == 40009
    assert es_store.get("events", "network.flow-3")["source"]["port"] == 40003


def test_credentials_never_reach_messages():
    with pytest.raises(StoreUnavailable) as err:
        open_store("http://govsoc:hunter2secret@127.0.0.1:9", retries=0)
    assert "hunter2secret" not in str(err.value) and "***@127.0.0.1:9" in str(err.value)
    with pytest.raises(StoreError) as err2:
        open_store("ftp://u:hunter2secret@example")
    assert "hunter2secret" not in str(err2.value)


def test_read_by_id_answers_after_the_first_node_stops(es_store, es_url):
    """Reads by id go over the store's own keep-alive connections (`es_direct`): a pooled
    connection to a node that stopped, and that node's port, fail over to the next node."""
    alert = {"@timestamp": ecs.format_time(T0), "event": {"kind": "alert", "id": "a-9",
             "dataset": "govsoc.alert"}, "govsoc": {"status": "open"}}
    es_store.write([ev(9), alert], refresh=True)
    # a relay to the real node stands for the first node of the list
    host, port = es_url.split("://", 1)[1].strip("/").rsplit(":", 1)
    first = TcpRelay("127.0.0.1", (host, int(port)))
    two = open_store(f"http://127.0.0.1:{first.port},{es_url}", namespace=es_store.namespace,
                     retries=0)
    try:
        for _ in range(3):  # new connections go round the list: the first node is used
            assert two.get("alerts", "a-9")["govsoc"]["status"] == "open"
        assert first.accepted
        first.stop()
        for _ in range(3):
            assert two.get("alerts", "a-9")["govsoc"]["status"] == "open"
            assert two.get("events", "network.flow-9")["source"]["port"] == 40009
            doc, version = two.read_versioned("alerts", "a-9")
            assert doc["event"]["id"] == "a-9" and version is not None
            assert set(two.read_versioned_many("alerts", ["a-9", "nope"])) == {"a-9"}
            assert two.get("alerts", "nope") is None
    finally:
        first.stop()
        two.close()


def test_bulk_writes_go_over_the_stores_connections_and_fail_over(es_store, es_url):
    """Bulk writes go over the store's own keep-alive connections (`es_direct`), like reads
    by id: duplicates, versioned writes and their conflicts answer as before, and a node
    that stopped fails over to the next."""
    host, port = es_url.split("://", 1)[1].strip("/").rsplit(":", 1)
    first = TcpRelay("127.0.0.1", (host, int(port)))
    two = open_store(f"http://127.0.0.1:{first.port},{es_url}", namespace=es_store.namespace,
                     retries=0)
    try:
        two._direct.close()
        assert two.write([ev(1), ev(2)]).written == 2
        assert two._direct._idle  # the bulk's connection, kept for the next one
        again = two.write([ev(1), ev(3)])
        assert (again.written, again.duplicates) == (1, 1)
        alert = {"@timestamp": ecs.format_time(T0), "event": {"kind": "alert", "id": "a-7",
                 "dataset": "govsoc.alert"}, "govsoc": {"status": "open"}}
        assert two.write_many_if([(alert, None)]).written == 1
        assert two.write_many_if([(alert, None)]).conflicts == ["a-7"]
        first.stop()
        for i in range(4, 7):
            assert two.write([ev(i)]).written == 1
        two.refresh()
        assert es_store.count(Selection()) == 6
        assert two.read_versioned("alerts", "a-7")[0]["govsoc"]["status"] == "open"
    finally:
        first.stop()
        two.close()


def test_read_by_id_with_every_node_down_is_a_clear_error():
    from soc_core.store.elastic import ElasticStore

    ports = []
    for _ in range(2):  # ports nobody listens on
        with socket.create_server(("127.0.0.1", 0)) as s:
            ports.append(s.getsockname()[1])
    down = ElasticStore(",".join(f"http://u:hunter2secret@127.0.0.1:{p}" for p in ports),
                        retries=0)
    try:
        for read in (lambda: down.get("alerts", "a-1"),
                     lambda: down.read_versioned("alerts", "a-1"),
                     lambda: down.read_versioned_many("alerts", ["a-1"])):
            with pytest.raises(StoreUnavailable) as err:
                read()
            assert "unreachable" in str(err.value) and "hunter2secret" not in str(err.value)
    finally:
        down.close()


def test_read_by_id_from_a_node_that_never_answers_is_a_timeout():
    """A node that takes the connection and answers nothing: the read ends after the
    store's request timeout as StoreUnavailable (no hang, no other error)."""
    from soc_core.store.elastic import ElasticStore

    with socket.create_server(("127.0.0.1", 0)) as mute:  # never accepts: connects, no reply
        slow = ElasticStore(f"http://127.0.0.1:{mute.getsockname()[1]}", retries=0,
                            request_timeout=0.3)
        try:
            with pytest.raises(StoreUnavailable) as err:
                slow.read_versioned("alerts", "a-1")
            assert "ConnectionTimeout" in str(err.value)
        finally:
            slow.close()


@pytest.mark.es
def test_es_audit_index_skips_the_chain_hashes_and_idle_refreshes(es_store, tmp_path):
    """The audit index's own template: the chain's hashes are doc values only (a search for
    one still finds its record), no explicit refresh interval (an idle shard is not
    refreshed every second), and the trail stored there still verifies."""
    from soc_core.audit import AuditTrail, verify

    with AuditTrail(tmp_path / "audit", es_store, name="api", signer=None,
                    drain_interval=0.01) as trail:
        docs = [trail.record(action="case.update", outcome="success", user="ann",
                             role="analyst", department="finance", object={"id": f"c{i}"},
                             request_id=f"req-{i}") for i in range(3)]
        assert trail.flush()
    index = es_store.index_for("audit", "")
    mapping = es_store.es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    chain = mapping["govsoc"]["properties"]["audit"]["properties"]
    assert chain["hash"]["index"] is False and chain["prev"]["index"] is False
    assert "index" not in chain["chain"]  # what is searched stays indexed
    settings = es_store.es.indices.get_settings(index=index)[index]["settings"]["index"]
    assert "refresh_interval" not in settings
    last = docs[-1]["govsoc"]["audit"]
    for query in (f'govsoc.audit.hash:"{last["hash"]}"', f'govsoc.audit.chain:"{last["chain"]}"'
                  f' AND user.name:ann AND http.request.id:"req-2"'):
        hits = es_store.search(Selection(family="audit", query=query)).hits
        assert [h["event"]["id"] for h in hits] == [docs[-1]["event"]["id"]]
    report = verify(es_store)
    assert report.records == 3 and not report.problems
