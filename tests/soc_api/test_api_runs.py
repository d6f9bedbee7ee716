"""Playbook runs over the API without running anything: the approval flow (self-approval
refused, the wrong role refused, a check run that runs commands needs approval too),
reject and cancel of pending requests, departments, and the audit of each step. The
real runs and their live event stream are in tests/playbooks/test_runs_api.py (fleet)."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest
import yaml
from api_helpers import Api, close_context_keep_store, make_config
from fastapi.testclient import TestClient

from playbooks import RunRequests
from soc_api.app import build_context, create_app

DEPARTMENTS = [{"id": "wjw", "name": "市卫健委", "cidrs": ["10.1.0.0/16"], "hosts": ["wjw-*"]},
               {"id": "gaj", "name": "市公安局", "cidrs": ["10.2.0.0/16"]}]
# never contacted: no run in this file reaches a host
INVENTORY = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 9},
                     "hosts": {"wjw-web": {}, "gaj-db": {"govsoc_department": "gaj"},
                               "lab-1": {}}}}


def _runs_api(tmp_path, store):
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(INVENTORY))
    cfg = make_config(tmp_path, store.url, departments=DEPARTMENTS,
                      **{"playbooks.inventory": str(inv)})
    ctx = build_context(cfg, store=store)
    return Api(TestClient(create_app(cfg, context=ctx), base_url="https://testserver"),
               ctx, cfg)


@pytest.fixture
def runs_api(tmp_path, store):
    a = _runs_api(tmp_path, store)
    yield a
    close_context_keep_store(a.ctx)


@pytest.fixture
def runs_api_sqlite(tmp_path, sqlite_store):
    a = _runs_api(tmp_path, sqlite_store)
    yield a
    close_context_keep_store(a.ctx)


def test_approval_flow_reject_and_cancel(runs_api):
    api, c = runs_api, runs_api.client
    analyst, responder = api.token("analyst"), api.token("responder")
    secadmin, both = api.token("secadmin"), api.token("responder", "secadmin")

    pbs = {p["name"]: p for p in c.get("/playbooks", headers=analyst).json()["items"]}
    assert pbs["block_ip"]["undo"] and not pbs["patch"]["undo"]
    assert "patch_health_cmd" in pbs["patch"]["command_variables"]

    body = {"playbook": "block_ip", "hosts": ["wjw-web"], "vars": {"ip": "10.213.99.9"}}
    r = c.post("/runs", json=body, headers=analyst)  # an analyst may only check
    assert r.status_code == 403 and "only a responder" in r.json()["detail"]
    # a check run whose variables are commands is not read-only: it needs a responder
    r = c.post("/runs", headers=analyst, json={
        "playbook": "patch", "hosts": ["wjw-web"], "check": True,
        "vars": {"patch_health_cmd": "id"}})
    assert r.status_code == 403

    r = c.post("/runs", json=body, headers=responder)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "pending" and run["needs_approval"]
    assert run["hosts"] == ["wjw-web"] and run["vars"] == {"ip": "10.213.99.9"}
    rid = run["run_id"]
    # the wrong role: the gate refuses a responder and an analyst
    assert c.post(f"/runs/{rid}/approve", headers=responder).status_code == 403
    assert c.post(f"/runs/{rid}/approve", headers=analyst).status_code == 403
    # the requester cannot approve their own request, even holding the approver's role
    own = c.post("/runs", json=body, headers=both).json()
    r = c.post(f"/runs/{own['run_id']}/approve", headers=both)
    assert r.status_code == 403 and "own request" in r.json()["detail"]
    assert c.get(f"/runs/{own['run_id']}", headers=both).json()["status"] == "pending"

    r = c.post(f"/runs/{rid}/reject", json={"reason": "wrong address"}, headers=secadmin)
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert c.post(f"/runs/{rid}/approve", headers=secadmin).status_code == 409
    # a finished request's stream is its result at once
    r = c.get(f"/runs/{rid}/events", headers=analyst)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "event: result" in r.text and '"status":"rejected"' in r.text
    assert "event: status" not in r.text  # status events are for a request still going

    # an analyst may not cancel another's request; a responder may
    assert c.post(f"/runs/{own['run_id']}/cancel", headers=analyst).status_code == 403
    r = c.post(f"/runs/{own['run_id']}/cancel", headers=responder)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert c.post(f"/runs/{own['run_id']}/cancel", headers=responder).status_code == 409
    assert c.post(f"/runs/{own['run_id']}/undo", headers=responder).status_code == 409

    listed = c.get("/runs", headers=secadmin, params={"size": 1}).json()
    assert len(listed["items"]) == 1 and listed["next"] and listed["total"] == 2
    rest = c.get("/runs", headers=secadmin, params={"after": listed["next"]}).json()
    assert {r["run_id"] for r in listed["items"] + rest["items"]} == {rid, own["run_id"]}
    assert [r["run_id"] for r in c.get("/runs", headers=secadmin,
                                       params={"status": "rejected"}).json()["items"]] == [rid]

    actions = [(d["event"]["action"], d["event"]["outcome"]) for d in api.ctx.trail.recent]
    for step in [("runs.request", "success"), ("runs.request", "failure"),
                 ("runs.approve", "failure"), ("runs.reject", "success"),
                 ("runs.cancel", "success"), ("runs.end", "failure")]:
        assert step in actions, step


def test_bad_requests_are_one_line_400s(runs_api_sqlite):
    c, h = runs_api_sqlite.client, runs_api_sqlite.token("responder")
    for body, words in [
            ({"playbook": "nope"}, "unknown playbook"),
            ({"playbook": "block_ip", "vars": {"ip": "10.0.0.999"}}, "not an IPv4"),
            ({"playbook": "block_ip", "vars": {"ip": "10.0.0.9", "x": 1}}, "no variable 'x'"),
            ({"playbook": "block_ip", "hosts": ["no-such"], "vars": {"ip": "10.0.0.9"}},
             "no hosts match"),
            ({"playbook": "block_ip", "hosts": ["a"], "limit": "a"}, "not both")]:
        r = c.post("/runs", json=body, headers=h)
        assert r.status_code == 400 and words in r.json()["detail"], (body, r.text)
    assert c.get("/runs/000000000000", headers=h).status_code == 404
    r = c.get("/runs/000000000000/events", headers=h)
    assert r.status_code == 404


def test_departments_scope_requests_and_approvals(runs_api_sqlite):
    api, c = runs_api_sqlite, runs_api_sqlite.client
    wjw = api.token("responder", departments=["wjw"])
    gaj_admin = api.token("secadmin", departments=["gaj"])
    wjw_admin = api.token("secadmin", departments=["wjw"])
    body = {"playbook": "block_ip", "vars": {"ip": "10.213.99.9"}}
    for target in (["gaj-db"], ["lab-1"], None):  # another's host, an unassigned one, all
        r = c.post("/runs", json={**body, "hosts": target}, headers=wjw)
        assert r.status_code == 403 and "outside your departments" in r.json()["detail"]
    run = c.post("/runs", json={**body, "hosts": ["wjw-web"]}, headers=wjw).json()
    assert run["departments"] == ["wjw"]
    rid = run["run_id"]
    assert c.get(f"/runs/{rid}", headers=gaj_admin).status_code == 404
    assert c.post(f"/runs/{rid}/approve", headers=gaj_admin).status_code == 404
    assert c.get("/runs", headers=gaj_admin).json()["items"] == []
    assert [r["run_id"] for r in c.get("/runs", headers=wjw_admin).json()["items"]] == [rid]
    everyone = api.token("responder")
    gaj_run = c.post("/runs", json={**body, "hosts": ["gaj-db"]}, headers=everyone).json()
    assert gaj_run["departments"] == ["gaj"]
    assert [r["run_id"] for r in c.get("/runs", headers=wjw).json()["items"]] == [rid]


def test_a_run_whose_worker_died_ends_failed(runs_api_sqlite, tmp_path):
    api, c = runs_api_sqlite, runs_api_sqlite.client
    h = api.token("responder")
    rid = c.post("/runs", headers=h, json={"playbook": "block_ip", "hosts": ["wjw-web"],
                                           "vars": {"ip": "10.213.99.9"}}).json()["run_id"]
    gone = subprocess.Popen(["true"])
    gone.wait()
    svc = RunRequests(api.ctx.store, tmp_path / "other-worker")
    rec = svc.get(rid)
    rec.update(status="running", claimed_by=f"{socket.gethostname()}:{gone.pid}")
    svc.save(rec)
    assert svc.resume() == [rid]
    run = c.get(f"/runs/{rid}", headers=h).json()
    assert run["status"] == "failed" and "stopped" in run["reason"]


def test_an_approved_run_is_claimed_once_across_workers(runs_api_sqlite):
    api = runs_api_sqlite
    h = api.token("responder")
    # four workers (as on four machines: nothing shared but the store), two threads each,
    # racing for each run; the deterministic two-worker race is in test_run_leases.py
    workers = [RunRequests(api.ctx.store, api.cfg.data_dir / f"worker-{i}") for i in range(4)]
    for _ in range(6):
        rid = api.client.post("/runs", headers=h, json={
            "playbook": "block_ip", "hosts": ["wjw-web"], "vars": {"ip": "10.213.99.9"}}
        ).json()["run_id"]
        rec = workers[0].get(rid)
        rec["status"] = "approved"
        workers[0].save(rec)
        barrier, claims = threading.Barrier(8), []

        def claim(w: RunRequests, rid=rid, barrier=barrier, claims=claims) -> None:
            barrier.wait()
            claims.append(w.claim(rid))

        threads = [threading.Thread(target=claim, args=(w,)) for w in workers * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(c is not None for c in claims) == 1
        assert workers[3].get(rid)["status"] == "running"
