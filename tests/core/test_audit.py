"""The audit trail: durable before return, chained, checkpoints signed with real SM2, and
`verify` naming every edited, removed, inserted or reordered record on both stores."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from crypto_svc.sm2 import InvalidSignature, SM2PrivateKey
from soc_core.audit import (
    CHECKPOINT_ACTION,
    AuditTrail,
    AuditUnavailable,
    local_heads,
    record_hash,
    verify,
)
from soc_core.config import Config, ConfigError
from soc_core.spool import HEADER_SIZE
from soc_core.store import Selection, StoreUnavailable, open_store

KEY = SM2PrivateKey.generate()


def signer(data: bytes) -> dict:
    return {"key_id": "test", "version": 1, "alg": "SM2-SM3",
            "value": base64.b64encode(KEY.sign(data)).decode()}


def verifier(data: bytes, sig: dict) -> bool:
    try:
        KEY.public_key.check(data, base64.b64decode(sig["value"]))
    except InvalidSignature:
        return False
    return True


def _fill(trail: AuditTrail, n: int, start: int = 0) -> list[dict]:
    return [trail.record(action="case.update", outcome="success", user=f"analyst{i % 3}",
                         role="analyst", department="finance", object={"type": "case",
                                                                        "id": f"c{i}"},
                         source_ip="10.0.0.7", request_id=f"req-{i}", type="change")
            for i in range(start, start + n)]


def _stored(store) -> dict[int, dict]:
    store.refresh()
    return {d["govsoc"]["audit"]["seq"]: d for d in store.scan(Selection(family="audit"))}


def _replace(store, old: dict, new: dict) -> None:
    """What an intruder with write access to the store does: remove a record, put another."""
    store.delete("audit", [old["event"]["id"]])
    store.write([new], refresh=True)


def _reseal(doc: dict) -> dict:
    """Recompute a record's own hash, as an intruder who knows the format would."""
    doc["govsoc"]["audit"]["hash"] = record_hash(doc)
    return doc


def _wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def _named(report, seq: int, what: str) -> bool:
    return any(p.seq == seq and what in p.what for p in report.problems)


