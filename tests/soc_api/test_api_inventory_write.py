"""Changes to the asset registry over HTTP, on both stores: annotating an asset (validated,
audited, department-scoped, with its history of who changed what) and the retire request
of a zombie, approved through the runs' own approval by a secadmin who did not ask; the
console's inventory pages (exposure, idle, changes, the asset with its history)."""

from __future__ import annotations

import pytest
import yaml
from api_helpers import Api, close_context_keep_store, make_config
from fastapi.testclient import TestClient

import cloud_inventory as inv
from soc_api.app import build_context, create_app
from soc_core import ecs

HTML = {"accept": "text/html"}
# the zombie's inventory entry: never reached (port 9 refuses), the approved run fails fast
INVENTORY = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 9},
                     "hosts": {"10.1.0.5": {"govsoc_department": "wjw"},
                               "10.2.0.7": {"govsoc_department": "gaj"}}}}


@pytest.fixture
def inv_api(tmp_path, store):
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(INVENTORY))
    cfg = make_config(tmp_path, store.url, **{"playbooks.inventory": str(path)})
    ctx = build_context(cfg, store=store)
    store.use_departments(ctx.departments)
    now = ecs.now_iso()
    ids = {}
    for run, (name, ip) in enumerate((("wjw", "10.1.0.5"), ("gaj", "10.2.0.7"))):
        obs = inv.Observation(source="network", seen=now, ips=[ip],
                              macs=[f"02:00:00:00:00:0{run}"],
                              listening=[{"protocol": "tcp", "port": 23}])
        inv.record(store, [obs], source="network", run_id=f"r{run}", baseline=False)
        ids[name] = inv.get_asset(store, ip)["event"]["id"]
    store.refresh()
    api = Api(TestClient(create_app(cfg, context=ctx), base_url="https://testserver"),
              ctx, cfg)
    yield api, ids
    close_context_keep_store(ctx)


def _audit(api, action: str) -> list[dict]:
    return [d for d in api.ctx.trail.recent if d["event"]["action"] == action]


