"""The audit drain of other processes (`soc_core.audit_drain.AuditDrain`): writers opened
with `drain="external"` only spool; the drain stores their records exactly once, as the
chain hashed them, through restarts and a store that is down, and leaves alone a slot
whose owner drains itself. Real spools, real stores."""

from __future__ import annotations

import json
import os
import threading

import pytest

from soc_core.audit import AuditTrail, local_heads, verify
from soc_core.audit_drain import AuditDrain
from soc_core.config import Config, ConfigError
from soc_core.spool import HEADER_SIZE, Spool
from soc_core.store import Selection, open_store


def _fill(trail: AuditTrail, n: int, tag: str, start: int = 0) -> list[dict]:
    return [trail.record(action="events.read", outcome="success", user="reader",
                         role="analyst", department="finance", object=f"e{i}",
                         source_ip="10.0.0.7", request_id=f"{tag}-{i}")
            for i in range(start, start + n)]


def _ids(store) -> list[str]:
    store.refresh()
    return [d["http"]["request"]["id"] for d in store.scan(Selection(family="audit"))
            if d["event"]["action"] == "events.read"]


def test_two_writers_drained_elsewhere_while_they_write_and_restart(store, tmp_path):
    audit = tmp_path / "audit"
    drain = AuditDrain(audit, store, name="api", interval=0.01).start()
    a = AuditTrail(audit, None, name="api", signer=None, drain="external")
    b = AuditTrail(audit, None, name="api", signer=None, drain="external")
    assert {a.slot.name, b.slot.name} == {"api-0", "api-1"}
    sealed = []
    threads = [threading.Thread(target=lambda t=t, tag=tag: sealed.extend(_fill(t, 700, tag)))
               for t, tag in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()  # a restarts while the drain goes on: same slot, the chain continues
    a = AuditTrail(audit, None, name="api", signer=None, drain="external")
    assert a.slot.name == "api-0"
    sealed += _fill(a, 300, "a", start=700)
    assert a.flush(60) and b.flush(60)  # the drain's cursor reached both tails
    assert a.pending_bytes == 0 == b.pending_bytes
    assert a.status()["drain"] == "external" and not a.status()["store_down"]
    a.close()
    b.close()
    drain.close()
    ids = _ids(store)
    assert len(ids) == len(set(ids)) == 1700
    assert set(ids) == {f"a-{i}" for i in range(1000)} | {f"b-{i}" for i in range(700)}
    stored = {d["event"]["id"]: d for d in store.scan(Selection(family="audit"))}
    for doc in sealed:  # byte for byte what the chain hashed
        assert stored[doc["event"]["id"]] == doc
    report = verify(store, heads=local_heads(audit))
    assert report.ok, report.problems
    assert len(report.chains) == 2 and sorted(c["last"] for c in report.chains.values()) \
        == [700, 1000]
    assert drain.moved == 1700


def test_a_batch_is_on_disk_before_the_store_takes_it(tmp_path, monkeypatch):
    """After a power loss the writer's chain resumes after what its spool holds on disk:
    a record the store took but the disk lost would have its id reused."""
    opened: list[Spool] = []
    real = Spool.drainer.__func__

    def drainer(cls, directory, **kw):
        opened.append(real(cls, directory, **kw))
        return opened[-1]

    monkeypatch.setattr(Spool, "drainer", classmethod(drainer))
    base = open_store(f"sqlite:///{tmp_path}/govsoc.db")
    seen: list[tuple[int, tuple[int, int], tuple[int, int]]] = []

    class Checking:  # the real store, noting how far the drainer's spool was durable
        def __getattr__(self, name):
            return getattr(base, name)

        def write(self, docs, **kw):
            sp = opened[-1]
            seen.append((sp.fsyncs, sp.cursor(), sp.durable))
            return base.write(docs, **kw)

    writer = AuditTrail(tmp_path / "audit", None, name="api", signer=None, drain="external",
                        fsync_interval=60)
    _fill(writer, 600, "w")
    drain = AuditDrain(tmp_path / "audit", Checking(), name="api")
    assert drain.drain_once() == 600
    writer.close()
    drain.close()
    assert len(seen) == 3  # batches of 250, 250, 100
    for fsyncs, cursor, durable in seen:
        assert fsyncs == 1 and durable > cursor  # one fsync covered the three
    assert seen[-1][2][1] == (tmp_path / "audit" / "api-0" / "seg-000000000001.spool"
                              ).stat().st_size
    base.close()


def test_store_down_the_records_wait_then_go_once(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the store's directory should be")
    url = f"sqlite:///{tmp_path}/db/govsoc.db"
    audit = tmp_path / "audit"
    writer = AuditTrail(audit, None, name="api", signer=None, drain="external")
    _fill(writer, 400, "w")
    drain = AuditDrain(audit, url, name="api")
    assert drain.drain_once() is None  # the store is down: one clear failure
    assert drain.down and "StoreUnavailable" in drain.errors[-1]
    status = writer.status()  # the writer reports the drain's state
    assert status["store_down"] and "StoreUnavailable" in status["last_error"]
    saved = json.loads((audit / "drain.json").read_text())
    assert saved["store_down"] and saved["pid"] == os.getpid()
    writer.spool.refresh()
    assert writer.pending_bytes > 0  # waiting on disk, not lost
    _fill(writer, 100, "w", start=400)
    blocker.unlink()  # the store is back
    assert drain.drain_once() == 500
    assert drain.drain_once() == 0
    assert not writer.status()["store_down"]
    writer.close()
    drain.close()
    with open_store(url) as store:
        ids = _ids(store)
        assert sorted(ids) == sorted(f"w-{i}" for i in range(500))
        assert verify(store, heads=local_heads(audit)).ok


def test_a_slot_whose_owner_drains_itself_is_left_alone(tmp_path):
    url = f"sqlite:///{tmp_path}/govsoc.db"
    audit = tmp_path / "audit"
    taken = []

    class Counting:  # the real store, counting what the external drain writes
        def __init__(self):
            self.store = open_store(url)

        def __getattr__(self, name):
            return getattr(self.store, name)

        def write(self, docs, **kw):
            docs = list(docs)
            taken.extend(docs)
            return self.store.write(docs, **kw)

    inline = AuditTrail(audit, url, name="api", signer=None, drain_interval=30)
    _fill(inline, 50, "i")
    drain = AuditDrain(audit, Counting(), name="api")
    assert drain.drain_once() == 0 and not taken  # its owner holds the drain lock
    assert inline.flush(30)
    inline.close()
    drain.close()
    with open_store(url) as store:
        assert sorted(_ids(store)) == sorted(f"i-{i}" for i in range(50))


def test_a_record_being_written_is_not_damage_to_a_drainer(tmp_path):
    """A drainer in another process may read the newest segment while its owner writes a
    record: a tail shorter than its header says is waited for, not skipped. In an older
    segment (its owner moved on) the same tail is damage, reported and skipped."""
    owner = Spool(tmp_path, acks="external")
    owner.append(b"first")
    seg = tmp_path / "seg-000000000001.spool"
    whole = seg.read_bytes()
    owner.append(b"second record")
    full = seg.read_bytes()
    seg.write_bytes(full[:len(whole) + HEADER_SIZE + 3])  # the second one half written
    reader = Spool.drainer(tmp_path)
    first = reader.peek()
    assert first.payload == b"first"
    reader.ack(first)
    assert reader.peek() is None and not reader.corruptions  # not yet there: wait
    with open(seg, "ab") as fh:  # the write completes
        fh.write(full[len(whole) + HEADER_SIZE + 3:])
    second = reader.peek()
    assert second.payload == b"second record" and not reader.corruptions
    # what a drainer delivers it makes durable first: one fsync covers both records
    reader.sync_to(first.segment, first.end)
    reader.sync_to(second.segment, second.end)
    assert reader.fsyncs == 1 and reader.durable == (1, second.end)
    reader.ack(second)
    # the owner dies with a torn record; the next owner writes a new segment
    with open(seg, "ab") as fh:
        fh.write(full[len(whole):len(whole) + HEADER_SIZE + 3])
    reader.close()
    owner.close()
    nxt = Spool(tmp_path, acks="external")
    nxt.append(b"third")
    reader = Spool.drainer(tmp_path)
    third = reader.peek()
    assert third.payload == b"third"
    assert [c.reason for c in reader.corruptions] == ["record truncated"]
    reader.ack(third)
    assert not seg.exists()  # the finished segment went once read past
    reader.close()
    nxt.refresh()
    assert nxt.pending_bytes == 0
    nxt.close()


def test_a_drain_mode_that_does_not_exist_is_one_clear_error(tmp_path):
    cfg = Config(values={"store_url": f"sqlite:///{tmp_path}/g.db", "data_dir": str(tmp_path),
                         "audit": {"drain": "sometimes"}})
    with pytest.raises(ConfigError, match="audit drain 'sometimes': one of inline, external"):
        AuditTrail.from_config(cfg, name="api", signer=None)
    assert not (tmp_path / "audit").exists() or not any((tmp_path / "audit").iterdir())


def test_the_pass_interval_follows_the_store_unless_configured(tmp_path):
    """Elasticsearch gets its bulks spread out (0.2 s), SQLite's workers fewer passes (1 s);
    `audit.drain_interval` wins over both."""
    def drain(store_url, **audit):
        cfg = Config(values={"store_url": store_url, "data_dir": str(tmp_path),
                             "audit": audit})
        return AuditDrain.from_config(cfg, name="api")

    assert drain(f"sqlite:///{tmp_path}/g.db").interval == 1.0
    assert drain("https://127.0.0.1:9/").interval == 0.2  # not connected until a write
    assert drain("https://127.0.0.1:9/", drain_interval=2.5).interval == 2.5
    store = open_store(f"sqlite:///{tmp_path}/h.db")
    assert AuditDrain(tmp_path, store).interval == 1.0
    store.close()
