"""The situational-awareness posture over HTTP: the security index with its parts and how
it is computed, the alert trend by hour or day (per department), open alerts by ATT&CK
tactic, and the health of agents, collectors and detection engines.

Everything is computed inside the caller's departments (`tenancy.scope`): a department's
analyst sees its own index, never another department's alerts, hosts or counts. Engines
are platform-wide (a rule's health names no department's data)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from detections import agents as agent_health
from detections import health as rule_health
from detections import posture as pm
from soc_api import tenancy
from soc_core import ecs
from soc_core import query as q
from soc_core.store import Selection, resolve_millis

router = APIRouter(tags=["posture"])

H = 3_600_000
# ATT&CK Enterprise tactics in kill-chain order: the console draws all of them, zeros too
TACTICS = ("Reconnaissance", "Resource Development", "Initial Access", "Execution",
           "Persistence", "Privilege Escalation", "Defense Evasion", "Credential Access",
           "Discovery", "Lateral Movement", "Collection", "Command and Control",
           "Exfiltration", "Impact")
AGENT_SILENT_MS = H  # a host with no event for an hour is silent
COLLECTOR_STALE_MS = 5 * 60_000  # collectors report every 30 s
ENGINE_STALE_MS = 10 * 60_000  # engines pass every 30 s by default
_TREND = {"hour": ("1h", 24 * H, 31 * 24 * H), "day": ("1d", 14 * 24 * H, 400 * 24 * H)}

HOW = {
    "formula": "index = clamp(100 - A - E - P, 0, 100)",
    "parts": {
        "alerts": {"max": pm.A_MAX, "how": "A: sum over open alerts of weight(level) x age x "
                   "state; weight critical 10, high 5, medium 2, low 0.5, informational 0; "
                   "age 1 within 24 h of first seen, 1.5 within 72 h, 2 after; state open 1, "
                   "acknowledged 0.5"},
        "exposure": {"max": pm.E_MAX, "how": "E: 5 per internal address with an open "
                     "Initial Access alert"},
        "patch_lag": {"max": pm.P_MAX, "how": f"P: {pm.P_MAX:g} x share of inventoried "
                      f"assets last patched more than {pm.PATCH_LAG_DAYS} days ago (or "
                      "never shown to be patched); 0 without inventory"},
    },
    "weights": pm.WEIGHTS,
    "bands": [{"from": b[0], "band": b[1], "band_zh": b[2]} for b in pm.BANDS],
}


def _now() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return ecs.format_time(datetime.fromtimestamp(ms / 1000, UTC))


def _scope(request: Request, department: str | None = None) -> q.Node | None:
    """The caller's departments, narrowed to `department` when given (404 when the caller
    may not see it: another department's existence is not disclosed)."""
    principal = request.state.principal
    if department is None:
        return tenancy.scope(principal, None)
    known = request.app.state.ctx.departments
    if (known is None or known.get(department) is None) or \
            not (principal.all_departments or department in principal.departments):
        raise HTTPException(404, "no such department")
    one = q.Or(tuple(q.Term(f, department, True) for f in tenancy.FIELDS))
    return tenancy.scope(principal, one)


def _pairs(items: list[tuple[Any, int]], key: str = "value") -> list[dict[str, Any]]:
    return [{key: k, "count": n} for k, n in items]


def _time(text: str | None, default: int, what: str) -> int:
    if text is None:
        return default
    try:
        return resolve_millis(text)
    except ValueError as exc:
        raise HTTPException(400, f"bad {what!r} time: {str(exc).splitlines()[0][:200]}") \
            from None


