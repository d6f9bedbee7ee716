"""A 3-node Elasticsearch cluster (scripts/es-local cluster 3, the shared `es_cluster` fixture)
loses a node to SIGKILL in the middle of a 200,000-event ingest by two collectors, each
shipping through its own real Shipper and spool to the comma-separated list of node URLs;
the node is restarted. Every event must be stored exactly once (count and ids)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from es_cluster_helpers import NODES

from collectors.shipper import Shipper
from soc_core import ecs
from soc_core.store import Selection, open_store

PER_COLLECTOR = 100_000
COLLECTORS = ("alpha", "beta")
DATASET = "test.cluster"


def _event(name: str, i: int) -> dict:
    return ecs.make_event(DATASET, 1_700_000_000 + i, (name, i),
                          {"message": f"{name} event {i}",
                           "observer": {"name": name}})


def _primary_node_pid(store, home: Path) -> tuple[int, str]:
    """The pid of the node holding the primary of the stream's write index: killing it
    forces a replica promotion while writes are arriving."""
    shards = store.es.cat.shards(index=store.index_for("events", DATASET), format="json",
                                 h="prirep,state,node")
    node = next(s["node"] for s in shards if s["prirep"] == "p" and s["state"] == "STARTED")
    port = node.rsplit("-", 1)[1]  # govsoc-node-<http port>
    return int((home / f"node-{port}" / "es.pid").read_text()), node


@pytest.mark.es
# three JVMs starting (twice for one node) on a shared 2-core machine: minutes when busy
@pytest.mark.timeout(1800)
def test_node_killed_mid_ingest_every_event_once(es_cluster, tmp_path):
    urls, home = es_cluster.urls, es_cluster.home
    ns = "t" + uuid.uuid4().hex[:10]
    store = open_store(urls, namespace=ns)
    assert store.replicas == 1
    shippers = {name: Shipper(lambda: open_store(urls, namespace=ns), name=name,
                              data_dir=tmp_path / name, batch_size=2000, flush_interval=0.2,
                              retry_max=2.0, emit_metrics=False).start()
                for name in COLLECTORS}
    total = PER_COLLECTOR * len(COLLECTORS)
    state: dict = {}

    def delivered() -> int:
        return sum(s.health.events_out for s in shippers.values())

    def chaos() -> None:
        while delivered() < total // 4:
            time.sleep(0.05)
        pid, node = _primary_node_pid(store, home)
        os.kill(pid, signal.SIGKILL)
        state["killed"] = (node, delivered())
        time.sleep(5)
        es_cluster.es_local(str(NODES))  # starts the missing node only, waits for all three
        state["restarted_at"] = delivered()

    def produce(name: str) -> None:
        shipper = shippers[name]
        for i in range(PER_COLLECTOR):
            shipper.put(_event(name, i))

    threads = [threading.Thread(target=chaos, daemon=True)]
    threads += [threading.Thread(target=produce, args=(n,), daemon=True) for n in COLLECTORS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert "restarted_at" in state, state
    snaps = {name: s.close(drain_timeout=300) for name, s in shippers.items()}

    # the kill came in the middle of the ingest, not before or after it
    assert 0 < state["killed"][1] < total, state
    for snap in snaps.values():
        assert snap["dropped"] == 0 and snap["rejected"] == 0, snap
        assert snap["spool_bytes"] == 0 and snap["drained"] == snap["spooled"], snap
    try:
        store.refresh()
        sel = Selection(dataset=DATASET)
        assert store.count(sel) == total
        ids = [d["event"]["id"] for d in store.scan(sel, page_size=10_000)]
        assert len(ids) == total
        assert set(ids) == {ecs.stable_id(DATASET, (name, i))
                            for name in COLLECTORS for i in range(PER_COLLECTOR)}
        # the restarted node is back in the cluster
        assert store.es.cluster.health(wait_for_nodes=str(NODES), timeout="30s")[
            "number_of_nodes"] == NODES
    finally:
        store.drop_all()
        store.close()
