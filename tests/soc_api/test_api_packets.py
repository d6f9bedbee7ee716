"""The packets routes (issue 18): a flow's and an alert's packets out of a real packet ring,
dissected by Wireshark, followed, carved, listed and downloaded, with roles, department
isolation and an audit record for each request."""

from __future__ import annotations

import hashlib

import pytest
from api_helpers import Api, close_context_keep_store, make_config
from fastapi.testclient import TestClient
from packets_ring import FTP_PCAP, HTTP_PCAP, first, replay, ring_settings

from soc_api.app import build_context, create_app
from soc_core import ecs
from soc_core.sm3 import sm3_hex
from soc_core.store import open_store

DEPTS = [{"id": "wjw", "name": "市卫健委", "cidrs": ["10.0.2.0/24"]},
         {"id": "gaj", "name": "市公安局", "cidrs": ["141.142.0.0/16"]}]


def _alert(aid: str, events: list[dict], depts: list[str]) -> dict:
    t = ecs.now_iso()
    return {"@timestamp": t, "message": aid,
            "event": {"kind": "alert", "id": aid, "dataset": "govsoc.alert", "start": t,
                      "end": t},
            "rule": {"id": "r1", "name": "test"},
            "organization": {"id": depts[0]}, "govsoc": {"departments": depts, "alert": {
                "status": "open", "level": "high", "count": len(events), "first_seen": t,
                "last_seen": t, "event_ids": [e["event"]["id"] for e in events]}}}


