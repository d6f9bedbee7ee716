"""The engine: checkpoints across restarts (no miss, no double alert), suppression, gaps and
backfill, exceptions, snoozing, workflow, rule errors — on both stores."""

from __future__ import annotations

import pytest
from detect_helpers import BASE, alert_map, alerts_by_rule, auth_failure

from detections import alerts as al
from detections.engine import Engine, Settings
from detections.rules import load_pack
from detections.state import DetectionState
from detections.tuning import TuningError, add_exception, health, snooze, unsnooze
from soc_core import ecs
from soc_core.store import Selection

BRUTE = "5e0c1a10-0003-4000-8000-000000000003"
ROOT_LOGIN = "5e0c1a10-0006-4000-8000-000000000006"
SUDO_SHELL = "5e0c1a10-0008-4000-8000-000000000008"


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def _engine(store, pack, **kw):
    return Engine(store, pack, settings=Settings(interval_s=30, delay_ms=0, lookback_ms=60_000,
                                                 initial_ms=86_400_000, **kw))


def _root_login(t: float, ip: str = "203.0.113.20", n: int = 0) -> dict:
    return ecs.make_event("system.auth", t, ("root", ip, t, n), {
        "event.action": "ssh_login", "event.outcome": "success", "user.name": "root",
        "source.ip": ip, "host.name": "gov-web-01"})


def test_restart_neither_misses_nor_repeats(store, pack):
    store.write([auth_failure(i, t=BASE + i) for i in range(12)], refresh=True)
    _engine(store, pack).run_once(now=BASE + 120)
    first = alert_map(store)
    assert [c for r, c in first.values() if r == BRUTE] == [12]
    # a new engine (a restart) over the same window: same alert, same count
    _engine(store, pack).run_once(now=BASE + 150)
    assert alert_map(store) == first
    # more attempts in the same suppression bucket while the engine is down, then restart:
    # the same alert grows, nothing is missed, nothing is counted twice
    store.write([auth_failure(i, t=BASE + 200 + i) for i in range(12, 20)], refresh=True)
    _engine(store, pack).run_once(now=BASE + 400)
    again = alert_map(store)
    assert set(again) == set(first)
    assert [c for r, c in again.values() if r == BRUTE] == [20]
    cp = DetectionState.for_store(store).load()["checkpoints"][BRUTE]
    assert cp == (BASE + 400) * 1000


def test_suppression_updates_one_alert_per_group_and_window(store, pack):
    docs = [_root_login(BASE + i * 60, n=i) for i in range(5)]  # 5 logins in 5 minutes
    docs.append(_root_login(BASE + 30, ip="203.0.113.21"))  # another group
    docs.append(_root_login(BASE + 7200, n=99))  # same group, a later bucket (1h default)
    store.write(docs, refresh=True)
    _engine(store, pack).run_once(now=BASE + 8000)
    alerts = [a for a in store.scan(Selection(family="alerts"))
              if a["rule"]["id"] == ROOT_LOGIN]
    counts = sorted((a["source"]["ip"], a["govsoc"]["alert"]["count"]) for a in alerts)
    assert counts == [("203.0.113.20", 1), ("203.0.113.20", 5), ("203.0.113.21", 1)]
    five = next(a for a in alerts if a["govsoc"]["alert"]["count"] == 5)
    assert five["govsoc"]["alert"]["first_seen"] == ecs.format_time(ecs.parse_time(BASE))
    assert five["govsoc"]["alert"]["last_seen"] == ecs.format_time(ecs.parse_time(BASE + 240))
    assert len(five["govsoc"]["alert"]["event_ids"]) == 5


