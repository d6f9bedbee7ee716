"""The rules API on both stores: rules with health and gaps, one rule with its Sigma source,
switching off and on, exceptions and snoozes (secadmin only, each audited) — and a snooze
made through the API is honoured by an engine process started separately."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from detect_helpers import alerts_by_rule, auth_failure
from engine_procs import govsoc

from soc_core import ecs

BRUTE = "5e0c1a10-0003-4000-8000-000000000003"  # SSH brute force from one source
ROOT_LOGIN = "5e0c1a10-0006-4000-8000-000000000006"
AFTER_FAIL = "5e0c1a10-0005-4000-8000-000000000005"  # login success after failures


def _actions(api) -> list[tuple[str, str | None]]:
    return [(d["event"]["action"], (d.get("govsoc") or {}).get("audit", {}).get("object")
             or str(d)) for d in api.ctx.trail.recent]


def test_rules_api_and_a_separately_started_engine(api):
    store = api.ctx.store
    t = time.time() - 40
    root = ecs.make_event("system.auth", t + 20, ("root", t), {
        "event.action": "ssh_login", "event.outcome": "success", "user.name": "root",
        "source.ip": "203.0.113.9", "host.name": "gov-web-01"})
    assert not store.write([auth_failure(i, ip="203.0.113.9", t=t + i) for i in range(12)]
                           + [root], refresh=True).rejected
    admin, analyst = api.token("secadmin"), api.token("analyst")
    c = api.client

    r = c.get("/rules", headers=analyst, params={"size": 5})
    assert r.status_code == 200, r.text
    page = r.json()
    assert len(page["items"]) == 5 and page["total"] > 5 and page["next"]
    nxt = c.get("/rules", headers=analyst, params={"size": 5, "after": page["next"]}).json()
    assert nxt["items"][0]["id"] > page["items"][-1]["id"]
    one = c.get(f"/rules/{BRUTE}", headers=analyst).json()
    assert one["enabled"] and one["snooze"] is None and one["gaps"] == []
    assert f"id: {BRUTE}" in one["source"] and "correlation:" in one["source"]
    assert c.get("/rules/no-such-rule", headers=analyst).status_code == 404

    # analysts read; every change is the secadmin's
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"until": until, "reason": "pen test by the provincial CERT"}
    assert c.post(f"/rules/{BRUTE}/snooze", headers=analyst, json=body).status_code == 403
    past = c.post(f"/rules/{BRUTE}/snooze", headers=admin,
                  json={**body, "until": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422 and "future" in past.json()["detail"]
    assert c.post(f"/rules/{BRUTE}/snooze", headers=admin,
                  json={"until": until}).status_code == 422  # no reason
    r = c.post(f"/rules/{BRUTE}/snooze", headers=admin, json=body)
    assert r.status_code == 200 and r.json()["snooze"]["by"] == "t-secadmin"

    assert c.post(f"/rules/{AFTER_FAIL}/disable", headers=admin, json={}).status_code == 422
    r = c.post(f"/rules/{AFTER_FAIL}/disable", headers=admin, json={"reason": "noisy at night"})
    assert r.json() == {"id": AFTER_FAIL, "enabled": False, "changed": True}
    off = c.get("/rules", headers=analyst, params={"enabled": "false"}).json()["items"]
    assert [x["id"] for x in off] == [AFTER_FAIL]
    assert off[0]["disabled"]["reason"] == "noisy at night"

    exc = c.post(f"/rules/{ROOT_LOGIN}/exceptions", headers=admin,
                 json={"field": "source.ip", "values": ["192.0.2.1"], "reason": "jump host"})
    assert exc.status_code == 201, exc.text
    exc_id = exc.json()["id"]
    listed = c.get(f"/rules/{ROOT_LOGIN}/exceptions", headers=analyst).json()
    assert listed["total"] == 1 and listed["items"][0]["by"] == "t-secadmin"
    assert c.delete(f"/rules/{ROOT_LOGIN}/exceptions/{exc_id}", headers=admin).json()[
        "removed"]
    assert c.delete(f"/rules/{ROOT_LOGIN}/exceptions/{exc_id}",
                    headers=admin).status_code == 404
    assert c.post(f"/rules/{ROOT_LOGIN}/exceptions", headers=admin,
                  json={"field": "a b", "values": ["x"], "reason": "r"}).status_code == 422
    done = {a for a, _ in _actions(api)}
    assert {"rules.snooze", "rules.disable", "rules.exception.add",
            "rules.exception.remove"} <= done

    # another process, started now, reads the same state from the store
    out = govsoc(store, "detect", "run", "--once")
    assert out.returncode == 0, out.stderr
    alerted = alerts_by_rule(store)
    assert alerted[ROOT_LOGIN] >= 1  # it ran over these events...
    assert BRUTE not in alerted  # ...and honoured the snooze made through the API
    assert AFTER_FAIL not in alerted  # and the rule switched off
    brute = c.get(f"/rules/{BRUTE}", headers=analyst).json()
    assert brute["health"]["runs"] == 1 and brute["snooze"]["reason"] == body["reason"]
    assert c.get(f"/rules/{AFTER_FAIL}", headers=analyst).json()["health"]["runs"] == 1

    r = c.delete(f"/rules/{BRUTE}/snooze", headers=admin)
    assert r.json()["changed"] and c.get(f"/rules/{BRUTE}", headers=analyst).json()[
        "snooze"] is None
    assert c.post(f"/rules/{AFTER_FAIL}/enable", headers=admin).json()["changed"]
