"""The shipper on a real SQLite store: batches, spooling while the store is locked,
in-order draining, health snapshots and the metric document."""

from __future__ import annotations

import sqlite3
import threading
import time

from collectors.health import HEALTH_DATASET, load_snapshots
from collectors.shipper import Shipper
from soc_core import ecs
from soc_core.config import Config
from soc_core.store import Selection, open_store


def _events(n: int, start: int = 0) -> list[dict]:
    return [ecs.make_event("test.ship", 1_700_000_000 + i, ("ship", i),
                           {"message": f"event {i}"}) for i in range(start, start + n)]


def _same_store(store):
    """A factory opening another connection to the fixture's store (the shipper opens
    its own in its delivery thread)."""
    if store.backend == "sqlite":
        return lambda: open_store(store.url)
    return lambda: open_store(store.url, namespace=store.namespace)


def test_delivers_everything_once(store, tmp_path):
    with Shipper(_same_store(store), name="t1", data_dir=tmp_path, batch_size=100) as sh:
        sh.put_many(_events(1000))
        sh.put_many(_events(200))  # the same ids again: a redelivery
    store.refresh()
    assert store.count(Selection(dataset="test.ship")) == 1000
    (metric,) = list(store.scan(Selection(family="metrics", dataset=HEALTH_DATASET)))
    c = metric["govsoc"]["collector"]
    assert c["name"] == "t1" and c["events"]["events_in"] == 1200
    (snap,) = load_snapshots(tmp_path)
    assert snap["events_out"] == 1200 and snap["duplicates"] == 200
    assert snap["spooled"] == 0 and snap["dropped"] == 0