def test_tampering_is_detected_and_named(store, tmp_path):
    with AuditTrail(tmp_path / "audit", store, name="api", signer=signer,
                    checkpoint_every=10, drain_interval=0.01) as trail:
        docs = _fill(trail, 40)
        assert trail.flush()
        chain = trail.chain
    assert docs[0]["event"]["id"] == f"{chain}.1"  # deterministic: chain + seq
    assert docs[1]["govsoc"]["audit"]["prev"] == docs[0]["govsoc"]["audit"]["hash"]
    assert docs[0]["organization"]["id"] == "finance"
    assert docs[0]["http"]["request"]["id"] == "req-0"
    stored = _stored(store)
    # 40 records and a checkpoint after every 10, the last at close
    checkpoints = [d for d in stored.values() if d["event"]["action"] == CHECKPOINT_ACTION]
    assert len(stored) == 44 and len(checkpoints) == 4
    clean = verify(store, verifier=verifier)
    assert clean.ok, clean.problems
    assert clean.chains[chain]["checkpoints"] == 4 and clean.chains[chain]["unsigned_tail"] == 0

    # edited
    edited = copy.deepcopy(stored[5])
    edited["user"]["name"] = "mallory"
    _replace(store, stored[5], edited)
    report = verify(store, verifier=verifier)
    assert [(p.seq, p.id) for p in report.problems] == [(5, f"{chain}.5")]
    assert "edited" in report.problems[0].what
    _replace(store, edited, stored[5])

    # removed
    store.delete("audit", [stored[12]["event"]["id"]])
    report = verify(store, verifier=verifier)
    assert _named(report, 12, "removed") and len(report.problems) == 1
    store.write([stored[12]], refresh=True)

    # inserted: a second record with an existing seq, and a record outside every chain
    forged = _reseal({**copy.deepcopy(stored[20]), "message": "nothing happened"})
    forged["event"]["id"] = f"{chain}.20b"
    stray = {"@timestamp": stored[20]["@timestamp"], "message": "backdated",
             "event": {"dataset": "govsoc.audit", "id": "stray-1", "action": "user.add"}}
    store.write([forged, stray], refresh=True)
    report = verify(store, verifier=verifier)
    assert _named(report, 20, "inserted") or _named(report, 20, "another id")
    assert any(p.id == "stray-1" and "not part of any chain" in p.what
               for p in report.problems)
    store.delete("audit", [forged["event"]["id"], "stray-1"])

    # reordered: 25 and 26 swap places, each resealed
    a, b = copy.deepcopy(stored[25]), copy.deepcopy(stored[26])
    for doc, other in ((a, stored[26]), (b, stored[25])):
        for k in ("seq", "prev", "prev_time"):
            doc["govsoc"]["audit"][k] = other["govsoc"]["audit"][k]
        doc["event"]["id"] = other["event"]["id"]
        _reseal(doc)
    store.delete("audit", [stored[25]["event"]["id"], stored[26]["event"]["id"]])
    store.write([a, b], refresh=True)
    report = verify(store, verifier=verifier)
    assert [(p.chain, p.seq) for p in report.problems] == [(chain, 26), (chain, 27)]
    assert all("does not follow" in p.what for p in report.problems)
    store.delete("audit", [a["event"]["id"], b["event"]["id"]])
    store.write([stored[25], stored[26]], refresh=True)
    assert verify(store, verifier=verifier).ok

    # the suffix rewritten consistently from seq 30 (hashes and links recomputed): the
    # checkpoint signed over the old seq 32 or 33 no longer matches
    prev = stored[29]
    rewritten = []
    for seq in range(30, 45):
        doc = copy.deepcopy(stored[seq])
        if doc["event"]["action"] != CHECKPOINT_ACTION and seq == 31:
            doc["user"]["name"] = "nobody"
        doc["govsoc"]["audit"]["prev"] = prev["govsoc"]["audit"]["hash"]
        rewritten.append(_reseal(doc))
        prev = doc
    store.delete("audit", [stored[s]["event"]["id"] for s in range(30, 45)])
    store.write(rewritten, refresh=True)
    report = verify(store, verifier=verifier)
    assert _named(report, 32, "rewritten: checkpoint seq 33")
    store.delete("audit", [d["event"]["id"] for d in rewritten])
    store.write([stored[s] for s in range(30, 45)], refresh=True)

    # a forged checkpoint signature (the record resealed so only the signature is wrong)
    cp = copy.deepcopy(checkpoints[-1])  # the last record: no successor links to it
    sig = cp["govsoc"]["audit"]["checkpoint"]["signature"]
    sig["value"] = base64.b64encode(SM2PrivateKey.generate().sign(b"x")).decode()
    _replace(store, checkpoints[-1], _reseal(cp))
    report = verify(store, verifier=verifier)
    seq = cp["govsoc"]["audit"]["seq"]
    assert [(p.seq, p.what) for p in report.problems] == [
        (seq, "checkpoint signature does not verify (forged)")]
    _replace(store, cp, checkpoints[-1])

    # the tail cut off after the store acknowledged it: the writer's saved head tells
    store.delete("audit", [stored[s]["event"]["id"] for s in range(41, 45)])
    assert verify(store, verifier=verifier).ok  # nothing in the store says so
    report = verify(store, verifier=verifier, heads=local_heads(tmp_path / "audit"))
    assert _named(report, 41, "tail removed")


