"""Shared helpers for the detection tests: events in the collectors' ECS shapes, written
with EventStore.write, and a clock fixed in the past so windows are deterministic."""

from __future__ import annotations

from collections import Counter
from typing import Any

from detections.packtests import pack_events
from detections.rules import RulePack
from soc_core import ecs
from soc_core.store import EventStore, Selection

BASE = 1_767_225_600  # 2026-01-01T00:00:00Z


def auth_failure(i: int, ip: str = "203.0.113.7", t: float = BASE, user: str = "root",
                 host: str = "gov-web-01") -> dict[str, Any]:
    """Filebeat system/auth shape for `Failed password for root from ... ssh2`."""
    return ecs.make_event("system.auth", t, ("auth", ip, t, i), {
        "event.action": "ssh_login", "event.outcome": "failure", "event.category": "authentication",
        "source.ip": ip, "user.name": user, "host.name": host, "process.name": "sshd",
        "message": f"Failed password for {user} from {ip} port {40000 + i} ssh2"})


def alerts_by_rule(store: EventStore) -> Counter:
    store.refresh()
    return Counter(a["rule"]["id"] for a in store.scan(Selection(family="alerts")))


def alert_map(store: EventStore) -> dict[str, tuple[str, int]]:
    """alert id -> (rule id, count)"""
    store.refresh()
    return {a["event"]["id"]: (a["rule"]["id"], a["govsoc"]["alert"]["count"])
            for a in store.scan(Selection(family="alerts"))}


def write_pack_tests(store: EventStore, pack: RulePack, which: str) -> dict[str, list[dict]]:
    evs = pack_events(pack, which, BASE)
    res = store.write([e for v in evs.values() for e in v], refresh=True)
    assert not res.rejected, res.rejected[:3]
    return evs


END = BASE + 200 * 7200  # after every rule's test slot
