"""Evidence imported after the engine has run (a capture from 2011) lies before every window:
`run_once(backfill=True)` — what `govsoc detect run` does first — examines it, within a
bound, and says so; past the bound it says how many events wait and the `--since` for them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from detect_helpers import alerts_by_rule, auth_failure

from collectors.packet import read_pcaps
from detections.engine import Engine, Settings
from detections.rules import load_pack
from detections.state import DetectionState

ADMIN_PORT = "5e0c1a10-0106-4000-8000-000000000106"  # admin port from outside mgmt zone
BRUTE = "5e0c1a10-0003-4000-8000-000000000003"  # SSH brute force (a correlation)
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: the engine's clock in these tests
OLDEST = "2011-11-04T19:37:44.760Z"  # first packet of try-zeek/ssh.pcap (MANIFEST.json)


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture(scope="module")
def capture_events(shared_dir):
    events, _ = read_pcaps([str(shared_dir / "pcaps" / "try-zeek" / "ssh.pcap")])
    return list(events)


def _engine(store, pack, **kw):
    return Engine(store, pack, settings=Settings(delay_ms=0, **kw))


def test_evidence_from_years_ago_is_examined_once(store, pack, capture_events):
    _engine(store, pack).run_once(now=NOW)  # the engine ran before the import
    assert store.write(capture_events, refresh=True).written == 41
    assert _engine(store, pack).run_once(now=NOW + 60).unexamined is None  # without backfill

    reads: list[tuple[int, int]] = []

    class Counting(Engine):
        def _fetch(self, rule, start, end):
            reads.append((start, end))
            return super()._fetch(rule, start, end)

    summary = Counting(store, pack, settings=Settings(delay_ms=0)).run_once(
        now=NOW + 120, backfill=True)
    backlog = summary.unexamined
    # the old span and the usual window: the week examined before is not read again. The
    # usual window of a correlation reaches back one timespan before its first bucket (a
    # bucket is at least the timespan long), so up to two of the pack's longest timespans.
    longest = max(r.sigma.timespan.seconds for r in pack.rules if r.is_correlation)
    assert all(hi <= backlog.end or lo >= (NOW - 2 * longest) * 1000 for lo, hi in reads), reads
    assert backlog.covered and backlog.events == 41
    assert backlog.line().startswith(f"examined 41 stored events from {OLDEST} to ")
    # the manifest's ground truth: 38 connections from the attacker to .136:22
    counts = {(a["source"]["ip"], a["destination"]["ip"]): a["govsoc"]["alert"]["count"]
              for a in _alerts(store, ADMIN_PORT)}
    assert counts[("172.16.238.1", "172.16.238.136")] == 38
    state = DetectionState.for_store(store).load()
    assert state["examined"][ADMIN_PORT] <= 1_320_435_464_760  # 2011-11-04T19:37:44.760Z

    before = alerts_by_rule(store)
    again = _engine(store, pack).run_once(now=NOW + 180, backfill=True)
    assert again.unexamined is None  # examined: nothing waits
    assert again.new_alerts == 0 and alerts_by_rule(store) == before


def test_logs_imported_into_time_already_examined_are_found(store, pack):
    """Last week's logs imported while the engine ran: their days hold more events than
    the engine examined there, so a backfilling pass runs those days again."""
    engine = _engine(store, pack)
    engine.run_once(now=NOW - 4 * 86_400)  # examines the week before, records its days
    engine.run_once(now=NOW)  # and on, up to now
    t = NOW - 3 * 86_400 + 3600  # inside what was examined
    store.write([auth_failure(i, ip="198.51.100.9", t=t + 3 * i) for i in range(12)],
                refresh=True)
    assert engine.run_once(now=NOW + 60).unexamined is None  # a plain pass: not its window
    assert alerts_by_rule(store)[BRUTE] == 0

    summary = engine.run_once(now=NOW + 120, backfill=True)
    assert summary.unexamined.covered and summary.unexamined.events == 12
    assert summary.unexamined.start == (NOW - 3 * 86_400) * 1000  # that day, whole
    assert alerts_by_rule(store)[BRUTE] == 1
    again = engine.run_once(now=NOW + 180, backfill=True)
    assert again.unexamined is None and again.new_alerts == 0


def test_over_the_bound_nothing_extra_runs_and_the_since_is_given(store, pack,
                                                                   capture_events):
    _engine(store, pack).run_once(now=NOW)
    store.write(capture_events, refresh=True)
    summary = _engine(store, pack, backfill_max_events=40).run_once(now=NOW + 60,
                                                                    backfill=True)
    assert not summary.unexamined.covered and summary.unexamined.events == 41
    assert summary.unexamined.line().endswith(
        f"cover them with: govsoc detect run --once --since {OLDEST}")
    assert not _alerts(store, ADMIN_PORT)
    # the --since the message gives covers them
    _engine(store, pack, backfill_max_events=40).run_once(now=NOW + 120, since=OLDEST)
    assert len(_alerts(store, ADMIN_PORT)) == 4


def test_a_noisy_backfill_reads_only_the_slices_with_events(store, pack):
    """Too many matches at once: the decade is run slice by slice (an hour each) and the
    empty slices are skipped, not queried one by one (that would be ~96,000 reads)."""
    reads: list[str] = []

    class Counting(Engine):
        def _fetch(self, rule, start, end):
            reads.append(rule.id)
            return super()._fetch(rule, start, end)

    _engine(store, pack).run_once(now=NOW)
    y2015, y2018 = 1_420_070_400, 1_514_764_800  # two bursts of 30 failed logins
    store.write([auth_failure(i, t=y2015 + 3 * i) for i in range(30)]
                + [auth_failure(i, t=y2018 + 3 * i) for i in range(30)], refresh=True)
    summary = Counting(store, pack, settings=Settings(delay_ms=0, max_matches=40)).run_once(
        now=NOW + 60, backfill=True)
    assert summary.unexamined.events == 60 and not summary.errors
    assert alerts_by_rule(store)[BRUTE] == 2
    # per rule, not in all: the pack grows; slice by slice would be thousands for one rule
    per_rule = Counter(reads).most_common(3)
    assert per_rule[0][1] < 20, per_rule


def test_detect_run_once_after_a_capture_import(tmp_path, shared_dir):
    """The whole path a user takes: `collect pcap`, then `detect run --once`."""
    govsoc = str(Path(sys.executable).parent / "govsoc")
    env = {**os.environ, "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db",
           "GOVSOC_DATA_DIR": str(tmp_path / "data")}

    def run(*args):
        out = subprocess.run([govsoc, *args], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "41 new" in run("collect", "pcap", str(shared_dir / "pcaps/try-zeek/ssh.pcap"))
    first = run("detect", "run", "--once").splitlines()
    assert first[0].startswith(f"examined 41 stored events from {OLDEST} to ")
    # admin port reached from outside (4 groups), SSH password guessing seen on the
    # network and the login after it
    assert "6 new alerts" in first[1]
    second = run("detect", "run", "--once").splitlines()
    assert len(second) == 1 and "0 new alerts" in second[0]


def _alerts(store, rule_id):
    from soc_core.store import Selection

    sel = Selection(family="alerts", filters={"rule.id": rule_id})
    return store.search(sel, size=100).hits
