"""Playbook runs through the API against the test fleet, over real HTTP (uvicorn): a check
run needs no approval and its runner events stream live (SSE, Last-Event-ID resume); an
approved change runs and its undo takes it back; cancel stops a running ansible-playbook."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson
import psutil
import pytest
import yaml
from api_helpers import make_config

from soc_api.app import build_context, close_context, create_app
from soc_api.serve import Listen, serve_in_thread
from soc_core.store import open_store

pytestmark = pytest.mark.fleet


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(fleet, tmp_path_factory):
    """The API on a real port, its inventory the fleet's (department `lab`: its subnet)."""
    tmp = tmp_path_factory.mktemp("runsapi")
    inv = tmp / "fleet.yml"
    inv.write_text(yaml.safe_dump(fleet.inventory()))
    store = open_store(f"sqlite:///{tmp}/govsoc.db")
    cfg = make_config(tmp, store.url, departments=[
        {"id": "lab", "name": "实验室", "cidrs": [str(fleet.state().subnet)]}],
        **{"playbooks.inventory": str(inv), "playbooks.timeout": 300})
    ctx = build_context(cfg, store=store)
    listen = Listen("127.0.0.1", _free_port(), 1, True)
    stop = threading.Event()
    t = threading.Thread(target=serve_in_thread,
                         args=(cfg, listen, stop, create_app(cfg, context=ctx)), daemon=True)
    t.start()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", listen.port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    tokens = {}
    for role in ("analyst", "responder", "secadmin"):
        _, secret = ctx.identity.create_token(f"t-{role}", roles_=[role],
                                              departments=["lab"], keys=[], created_by="t")
        tokens[role] = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=listen.url, timeout=60) as client:
        yield client, tokens
    stop.set()
    t.join(10)
    close_context(ctx)


def sse(client, path: str, headers: dict, on_event=None):
    """The stream's events as (event, id, data), reading until the server ends it."""
    out, fields = [], {}
    with client.stream("GET", path, headers=headers, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "text/event-stream")
        for line in r.iter_lines():
            if line:
                key, _, value = line.partition(": ")
                fields[key] = value
                continue
            if "event" in fields:
                item = (fields["event"], fields.get("id"), orjson.loads(fields["data"]))
                out.append(item)
                if on_event:
                    on_event(item)
            fields = {}
    return out


def _wait(client, rid: str, headers: dict) -> dict:
    for _ in range(3000):
        run = client.get(f"/runs/{rid}", headers=headers).json()
        if run["status"] in ("successful", "failed", "canceled", "rejected"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {rid} did not end")


def test_check_run_needs_no_approval_and_streams_live(served, hosts):
    client, tok = served
    r = client.post("/runs", headers=tok["analyst"], json={
        "playbook": "block_ip", "hosts": [hosts[0]], "check": True,
        "vars": {"ip": "10.213.99.9"}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert not run["needs_approval"] and run["approver"] is None
    assert run["status"] in ("approved", "running")
    rid = run["run_id"]
    status_at_first_event = []

    def first(item) -> None:
        if item[0] == "runner" and not status_at_first_event:
            status_at_first_event.append(
                client.get(f"/runs/{rid}", headers=tok["analyst"]).json()["status"])

    events = sse(client, f"/runs/{rid}/events", tok["analyst"], first)
    assert status_at_first_event == ["running"]  # the event came while the run went on
    # the request's status changes while it goes come as `status` events, before its end
    statuses = [e[2]["status"] for e in events if e[0] == "status"]
    assert statuses and set(statuses) <= {"approved", "running"}, statuses
    runner = [e for e in events if e[0] == "runner"]
    seqs = [int(e[1]) for e in runner]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 4
    assert {"playbook_on_start", "runner_on_ok", "playbook_on_stats"} <= {
        e[2]["event"] for e in runner}
    assert events[-1][0] == "result"
    result = events[-1][2]
    assert result["status"] == "successful" and result["check"] is True
    assert result["result"]["summary"][hosts[0]]["status"] == "changed"

    resumed = sse(client, f"/runs/{rid}/events",
                  {**tok["analyst"], "Last-Event-ID": str(seqs[1])})
    assert [int(e[1]) for e in resumed if e[0] == "runner"] == seqs[2:]
    assert resumed[-1][0] == "result"


def test_approved_change_runs_once_and_undo_takes_it_back(served, fleet, hosts):
    client, tok = served
    h = hosts[1]
    body = {"playbook": "block_ip", "hosts": [h], "vars": {"ip": "10.213.99.7"}}
    run = client.post("/runs", headers=tok["responder"], json=body).json()
    assert run["status"] == "pending"
    assert client.get(f"/runs/{run['run_id']}", headers=tok["analyst"]).json()["result"] is None
    r = client.post(f"/runs/{run['run_id']}/approve", headers=tok["secadmin"])
    assert r.status_code == 200, r.text
    # a second approval (another worker, a double click) neither runs it again nor passes
    assert client.post(f"/runs/{run['run_id']}/approve",
                       headers=tok["secadmin"]).status_code == 409
    done = _wait(client, run["run_id"], tok["responder"])
    assert done["status"] == "successful", done
    assert done["result"]["summary"][h]["status"] == "changed"
    assert "10.213.99.7" in fleet.ssh(h, "nft list table inet govsoc_block").stdout

    undo = client.post(f"/runs/{run['run_id']}/undo", headers=tok["responder"])
    assert undo.status_code == 201, undo.text
    undo = undo.json()
    assert undo["status"] == "pending" and undo["undo_of"] == run["run_id"]
    assert undo["vars"] == {"ip": "10.213.99.7", "undo": True}
    client.post(f"/runs/{undo['run_id']}/approve", headers=tok["secadmin"])
    assert _wait(client, undo["run_id"], tok["responder"])["status"] == "successful"
    assert "10.213.99.7" not in fleet.ssh(h, "nft list tables; nft list ruleset").stdout


def test_cancel_stops_the_running_playbook(served, hosts, apt_repo):
    client, tok = served
    run = client.post("/runs", headers=tok["responder"], json={
        "playbook": "patch", "hosts": [hosts[2]],
        "vars": {"patch_repo": apt_repo["source"], "patch_packages": ["none"],
                 "patch_health_cmd": "sleep 120"}}).json()
    rid = run["run_id"]
    assert client.post(f"/runs/{rid}/approve", headers=tok["secadmin"]).status_code == 200
    canceled = []

    def cancel_when_sleeping(item) -> None:
        task = item[2].get("task") or ""
        if item[0] == "runner" and task.startswith("Post-check the service") and not canceled:
            canceled.append(client.post(f"/runs/{rid}/cancel", headers=tok["secadmin"]))

    events = sse(client, f"/runs/{rid}/events", tok["responder"], cancel_when_sleeping)
    assert canceled and canceled[0].status_code == 200, canceled
    assert events[-1][0] == "result" and events[-1][2]["status"] == "canceled"
    assert events[-1][2]["canceled_by"].startswith("token:")
    assert events[-1][2]["result"]["status"] == "canceled"
    # ansible-playbook of the run is gone, not left sleeping behind the API
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if rid in " ".join(p.info["cmdline"] or [])]
    assert not left, left
