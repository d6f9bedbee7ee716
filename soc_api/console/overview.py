"""What the 态势感知 overview and the wall screen show, computed for one principal: every
figure counts only the documents of the departments granted to it (soc_api.tenancy), so an
analyst of one department never sees another's alerts, not even as a number.

The security index is `detections.posture.security_index` (its formula and parts) over the
principal's own open alerts and assets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from detections import health as rule_health
from detections import posture
from soc_api import tenancy
from soc_api.identity import Principal
from soc_core import ecs
from soc_core.store import EventStore, Selection

OPEN = ("open", "acknowledged")
MAX_OPEN = 10_000  # as `detections.posture`: the index of a flood is already 0
COLLECTOR_DATASET = "govsoc.collector"  # collectors.health.HEALTH_DATASET
RANGES = {"24h": (timedelta(hours=24), "1h"), "7d": (timedelta(days=7), "1d"),
          "30d": (timedelta(days=30), "1d")}


def _iso(when: datetime) -> str:
    return ecs.format_time(when)


PARTS = ("core", "traffic")


def _selector(principal: Principal, now: datetime):
    scope = tenancy.scope(principal, None)

    def sel(family: str, start: datetime | None = None, **filters: Any) -> Selection:
        return Selection(family=family, query=scope, filters=filters or None,
                         start=_iso(start) if start else None,
                         end=_iso(now + timedelta(seconds=1)) if start else None)
    return sel


def overview(store: EventStore, principal: Principal, departments: Any = None,
             *, alerts_readable: bool = True, now: datetime | None = None,
             parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """The figures of `parts`: "core" (alerts, index, health: the store's alerts family,
    quick) and "traffic" (top sources and targets of the day's events: the slow part on a
    large store, so the page asks for it apart and draws the rest first)."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {"generated": _iso(now)}
    if "core" in parts:
        out.update(_core(store, principal, departments, alerts_readable, now))
    if "traffic" in parts:
        sel = _selector(principal, now)
        events_24h = sel("events", now - timedelta(hours=24))
        out["top_sources"] = store.terms("source.ip", events_24h, size=10)
        out["top_targets"] = store.terms("destination.ip", events_24h, size=10)
    return out


def _core(store: EventStore, principal: Principal, departments: Any,
          alerts_readable: bool, now: datetime) -> dict[str, Any]:
    sel = _selector(principal, now)

    open_sel = sel("alerts", **{"govsoc.alert.status": list(OPEN)})
    open_alerts = []
    for doc in store.scan(open_sel, page_size=1000, descending=True):
        open_alerts.append(doc)
        if len(open_alerts) >= MAX_OPEN:
            break
    assets = list(store.scan(sel("assets"), page_size=1000))
    now_ms = ecs.to_millis(now)
    index = posture.security_index(open_alerts, now_ms, assets,
                                   posture.last_patch_runs(store))

    trend = {}
    for name, (span, interval) in RANGES.items():
        start = now - span
        counts = dict(store.histogram(interval, sel("alerts", start)))
        step = timedelta(hours=1) if interval == "1h" else timedelta(days=1)
        # every bucket, empty ones too, so the chart's axis is the whole range
        first = start.replace(minute=0, second=0, microsecond=0)
        if interval == "1d":
            first = first.replace(hour=0)
        buckets, t = [], first
        while t <= now:
            key = _iso(t)
            buckets.append((key, counts.get(key, 0)))
            t += step
        trend[name] = buckets

    by_level = dict(store.terms("govsoc.alert.level", open_sel, size=10))
    by_dept = []
    for dept_id, n in store.terms("govsoc.departments", open_sel, size=20):
        name = departments.name_of(dept_id) if departments else str(dept_id)
        by_dept.append((name, n))
    out = {
        "security_index": index,
        "open_alerts": len(open_alerts),
        "by_level": [(lvl, by_level.get(lvl, 0)) for lvl in posture.LEVEL_ORDER],
        "by_tactic": store.terms("threat.tactic.name", open_sel, size=14),
        "by_department": by_dept,
        "trend": trend,
        "health": health(store, now),
        "newest": [],
    }
    if alerts_readable:
        page = store.search(sel("alerts"), size=10, descending=True)
        out["newest"] = [summary(d) for d in page.hits]
    return out


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The few fields of an alert a list shows."""
    al = (doc.get("govsoc") or {}).get("alert") or {}
    return {"id": (doc.get("event") or {}).get("id"), "time": doc.get("@timestamp"),
            "title": (doc.get("rule") or {}).get("name") or doc.get("message", ""),
            "level": al.get("level", "medium"), "status": al.get("status", "open"),
            "host": ecs.get_field(doc, "host.name") or ecs.get_field(doc, "destination.ip"),
            "source": ecs.get_field(doc, "source.ip"),
            "department": (doc.get("organization") or {}).get("name"),
            "assignee": al.get("assignee"), "count": al.get("count", 1)}


def health(store: EventStore, now: datetime) -> dict[str, Any]:
    """Collectors that reported within the hour (newest report each), and the detection
    engine's rule health. Platform state, not a department's: shown to every reader."""
    collectors: dict[tuple[str, str], dict[str, Any]] = {}
    recent = Selection(family="metrics", dataset=COLLECTOR_DATASET,
                       start=_iso(now - timedelta(hours=1)))
    for doc in store.search(recent, size=500, descending=True).hits:
        c = (doc.get("govsoc") or {}).get("collector") or {}
        key = (str(c.get("name")), str(ecs.get_field(doc, "host.name")))
        if key not in collectors:
            ev = c.get("events") or {}
            collectors[key] = {"name": key[0], "host": key[1], "seen": doc.get("@timestamp"),
                               "events_out": ev.get("events_out", 0),
                               "dropped": ev.get("dropped", 0), "errors": c.get("errors", 0),
                               "store_up": c.get("store_up", True)}
    rules = rule_health(store)
    runs = [h.get("last_run") for h in rules.values() if h.get("last_run")]
    return {"collectors": sorted(collectors.values(), key=lambda c: (c["name"], c["host"])),
            "rules": len(rules),
            "rule_errors": sum(1 for h in rules.values() if h.get("errors")),
            "last_run": max(runs) if runs else None,
            "store": store.backend}