def test_locked_store_spools_then_drains_in_order(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    open_store(url).close()
    blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # every other writer now gets SQLITE_BUSY
    sh = Shipper(lambda: open_store(url, timeout=0.05), name="t2", data_dir=tmp_path,
                 batch_size=50, flush_interval=0.05, retry_max=0.2, emit_metrics=False)
    sh.start()
    sh.put_many(_events(500))
    assert sh.flush(timeout=60)
    deadline = time.monotonic() + 30
    while sh.health.spooled < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sh.health.errors >= 1 and sh.health.spooled == 500
    assert sh.spool.pending_bytes > 0
    released = threading.Timer(0.5, blocker.rollback)
    released.start()
    snap = sh.close(drain_timeout=60)
    released.join()
    blocker.close()
    assert snap["drained"] == 500 and snap["spool_bytes"] == 0 and snap["store_up"]
    with open_store(url) as store:
        docs = list(store.scan(Selection(dataset="test.ship"), page_size=1000))
    assert len(docs) == 500
    assert {d["event"]["id"] for d in docs} == {e["event"]["id"] for e in _events(500)}


def test_checkpoint_runs_after_durable(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    seen: list[int] = []
    with Shipper(url, name="t3", data_dir=tmp_path, emit_metrics=False) as sh:
        sh.put_many(_events(10))
        done = sh.checkpoint(lambda: seen.append(sh.health.events_out))
        assert done.wait(30)
    assert seen == [10]


def test_damaged_spool_from_a_previous_run_is_reported_and_the_rest_delivered(tmp_path):
    import orjson

    from soc_core.spool import Spool

    spool_dir = tmp_path / "spool" / "t4"
    batches = [_events(10, start=10 * b) for b in range(3)]
    with Spool(spool_dir) as sp:  # what a crashed run left behind
        for b in batches:
            sp.append(orjson.dumps(b))
    (seg,) = spool_dir.glob("seg-*.spool")
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF  # damage the middle batch
    seg.write_bytes(data)
    url = f"sqlite:///{tmp_path}/s.db"
    with Shipper(url, name="t4", data_dir=tmp_path, emit_metrics=False) as sh:
        pass
    snap = load_snapshots(tmp_path)[0]
    assert snap["drained"] == 20 and snap["spool_corruptions"] == 1
    assert any("checksum mismatch" in r for r in snap["reasons"])
    with open_store(url) as store:
        ids = {d["event"]["id"] for d in store.scan(Selection(dataset="test.ship"))}
    assert ids == {e["event"]["id"] for e in batches[0] + batches[2]}
    assert (sh.health.events_in, sh.health.events_out) == (0, 20)  # only the backlog


def test_store_that_cannot_be_opened_yet_spools_until_it_can(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the database directory should be")
    url = f"sqlite:///{blocker}/s.db"  # cannot be created while `db` is a file
    sh = Shipper(url, name="t5", data_dir=tmp_path, batch_size=100, flush_interval=0.05,
                 retry_max=0.2, emit_metrics=False).start()
    sh.put_many(_events(300))
    assert sh.flush(timeout=60)
    assert sh.health.spooled == 300 and not sh.health.store_up
    assert sh.health.last_error.startswith("StoreUnavailable: cannot open")  # db dir is a file
    blocker.unlink()  # the operator fixes the path: the next retry connects
    snap = sh.close(drain_timeout=60)
    assert snap["drained"] == 300 and snap["spool_bytes"] == 0
    with open_store(url) as store:
        assert store.count(Selection(dataset="test.ship")) == 300


def test_full_spool_drops_and_says_so(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("not a directory")
    sh = Shipper(f"sqlite:///{blocker}/s.db", name="t6", data_dir=tmp_path, batch_size=50,
                 max_batch_size=50, flush_interval=0.05, retry_max=0.2, emit_metrics=False,
                 spool_max_bytes=20_000).start()
    sh.put_many(_events(500))
    assert sh.flush(timeout=60)
    snap = sh.close(drain_timeout=0)
    assert snap["dropped"] > 0 and snap["spooled"] > 0
    assert snap["dropped"] + snap["spooled"] == 500  # every event is accounted for
    assert any("spool" in r and "is full" in r for r in snap["reasons"])


def test_deep_queue_grows_the_batch(store, tmp_path):
    sh = Shipper(_same_store(store), name="t7", data_dir=tmp_path, batch_size=100,
                 max_batch_size=3000, queue_size=10_000, flush_interval=60,
                 emit_metrics=False)
    sh.put_many(_events(5000))  # a source far ahead of the store: all of it is waiting
    sh.start()
    snap = sh.close()
    store.refresh()
    assert store.count(Selection(dataset="test.ship")) == 5000
    # written in batches of max_batch_size, not batch_size: 3000 + 2000
    assert (snap["batches"], snap["largest_batch"]) == (2, 3000)


def test_lone_event_is_written_after_flush_interval_not_batch_size(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    sh = Shipper(url, name="t8", data_dir=tmp_path, batch_size=1000, flush_interval=0.2,
                 emit_metrics=False).start()
    try:
        sh.put(_events(1)[0])
        with open_store(url) as store:  # neither flush() nor close(): the interval alone
            deadline = time.monotonic() + 60  # a bound for a stuck test, not a timing check
            while not store.count(Selection(dataset="test.ship")) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.count(Selection(dataset="test.ship")) == 1
        assert (sh.health.batches, sh.health.largest_batch) == (1, 1)
    finally:
        sh.close()


def test_default_settings_grow_a_deep_queue_and_still_write_a_lone_event_alone(tmp_path):
    """With the config defaults (batch_size 1,000 growing to max_batch_size 20,000,
    flush_interval 1 s): a backlog goes in batches of the largest size, and an event that
    comes after it, with nothing behind it, is still written by the interval alone, not
    held for a batch to fill."""
    url = f"sqlite:///{tmp_path}/s.db"
    cfg = Config(values={"data_dir": str(tmp_path)})
    sh = Shipper.from_config(url, "t9", cfg, emit_metrics=False, queue_size=30_000)
    assert (sh.batch_size, sh.max_batch_size, sh.flush_interval) == (1000, 20_000, 1.0)
    sh.put_many(_events(25_000))  # a backlog: all of it waiting when delivery starts
    sh.start()
    try:
        assert sh.checkpoint().wait(120)
        assert (sh.health.batches, sh.health.largest_batch) == (2, 20_000)
        sh.put(_events(1, start=25_000)[0])
        with open_store(url) as store:  # neither flush() nor close(): the interval alone
            deadline = time.monotonic() + 60  # a bound for a stuck test, not a timing check
            while store.count(Selection(dataset="test.ship")) < 25_001 and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.count(Selection(dataset="test.ship")) == 25_001
        assert sh.health.batches == 3 and sh.health.events_out == 25_001
    finally:
        sh.close()