@pytest.mark.parametrize("passes", [1, 2])
def test_a_burst_across_a_bucket_boundary_is_one_alert(store, pack, passes):
    """20 failed logins from 10 s before an hour boundary to 9 s after it: the brute-force
    windows ending after the boundary began before it, in a bucket that already alerted,
    so they update that alert (in the same pass or a later one) instead of a second."""
    edge = BASE + 3 * 3600
    store.write([auth_failure(i, t=edge - 10 + i) for i in range(20)], refresh=True)
    if passes == 2:  # the first pass ends after the threshold and before the boundary
        _engine(store, pack).run_once(now=edge - 0.5, since=edge - 600)
        assert [c for r, c in alert_map(store).values() if r == BRUTE] == [10]
    _engine(store, pack).run_once(now=edge + 60, since=edge - 600)
    brute = [a for a in store.scan(Selection(family="alerts")) if a["rule"]["id"] == BRUTE]
    assert len(brute) == 1, [a["govsoc"]["alert"]["window"] for a in brute]
    alert = brute[0]["govsoc"]["alert"]
    assert alert["count"] == 20 and len(set(alert["event_ids"])) == 20
    assert alert["window"]["end"] == al.iso(edge * 1000)
    assert alert["last_seen"] == al.iso((edge + 9) * 1000)
    # a burst that begins after the boundary is the next bucket's own alert
    store.write([auth_failure(i, t=edge + 1000 + i) for i in range(20, 32)], refresh=True)
    _engine(store, pack).run_once(now=edge + 1200, since=edge - 600)
    assert sorted(c for r, c in alert_map(store).values() if r == BRUTE) == [12, 20]


def test_gap_is_recorded_and_backfilled(store, pack):
    eng = _engine(store, pack)
    eng.run_once(now=BASE)  # checkpoint at BASE
    # the engine is down for two hours; a root login happens meanwhile
    store.write([_root_login(BASE + 3600)], refresh=True)
    eng.run_once(now=BASE + 7200)
    assert alerts_by_rule(store)[ROOT_LOGIN] == 1
    h = health(store)[ROOT_LOGIN]
    assert h["gaps"] and h["gaps"][-1]["backfilled"] is True
    assert h["gaps"][-1]["start"] == ecs.format_time(ecs.parse_time(BASE))
    assert h["runs"] == 2 and h["errors"] == 0 and h["total_matches"] == 1
    assert h["duration_ms"] >= 0 and h["last_run"]


def test_exception_excludes_known_benign_matches(store, pack):
    add_exception(store, ROOT_LOGIN, "source.ip", ["203.0.113.2*"], by="wang",
                  reason="jump host of the provincial SOC")
    store.write([_root_login(BASE), _root_login(BASE, ip="198.51.100.9")], refresh=True)
    _engine(store, pack).run_once(now=BASE + 600)
    ips = [a["source"]["ip"] for a in store.scan(Selection(family="alerts"))
           if a["rule"]["id"] == ROOT_LOGIN]
    assert ips == ["198.51.100.9"]
    exc = DetectionState.for_store(store).load()["exceptions"][ROOT_LOGIN][0]
    assert exc["by"] == "wang" and exc["reason"].startswith("jump host")
    with pytest.raises(TuningError):
        add_exception(store, ROOT_LOGIN, "source.ip", ["1.2.3.4"], by="x", reason=" ")


def test_snooze_until_a_time(sqlite_store, pack):
    store = sqlite_store
    snooze(store, ROOT_LOGIN, "2999-01-01T00:00:00Z", by="li", reason="maintenance")
    store.write([_root_login(BASE)], refresh=True)
    summary = _engine(store, pack).run_once(now=BASE + 600)
    assert summary.snoozed == 1
    assert alerts_by_rule(store)[ROOT_LOGIN] == 0
    assert health(store)[ROOT_LOGIN]["snoozed_until"].startswith("2999-01-01")
    assert unsnooze(store, ROOT_LOGIN)
    store.write([_root_login(BASE + 700)], refresh=True)
    _engine(store, pack).run_once(now=BASE + 1200)
    assert alerts_by_rule(store)[ROOT_LOGIN] == 1
    with pytest.raises(TuningError):
        snooze(store, ROOT_LOGIN, "2001-01-01T00:00:00Z", by="li")


