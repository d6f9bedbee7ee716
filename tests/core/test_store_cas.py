"""Conditional writes (compare-and-set) on both stores: the primitive under shared state
and leases (SQLite: a row version under a write transaction; Elasticsearch: if_seq_no /
if_primary_term)."""

from __future__ import annotations

import pytest

from soc_core.store import StoreError, VersionConflict


def _doc(n: int, doc_id: str = "cas-1") -> dict:
    return {"@timestamp": "2026-01-01T00:00:00Z",
            "event": {"kind": "state", "dataset": "govsoc.state.test", "id": doc_id},
            "govsoc": {"n": n}}


def test_write_if_compares_versions(store):
    assert store.read_versioned("state", "cas-1") == (None, None)
    v1 = store.write_if(_doc(1), None)
    with pytest.raises(VersionConflict):
        store.write_if(_doc(2), None)  # exists already
    v2 = store.write_if(_doc(2), v1)
    with pytest.raises(VersionConflict):
        store.write_if(_doc(3), v1)  # stale: someone wrote v2 since
    doc, version = store.read_versioned("state", "cas-1")
    assert (doc["govsoc"]["n"], version) == (2, v2)
    store.write([_doc(4)])  # a plain write is a change too: the old version is stale
    with pytest.raises(VersionConflict):
        store.write_if(_doc(5), v2)

    def add(d):
        d["govsoc"]["n"] += 10
        return d

    doc, _ = store.modify("state", "cas-1", add)
    assert doc["govsoc"]["n"] == 14 == store.get("state", "cas-1")["govsoc"]["n"]
    with pytest.raises(StoreError, match="mutable"):
        store.read_versioned("events", "x")


def test_write_many_if_compares_each_document(store):
    """A batch: new documents (version None), replacements of the version read, a stale
    version and a document that exists already are each decided on their own; the lost
    ones are named in `conflicts`, the rest stored, and a second copy of an id in the
    same batch meets the first one's write."""
    v_old = store.write_if(_doc(1, "many-old"), None)
    store.write_if(_doc(1, "many-taken"), None)
    v_stale = store.write_if(_doc(1, "many-stale"), None)
    store.write_if(_doc(2, "many-stale"), v_stale)
    res = store.write_many_if([
        (_doc(10, "many-new-1"), None),
        (_doc(11, "many-old"), v_old),
        (_doc(12, "many-taken"), None),  # exists already
        (_doc(13, "many-stale"), v_stale),  # changed since it was read
        (_doc(14, "many-new-2"), None),
        (_doc(15, "many-new-1"), None),  # the first copy was just written
    ], refresh=True)
    assert res.written == 3 and not res.rejected
    assert sorted(res.conflicts) == ["many-new-1", "many-stale", "many-taken"]
    got = {i: store.read_versioned("state", i) for i in
           ("many-new-1", "many-new-2", "many-old", "many-taken", "many-stale")}
    assert {i: d["govsoc"]["n"] for i, (d, _) in got.items()} == {
        "many-new-1": 10, "many-new-2": 14, "many-old": 11, "many-taken": 1, "many-stale": 2}
    # the versions handed back by the reads are current: each write_if with them succeeds
    for d, version in got.values():
        store.write_if(d, version)
    assert store.write_many_if([]).written == 0
