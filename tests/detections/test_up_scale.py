"""Two real `govsoc up` (every service: agent, detection engine, API) over one store — SQLite
and the private 3-node Elasticsearch cluster: one leads the rule set, the other stands by.
An analyst snoozes a rule through the standby's API and the leader honours it; the leader
is SIGKILLed while it runs its passes and the other takes over from the stored checkpoints.
The alerts are exactly those of one engine over the same events with the same snooze
(every window examined once: nothing missed, nothing doubled) and rule health shows no gap."""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
import uuid

import httpx
import pytest
from detect_helpers import alert_map, auth_failure
from engine_procs import GOVSOC, UpProc, wait_for

from detections import DetectionState, Engine, leaders, load_pack, snooze
from detections.packtests import events_for
from detections.service import DEMO_RULES
from soc_core.store import Selection, open_store

LEASE_S = 3.0
BRUTE = "5e0c1a10-0003-4000-8000-000000000003"  # SSH brute force: the bursts below
SNOOZED = "5e0c1a10-0202-4000-8000-000000000202"  # DNS tunnelling: in the demo events
MASTER = secrets.token_urlsafe(32)  # the keystore master key, made per run


@pytest.fixture(params=["sqlite", pytest.param("cluster", marks=[pytest.mark.es,
                                                                  pytest.mark.es_cluster])])
def up_store(request, tmp_path):
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path}/govsoc.db")
    else:  # the shared cluster; a namespace of this test's own
        store = open_store(request.getfixturevalue("es_cluster").urls,
                           namespace="t" + uuid.uuid4().hex[:10])
    yield store
    if store.backend != "sqlite":
        store.drop_all()
    store.close()


def _holder_pid(store) -> int | None:
    holders = [lease["holder"] for lease in leaders(store) if lease["holder"]]
    return int(holders[0].split(":")[1]) if holders else None


def _runs(store) -> int:
    """Passes of the brute-force rule so far (one per engine pass)."""
    return DetectionState.for_store(store).load()["health"].get(BRUTE, {}).get("runs", 0)


def _burst(ip: str) -> list[dict]:
    t = time.time() - 30
    return [auth_failure(i, ip=ip, t=t + i) for i in range(12)]


def _scenario(pack, start_s: float, rules) -> list[dict]:
    """The demo scenario's events of `rules`, the k-th of DEMO_RULES at start + 20 k s."""
    by_id = pack.by_id()
    return [d for k, rid in enumerate(DEMO_RULES) if rid in rules
            for d in events_for(pack, by_id[rid], "positive", start_s + k * 20)]


def _secadmin_token(up: UpProc, store_url: str) -> str:
    out = subprocess.run([GOVSOC, "token", "create", "--label", "analyst-tool",
                          "--role", "secadmin", "--department", "*", "--store", store_url],
                         capture_output=True, text=True, timeout=600, env=up.env, cwd=up.home)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


# the cluster's three JVMs start within this test's time when it is the first to use them;
# the waits are liveness bounds: a loaded machine slows the cluster's mapping updates
@pytest.mark.timeout(1800)
def test_two_up_share_the_rules_honour_a_snooze_and_fail_over(up_store, tmp_path):
    store = up_store
    env = {"GOVSOC_MASTER_KEY": MASTER}
    pack = load_pack(backends=[])
    # the scenario before the engines start (an engine's first pass starts at the newest
    # events, as `up` does), without the rule to be snoozed: its events come later
    demo = _scenario(pack, time.time() - 900, set(DEMO_RULES) - {SNOOZED})
    assert not store.write(demo, refresh=True).rejected
    a = UpProc(store, tmp_path / "a", lease_s=LEASE_S, **env)
    b = UpProc(store, tmp_path / "b", lease_s=LEASE_S, **env)
    procs = (a, b)
    written: list[dict] = []

    def diag() -> str:
        return "\n---\n".join(p.text() for p in procs)

    def write(docs: list[dict]) -> None:
        assert not store.write(docs, refresh=True).rejected
        written.extend(docs)

    def passes_after(n: int, leader: UpProc) -> None:
        """Two more passes: the second began after what was written before the call."""
        wait_for(lambda: _runs(store) >= n + 2, 600, "two more passes", (leader,))

    try:
        wait_for(lambda: _holder_pid(store) in (a.proc.pid, b.proc.pid), 600,
                 "a leader", procs)
        leader, standby = (a, b) if _holder_pid(store) == a.proc.pid else (b, a)
        # the analyst's snooze goes through the standby's own API
        wait_for(lambda: "govsoc API" in standby.text(), 60, "the standby's API", procs)
        token = _secadmin_token(standby, store.url)
        until = time.time() + 3600
        r = httpx.post(f"{standby.url}/rules/{SNOOZED}/snooze", timeout=30,
                       headers={"Authorization": f"Bearer {token}"},
                       json={"until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until)),
                             "reason": "change window"})
        assert r.status_code == 200, r.text
        snooze_until = r.json()["snooze"]["until"]
        # a snooze holds from the next pass: one that began before it may still alert
        passes_after(_runs(store), leader)

        # the snoozed rule's 48 s of events (k = 4: from 80 s after the start) inside the
        # current window: after the last checkpoint minus a minute, before now - 5 s
        write(_scenario(pack, time.time() - 135, {SNOOZED}) + _burst("198.51.100.10"))
        passes_after(_runs(store), leader)
        assert _holder_pid(store) == leader.proc.pid, diag()
        health = DetectionState.for_store(store).load()["health"]
        assert health[SNOOZED]["snoozed_until"] == snooze_until, health[SNOOZED]
        assert SNOOZED not in {rule for rule, _ in alert_map(store).values()}

        # passes follow each other 1 s apart: the kill lands in (or right between) passes
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        write(_burst("198.51.100.11"))  # stored while no engine leads
        wait_for(lambda: _holder_pid(store) == standby.proc.pid, 600, "a takeover", procs)
        passes_after(_runs(store), standby)
    finally:
        for p in procs:
            p.stop()

    # one engine alone over the same events (the test's and the agents' host snapshots)
    # with the same snooze
    store.refresh()
    events = [d for d in store.scan(Selection(family="events"))]
    assert len(events) >= len(written)
    with open_store(f"sqlite:///{tmp_path}/reference.db") as ref:
        assert not ref.write(events, refresh=True).rejected
        snooze(ref, SNOOZED, snooze_until, by="t", reason="same")
        summary = Engine(ref, load_pack(backends=["sqlite"])).run_once()
        assert not summary.errors and summary.new_alerts >= 7 and summary.snoozed >= 1
        expected = alert_map(ref)
    got = alert_map(store)
    assert got == expected
    assert sum(1 for rule, _ in got.values() if rule == BRUTE) == 3  # the demo's, both bursts'

    state = DetectionState.for_store(store).load()
    assert all(not h["gaps"] for h in state["health"].values()), "a window was missed"
    # the last passes were the standby's, for every rule, and its clean stop released it
    [lease] = leaders(store)
    assert (lease["term"], lease["holder"]) == (2, None)
    assert len({h["engine"] for h in state["health"].values()}) == 1
