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
