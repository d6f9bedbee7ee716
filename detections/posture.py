"""The situational-awareness posture (态势感知): what is open, where, how it trends, and one
0-100 security index.

Security index (also in detections/README.md)::

    index = clamp(100 - A - E - P, 0, 100)

    A  alert load, at most 60:  sum over open alerts of  weight(level) * age(alert) * state
         weight: critical 10, high 5, medium 2, low 0.5, informational 0
         age:    1 while first seen within 24 h, 1.5 within 72 h, 2 after (unhandled
                 alerts weigh more as they age)
         state:  open 1, acknowledged 0.5 (someone is on it)
    E  exposure, at most 25:    5 per internal address with an open initial-access alert
                                (admin port reachable from outside, exploited web service)
    P  patch lag, at most 15:   15 * share of inventoried assets whose patch lag exceeds
                                30 days (0 without inventory), where for each asset
         patch lag = now - last patched, in days
         last patched = the newest of
           - `govsoc.asset.last_patch` from its latest asset sweep: the newest package
             install/upgrade in the host's dpkg log (else dpkg's status file time); the
             host writes local time without a zone, read as UTC (at most a day off
             against a 30-day threshold)
           - the end (`event.end`) of the newest `patch` playbook run, not in check mode
             and not limited to named packages (`patch_packages`), in which the host
             finished ok or changed: that run applied every pending (security) update,
             so the host was current then even if nothing changed
         an asset with neither counts as lagging: a patch state nobody can show is a risk

Bands: 90-100 good (良好), 70-89 attention (关注), 50-69 at risk (风险), below 50 severe (严重).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from detections import agents as agent_health
from detections.alerts import iso
from detections.engine import now_ms, to_ms
from soc_core import ecs
from soc_core.store import EventStore, Selection

WEIGHTS = {"critical": 10.0, "high": 5.0, "medium": 2.0, "low": 0.5, "informational": 0.0}
LEVEL_ORDER = ("critical", "high", "medium", "low", "informational")
A_MAX, E_MAX, P_MAX = 60.0, 25.0, 15.0
PATCH_LAG_DAYS = 30
BANDS = ((90, "good", "良好"), (70, "attention", "关注"), (50, "at_risk", "风险"),
         (0, "severe", "严重"))
_HOUR = 3_600_000


def age_factor(age_ms: int) -> float:
    if age_ms <= 24 * _HOUR:
        return 1.0
    if age_ms <= 72 * _HOUR:
        return 1.5
    return 2.0


def patch_lag_days(asset: dict[str, Any], now: int,
                   patched: dict[str, int] | None = None) -> float | None:
    """Days since the asset was last patched (formula above), None when unknown.
    `patched`: host name -> end of its newest successful patch run (`last_patch_runs`)."""
    times = []
    swept = ecs.get_field(asset, "govsoc.asset.last_patch")
    if swept:
        try:
            times.append(to_ms(swept))
        except ValueError:
            pass  # an unreadable time is an unknown one
    name = ecs.get_field(asset, "host.name")
    if patched and isinstance(name, str) and name in patched:
        times.append(patched[name])
    if not times:
        return None
    return max(0.0, (now - max(times)) / (24 * _HOUR))


def last_patch_runs(store: EventStore) -> dict[str, int]:
    """Host name -> end (epoch ms) of its newest patch run that applied every pending
    update for real (not check mode, not limited to named packages) and left the host ok
    or changed."""
    out: dict[str, int] = {}
    sel = Selection(family="playbook_runs", filters={"govsoc.playbook.playbook": "patch",
                                                     "event.kind": "state"})
    for doc in store.scan(sel, page_size=1000):
        run = (doc.get("govsoc") or {}).get("playbook") or {}
        ended = run.get("ended") or ecs.get_field(doc, "event.end")
        if run.get("check") or not ended or "patch_packages" in (run.get("extra_vars") or ()):
            continue
        end = to_ms(ended)
        for host, summary in (run.get("summary") or {}).items():
            if (summary or {}).get("status") in ("ok", "changed") and end > out.get(host, 0):
                out[host] = end
    return out


def security_index(open_alerts: list[dict[str, Any]], now: int,
                   assets: list[dict[str, Any]] | None = None,
                   patched: dict[str, int] | None = None) -> dict[str, Any]:
    """The formula above, with its parts, so a reader can check the figure. `patched`:
    see `patch_lag_days`."""
    a = 0.0
    exposed: set[str] = set()
    for doc in open_alerts:
        al = doc["govsoc"]["alert"]
        first = to_ms(al.get("first_seen") or doc["@timestamp"])
        state = 0.5 if al.get("status") == "acknowledged" else 1.0
        a += WEIGHTS.get(al.get("level", "medium"), 2.0) * age_factor(now - first) * state
        tactics = ecs.get_field(doc, "threat.tactic.name") or []
        if "Initial Access" in tactics:
            target = ecs.get_field(doc, "destination.ip") or ecs.get_field(doc, "host.name")
            if target:
                exposed.add(str(target))
    a = min(A_MAX, a)
    e = min(E_MAX, 5.0 * len(exposed))
    # patch lag is about the hosts we manage: a discovered, unregistered host (shadow IT)
    # has no patch state to show, and a host gone is no longer a risk of ours
    assets = [x for x in assets or ()
              if ecs.get_field(x, "govsoc.asset.registered") is not False
              and ecs.get_field(x, "govsoc.asset.state") != "gone"]
    lagging = []
    for x in assets:
        lag = patch_lag_days(x, now, patched)
        if lag is None or lag > PATCH_LAG_DAYS:
            lagging.append(x)
    p = P_MAX * len(lagging) / len(assets) if assets else 0.0
    value = max(0.0, min(100.0, 100.0 - a - e - p))
    band = next(b for b in BANDS if value >= b[0])
    return {"value": round(value, 1), "band": band[1], "band_zh": band[2],
            "alerts": round(a, 2), "exposure": round(e, 2), "patch_lag": round(p, 2),
            "exposed": sorted(exposed), "assets": len(assets), "lagging_assets": len(lagging)}


def department_names(doc: dict[str, Any], departments: Any = None) -> list[str]:
    """The names of every department an alert belongs to (`organization.*` and
    `govsoc.departments`, stamped from its events), or ["(unassigned)"]. An alert of
    several departments counts once for each: each of them sees it."""
    org = doc.get("organization") or {}
    ids = list((doc.get("govsoc") or {}).get("departments") or [])
    if org.get("id") and org["id"] not in ids:
        ids.insert(0, org["id"])
    names = []
    for i in ids:
        if i == org.get("id") and org.get("name"):
            names.append(str(org["name"]))
        else:
            names.append(departments.name_of(i) if departments else str(i))
    return names or ["(unassigned)"]


def open_alerts(store: EventStore, limit: int = 10_000, query: Any = None
                ) -> list[dict[str, Any]]:
    """Open and acknowledged alerts, newest first; `query` (a parsed analyst query, e.g. a
    department scope) narrows them."""
    out = []
    for status in ("open", "acknowledged"):
        sel = Selection(family="alerts", filters={"govsoc.alert.status": status}, query=query)
        for doc in store.scan(sel, page_size=1000, descending=True):
            out.append(doc)
            if len(out) >= limit:
                return out
    return out


def posture(store: EventStore, now: Any = None, query: Any = None) -> dict[str, Any]:
    """Everything `govsoc posture` and the API show. `query` (a parsed analyst query: the
    API passes a caller's department scope) narrows every part: alerts, assets, events."""
    now = now_ms() if now is None else to_ms(now)
    alerts = open_alerts(store, query=query)
    by_level: Counter = Counter()
    by_tactic: Counter = Counter()
    by_host: Counter = Counter()
    by_dept: Counter = Counter()
    for doc in alerts:
        by_level[doc["govsoc"]["alert"].get("level", "medium")] += 1
        for t in ecs.get_field(doc, "threat.tactic.name") or ["(none)"]:
            by_tactic[t] += 1
        host = ecs.get_field(doc, "host.name") or ecs.get_field(doc, "destination.ip") \
            or ecs.get_field(doc, "winlog.computer_name")
        by_host[str(host or "(unknown)")] += 1
        for dept in department_names(doc, store.departments):
            by_dept[dept] += 1
    assets = list(store.scan(Selection(family="assets", query=query), page_size=1000))
    day_ago, week_ago = iso(now - 24 * _HOUR), iso(now - 8 * 24 * _HOUR)
    recent = Selection(family="events", start=day_ago, end=iso(now), query=query)
    before = Selection(family="events", start=week_ago, end=day_ago, query=query)
    hosts_now = {h for h, _ in store.terms("host.name", recent, size=1000)}
    hosts_before = {h for h, _ in store.terms("host.name", before, size=1000)}
    new_assets = sorted(hosts_now - hosts_before)
    return {
        "generated": iso(now),
        "security_index": security_index(alerts, now, assets, last_patch_runs(store)),
        "open_alerts": len(alerts),
        "by_severity": {lvl: by_level.get(lvl, 0) for lvl in LEVEL_ORDER},
        "by_tactic": dict(by_tactic.most_common(20)),
        "by_host": dict(by_host.most_common(20)),
        "by_department": dict(by_dept.most_common(20)),
        "trend_hourly": store.histogram("1h", Selection(family="alerts", start=day_ago,
                                                         end=iso(now + _HOUR), query=query)),
        "trend_daily": store.histogram("1d", Selection(family="alerts",
                                                        start=iso(now - 14 * 24 * _HOUR),
                                                        end=iso(now + _HOUR), query=query)),
        "top_sources": store.terms("source.ip", recent, size=10),
        "top_targets": store.terms("destination.ip", recent, size=10),
        "new_assets": new_assets[:100],
        "agents": agent_health.summary(agent_health.agents(
            store, now, query=query, intervals=agent_health.silent_intervals())),
    }
