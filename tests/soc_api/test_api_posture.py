"""Posture over HTTP on both stores: the index with its parts, the trend by hour and day and
by department, ATT&CK tactics, agent and collector health, each inside the caller's
departments."""

from __future__ import annotations

import time

from soc_core import ecs

H = 3600


def _ts(ago_s: float) -> str:
    return ecs.format_time(ecs.parse_time(time.time() - ago_s))


def _alert(aid, dept, level, status, ago, tactic, **extra):
    return {"@timestamp": _ts(ago), "message": aid,
            "event": {"kind": "alert", "id": aid, "dataset": "govsoc.alert"},
            "rule": {"id": "r-" + aid, "name": "rule " + aid},
            "threat": {"tactic": {"name": [tactic]}}, "organization": {"id": dept},
            "govsoc": {"alert": {"status": status, "level": level, "count": 1,
                                 "first_seen": _ts(ago)}}, **extra}


def _collector(name, host, dept, ago):
    return {"@timestamp": _ts(ago), "host": {"name": host}, "organization": {"id": dept},
            "event": {"kind": "metric", "id": f"c-{name}-{host}", "dataset": "govsoc.collector",
                      "module": "govsoc"},
            "govsoc": {"collector": {"name": name, "events": {"events_in": 5, "dropped": 0},
                                     "errors": 0, "lag_seconds": 0.1, "store_up": True}}}


def test_posture_routes_scoped_to_departments(api):
    api.ctx.store.write([
        _alert("a1", "wjw", "high", "open", H, "Credential Access", host={"name": "web-wjw"}),
        _alert("a2", "gaj", "critical", "open", 2 * H, "Initial Access",
               destination={"ip": "10.2.0.5"}),
        _alert("a3", "wjw", "medium", "closed", 3 * 24 * H, "Execution"),
        {"@timestamp": _ts(600), "message": "login", "host": {"name": "web-wjw"},
         "organization": {"id": "wjw"}, "event": {"id": "e1", "dataset": "system.auth"}},
        {"@timestamp": _ts(5 * H), "message": "login", "host": {"name": "db-gaj"},
         "organization": {"id": "gaj"}, "event": {"id": "e2", "dataset": "system.auth"}},
        {"@timestamp": _ts(H), "host": {"name": "old-wjw"}, "organization": {"id": "wjw"},
         "event": {"kind": "asset", "id": "as1", "dataset": "govsoc.asset"}},
        _collector("host", "web-wjw", "wjw", 60), _collector("packet", "db-gaj", "gaj", 2 * H),
    ], refresh=True)
    every = api.token("analyst")
    wjw = api.token("viewer", departments=["wjw"])
    get = api.client.get

    p = get("/posture", headers=every).json()
    assert p["open_alerts"] == 2
    idx = p["security_index"]
    # A: high 5 + critical 10; E: one exposed address; P: the only asset shows no patch
    assert (idx["alerts"], idx["exposure"], idx["patch_lag"], idx["value"]) == (15, 5, 15, 65)
    assert p["how"]["parts"]["alerts"]["value"] == 15 and p["how"]["parts"]["alerts"]["max"] == 60
    assert "clamp(100 - A - E - P" in p["how"]["formula"]
    mine = get("/posture", headers=wjw).json()
    assert mine["open_alerts"] == 1 and mine["security_index"]["value"] == 80
    assert "gaj" not in str(mine) and "10.2.0.5" not in str(mine)

    hourly = get("/posture/trend", params={"by": "hour"}, headers=every).json()
    assert sum(b["total"] for b in hourly["buckets"]) == 2
    assert sum(b["critical"] for b in hourly["buckets"]) == 1
    daily = get("/posture/trend", params={"by": "day"}, headers=every).json()
    assert sum(b["total"] for b in daily["buckets"]) == 3
    one = get("/posture/trend", params={"by": "day", "department": "wjw"}, headers=every)
    assert sum(b["total"] for b in one.json()["buckets"]) == 2
    assert sum(b["total"] for b in get("/posture/trend", params={"by": "day"},
                                       headers=wjw).json()["buckets"]) == 2
    split = get("/posture/trend", params={"by": "day", "split": "department"},
                headers=every).json()
    assert {d: sum(b["departments"][d] for b in split["buckets"]) for d in ("wjw", "gaj")} \
        == {"wjw": 2, "gaj": 1}
    mine_split = get("/posture/trend", params={"by": "day", "split": "department"},
                     headers=wjw).json()
    assert all(set(b["departments"]) == {"wjw"} for b in mine_split["buckets"])
    other = get("/posture/trend", params={"department": "gaj"}, headers=wjw)
    assert other.status_code == 404 and other.json()["detail"] == "no such department"
    assert get("/posture/trend", params={"by": "week"}, headers=every).status_code in (400, 422)
    assert get("/posture/trend", params={"from": "nonsense"}, headers=every).status_code == 400

    tactics = {t["tactic"]: t for t in get("/posture/tactics", headers=every).json()["items"]}
    assert tactics["Initial Access"]["open"] == 1 and tactics["Initial Access"]["critical"] == 1
    assert tactics["Execution"]["open"] == 0 and tactics["Impact"]["open"] == 0
    mine_t = {t["tactic"]: t for t in get("/posture/tactics", headers=wjw).json()["items"]}
    assert mine_t["Credential Access"]["open"] == 1 and mine_t["Initial Access"]["open"] == 0

    health = get("/posture/health", headers=every).json()
    agents = {a["host"]: a["status"] for a in health["agents"]["items"]}
    assert agents == {"web-wjw": "up", "db-gaj": "silent", "old-wjw": "missing"}
    coll = {(c["name"], c["host"]): c["status"] for c in health["collectors"]["items"]}
    assert coll == {("host", "web-wjw"): "up", ("packet", "db-gaj"): "stale"}
    assert health["engines"]["detections"]["status"] in ("never_ran", "up", "stale",
                                                          "degraded")
    mine_h = get("/posture/health", headers=wjw).json()
    assert {a["host"] for a in mine_h["agents"]["items"]} == {"web-wjw", "old-wjw"}
    assert [c["host"] for c in mine_h["collectors"]["items"]] == ["web-wjw"]
    assert any(d["event"]["action"] == "posture.read" for d in api.ctx.trail.recent)
