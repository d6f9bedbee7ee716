"""Two real engine processes over one store: one leads the rule set through a lease in the
store, the other stands by; SIGKILL the leader while it runs passes and the other takes
over from the stored checkpoints — the alerts are exactly those of one engine over the
same events (nothing missed, nothing doubled), and rule health shows no gap."""

from __future__ import annotations

import signal
import time

from detect_helpers import alert_map, auth_failure
from engine_procs import EngineProc, wait_for

from detections import DetectionState, Engine, leaders, load_pack
from detections.service import demo_events
from soc_core.store import open_store

LEASE_S = 3.0


def _burst(ip: str) -> list[dict]:
    """An SSH brute force inside the current windows (the engine reads `now - 5 s` back
    to its checkpoint minus a minute)."""
    t = time.time() - 30
    return [auth_failure(i, ip=ip, t=t + i) for i in range(12)]


def test_two_engines_one_leader_failover(store, tmp_path):
    pack = load_pack(backends=[])
    written = demo_events(pack, time.time() - 900)
    assert not store.write(written, refresh=True).rejected
    a, b = EngineProc(store, interval=0.2, lease_s=LEASE_S), \
        EngineProc(store, interval=0.2, lease_s=LEASE_S)
    procs = (a, b)

    def diag() -> str:
        return "\n---\n".join(p.text() for p in procs)

    try:
        wait_for(lambda: a.passes() + b.passes() >= 1, 120, "a first pass", procs)
        leader, follower = (a, b) if a.leading_since() is not None else (b, a)
        assert leader.leading_since() is not None and follower.leading_since() is None, diag()
        assert follower.passes() == 0, diag()  # while the leader lives, it alone runs

        more = _burst("198.51.100.10")
        assert not store.write(more, refresh=True).rejected
        written += more
        n = leader.passes()
        wait_for(lambda: leader.passes() > n, 120, "the leader's next pass", procs)
        assert follower.passes() == 0, diag()

        # passes follow each other 0.2 s apart: the kill lands in (or right between) passes
        leader.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.proc.wait()
        more = _burst("198.51.100.11")  # stored while no engine leads
        assert not store.write(more, refresh=True).rejected
        written += more
        wait_for(lambda: follower.leading_since() is not None, 60, "a takeover", procs)
        took_over = follower.leading_since()
        # its first pass began after the last events were stored
        wait_for(lambda: follower.passes(after=took_over) >= 1, 120,
                 "the new leader's pass", procs)
    finally:
        for p in procs:
            p.stop()
    print(f"\n{store.backend}: takeover {took_over - killed:.1f} s after SIGKILL "
          f"(lease {LEASE_S} s)")

    # one engine alone over the same events
    with open_store(f"sqlite:///{tmp_path}/reference.db") as ref:
        assert not ref.write(written, refresh=True).rejected
        summary = Engine(ref, load_pack(backends=["sqlite"])).run_once()
        assert not summary.errors and summary.new_alerts >= 9
        expected = alert_map(ref)
    assert alert_map(store) == expected

    state = DetectionState.for_store(store).load()
    assert state["health"], "no rule health recorded"
    assert all(not h["gaps"] for h in state["health"].values()), "a window was missed"
    # the last passes were the new leader's, for every rule
    assert {h["engine"] for h in state["health"].values()} == {
        line.split()[1] for _, s, line in follower.lines if "leads" in line and s == "err"}
    [lease] = leaders(store)
    # one takeover (term 2), and the new leader's clean stop handed the lease back
    assert (lease["term"], lease["holder"]) == (2, None)