@router.get("/posture")
def get_posture(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    p = pm.posture(ctx.store, query=_scope(request))
    idx = p["security_index"]
    parts = {name: {"value": idx[name], **HOW["parts"][name]} for name in HOW["parts"]}
    ctx.audit(request, "posture.read", extra={"index": idx["value"]})
    return {**p, "how": {**HOW, "parts": parts},
            "trend_hourly": _pairs(p["trend_hourly"], "start"),
            "trend_daily": _pairs(p["trend_daily"], "start"),
            "top_sources": _pairs(p["top_sources"]), "top_targets": _pairs(p["top_targets"])}


@router.get("/posture/trend")
def get_trend(request: Request, by: str = Query("hour", pattern=r"^(hour|day)$"),
              department: str | None = Query(None, max_length=64,
                                             pattern=r"^[A-Za-z0-9_.:-]+$"),
              start: str | None = Query(None, alias="from", max_length=64),
              end: str | None = Query(None, alias="to", max_length=64),
              split: str | None = Query(None, pattern=r"^department$")) -> dict[str, Any]:
    """New alerts per bucket (by their latest activity), in total and by level; with
    `split=department` also per department the caller sees (an alert of several
    departments counts for each)."""
    ctx = request.app.state.ctx
    interval, default_span, max_span = _TREND[by]
    scope = _scope(request, department)
    now = _now()
    hi = _time(end, now + 1, "to")
    lo = _time(start, hi - default_span, "from")
    if hi <= lo:
        raise HTTPException(400, "'from' must be before 'to'")
    if hi - lo > max_span:
        raise HTTPException(400, f"at most {max_span // (24 * H)} days by {by}")
    rng = {"start": _iso(lo), "end": _iso(hi)}
    buckets: dict[str, dict[str, Any]] = {}
    # one histogram a level (rules have exactly these five levels); the total is their sum
    for lvl in pm.LEVEL_ORDER:
        sel = Selection(family="alerts", filters={"govsoc.alert.level": lvl}, query=scope,
                        **rng)
        for b, n in ctx.store.histogram(interval, sel):
            row = buckets.setdefault(b, {"start": b, "total": 0,
                                         **{x: 0 for x in pm.LEVEL_ORDER}})
            row[lvl] = n
            row["total"] += n
    if split:
        principal = request.state.principal
        depts = [d.id for d in (ctx.departments.all() if ctx.departments else [])
                 if (principal.all_departments or d.id in principal.departments)
                 and department in (None, d.id)]
        for row in buckets.values():
            row["departments"] = dict.fromkeys(depts, 0)
        for d in depts:
            sel = Selection(family="alerts", query=_scope(request, d), **rng)
            for b, n in ctx.store.histogram(interval, sel):
                if b in buckets:
                    buckets[b]["departments"][d] = n
    ctx.audit(request, "posture.trend", extra={"by": by, "department": department})
    return {"by": by, "department": department, "from": rng["start"], "to": rng["end"],
            "buckets": [buckets[k] for k in sorted(buckets)]}


@router.get("/posture/tactics")
def get_tactics(request: Request) -> dict[str, Any]:
    """Open alerts by ATT&CK tactic and level, every tactic listed (kill-chain order), and
    the alerts of the last 7 days by tactic."""
    ctx = request.app.state.ctx
    scope = _scope(request)
    rows = {t: {"tactic": t, "open": 0, **{lvl: 0 for lvl in pm.LEVEL_ORDER}, "last_7d": 0}
            for t in TACTICS}
    for doc in pm.open_alerts(ctx.store, query=scope):
        level = doc["govsoc"]["alert"].get("level", "medium")
        for t in ecs.get_field(doc, "threat.tactic.name") or ["(none)"]:
            row = rows.setdefault(t, {"tactic": t, "open": 0,
                                      **{lvl: 0 for lvl in pm.LEVEL_ORDER}, "last_7d": 0})
            row["open"] += 1
            if level in row:
                row[level] += 1
    week = Selection(family="alerts", start=_iso(_now() - 7 * 24 * H), query=scope)
    for t, n in ctx.store.terms("threat.tactic.name", week, size=50):
        rows.setdefault(t, {"tactic": t, "open": 0, **{lvl: 0 for lvl in pm.LEVEL_ORDER},
                            "last_7d": 0})["last_7d"] = n
    ctx.audit(request, "posture.tactics")
    return {"items": list(rows.values())}


@router.get("/posture/health")
def get_health(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    scope = _scope(request)
    now = _now()
    out = {"generated": _iso(now), "agents": _agents(ctx.store, scope, now),
           "collectors": _collectors(ctx.store, scope, now), "engines": _engines(ctx.store, now)}
    ctx.audit(request, "posture.health")
    return out


def _agents(store: Any, scope: q.Node | None, now: int) -> dict[str, Any]:
    """Hosts by their events: up (an event within the hour), silent (within the day, not
    the hour), missing (inventoried, nothing for a day)."""
    day = dict(store.terms("host.name", Selection(family="events", start=_iso(now - 24 * H),
                                                  query=scope), size=5000))
    hour = dict(store.terms("host.name", Selection(family="events",
                                                   start=_iso(now - AGENT_SILENT_MS),
                                                   query=scope), size=5000))
    inventory = {str(n) for doc in store.scan(Selection(family="assets", query=scope))
                 if (n := ecs.get_field(doc, "host.name"))}
    items = []
    for host in sorted(set(day) | inventory):
        status = "up" if hour.get(host) else "silent" if day.get(host) else "missing"
        items.append({"host": host, "status": status, "events_1h": hour.get(host, 0),
                      "events_24h": day.get(host, 0), "inventoried": host in inventory})
    counts = {s: sum(1 for i in items if i["status"] == s) for s in ("up", "silent", "missing")}
    # the agents' own heartbeats: silent after posture.agent_silent_intervals of their interval
    heartbeats = agent_health.summary(agent_health.agents(
        store, now, query=scope, intervals=agent_health.silent_intervals()))
    return {"counts": counts, "items": items, "heartbeats": heartbeats}


def _collectors(store: Any, scope: q.Node | None, now: int) -> dict[str, Any]:
    """The newest health report of each collector (name, host) within the day."""
    sel = Selection(family="metrics", dataset="govsoc.collector",
                    start=_iso(now - 24 * H), query=scope)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for n, doc in enumerate(store.scan(sel, page_size=1000, descending=True)):
        c = (doc.get("govsoc") or {}).get("collector") or {}
        key = (str(c.get("name", "?")), str(ecs.get_field(doc, "host.name") or "?"))
        latest.setdefault(key, doc)
        if n >= 20_000:  # reports of the last minutes are first: enough to know them all
            break
    items = []
    for (name, host), doc in sorted(latest.items()):
        c = doc["govsoc"]["collector"]
        age = now - ecs.to_millis(doc["@timestamp"])
        events = c.get("events") or {}
        if age > COLLECTOR_STALE_MS:
            status = "stale"
        elif not c.get("store_up", True) or events.get("dropped") or \
                float(c.get("lag_seconds") or 0) > 60:
            status = "degraded"
        else:
            status = "up"
        items.append({"name": name, "host": host, "status": status,
                      "last_report": doc["@timestamp"], "events": events,
                      "errors": c.get("errors", 0), "lag_seconds": c.get("lag_seconds", 0),
                      "queued": c.get("queued", 0), "spool": c.get("spool") or {},
                      "store_up": c.get("store_up", True)})
    counts = {s: sum(1 for i in items if i["status"] == s) for s in ("up", "degraded", "stale")}
    return {"counts": counts, "items": items}


def _engines(store: Any, now: int) -> dict[str, Any]:
    """The detection engines, from the rule health they record on each pass."""
    rules = rule_health(store)
    runs = [h.get("last_run") for h in rules.values() if h.get("last_run")]
    last = max(runs) if runs else None
    erring = sorted(rid for rid, h in rules.items() if h.get("last_error_at") and
                    h.get("last_error_at") == h.get("last_run"))
    gaps = sum(len(h.get("gaps") or []) for h in rules.values())
    if last is None:
        status = "never_ran"
    elif now - ecs.to_millis(last) > ENGINE_STALE_MS:
        status = "stale"
    else:
        status = "degraded" if erring else "up"
    return {"detections": {"status": status, "last_pass": last, "rules": len(rules),
                           "rules_failing": erring[:100], "gaps": gaps}}