def test_store_down_then_up_loses_and_duplicates_nothing(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the store's directory should be")
    url = f"sqlite:///{tmp_path}/db/govsoc.db"
    trail = AuditTrail(tmp_path / "audit", url, name="api", signer=signer,
                       checkpoint_every=500, drain_interval=0.01, retry_max=0.2)
    _fill(trail, 1200)
    _wait_for(lambda: trail.errors)
    assert trail.pending_bytes > 0 and "StoreUnavailable" in trail.errors[-1]
    trail.close(drain_timeout=0)
    # a new process (the same slot) continues the chain while the store is still down
    trail = AuditTrail(tmp_path / "audit", url, name="api", signer=signer,
                       checkpoint_every=500, drain_interval=0.01, retry_max=0.2)
    _fill(trail, 300, start=1200)
    blocker.unlink()  # the store comes back
    assert trail.flush(60)
    trail.close()
    with open_store(url) as store:
        stored = list(store.scan(Selection(family="audit")))
        ids = [d["event"]["id"] for d in stored]
        assert len(ids) == len(set(ids))
        work = [d for d in stored if d["event"]["action"] == "case.update"]
        assert sorted(d["http"]["request"]["id"] for d in work) == sorted(
            f"req-{i}" for i in range(1500))
        report = verify(store, verifier=verifier, heads=local_heads(tmp_path / "audit"))
        assert report.ok, report.problems
        assert len(report.chains) == 1


class HalfStore:
    """The real store, failing in the middle of a batch while `cut` is set: the first half
    of each write reaches the store, then the write fails (a crash or an outage mid-bulk),
    so those records are stored but not acknowledged."""

    def __init__(self, store):
        self.store = store
        self.cut = threading.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write(self, docs, **kw):
        docs = list(docs)
        if self.cut.is_set():
            self.store.write(docs[:len(docs) // 2], **kw)
            raise StoreUnavailable("cut in the middle of a batch (test)")
        return self.store.write(docs, **kw)


def test_a_batch_cut_in_the_middle_is_stored_once_as_hashed(store, tmp_path):
    """Records the drain held in memory and records read back from the spool by the next
    process both reach the store exactly once, byte for byte what the chain hashed (a
    dotted key in `extra` stays as it was hashed, never expanded by the store)."""
    half = HalfStore(store)
    kw = dict(name="api", drain_interval=0.01, retry_max=0.05)
    trail = AuditTrail(tmp_path / "audit", half, **kw)
    half.cut.set()
    sealed = _fill(trail, 150)
    sealed.append(trail.record(action="rule.update", outcome="success", user="sec",
                               extra={"rule.id": "r1"}))
    _wait_for(lambda: trail.errors)
    half.cut.clear()  # the store is whole again: the held batch goes again, in full
    assert trail.flush(30)
    half.cut.set()
    sealed += _fill(trail, 100, start=150)
    _wait_for(lambda: len(trail.errors) > 1)
    trail.close(drain_timeout=0)  # this process ends with a cut batch on disk
    assert half.store is store
    trail = AuditTrail(tmp_path / "audit", store, **kw)  # the next one reads it back
    assert trail.flush(30)
    trail.close()
    stored = _stored(store)
    assert sorted(stored) == list(range(1, 252))
    ids = [d["event"]["id"] for d in store.scan(Selection(family="audit"))]
    assert len(ids) == len(set(ids)) == 251
    for doc in sealed:
        assert stored[doc["govsoc"]["audit"]["seq"]] == doc
    report = verify(store, heads=local_heads(tmp_path / "audit"))
    assert report.ok, report.problems


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from soc_core.audit import AuditTrail
    audit_dir, url, tag = sys.argv[1:4]
    trail = AuditTrail(audit_dir, url, name="api", drain_interval=0.01)
    print(trail.chain, flush=True)
    for i in range(2000):
        trail.record(action="event.search", outcome="success", user=tag, request_id=f"{tag}-{i}")
    while not Path(audit_dir, "release").exists():  # both hold their slot at once
        time.sleep(0.01)
    assert trail.flush(120)
    trail.close()
""")


def test_two_processes_write_two_chains(tmp_path):
    url = f"sqlite:///{tmp_path}/govsoc.db"
    open_store(url).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "audit"), url, tag],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("w1", "w2")]
    chains = {p.stdout.readline().strip() for p in procs}  # type: ignore[union-attr]
    (tmp_path / "audit" / "release").touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert len(chains) == 2
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == ["api-0", "api-1",
                                                                      "release"]
    with open_store(url) as store:
        report = verify(store)
    assert report.ok, report.problems
    assert set(report.chains) == chains
    assert all(c["records"] == 2000 for c in report.chains.values())


RECORDER = textwrap.dedent("""
    import sys
    from soc_core.audit import AuditTrail
    trail = AuditTrail(sys.argv[1], sys.argv[2], name="api")
    for i in range(10_000_000):  # until killed; a line for each record acknowledged
        trail.record(action="events.read", outcome="success", user="reader",
                     request_id=f"r{i}")
        print(i, flush=True)
""")


def test_killed_while_stored_records_wait_for_acknowledgement(tmp_path):
    """The drain acknowledges stored batches in the spool at most once a second: a process
    killed with records the store took but the spool still holds loses none of the records
    it acknowledged, stores none twice, and the next process continues the chain after
    them (not from the older saved head)."""
    url = f"sqlite:///{tmp_path}/govsoc.db"
    open_store(url).close()
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(tmp_path / "audit"), url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head_file = tmp_path / "audit" / "api-0" / "head.json"
    try:
        with open_store(url) as store:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # records stored beyond the saved head
                stored = store.count(Selection(family="audit"))
                saved = json.loads(head_file.read_text())["seq"] if head_file.exists() else 0
                if stored > (saved or 0) + 250:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("the store never held records past the saved head")
    finally:
        proc.kill()
    out, err = proc.communicate(timeout=60)
    done = [int(line) for line in out.split()[:-1]]  # the last line may be cut
    assert done == list(range(len(done))), err[-2000:]
    trail = AuditTrail(tmp_path / "audit", url, name="api")
    assert trail.slot.name == "api-0"  # the killed process's slot and chain
    after = trail.record(action="events.read", outcome="success", user="reader",
                         request_id="after")
    assert trail.flush(60)
    trail.close()
    with open_store(url) as store:
        records = list(store.scan(Selection(family="audit")))
        ids = [d["event"]["id"] for d in records]
        assert len(ids) == len(set(ids))
        got = {d["http"]["request"]["id"] for d in records}
        assert {f"r{i}" for i in done} <= got and "after" in got
        report = verify(store, heads=local_heads(tmp_path / "audit"))
    assert report.ok, report.problems
    assert len(report.chains) == 1
    assert after["govsoc"]["audit"]["seq"] == len(records)

def test_full_spool_fails_closed(tmp_path):
    trail = AuditTrail(tmp_path / "audit", None, name="api", max_bytes=100_000)
    with pytest.raises(AuditUnavailable):
        for _ in range(10_000):
            trail.check()
            _fill(trail, 1)
    seq = trail._head.seq
    with pytest.raises(AuditUnavailable):
        trail.check()
    trail.close()
    again = AuditTrail(tmp_path / "audit", None, name="api", max_bytes=10_000_000)
    assert again._head.seq == seq  # nothing kept was forgotten, nothing refused was chained
    again.close()


def test_no_secret_in_a_record_and_odd_addresses(tmp_path):
    with AuditTrail(tmp_path / "audit", None, name="api") as trail:
        doc = trail.record(action="user.passwd", outcome="success", user="admin",
                           object={"type": "user", "id": "alice", "password": "S3cret!pw"},
                           extra={"identity": {"token_id": "t1", "api_token": "gs_abcdef",
                                               "totp": {"secret": "JBSWY3DP"}}},
                           source_ip="testclient")
    text = str(doc)
    assert "S3cret!pw" not in text and "gs_abcdef" not in text and "JBSWY3DP" not in text
    assert doc["govsoc"]["identity"]["token_id"] == "t1"
    assert doc["source"] == {"address": "testclient"}


def test_retention_below_180_days_is_refused(tmp_path):
    cfg = Config(values={"store_url": f"sqlite:///{tmp_path}/g.db", "retention_days": 90,
                         "data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="at least 180 days"):
        AuditTrail.from_config(cfg, name="api")
    cfg.values["retention_days"] = 365
    trail = AuditTrail.from_config(cfg, name="api")
    assert Path(trail.slot) == tmp_path / "audit" / "api-0"
    trail.close()


def test_prune_below_180_days_keeps_the_audit_trail(tmp_path):
    from click.testing import CliRunner

    from soc_core.cli import store_group

    url = f"sqlite:///{tmp_path}/govsoc.db"
    old = "2020-01-01T00:00:00.000Z"
    with open_store(url) as store:
        store.write([{"@timestamp": old, "event": {"dataset": "auth", "id": "e1"}},
                     {"@timestamp": old, "event": {"dataset": "govsoc.audit", "id": "a1"}}])
    out = CliRunner().invoke(store_group, ["prune", "--older-than", "30d", "--store", url])
    assert out.exit_code == 0 and "deleted 1 documents" in out.output
    assert "audit records are kept at least 180 days" in out.output
    with open_store(url) as store:
        assert store.get("audit", "a1") is not None and store.get("events", "e1") is None


def test_a_drain_catching_up_under_load_stores_only_durable_records_with_few_fsyncs(tmp_path):
    """A record reaches the store only once it is on disk in the spool (else, after a
    power loss, the chain would resume before it and reuse stored ids). A drain catching
    up while requests keep appending makes its batches durable with the fsync that covered
    them, not with one fsync a batch."""
    base = open_store(f"sqlite:///{tmp_path}/govsoc.db")
    ends: dict[int, tuple[int, int]] = {}  # seq -> (segment, end offset) in the spool
    early: list[int] = []
    batches: list[int] = []
    holder: dict[str, AuditTrail] = {}

    class Store:  # the real store; each write checks durability and a request comes in
        def __getattr__(self, name):
            return getattr(base, name)

        def write(self, docs, **kw):
            docs = list(docs)
            trail = holder["trail"]
            durable = trail.spool.durable
            early.extend(p.doc["govsoc"]["audit"]["seq"] for p in docs
                         if ends[p.doc["govsoc"]["audit"]["seq"]] > durable)
            batches.append(len(docs))
            if len(batches) <= 6:  # a request meanwhile: the spool is written again
                _fill(trail, 1, start=10_000 + len(batches))
            return base.write(docs, **kw)

    # long pauses: the drain moves nothing until it is woken below
    trail = AuditTrail(tmp_path / "audit", Store(), name="api", signer=None,
                       drain_interval=30, fsync_interval=30)
    holder["trail"] = trail
    append = trail.spool.append

    def spooled(payload, ms=None):
        where = append(payload, ms)
        for d in json.loads(payload):
            ends[d["govsoc"]["audit"]["seq"]] = (where[0], where[1] + HEADER_SIZE + len(payload))
        return where

    trail.spool.append = spooled
    time.sleep(0.2)  # the drain's first pass (nothing to move) is over
    _fill(trail, 1200)
    before = trail.spool.fsyncs
    assert trail.flush(60)
    syncs = trail.spool.fsyncs - before
    trail.close()
    assert not early
    assert batches == [250, 250, 250, 250, 204, 1, 1]
    # the first batch's fsync covered the 1,200 records; the fifth batch holds the four
    # appended during the first writes, and the last two one each: 4 fsyncs (one a
    # batch, as before: 7)
    assert syncs == 4, (syncs, batches)
    report = verify(base, verifier=verifier)
    assert report.ok, report.problems
    base.close()
