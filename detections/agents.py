"""Agents in the posture: the newest heartbeat of each `govsoc agent` (its `govsoc.agent`
metric events) and which went silent, plus one alert for each silence.

An agent is silent once `posture.agent_silent_intervals` (default 3) of its own heartbeat
intervals (`govsoc.agent.interval_s`, which each heartbeat carries) have passed without a
heartbeat. `raise_silent_alerts` writes one alert per silence, keyed by the agent and its
last heartbeat: running it again (any engine, any number of times) finds the same alert,
and an agent that comes back and falls silent again gets a new one.
"""

from __future__ import annotations

from typing import Any

from detections.alerts import DATASET as ALERT_DATASET
from detections.alerts import iso, now_ms
from soc_core import ecs
from soc_core.store import EventStore, Selection, VersionConflict

HEARTBEAT_DATASET = "govsoc.agent"
SILENT_INTERVALS = 3
LOOKBACK_MS = 7 * 24 * 3_600_000  # agents silent for longer than a week are not listed
RULE_ID = "govsoc-agent-silent"
RULE_NAME = "Agent went silent"


def silent_intervals(cfg: Any = None) -> int:
    from soc_core.config import ConfigError, load_config

    raw = (cfg or load_config()).get("posture.agent_silent_intervals", SILENT_INTERVALS)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"posture.agent_silent_intervals: expected an integer, "
                          f"got {raw!r}") from None
    if n < 1:
        raise ConfigError(f"posture.agent_silent_intervals: must be at least 1, got {n}")
    return n


def agents(store: EventStore, now: int | None = None, *, intervals: int = SILENT_INTERVALS,
           query: Any = None, limit: int = 50_000) -> list[dict[str, Any]]:
    """One row per agent (newest heartbeat first scanned): id, name, host, last
    heartbeat, status `up` | `silent`, and what its last heartbeat reported."""
    now = now_ms() if now is None else now
    sel = Selection(family="metrics", dataset=HEARTBEAT_DATASET, start=iso(now - LOOKBACK_MS),
                    query=query)
    latest: dict[str, dict[str, Any]] = {}
    for n, doc in enumerate(store.scan(sel, page_size=1000, descending=True)):
        aid = ecs.get_field(doc, "agent.id")
        if isinstance(aid, str):
            latest.setdefault(aid, doc)
        if n >= limit:  # the last minutes' heartbeats come first: enough to know them all
            break
    rows = []
    for aid, doc in latest.items():
        a = (doc.get("govsoc") or {}).get("agent") or {}
        last = ecs.to_millis(doc["@timestamp"])
        interval = float(a.get("interval_s") or 10)
        silent_after = intervals * interval * 1000
        age = max(0, now - last)
        rows.append({
            "id": aid, "name": ecs.get_field(doc, "agent.name"),
            "host": ecs.get_field(doc, "host.name"), "last_heartbeat": doc["@timestamp"],
            "interval_s": interval, "silent_after_s": silent_after / 1000,
            "status": "silent" if age > silent_after else "up",
            "seconds_since": round(age / 1000, 1),
            "events_per_s": a.get("events_per_s"), "spool_bytes": (a.get("spool") or {})
            .get("bytes"), "dropped": a.get("dropped"), "cpu_pct": a.get("cpu_pct"),
            "rss_bytes": a.get("rss_bytes"), "last_error": a.get("last_error") or "",
            "version": ecs.get_field(doc, "agent.version"), "_doc": doc})
    rows.sort(key=lambda r: (r["status"] != "silent", str(r["host"]), r["id"]))
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and rows as the posture shows them (without the heartbeat documents)."""
    items = [{k: v for k, v in r.items() if k != "_doc"} for r in rows]
    return {"counts": {s: sum(1 for r in items if r["status"] == s) for s in ("up", "silent")},
            "items": items}


def silent_alert(row: dict[str, Any]) -> dict[str, Any]:
    """The alert for one silent agent (id: the agent and its last heartbeat)."""
    hb = row["_doc"]
    aid = ecs.stable_id("alert", RULE_ID, row["id"], row["last_heartbeat"])
    created = iso(now_ms())
    doc: dict[str, Any] = {
        "@timestamp": row["last_heartbeat"],
        "message": f"{RULE_NAME}: {row['name']} on {row['host']} (no heartbeat since "
                   f"{row['last_heartbeat']})",
        "event": {"kind": "alert", "id": aid, "dataset": ALERT_DATASET, "module": "govsoc",
                  "severity": 73, "risk_score": 73.0, "start": row["last_heartbeat"],
                  "end": row["last_heartbeat"]},
        "rule": {"id": RULE_ID, "uuid": RULE_ID, "name": RULE_NAME,
                 "description": "A govsoc agent sent no heartbeat for "
                                f"{row['silent_after_s']:g} s: the host is down, cut off, "
                                "or its agent was stopped (defence evasion).",
                 "ruleset": "govsoc/posture"},
        "threat": {"framework": "MITRE ATT&CK",
                   "tactic": {"id": ["TA0005"], "name": ["Defense Evasion"]},
                   "technique": {"id": ["T1562"], "name": ["Impair Defenses"]}},
        "host": {"name": row["host"]},
        "agent": {"id": row["id"], "name": row["name"]},
        "govsoc": {"alert": {
            "status": "open", "level": "high", "count": 1,
            "first_seen": row["last_heartbeat"], "last_seen": row["last_heartbeat"],
            "window": {"start": row["last_heartbeat"], "end": row["last_heartbeat"]},
            "group": {"agent.id": row["id"]}, "event_ids": [hb["event"]["id"]],
            "correlation": False, "assignee": None, "close_reason": None, "notes": [],
            "history": [], "created": created}},
    }
    if isinstance(hb.get("organization"), dict):
        doc["organization"] = hb["organization"]
    depts = (hb.get("govsoc") or {}).get("departments")
    if depts:
        doc["govsoc"]["departments"] = depts
    return doc


def raise_silent_alerts(store: EventStore, now: int | None = None, *,
                        intervals: int = SILENT_INTERVALS) -> list[str]:
    """Open an alert for every silent agent that has none for this silence yet; returns
    the ids of the alerts written now. An existing one (maybe already triaged) is kept."""
    written = []
    for row in agents(store, now, intervals=intervals):
        if row["status"] != "silent":
            continue
        doc = silent_alert(row)
        try:
            store.write_if(doc, None, refresh=True)
        except VersionConflict:
            continue  # raised before (by this or another engine)
        written.append(doc["event"]["id"])
    return written
