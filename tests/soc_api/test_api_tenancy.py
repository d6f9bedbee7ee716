"""Departments as tenants, on both stores: a user granted one department sees its events
and alerts only; another department's document is a 404 and never counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from soc_core import ecs


def flows(n: int, net: str, tag: str) -> list[dict]:
    now = datetime.now(UTC)
    return [{"@timestamp": ecs.format_time(now - timedelta(seconds=i)),
             "event": {"dataset": "network.flow", "kind": "event",
                       "id": ecs.stable_id(tag, i)},
             "source": {"ip": f"{net}.0.{i + 1}", "port": 40000 + i},
             "destination": {"ip": "8.8.8.8", "port": 53},
             "message": f"flow {tag} {i}"} for i in range(n)]


def test_department_isolation(api):
    departments = api.ctx.departments
    docs = flows(3, "10.1", "wjw") + flows(2, "10.2", "gaj") + flows(1, "192.168", "none")
    for d in docs:
        departments.stamp(d)
    assert {d.get("organization", {}).get("id") for d in docs} == {"wjw", "gaj", None}
    api.ctx.store.write(docs, refresh=True)
    alert = {"@timestamp": docs[0]["@timestamp"], "event": {"kind": "alert", "id": "al-gaj",
             "dataset": "govsoc.alert"}, "organization": {"id": "gaj", "name": "市公安局"},
             "message": "alert of gaj"}
    api.ctx.store.write([alert], refresh=True)

    wjw = api.token("analyst", departments=["wjw"])
    both = api.token("analyst", departments=["wjw", "gaj"])
    everyone = api.token("analyst")
    got = api.client.get("/events", headers=wjw).json()["items"]
    assert sorted(h["event"]["id"] for h in got) == sorted(
        d["event"]["id"] for d in docs if d.get("organization", {}).get("id") == "wjw")
    assert len(api.client.get("/events", headers=both).json()["items"]) == 5
    assert len(api.client.get("/events", headers=everyone).json()["items"]) == 6
    # a query cannot widen the scope: OR inside the user's query stays inside it
    wide = api.client.get("/events", headers=wjw,
                          params={"q": "organization.id:gaj OR NOT organization.id:wjw"})
    assert wide.json()["items"] == []
    other = next(d for d in docs if d.get("organization", {}).get("id") == "gaj")
    r = api.client.get(f"/events/{other['event']['id']}", headers=wjw)
    assert r.status_code == 404
    assert api.client.get(f"/events/{other['event']['id']}", headers=both).status_code == 200
    assert api.client.get("/alerts/al-gaj", headers=wjw).status_code == 404
    assert api.client.get("/alerts", headers=wjw).json()["items"] == []
    assert [h["event"]["id"] for h in api.client.get("/alerts", headers=both).json()["items"]
            ] == ["al-gaj"]
    # a principal granted no department sees nothing
    none = api.token("analyst", departments=[])
    assert api.client.get("/events", headers=none).json()["items"] == []
