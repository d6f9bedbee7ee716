"""How the engine reads a rule's matches: in the store's order (time, then event id) even
when a rule spans several datasets and SQLite is asked one dataset at a time, and a read
cut out of a wider one (a base rule shared by several rules in a pass) holds exactly the
events of its own window."""

from __future__ import annotations

import pytest
from detect_helpers import BASE

from detections import alerts as al
from detections.correlation import getter, group_key, group_keys, key_getter
from detections.engine import Engine, Settings
from detections.rules import load_pack
from soc_core import ecs
from soc_core.store import Selection

LOGON_FAILURE = "govsoc_windows_logon_failure"  # reads six Windows datasets


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def _failure(i: int, t: float, dataset: str) -> dict:
    return ecs.make_event(dataset, t, ("fetch", i), {
        "winlog.channel": "Security", "winlog.event_id": "4625",
        "winlog.computer_name": "OA-PC-017", "winlog.event_data.IpAddress": "10.30.1.17",
        "winlog.event_data.TargetUserName": f"admin{i}"})


def _rule(pack):
    (rule,) = [r for r in pack.rules if r.sigma.name == LOGON_FAILURE]
    assert len(rule.datasets) > 1
    return rule


def _events(store):
    # two datasets interleaved, several events on the same millisecond (ties go by id)
    docs = [_failure(i, BASE + (i // 3) * 0.5, ("system.security", "windows.eventlog")[i % 2])
            for i in range(30)]
    res = store.write(docs, refresh=True)
    assert not res.rejected
    return docs


def _store_order(store, rule, backend: str, start: int, end: int) -> list[str]:
    """The rule's matches read as the store returns them: one selection over all its
    datasets, keyset pages."""
    q = rule.queries[backend]
    native = q if backend == "sqlite" else {"query_string": {"query": q,
                                                             "default_field": "message",
                                                             "lenient": True}}
    sel = Selection(family="events", dataset=rule.datasets, start=al.iso(start), end=al.iso(end))
    out, cursor = [], None
    while True:
        page = store.native(native, sel, size=7, after=cursor)
        out += [d["event"]["id"] for d in page.hits]
        if page.cursor is None:
            return out
        cursor = page.cursor


def _engine(store, pack) -> Engine:
    return Engine(store, pack, settings=Settings(page=7))


def test_multi_dataset_rule_reads_in_store_order(store, pack):
    docs = _events(store)
    rule = _rule(pack)
    eng = _engine(store, pack)
    start, end = BASE * 1000, (BASE + 60) * 1000
    got = [d["event"]["id"] for d in eng.fetch(rule, start, end)]
    assert len(got) == len(docs)
    assert got == _store_order(store, rule, eng.backend, start, end)


def test_a_read_cut_from_a_wider_one_holds_its_window(sqlite_store, pack):
    _events(sqlite_store)
    rule = _rule(pack)
    wide = (BASE * 1000 - 60_000, (BASE + 60) * 1000)
    # boundaries on event times (start inclusive, end exclusive), between them, and empty
    for start, end in [(BASE * 1000, (BASE + 2) * 1000), (BASE * 1000 + 500, BASE * 1000 + 501),
                       (BASE * 1000 + 250, (BASE + 4) * 1000 + 500), (wide[0], BASE * 1000),
                       ((BASE + 5) * 1000 - 1, wide[1])]:
        eng = _engine(sqlite_store, pack)
        eng._spans = {rule.id: wide}  # as planned for a pass that also reads `wide`
        cut = [d["event"]["id"] for d in eng.fetch(rule, start, end)]
        assert (rule.id, *wide) in eng._cache  # served from the wide read
        direct = [d["event"]["id"] for d in _engine(sqlite_store, pack).fetch(rule, start, end)]
        assert cut == direct == _store_order(sqlite_store, rule, "sqlite", start, end)


def test_compiled_getters_read_like_get_field():
    docs = [{"source": {"ip": "10.0.0.1"}}, {"source": ["10.0.0.1"]}, {"source": "x"},
            {"source.ip": "flat"}, {"source": {"source.ip": "half-flat"}}, {}, {"source": None},
            {"a": {"b": {"c": [1, 2]}}}, {"a": {"b.c": 5}}, {"a": {"b": [{"c": 1}]}}]
    for field in ("source.ip", "source", "a.b.c", "a.b"):
        for doc in docs:
            assert getter(field)(doc) == ecs.get_field(doc, field), (field, doc)
    assert key_getter(["a.b.c"])(docs[7]) == ((1, 2),)  # lists become hashable tuples
    assert key_getter(["source.ip", "a.b.c"])(docs[0]) == ("10.0.0.1", None)
    # the column-wise keys of a whole pass: the same, whether every document has the
    # fields (fast path) or not (document by document)
    full = [{"source": {"ip": ip, "port": p}} for ip, p in [("a", 1), ("b", [2, 3]), (None, 4)]]
    for batch in (full, docs, full + docs):
        for fields in (["source.ip"], ["source.ip", "source.port"], ["a.b.c"], []):
            assert group_keys(batch, fields) == [group_key(d, fields) for d in batch]
    assert group_keys(full, ["source.port"]) == [(1,), ((2, 3),), (4,)]
