"""Exactly-once effect across an Elasticsearch outage: a second, private node (never
the shared test node) is stopped for ~30 s in the middle of a 100,000-event ingest; the
shipper spools meanwhile and drains after the restart. Count and ids are compared."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from collectors.shipper import Shipper
from soc_core import ecs
from soc_core.store import Selection, open_store

ROOT = Path(__file__).resolve().parents[2]

N = 100_000


def _free_port(preferred: int = 9260) -> int:
    for port in range(preferred, preferred + 40, 2):  # the node also binds port + 100
        if all(_is_free(p) for p in (port, port + 100)):
            return port
    raise AssertionError("no free port pair for a private Elasticsearch node")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _es(action: str, env: dict) -> str:
    out = subprocess.run([ROOT / "scripts" / "es-local", action], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"es-local {action} failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


@pytest.fixture
def private_es():
    port = _free_port()
    env = {**os.environ, "ES_PORT": str(port), "ES_HEAP": "512m"}
    url = _es("start", env)
    yield url, env
    _es("stop", env)


def _event(i: int) -> dict:
    return ecs.make_event("test.outage", 1_700_000_000 + i, ("outage", i),
                          {"message": f"event {i}", "source": {"ip": "192.0.2.1",
                                                               "port": i % 65536}})


@pytest.mark.es
def test_es_stopped_mid_ingest_every_event_once(private_es, tmp_path):
    url, env = private_es
    ns = "t" + uuid.uuid4().hex[:10]
    store = open_store(url, namespace=ns)
    shipper = Shipper(lambda: open_store(url, namespace=ns), name="outage", data_dir=tmp_path,
                      batch_size=2000, flush_interval=0.2, retry_max=2.0, emit_metrics=False)
    shipper.start()
    state = {"stopped_at": None, "restarted": False}

    def outage() -> None:
        while shipper.health.events_out < N // 4:
            time.sleep(0.1)
        _es("stop", env)
        state["stopped_at"] = shipper.health.events_in
        time.sleep(30)
        _es("start", env)
        state["restarted"] = True

    chaos = threading.Thread(target=outage, daemon=True)
    chaos.start()
    for i in range(N):
        shipper.put(_event(i))
        if i % 1000 == 999 and state["stopped_at"] is None:
            time.sleep(0.02)  # a steady source rather than one burst
    chaos.join(timeout=400)
    assert state["restarted"]
    snap = shipper.close(drain_timeout=300)

    assert snap["errors"] >= 1 and snap["spooled"] > 0, snap
    assert snap["drained"] == snap["spooled"] and snap["spool_bytes"] == 0
    assert snap["dropped"] == 0 and snap["rejected"] == 0
    try:
        store.refresh()
        sel = Selection(dataset="test.outage")
        assert store.count(sel) == N
        ids = {d["event"]["id"] for d in store.scan(sel, page_size=10_000)}
        assert ids == {ecs.stable_id("test.outage", ("outage", i)) for i in range(N)}
    finally:
        store.drop_all()
        store.close()