def test_annotate_an_asset_with_its_history_in_its_departments_only(inv_api):
    api, ids = inv_api
    c = api.client
    resp = api.token("responder", departments=["wjw"])
    analyst = api.token("analyst", departments=["wjw"])
    wjw, gaj = ids["wjw"], ids["gaj"]
    body = {"importance": "high", "djcp_level": 3, "data_class": "important",
            "tags": ["his", "prod"], "note": "医院 HIS 前置机"}
    r = c.patch(f"/assets/{wjw}", json=body, headers=resp)
    assert r.status_code == 200, r.text
    a = r.json()["govsoc"]["asset"]
    assert (a["importance"], a["djcp_level"], a["data_class"], a["tags"], a["note"]) == (
        "high", 3, "important", ["his", "prod"], "医院 HIS 前置机")
    assert a["sources"]["djcp_level"]["source"] == "operator"
    # bad input: one line, nothing written
    for bad in ({"djcp_level": 6}, {"importance": "huge"}, {"tags": ["a b"]}, {},
                {"owner": "x"}, {"department": "nope"}):
        r = c.patch(f"/assets/{wjw}", json=bad, headers=resp)
        assert r.status_code in (400, 422) and isinstance(r.json()["detail"], str), bad
    # an analyst reads, may not write; another department's asset is not disclosed
    assert c.patch(f"/assets/{wjw}", json={"note": "x"}, headers=analyst).status_code == 403
    r = c.patch(f"/assets/{gaj}", json={"note": "x"}, headers=resp)
    assert r.status_code == 404
    assert c.get(f"/assets/{gaj}/history", headers=resp).status_code == 404
    # moving it to a department the caller does not hold is refused
    r = c.patch(f"/assets/{wjw}", json={"department": "gaj"}, headers=resp)
    assert r.status_code == 403
    # the history: who changed what, old -> new
    r = c.patch(f"/assets/{wjw}", json={"djcp_level": 2}, headers=resp)
    assert r.status_code == 200
    hist = c.get(f"/assets/{wjw}/history", headers=analyst).json()["items"]
    annotated = [h["govsoc"]["inventory"] for h in hist
                 if h["govsoc"]["inventory"]["change"] == "annotated"]
    assert len(annotated) == 2
    newest = annotated[0]
    assert newest["by"].startswith("t-responder")
    assert newest["fields"] == [{"field": "djcp_level", "from": "3", "to": "2"}]
    assert {f["field"] for f in annotated[1]["fields"]} == {
        "importance", "djcp_level", "data_class", "tags", "note"}
    # a secadmin of all departments moves it; both departments keep the record
    sec = api.token("secadmin")
    r = c.patch(f"/assets/{wjw}", json={"department": "gaj"}, headers=sec)
    assert r.status_code == 200 and r.json()["organization"]["id"] == "gaj"
    gaj_analyst = api.token("analyst", departments=["gaj"])
    moved = c.get(f"/assets/{wjw}/history", headers=gaj_analyst).json()["items"]
    assert moved[0]["govsoc"]["inventory"]["fields"] == [
        {"field": "department", "from": "wjw", "to": "gaj"}]
    # the change list of the old department still shows that it left
    changes = c.get("/assets/changes", headers=analyst).json()["items"]
    assert any(d["govsoc"]["inventory"].get("fields") == moved[0]["govsoc"]["inventory"][
        "fields"] for d in changes)
    audited = _audit(api, "assets.annotate")
    assert {d["event"]["outcome"] for d in audited} == {"success", "failure"}


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the routes: both stores
def test_inventory_pages(inv_api):
    api, ids = inv_api
    c = api.client
    api.user("wana", "analyst", departments=["wjw"])
    api.login("wana")
    for path, marker in (("/ui/exposure", 'id="exposure"'), ("/ui/idle", 'id="utilisation"'),
                         ("/ui/changes", 'id="changes"'), (f"/ui/assets/{ids['wjw']}",
                                                           'id="history"')):
        r = c.get(path, headers=HTML)
        assert r.status_code == 200 and marker in r.text, path
        assert "10.2.0.7" not in r.text, path  # the other department's host
    assert 'id="annotate"' not in c.get(f"/ui/assets/{ids['wjw']}", headers=HTML).text
    exposure = c.get("/ui/exposure", headers=HTML).text
    assert "明文管理协议" in exposure and "10.1.0.5" in exposure  # telnet listening


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_retire_a_zombie_through_the_runs_approval(inv_api):
    api, ids = inv_api
    c = api.client
    analyst = api.token("analyst", departments=["wjw"])
    wjw = ids["wjw"]
    r = c.post(f"/idle/{wjw}/retire", json={"services": ["nginx"]}, headers=analyst)
    assert r.status_code == 409 and "not tagged zombie" in r.json()["detail"]
    inv.annotate(api.ctx.store, wjw, tags=["zombie"])
    assert c.post(f"/idle/{ids['gaj']}/retire", json={"services": ["nginx"]},
                  headers=analyst).status_code == 404
    assert c.post(f"/idle/{wjw}/retire", json={"services": ["a;b"]},
                  headers=analyst).status_code == 422
    r = c.post(f"/idle/{wjw}/retire", json={"services": ["nginx"]}, headers=analyst)
    assert r.status_code == 201, r.text
    run = r.json()
    assert (run["playbook"], run["status"], run["hosts"]) == ("retire_host", "pending",
                                                              ["10.1.0.5"])
    assert run["vars"] == {"retire_services": ["nginx"], "retire_asset_id": wjw}
    # only a secadmin approves, through the runs' own route
    assert c.post(f"/runs/{run['run_id']}/approve", headers=analyst).status_code == 403
    sec = api.token("secadmin")
    r = c.post(f"/runs/{run['run_id']}/approve", headers=sec)
    assert r.status_code == 200 and r.json()["approver"].startswith("token:")
    svc = api.client.app.app.state.runs
    done = svc.wait(run["run_id"], timeout=120)
    # port 9 refuses: the run itself is not the point
    assert done["status"] == "failed", done
    # the playbook was given the approver's name, which the request never carried
    assert "retire_approved_by" in svc.run_status(run["run_id"])["extra_vars"]
    assert _audit(api, "idle.retire")
