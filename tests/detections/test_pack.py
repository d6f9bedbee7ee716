"""Our own rule pack: shape, and every rule's positive and negative test events on both
stores; the differential check (same events -> same alert ids and counts)."""

from __future__ import annotations

import pytest
from detect_helpers import BASE, END, alert_map, write_pack_tests

from detections.engine import Engine
from detections.rules import BACKENDS, OWN_PACK, load_pack
from soc_core.store import Selection


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def test_pack_has_forty_tested_attack_rules(pack):
    assert not pack.skipped
    alerting = [r for r in pack.rules if r.is_correlation or r.generate]
    assert len(alerting) >= 40
    for r in alerting:
        tests = r.options.get("tests") or {}
        assert tests.get("positive") and tests.get("negative"), r.title
        assert r.level in ("low", "medium", "high", "critical", "informational"), r.title
        assert (r.threat().get("technique") or {}).get("id"), f"{r.title}: no ATT&CK technique"
        assert r.threat().get("tactic"), f"{r.title}: no ATT&CK tactic"
    for r in pack.rules:
        if not r.is_correlation:
            assert set(r.queries) == set(BACKENDS), (r.title, r.errors)
            assert r.datasets, r.title
    kinds = {r.sigma.type.name for r in pack.rules if r.is_correlation}
    assert {"EVENT_COUNT", "VALUE_COUNT", "TEMPORAL_ORDERED"} <= kinds


def test_every_rule_fires_on_its_positive_events(store, pack):
    evs = write_pack_tests(store, pack, "positive")
    summary = Engine(store, pack).run_once(now=END, since=BASE - 3600)
    assert not summary.errors
    fired = {a["rule"]["id"]: a for a in store.scan(Selection(family="alerts"))}
    missing = [pack.by_id()[rid].title for rid in evs if rid not in fired]
    assert not missing, f"rules silent on their positive events: {missing}"
    for rid in evs:
        al = fired[rid]
        assert al["event"]["kind"] == "alert"
        assert al["threat"]["technique"]["id"]
        assert al["govsoc"]["alert"]["status"] == "open"
        assert al["govsoc"]["alert"]["count"] >= 1
        own = {e["event"]["id"] for e in evs[rid]}
        assert set(al["govsoc"]["alert"]["event_ids"]) <= own | {
            e["event"]["id"] for v in evs.values() for e in v}


def test_every_rule_is_silent_on_its_negative_events(store, pack):
    evs = write_pack_tests(store, pack, "negative")
    summary = Engine(store, pack).run_once(now=END, since=BASE - 3600)
    assert not summary.errors
    loud = []
    for a in store.scan(Selection(family="alerts")):
        rid = a["rule"]["id"]
        own = {e["event"]["id"] for e in evs.get(rid, [])}
        # another rule's negative events may well be this rule's positives; only a rule
        # firing on its own negative events is wrong
        if own & set(a["govsoc"]["alert"]["event_ids"]):
            loud.append(pack.by_id()[rid].title)
    assert not loud, f"rules fired on their negative events: {loud}"


@pytest.mark.es
def test_differential_sqlite_vs_elasticsearch(sqlite_store, es_store, pack):
    """Same events and rules -> the same alerts (ids and counts) on both stores."""
    results = []
    for store in (sqlite_store, es_store):
        write_pack_tests(store, pack, "positive")
        write_pack_tests(store, pack, "negative")
        summary = Engine(store, pack).run_once(now=END, since=BASE - 3600)
        assert not summary.errors, summary.errors
        results.append(alert_map(store))
    lite, es = results
    assert len(lite) >= 50
    assert lite == es


def test_own_pack_path_is_in_the_package():
    assert (OWN_PACK / "auth.yml").is_file()
