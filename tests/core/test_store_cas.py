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


def test_batch_writes_as_one_unit(store):
    """`batch()`: the writes inside (compare-and-set ones too) are read back inside and
    kept after it; on SQLite they are one transaction, an error inside undoes them all."""
    with store.batch():
        v1 = store.write_if(_doc(1, "batch-1"), None)
        res = store.write_many_if([(_doc(2, "batch-2"), None), (_doc(9, "batch-1"), None)])
        assert res.conflicts == ["batch-1"]  # exists already, inside the batch
        assert store.read_versioned("state", "batch-1") == (
            store.read_versioned("state", "batch-1")[0], v1)
        with pytest.raises(VersionConflict):  # a failed write inside: the batch goes on
            store.write_if(_doc(3, "batch-2"), None)
    store.refresh()
    assert store.get("state", "batch-1")["govsoc"]["n"] == 1
    assert store.get("state", "batch-2")["govsoc"]["n"] == 2
    if store.backend != "sqlite":
        return  # elsewhere each write is its own
    with pytest.raises(RuntimeError), store.batch():
        store.write_if(_doc(4, "batch-3"), None)
        store.write([_doc(5, "batch-1")])
        raise RuntimeError("the writer fails half-way")
    assert store.get("state", "batch-3") is None
    assert store.get("state", "batch-1")["govsoc"]["n"] == 1
