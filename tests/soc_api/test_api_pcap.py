"""GET /pcap on both stores: the packets of a flow, an alert or a query as a pcap download,
for analysts and responders only, within the caller's departments (another department's
flow or alert is not found), every download in the audit trail."""

from __future__ import annotations

import io

from collectors.packet import PacketRing, read_pcaps, ring_config, write_flow_pcap

CAPTURE = "corelight-cve-2021-44228/log4j-user_agent.pcap"


def test_pcap_download_roles_departments_audit(api, shared_dir):
    ring = PacketRing(ring_config(api.cfg))
    events, _ = read_pcaps([shared_dir / "pcaps" / CAPTURE], ring=ring)
    docs = list(events)
    for d in docs:  # the capture's addresses are nobody's: give them to one department
        d["organization"] = {"id": "wjw", "name": "市卫健委"}
    api.ctx.store.write(docs, refresh=True)
    flows = [d for d in docs if d["event"]["dataset"] == "network.flow"]
    http = [d["event"]["id"] for d in docs if d["event"]["dataset"] == "network.http"]
    flow = max(flows, key=lambda f: f["network"]["packets"])
    api.ctx.store.write([{"@timestamp": flow["@timestamp"],
                          "event": {"kind": "alert", "id": "al-pcap",
                                    "dataset": "govsoc.alert"},
                          "organization": {"id": "wjw", "name": "市卫健委"},
                          "govsoc": {"alert": {"event_ids": http, "status": "open"}}}],
                        refresh=True)
    wjw = api.token("analyst", departments=["wjw"])
    gaj = api.token("responder", departments=["gaj"])

    r = api.client.get("/pcap", params={"flow": flow["event"]["id"]}, headers=wjw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.tcpdump.pcap"
    expected = io.BytesIO()
    lib = write_flow_pcap(api.ctx.store, api.cfg, expected, flows=[flow["event"]["id"]])
    assert r.content == expected.getvalue() and lib.packets == flow["network"]["packets"]
    assert r.headers["x-govsoc-packets"] == str(lib.packets)
    assert r.headers["x-govsoc-notes"] == "[]"

    a = api.client.get("/pcap", params={"alert": "al-pcap"}, headers=wjw)
    assert a.status_code == 200 and int(a.headers["x-govsoc-flows"]) >= 1
    q = api.client.get("/pcap", params={"q": "network.transport:tcp", "from": "2000-01-01",
                                        "to": "now"}, headers=wjw)
    assert q.status_code == 200 and len(q.content) > len(r.content)

    # another department: not found, whichever way it is asked for
    assert api.client.get("/pcap", params={"flow": flow["event"]["id"]},
                          headers=gaj).status_code == 404
    assert api.client.get("/pcap", params={"alert": "al-pcap"}, headers=gaj).status_code == 404
    nothing = api.client.get("/pcap", params={"q": "*", "from": "2000-01-01", "to": "now"},
                             headers=gaj)
    assert nothing.status_code == 404 and nothing.json()["detail"]
    # roles without pcap:read; bad requests
    for role in ("auditor", "sysadmin"):  # (the route × role matrix test has the rest)
        got = api.client.get("/pcap", params={"flow": flow["event"]["id"]},
                             headers=api.token(role))
        assert got.status_code == 403, role
    bad = api.client.get("/pcap", headers=wjw)
    assert bad.status_code == 400 and "exactly one" in bad.json()["detail"]
    assert api.client.get("/pcap", params={"q": "a:b"}, headers=wjw).status_code == 400

    audited = [(d["event"]["action"], d["event"]["outcome"],
                d["govsoc"]["audit"]["object"]["id"]) for d in api.ctx.trail.recent
               if d["event"]["action"] == "pcap.download"]
    assert ("pcap.download", "success", f"flow:{flow['event']['id']}") in audited
    assert ("pcap.download", "success", "alert:al-pcap") in audited
    failures = [x for x in audited if x[1] == "failure"]
    assert len(failures) == 3, audited  # the other department's three tries
