"""The asset registry over HTTP, on both stores: assets recorded by the registry itself
(two departments, stamped by address), listed and read by an analyst of one department,
who never sees the other's asset (404, not counted), its changes or its idle verdict; the
console's asset pages show the same."""

from __future__ import annotations

import cloud_inventory as inv
from soc_core import ecs

HTML = {"accept": "text/html"}


def _seed(api) -> dict[str, str]:
    store = api.ctx.store
    store.use_departments(api.ctx.departments)
    now = ecs.now_iso()
    ids = {}
    for run, (name, ip) in enumerate((("wjw-web-01", "10.1.0.5"), ("gaj-db-01", "10.2.0.7"))):
        obs = inv.Observation(source="network", seen=now, ips=[ip],
                              macs=[f"02:00:00:00:00:0{run}"],
                              listening=[{"protocol": "tcp", "port": 22}])
        inv.record(store, [obs], source="network", run_id=f"r{run}", baseline=False)
        ids[name] = inv.get_asset(store, ip)["event"]["id"]
    # two departments' hosts of one hostname (machine-ids differ): two assets
    twins = [inv.Observation(source="host", seen=now, hostname="shared-01",
                             machine_id=f"m{i}", ips=[ip])
             for i, ip in enumerate(("10.2.0.9", "10.1.0.9"))]
    inv.record(store, twins, source="host", run_id="r-host")
    store.refresh()
    return ids


def test_an_analyst_sees_the_assets_of_its_department_only(api):
    ids = _seed(api)
    api.user("wana", "analyst", departments=["wjw"])
    api.login("wana")
    c = api.client
    got = c.get("/assets").json()
    assert {d["host"]["name"] for d in got["items"]} == {"10.1.0.5", "shared-01"}
    assert got["total"] == 2
    twin = c.get("/assets/shared-01").json()  # its own, whichever the registry finds first
    assert twin["host"]["ip"] == ["10.1.0.9"]
    one = c.get(f"/assets/{ids['wjw-web-01']}").json()
    assert one["host"]["ip"] == ["10.1.0.5"] and one["organization"]["id"] == "wjw"
    assert c.get("/assets/10.1.0.5").json()["event"]["id"] == ids["wjw-web-01"]
    for key in (ids["gaj-db-01"], "10.2.0.7"):  # the other department's: not disclosed
        r = c.get(f"/assets/{key}")
        assert r.status_code == 404 and r.json()["detail"] == "no such asset"
    assert c.get("/assets", params={"department": "gaj"}).json()["items"] == []
    changes = c.get("/assets/changes").json()["items"]
    assert changes and {d["govsoc"]["inventory"]["asset_id"] for d in changes} \
        == {ids["wjw-web-01"]}  # the host run is its source's baseline: no changes
    # the change documents themselves carry the asset's addresses, so they are stamped
    assert {(d["host"]["ip"][0], d["organization"]["id"]) for d in changes} \
        == {("10.1.0.5", "wjw")}
    idle = c.get("/idle").json()
    assert {s["department"] for s in idle["systems"]} == {"wjw"} and idle["systems"]
    assert set(idle["departments"]) <= {"wjw"}
    assert all(f["department"] == "wjw" for f in c.get("/exposure").json()["items"])
    assert c.get("/assets", params={"q": "host.ip:("}).status_code == 400
    audited = {d["event"]["action"] for d in api.ctx.trail.recent}
    assert {"assets.search", "assets.read", "assets.changes", "idle.read",
            "exposure.read"} <= audited
    page = c.get("/ui/assets", headers=HTML).text
    assert "10.1.0.5" in page and "10.2.0.7" not in page and 'href="/ui/assets"' in page
    detail = c.get(f"/ui/assets/{ids['wjw-web-01']}", headers=HTML)
    assert detail.status_code == 200 and "tcp/22" in detail.text
    assert c.get(f"/ui/assets/{ids['gaj-db-01']}", headers=HTML).status_code == 404
    # an all-departments caller sees both
    both = c.get("/assets", headers=api.token("analyst")).json()
    assert both["total"] == 4
