"""Events and alerts over the API on both stores: search with cursors, histogram, top values;
alert list/count/aggregate, one alert with its events, the workflow with its history,
bulk changes, departments, roles, concurrent clients and a crash in the middle of a bulk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from alert_helpers import seed
from api_helpers import close_context_keep_store
from fastapi.testclient import TestClient

from soc_api.app import build_context, create_app
from soc_core.store import Selection, open_store


def _ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [d["event"]["id"] for d in r.json()["items"]]


def test_events_and_alerts_routes(api):
    seed(api.ctx.store)
    h = api.token("analyst", departments=["wjw"])
    c = api.client
    # events: the CLI's query syntax, pages joined by `after`, the same as one big page
    r = c.get("/events", params={"q": "event.outcome:failure", "size": 3}, headers=h)
    first = r.json()
    assert first["total"] == 4 and len(first["items"]) == 3 and first["next"]
    rest = c.get("/events", params={"q": "event.outcome:failure", "size": 3,
                                     "after": first["next"]}, headers=h).json()
    assert rest["next"] is None and rest["total"] is None
    assert [d["event"]["id"] for d in first["items"] + rest["items"]] == \
        [f"ev-wjw-{i}" for i in range(4)]
    hist = c.get("/events/histogram", params={"from": "now-1h", "interval": "1m"},
                 headers=h).json()
    assert sum(b["count"] for b in hist["buckets"]) == 4
    top = c.get("/events/fields/host.name/top", headers=h).json()["items"]
    assert {t["value"] for t in top} == {"h-wjw-0", "h-wjw-1", "h-wjw-2"}  # no gaj host
    assert c.get("/events/histogram", params={"interval": "1s", "from": "now-30d"},
                 headers=h).status_code == 400
    assert c.get("/events/fields/message/top", headers=h).status_code == 400

    # alerts: filters, sort, cursors, count, aggregate
    assert _ids(c.get("/alerts", params={"size": 2}, headers=h)) == ["al-wjw-0", "al-wjw-1"]
    page = c.get("/alerts", params={"size": 3, "sort": "@timestamp"}, headers=h).json()
    assert [d["event"]["id"] for d in page["items"]] == ["al-wjw-3", "al-wjw-2", "al-wjw-1"]
    nxt = c.get("/alerts", params={"size": 3, "sort": "@timestamp", "after": page["next"]},
                headers=h).json()
    assert [d["event"]["id"] for d in nxt["items"]] == ["al-wjw-0"]
    assert _ids(c.get("/alerts", params={"level": "critical"}, headers=h)) == ["al-wjw-0"]
    assert _ids(c.get("/alerts", params={"tactic": "TA0006", "status": "open,acknowledged",
                                         "q": "host.name:h-wjw-1"}, headers=h)) == ["al-wjw-1"]
    assert c.get("/alerts/count", params={"rule": "r-brute"}, headers=h).json() == {"count": 4}
    agg = c.get("/alerts/aggregate", params={"field": "level"}, headers=h).json()["items"]
    assert agg == [{"value": "high", "count": 3}, {"value": "critical", "count": 1}]
    assert c.get("/alerts/aggregate", params={"field": "nope"}, headers=h).status_code == 422

    one = c.get("/alerts/al-wjw-2", headers=h).json()
    assert [e["event"]["id"] for e in one["events"]] == ["ev-wjw-2"]
    assert one["rule"]["id"] == "r-brute" and one["rule"]["href"] == "/rules/r-brute"

    # the workflow, each change in the history, each in the audit trail
    w = {**h}
    post = c.post
    assert post("/alerts/al-wjw-2/transition", json={"status": "acknowledged",
                "note": "looking"}, headers=w).status_code == 200
    assert post("/alerts/al-wjw-2/assign", json={"assignee": "zhao"}, headers=w).status_code == 200
    assert post("/alerts/al-wjw-2/notes", json={"text": "jump host"}, headers=w).status_code == 200
    r = post("/alerts/al-wjw-2/transition", json={"status": "closed", "reason": "benign"},
             headers=w)
    assert r.json()["govsoc"]["alert"]["close_reason"] == "benign"
    r = post("/alerts/al-wjw-2/transition", json={"status": "acknowledged"}, headers=w)
    assert r.status_code == 409 and "closed" in r.json()["detail"]
    assert post("/alerts/al-wjw-2/transition", json={"status": "closed", "reason": "meh"},
                headers=w).status_code == 422
    assert post("/alerts/al-wjw-2/transition", json={"status": "open"}, headers=w).status_code \
        == 200
    hist = c.get("/alerts/al-wjw-2/history", headers=h).json()["items"]
    assert [(e["action"], e["from"], e["to"], e.get("reason"), e.get("note"), e["by"])
            for e in hist] == [
        ("transition", "open", "acknowledged", None, "looking", "t-analyst"),
        ("assign", None, "zhao", None, None, "t-analyst"),
        ("note", None, None, None, "jump host", "t-analyst"),
        ("transition", "acknowledged", "closed", "benign", None, "t-analyst"),
        ("transition", "closed", "open", None, None, "t-analyst")]
    assert len({e["id"] for e in hist}) == 5 and all(e["at"] for e in hist)
    assert _ids(c.get("/alerts", params={"assignee": "zhao"}, headers=h)) == ["al-wjw-2"]
    changes = [d["event"]["action"] for d in api.ctx.trail.recent
               if d["event"]["action"].startswith("alerts.") and "al-wjw-2" in str(d)]
    assert changes.count("alerts.transition") == 4  # three made, one refused (409)
    assert {"alerts.assign", "alerts.note", "alerts.history"} <= set(changes)

    # bulk by ids and by query: only wjw's alerts, whatever is asked
    r = post("/alerts/bulk", json={"action": "transition", "status": "acknowledged",
                                   "ids": ["al-wjw-0", "al-gaj-0", "al-wjw-2", "nope"]},
             headers=w).json()
    assert sorted(r["applied"]) == ["al-wjw-0", "al-wjw-2"]
    assert set(r["skipped"]) == {"al-gaj-0", "nope"}
    r = post("/alerts/bulk", json={"action": "transition", "status": "closed",
                                   "reason": "false_positive", "q": "*",
                                   "filters": {"department": "wjw,gaj"}}, headers=w).json()
    assert sorted(r["applied"]) == [f"al-wjw-{i}" for i in range(4)] and not r["skipped"]
    r = post("/alerts/bulk", json={"action": "note", "text": "x", "filters": {"nope": "1"}},
             headers=w)
    assert r.status_code == 400
    admin = api.token("analyst")
    statuses = {d["event"]["id"]: d["govsoc"]["alert"]["status"]
                for d in c.get("/alerts", params={"size": 100}, headers=admin).json()["items"]}
    assert statuses == {**{f"al-wjw-{i}": "closed" for i in range(4)},
                        **{f"al-gaj-{i}": "open" for i in range(4)}}


def test_departments_and_roles(api):
    seed(api.ctx.store, n=2)
    c = api.client
    wjw = api.token("analyst", departments=["wjw"])
    # another department's alert does not exist for this analyst, in any route
    for path in ("/alerts/al-gaj-0", "/alerts/al-gaj-0/history"):
        assert c.get(path, headers=wjw).status_code == 404
    for path, body in (("transition", {"status": "closed"}), ("assign", {"assignee": "li"}),
                       ("notes", {"text": "x"})):
        assert c.post(f"/alerts/al-gaj-0/{path}", json=body, headers=wjw).status_code == 404
    assert c.get("/alerts/count", headers=wjw).json() == {"count": 2}
    assert c.get("/alerts/aggregate", params={"field": "department"},
                 headers=wjw).json()["items"] == [{"value": "wjw", "count": 2}]
    # roles: a viewer and an auditor read nothing and change nothing; a responder may act
    for role in ("viewer", "auditor", "sysadmin"):
        h = api.token(role)
        assert c.get("/alerts", headers=h).status_code == 403
        assert c.post("/alerts/al-wjw-0/transition", json={"status": "closed"},
                      headers=h).status_code == 403
        assert c.post("/alerts/bulk", json={"action": "note", "text": "x", "q": "*"},
                      headers=h).status_code == 403
    r = c.post("/alerts/al-wjw-0/transition", json={"status": "acknowledged"},
               headers=api.token("responder"))
    assert r.status_code == 200
    gaj = api.ctx.store.get("alerts", "al-gaj-0")["govsoc"]["alert"]
    assert gaj["status"] == "open" and not gaj.get("history")
    audited = [(d["event"]["action"], d["event"]["outcome"]) for d in api.ctx.trail.recent]
    assert ("alerts.transition", "success") in audited


def _second_worker(api):
    """Another API worker on the same store: its own connection, context and app."""
    store = api.ctx.store
    kw = {"namespace": store.namespace} if store.backend == "elasticsearch" else {}
    other = open_store(store.url, departments=api.ctx.departments, **kw)
    ctx = build_context(api.cfg, store=other)
    return TestClient(create_app(api.cfg, context=ctx), base_url="https://testserver"), ctx


def test_history_complete_after_concurrent_updates(api):
    seed(api.ctx.store, n=1)
    client2, ctx2 = _second_worker(api)
    h = api.token("analyst")
    results: dict[str, list[int]] = {}

    def work(name: str, client: TestClient) -> None:
        codes = []
        for i in range(5):
            codes.append(client.post("/alerts/al-wjw-0/notes", json={"text": f"{name} {i}"},
                                     headers=h).status_code)
            codes.append(client.post("/alerts/al-wjw-0/assign", json={"assignee": f"{name}{i}"},
                                     headers=h).status_code)
        codes.append(client.post("/alerts/al-wjw-0/transition", json={"status": "acknowledged"},
                                 headers=h).status_code)
        results[name] = codes

    try:
        threads = [threading.Thread(target=work, args=(n, cl))
                   for n, cl in (("a", api.client), ("b", client2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        close_context_keep_store(ctx2)
        ctx2.store.close()
    # both notes and assignments all landed; exactly one of the two acknowledgements did
    assert all(code == 200 for codes in results.values() for code in codes[:-1])
    assert sorted(codes[-1] for codes in results.values()) == [200, 409]
    hist = api.client.get("/alerts/al-wjw-0/history", headers=h).json()["items"]
    notes = sorted(e["note"] for e in hist if e["action"] == "note")
    assert notes == sorted(f"{n} {i}" for n in "ab" for i in range(5))
    assigns = [e for e in hist if e["action"] == "assign"]
    assert len(assigns) == 10
    # each assignment's "from" is the one before it: no change was lost in between
    assert [e["from"] for e in assigns[1:]] == [e["to"] for e in assigns[:-1]]
    assert [e["to"] for e in hist if e["action"] == "transition"] == ["acknowledged"]
    assert len({e["id"] for e in hist}) == len(hist) == 21


CRASHER = """
import sys, time
from detections import workflow
from soc_core.store import open_store
url, ns = sys.argv[1], sys.argv[2]
store = open_store(url, departments=[], **({"namespace": ns} if ns else {}))
def stop(done, total):
    print("chunk", done, total, flush=True)
    time.sleep(600)  # killed here, half-way through the bulk change