def test_workflow_status_assignee_notes(store, pack):
    store.write([_root_login(BASE)], refresh=True)
    _engine(store, pack).run_once(now=BASE + 600)
    (aid,) = alert_map(store)
    al.set_status(store, aid, status="acknowledged", assignee="zhao", note="looking", by="zhao")
    al.set_status(store, aid, status="closed", close_reason="false_positive",
                  note="ops migration", by="zhao")
    doc = store.get("alerts", aid)
    a = doc["govsoc"]["alert"]
    assert (a["status"], a["close_reason"], a["assignee"]) == ("closed", "false_positive", "zhao")
    assert [n["text"] for n in a["notes"]] == ["looking", "ops migration"]
    # a later pass over the same matches keeps the workflow state
    _engine(store, pack).run_once(now=BASE + 900)
    assert store.get("alerts", aid)["govsoc"]["alert"]["status"] == "closed"
    with pytest.raises(al.AlertError):
        al.set_status(store, aid, status="done")
    with pytest.raises(al.AlertError):
        al.set_status(store, "no-such-alert", status="open")
    assert store.get("alerts", aid)["govsoc"]["alert"]["status"] == "closed"


def test_a_failing_rule_is_reported_and_the_others_run(sqlite_store, tmp_path):
    (tmp_path / "bad.yml").write_text(
        "title: broken regex\nid: 0b0b0b0b-0000-4000-8000-000000000001\nlevel: high\n"
        "logsource: {product: linux, service: sshd}\n"
        "detection:\n  sel:\n    message|re: '([unclosed'\n  condition: sel\n")
    (tmp_path / "noisy.yml").write_text(
        "title: every ssh login\nid: 0b0b0b0b-0000-4000-8000-000000000002\nlevel: low\n"
        "tags: [attack.t1078]\nlogsource: {product: linux, service: sshd}\n"
        "detection:\n  sel:\n    event.action: ssh_login\n  condition: sel\n")
    full = load_pack(["detections/rules", tmp_path], backends=["sqlite"])
    (skip,) = full.skipped
    assert skip.path.endswith("bad.yml") and "unterminated" in skip.reason
    noisy = "0b0b0b0b-0000-4000-8000-000000000002"
    sqlite_store.write([_root_login(BASE)] + [auth_failure(i, t=BASE + i) for i in range(9)],
                       refresh=True)
    summary = _engine(sqlite_store, full, max_matches=5).run_once(now=BASE + 600)
    assert "too noisy" in summary.errors[noisy]
    assert alerts_by_rule(sqlite_store)[ROOT_LOGIN] == 1  # the other rules ran
    h = health(sqlite_store)[noisy]
    assert h["errors"] == 1 and "too noisy" in h["last_error"]
    # the failed slice is retried on the next pass: the checkpoint stays before it
    cp = DetectionState.for_store(sqlite_store).load()["checkpoints"].get(noisy)
    assert cp is None or cp <= BASE * 1000


def test_a_long_backfill_runs_in_slices(sqlite_store, pack):
    """More matches than the engine holds at once: the window is cut into bucket-aligned
    slices instead of failing forever."""
    store = sqlite_store
    store.write([_root_login(BASE + h * 3600 + i, n=h * 10 + i) for h in range(3)
                 for i in range(4)], refresh=True)
    summary = _engine(store, pack, max_matches=6).run_once(now=BASE + 4 * 3600)
    assert ROOT_LOGIN not in summary.errors
    counts = sorted(a["govsoc"]["alert"]["count"] for a in store.scan(Selection(family="alerts"))
                    if a["rule"]["id"] == ROOT_LOGIN)
    assert counts == [4, 4, 4]


def test_alert_times_are_the_stored_form_of_their_milliseconds():
    """`alerts.iso` (each second formatted once) writes what `ecs.format_time` writes for
    the same instant, before 1970 too, and refuses a year past 9999 as it does."""
    from datetime import UTC, datetime, timedelta

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for ms in (0, 1, 999, 1000, -1, -999, -1000, -1001, 1_563_547_721_050,
               4_102_444_799_999, -2_208_988_800_000, 253_402_300_799_999):
        want = ecs.format_time(epoch + timedelta(milliseconds=ms))
        assert al.iso(ms) == want and al.iso(ms) == want  # the second from the cache
    with pytest.raises(ValueError):
        al.iso(253_402_300_800_000)
