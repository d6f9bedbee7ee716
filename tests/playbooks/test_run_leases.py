"""Run requests across API workers on several machines over one store (both backends): the
claim is the store's compare-and-set, a running worker's heartbeat is its lease, a run
without one is ended by another worker, and a cancel given to another worker reaches the
one running it. The store and its compare-and-set are real; Ansible is replaced by a
stand-in run that waits until it is told to stop (no fleet needed)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from playbooks import RunRequests
from soc_core.ecs import format_time, now_iso
from soc_core.store import VersionConflict


class Worker(RunRequests):
    """An API worker whose playbook run lasts until `should_cancel` says stop."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.running = threading.Event()
        self.outcome: str | None = None
        self.ended: list[dict] = []
        self.on_finish = self.ended.append

    def run_playbook(self, rec, should_cancel):
        self.running.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if should_cancel():
                self.outcome = "canceled"
                return "canceled", "canceled on request"
            time.sleep(0.01)
        self.outcome = "ran out"
        return "successful", None


@pytest.fixture
def make(store, tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"web-1": {"ansible_host": "127.0.0.1"}}}}))
    made: list[Worker] = []

    def worker(name: str, **kw) -> Worker:
        made.append(Worker(store, tmp_path / name, inventory=inv, **kw))
        return made[-1]

    yield worker
    for w in made:  # no run outlives its test (the store closes after it)
        for rid in list(w.cancels):
            w.cancels[rid].set()
        for t in list(w.threads.values()):
            t.join(30)


def _request(w: Worker) -> str:
    return w.create("block_ip", requester="alice", allowed_departments=("*",),
                    limit="web-1", variables={"ip": "10.213.99.9"})["run_id"]


def _until(what, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (got := what()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def test_two_workers_race_for_one_claim(make, store, monkeypatch):
    a, b = make("a"), make("b")
    rid = _request(a)
    rec = a.get(rid)
    rec["status"] = "approved"
    a.save(rec)
    # both workers read the same version of the request before either writes: one
    # conditional write wins, the other conflicts, reads again and sees it taken
    barrier, first, conflicts = threading.Barrier(2), threading.local(), []
    read, write_if = store.read_versioned, store.write_if

    def read_together(family, doc_id):
        got = read(family, doc_id)
        if not getattr(first, "read", False):
            first.read = True
            barrier.wait(30)
        return got

    def counted_write_if(doc, version, **kw):
        try:
            return write_if(doc, version, **kw)
        except VersionConflict:
            conflicts.append(doc["event"]["id"])
            raise

    monkeypatch.setattr(store, "read_versioned", read_together)
    monkeypatch.setattr(store, "write_if", counted_write_if)
    claims: dict[str, dict | None] = {}
    threads = [threading.Thread(target=lambda w=w: claims.__setitem__(w.worker, w.claim(rid)))
               for w in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    monkeypatch.undo()
    winners = [w for w, rec in claims.items() if rec is not None]
    assert len(claims) == 2 and len(winners) == 1 and conflicts == [f"runreq:{rid}"]
    stored = b.get(rid)
    assert stored["status"] == "running" and stored["claimed_by"] == winners[0]


def test_cancel_through_another_worker_stops_the_run(make):
    a = make("a", heartbeat=0.05, stale_after=30)
    b = make("b")
    rid = _request(a)
    a.approve(rid, "boss")  # the approving worker claims and runs it
    assert a.running.wait(30)
    thread = a.threads[rid]
    claimed = b.get(rid)
    assert claimed["status"] == "running" and claimed["claimed_by"] == a.worker
    # the lease is renewed while it runs
    assert _until(lambda: b.get(rid)["heartbeat"] != claimed["heartbeat"])

    rec = b.cancel(rid, "bob")  # b has no run to stop: it records the cancel
    assert rec["status"] == "running" and rec["canceled_by"] == "bob" and not b.cancels
    thread.join(30)
    end = b.get(rid)
    assert end["status"] == "canceled" and end["reason"] == "canceled by bob"
    assert a.outcome == "canceled"  # a's run stopped because a saw the cancel
    assert [r["status"] for r in a.ended] == ["canceled"] and not b.ended


def test_stale_heartbeat_is_taken_over_by_any_worker(make, store):
    b = make("b", stale_after=30)
    old = format_time(datetime.now(UTC) - timedelta(minutes=10))
    gone, alive = _request(b), _request(b)
    for rid, beat in ((gone, old), (alive, now_iso())):
        rec = b.get(rid)
        # run by a worker on another machine: only its heartbeat tells whether it lives
        rec.update(status="running", claimed_by="other-host:4242:abcdef", started=old,
                   heartbeat=beat)
        b.save(rec)
    assert b.resume() == [gone]
    end = b.get(gone)
    assert end["status"] == "failed" and "no heartbeat" in end["reason"]
    assert b.get(alive)["status"] == "running"
    assert [r["run_id"] for r in b.ended] == [gone]

    # a worker that lost its lease (another ended its run meanwhile) stops its run at the
    # next heartbeat and leaves the other's verdict as it is
    a = make("a", heartbeat=0.05, stale_after=30)
    rid = _request(a)
    a.approve(rid, "boss")
    assert a.running.wait(30)
    thread = a.threads[rid]

    def taken(doc):
        doc["govsoc"]["run_request"].update(status="failed", ended=now_iso(),
                                            reason="taken over")
        return doc

    store.modify("state", f"runreq:{rid}", taken)
    thread.join(30)
    assert a.outcome == "canceled" and not a.ended
    end = b.get(rid)
    assert end["status"] == "failed" and end["reason"] == "taken over"