def ftp_session(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["event"]["dataset"] == "network.flow"
            and d["source"]["ip"] == "141.142.220.235"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVSOC_MASTER_KEY", "packets-test-master-secret-" + "p" * 12)
    tmp = tmp_path_factory.mktemp("packets")
    store = open_store(f"sqlite:///{tmp}/govsoc.db")
    cfg = make_config(tmp, store.url, departments=DEPTS, **ring_settings(tmp))
    ctx = build_context(cfg, store=store)
    store.use_departments(ctx.departments)
    docs = replay(cfg, store, HTTP_PCAP, FTP_PCAP)
    http = first(docs, "network.http", url__path="/")
    ftp = first(docs, "network.flow", destination__port=21)
    # FTP names a file on its control connection and sends it on a data connection:
    # carving wants both, as an alert on the session has them
    ftp_flows = ftp_session(docs)
    store.write([_alert("al-http", [http], ["wjw"]),
                 _alert("al-both", [http, ftp], ["wjw", "gaj"]),
                 _alert("al-ftp", ftp_flows, ["gaj"])], refresh=True)
    api = Api(TestClient(create_app(cfg, context=ctx), base_url="https://testserver"), ctx,
              cfg)
    yield {"api": api, "http": http, "ftp": ftp,
           "ana": api.token("analyst"), "resp": api.token("responder"),
           "gaj": api.token("analyst", departments=["gaj"]),
           "wjw": api.token("analyst", departments=["wjw"])}
    close_context_keep_store(ctx)
    store.close()
    mp.undo()


def shows(layers, name):
    out, stack = [], list(layers)
    while stack:
        n = stack.pop()
        if n.get("name") == name:
            out.append(n.get("show"))
        stack.extend(n.get("children", []))
    return out


def test_a_flows_packets_dissected_and_followed(env):
    api, http = env["api"], env["http"]
    r = api.client.get(f"/packets/flows/{http['event']['id']}", params={"hex": "false"},
                       headers=env["wjw"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["flows"] == 1 and not got["truncated"]
    requests = [p for p in got["packets"] if p["info"].startswith("GET / HTTP/1.1")]
    assert len(requests) == 1 and "hex" not in requests[0]
    assert shows(requests[0]["layers"], "http.host") == ["bro.org"]
    # the flow's packets only: one TCP stream, both directions
    assert {p["tcp_stream"] for p in got["packets"]} == {0}
    assert {p["source"] for p in got["packets"]} == {"10.0.2.15:55079", "192.150.187.43:80"}
    one = api.client.get(f"/packets/flows/{http['event']['id']}",
                         params={"frame": requests[0]["number"]}, headers=env["wjw"]).json()
    assert [p["number"] for p in one["packets"]] == [requests[0]["number"]]
    assert one["packets"][0]["hex"].startswith("0000  ")
    f = api.client.get(f"/packets/flows/{http['event']['id']}/follow",
                       params={"as": "http", "stream": 0}, headers=env["wjw"]).json()
    assert f["chunks"][0]["text"].startswith("GET / HTTP/1.1\r\nHost: bro.org\r\n")
    assert f["nodes"] == ["10.0.2.15:55079", "192.150.187.43:80"]
    actions = [(d["event"]["action"], d["user"]["name"]) for d in api.ctx.trail.recent]
    assert actions.count(("packets.dissect", "t-analyst")) >= 2
    assert ("packets.follow", "t-analyst") in actions


def test_departments_roles_and_what_the_ring_lacks(env):
    api, http, ftp = env["api"], env["http"], env["ftp"]
    # another department's flow or alert is not found
    assert api.client.get(f"/packets/flows/{http['event']['id']}",
                          headers=env["gaj"]).status_code == 404
    assert api.client.get("/packets/alerts/al-http", headers=env["gaj"]).status_code == 404
    # an alert of two departments: each sees the packets of its own flows only
    mine = api.client.get("/packets/alerts/al-both", params={"hex": "false", "size": 500},
                          headers=env["gaj"]).json()
    assert mine["flows"] == 1 and mine["packets"]
    assert all("ftp" in p["protocols"] or p["destination"].endswith(":21")
               or p["source"].endswith(":21") for p in mine["packets"])
    both = api.client.get("/packets/alerts/al-both", params={"hex": "false", "size": 500},
                          headers=env["ana"]).json()
    assert both["flows"] == 2 and len(both["packets"]) > len(mine["packets"])
    # roles: packets are for analysts and responders only
    for role in ("viewer", "secadmin", "auditor", "sysadmin"):
        r = api.client.get(f"/packets/flows/{ftp['event']['id']}", headers=api.token(role))
        assert r.status_code == 403, role
    # a flow whose packets were never kept: a clear 404
    lone = dict(http, event={**http["event"], "id": "no-ring-flow"},
                govsoc={"capture": {"source": "elsewhere"}})
    api.ctx.store.write([lone], refresh=True)
    r = api.client.get("/packets/flows/no-ring-flow", headers=env["ana"])
    assert r.status_code == 404 and "packet ring" in r.json()["detail"]
    assert api.client.get("/packets/flows/nothing-here", headers=env["ana"]).status_code == 404


def test_carve_list_and_download_with_their_roles(env):
    api, fid = env["api"], "al-ftp"
    r = api.client.post(f"/packets/alerts/{fid}/carve", headers=env["gaj"])
    assert r.status_code == 200, r.text
    [robots] = [f for f in r.json()["files"] if f["file"]["name"] == "robots.txt"]
    assert r.json()["new"] == len(r.json()["files"])
    again = api.client.post(f"/packets/alerts/{fid}/carve", headers=env["gaj"]).json()
    assert again["new"] == 0  # deterministic ids
    sha = robots["file"]["hash"]["sha256"]
    listed = api.client.get("/packets/files", params={"origin": fid}, headers=env["gaj"])
    assert [f["file"]["hash"]["sha256"] for f in listed.json()["items"]] == [sha]
    assert robots["organization"]["id"] == "gaj"  # the alert's department
    # another department sees neither the list nor the file
    assert api.client.get("/packets/files", params={"origin": fid},
                          headers=env["wjw"]).json()["items"] == []
    resp_wjw = api.token("responder", departments=["wjw"])
    assert api.client.get(f"/packets/files/{sha}", headers=resp_wjw).status_code == 404
    # an analyst sees hashes, only a responder takes the bytes
    assert api.client.get(f"/packets/files/{sha}", headers=env["gaj"]).status_code == 403
    got = api.client.get(f"/packets/files/{sha}", headers=env["resp"])
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment")
    assert hashlib.sha256(got.content).hexdigest() == sha
    assert sm3_hex(got.content) == robots["govsoc"]["file"]["hash"]["sm3"]
    actions = [d["event"]["action"] for d in api.ctx.trail.recent]
    assert "packets.carve" in actions and "files.download" in actions
    assert api.client.get("/packets/files/" + "0" * 64, headers=env["resp"]).status_code == 404
    # an FTP control flow carves with its data connections (where the file travels)
    ctl = api.client.post(f"/packets/flows/{env['ftp']['event']['id']}/carve",
                          headers=env["gaj"]).json()
    assert [f["file"]["hash"]["sha256"] for f in ctl["files"]] == [sha]


def test_carved_files_are_found_on_both_stores(tmp_path, store, monkeypatch):
    """The carved-file list and the download check are store queries: on both backends."""
    monkeypatch.setenv("GOVSOC_MASTER_KEY", "packets-test-master-secret-" + "p" * 12)
    cfg = make_config(tmp_path, store.url, departments=DEPTS, **ring_settings(tmp_path))
    ctx = build_context(cfg, store=store)
    store.use_departments(ctx.departments)
    try:
        store.write([_alert("al-ftp", ftp_session(replay(cfg, store, FTP_PCAP)), ["gaj"])],
                    refresh=True)
        api = Api(TestClient(create_app(cfg, context=ctx), base_url="https://testserver"),
                  ctx, cfg)
        h = api.token("responder", departments=["gaj"])
        sha = api.client.post("/packets/alerts/al-ftp/carve",
                              headers=h).json()["files"][0]["file"]["hash"]["sha256"]
        store.refresh()
        items = api.client.get("/packets/files", params={"origin": "al-ftp"},
                               headers=h).json()["items"]
        assert [i["file"]["hash"]["sha256"] for i in items] == [sha]
        assert api.client.get(f"/packets/files/{sha}", headers=h).status_code == 200
    finally:
        close_context_keep_store(ctx)


def test_the_alert_pages_packets_view(env):
    """The console's fragments (the browser test loads them through htmx)."""
    api = env["api"]
    html = {"Accept": "text/html"}
    page = api.client.get("/ui/alerts/al-http", headers={**env["wjw"], **html}).text
    assert 'hx-get="/ui/alerts/al-http/packets"' in page and "/static/js/packets.js" in page
    frag = api.client.get("/ui/alerts/al-http/packets", headers={**env["wjw"], **html})
    assert frag.status_code == 200
    assert "GET / HTTP/1.1" in frag.text and 'id="packet-list"' in frag.text
    assert "/ui/alerts/al-http/follow?as=http&amp;stream=0" in frag.text
    assert 'id="carve-files"' in frag.text  # analysts may carve
    number = frag.text.split('data-frame="')[1].split('"')[0]
    one = api.client.get(f"/ui/alerts/al-http/packets/{number}",
                         headers={**env["wjw"], **html}).text
    assert "Frame " + number in one and 'class="pk-hex"' in one and "0000  " in one
    follow = api.client.get("/ui/alerts/al-http/follow", params={"as": "http", "stream": 0},
                            headers={**env["wjw"], **html}).text
    assert "Host: bro.org" in follow and "pk-side1" in follow
    # carved files: hashes for the analyst, download links for the responder only
    api.client.post("/packets/alerts/al-ftp/carve", headers=env["gaj"])
    files = api.client.get("/ui/alerts/al-ftp/files", headers={**env["gaj"], **html}).text
    assert "robots.txt" in files and 'class="sm3"' in files and "/packets/files/" not in files
    files = api.client.get("/ui/alerts/al-ftp/files", headers={**env["resp"], **html}).text
    assert "/packets/files/" in files
    # another department's alert: no view; a viewer: no packets at all
    assert api.client.get("/ui/alerts/al-http/packets",
                          headers={**env["gaj"], **html}).status_code == 404
    assert api.client.get("/ui/alerts/al-http/packets",
                          headers={**api.token("viewer"), **html}).status_code == 403