workflow.bulk(store, [f"al-wjw-{i}" for i in range(6)] + [f"al-gaj-{i}" for i in range(6)],
              workflow.Change(status="closed", reason="true_positive", note="campaign"),
              by="crasher", progress=stop, chunk=4)
"""


def test_crash_in_the_middle_of_a_bulk_change(api):
    store = api.ctx.store
    seed(store, n=6)
    ns = store.namespace if store.backend == "elasticsearch" else ""
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, store.url, ns],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "GOVSOC_DATA_DIR": str(api.cfg.data_dir)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("chunk 4 12"), line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store.refresh()

    def closed() -> list[str]:
        return sorted(d["event"]["id"] for d in store.scan(Selection(family="alerts"))
                      if d["govsoc"]["alert"]["status"] == "closed")

    assert len(closed()) == 4  # killed half-way: 4 of 12 changed
    # the restart: an API worker starting finishes the journal, once for each alert
    ctx = build_context(api.cfg, store=store)
    close_context_keep_store(ctx)
    store.refresh()
    assert len(closed()) == 12
    for d in store.scan(Selection(family="alerts")):
        entries = d["govsoc"]["alert"]["history"]
        assert [(e["to"], e["reason"], e["note"], e["by"]) for e in entries] == [
            ("closed", "true_positive", "campaign", "crasher")]
    assert not list(store.scan(Selection(family="state", dataset="govsoc.state.alert_bulk")))


def test_a_change_is_listed_at_once_by_any_worker(api, monkeypatch):
    """Read-your-writes: once a change is answered, the list, count and aggregate of the
    same worker and of another worker (its own store connection) show the new state, never
    the old one. On Elasticsearch a search sees only refreshed documents (every second by
    default), so each change is asked for and listed at once, several times in a row: in the
    first round each change refreshes the alerts index (`es_alert_refresh = "write"`), in
    the second it is written without a refresh and each alert search refreshes first
    ("search")."""
    seed(api.ctx.store, n=3)
    client2, ctx2 = _second_worker(api)
    h = api.token("analyst", departments=["wjw"])
    ids = [f"al-wjw-{i}" for i in range(3)]
    es = api.ctx.store.backend == "elasticsearch"
    refreshed: list[object] = []  # the refresh asked with each alert bulk write

    def listed(client: TestClient, **params: str) -> list[str]:
        return sorted(_ids(client.get("/alerts", params=params, headers=h)))

    try:
        for round_ in range(2):
            if es and round_ == 0:  # the default is "search": this round is "write"
                for s in (api.ctx.store, ctx2.store):
                    monkeypatch.setattr(s, "fresh_families", frozenset())
            if es and round_ == 1:
                for s in (api.ctx.store, ctx2.store):
                    monkeypatch.setattr(s, "fresh_families", frozenset({"alerts"}))
                    real = s._send_bulk  # every bulk request, over either connection
                    monkeypatch.setattr(s, "_send_bulk", lambda lines, fp, refresh=False,
                                        _real=real: (refreshed.append(refresh),
                                                     _real(lines, fp, refresh))[1])
            for n, aid in enumerate(ids):
                writer, reader = (api.client, client2) if n % 2 else (client2, api.client)
                r = writer.post(f"/alerts/{aid}/transition", json={"status": "acknowledged"},
                                headers=h)
                assert r.status_code == 200, r.text
                done = ids[:n + 1]
                for client in (reader, writer):
                    assert listed(client, status="acknowledged") == done
                    assert listed(client, status="open") == ids[n + 1:]
                    assert client.get("/alerts/count", params={"status": "open"},
                                      headers=h).json() == {"count": len(ids) - n - 1}
                agg = reader.get("/alerts/aggregate", params={"field": "status"},
                                 headers=h).json()["items"]
                assert {a["value"]: a["count"] for a in agg} == \
                    {k: v for k, v in (("acknowledged", n + 1),
                                       ("open", len(ids) - n - 1)) if v}
                assigned = f"zhao{round_}{n}"
                assert writer.post(f"/alerts/{aid}/assign", json={"assignee": assigned},
                                   headers=h).status_code == 200
                assert listed(reader, assignee=assigned) == [aid]
            for aid in ids:  # reopen: the next round starts where this one did
                assert api.client.post(f"/alerts/{aid}/transition", json={"status": "open"},
                                       headers=h).status_code == 200
                assert aid in listed(client2, status="open")
        if es:  # the second round's changes were written without a refresh
            assert refreshed and not any(refreshed)
    finally:
        close_context_keep_store(ctx2)
        ctx2.store.close()
