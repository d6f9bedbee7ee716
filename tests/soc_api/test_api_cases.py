"""Cases over the API, on both stores: every route in one case's life, department
isolation, roles, merge and timeline, GB/T 20986 level -> reporting deadlines, MTTA/MTTR
on known times, concurrent changes from two clients, bad input."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from soc_api.cases import REPORTING_PROFILES, CaseError, Cases, deadlines, reporting_table
from soc_api.identity import Principal
from soc_core import ecs
from soc_core.config import Config

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
CII = "保护工作部门、公安机关"


def iso(epoch: float) -> str:
    return ecs.format_time(datetime.fromtimestamp(epoch, UTC))


def alert(aid: str, dept: str | None, first: float, last: float) -> dict:
    doc = {"@timestamp": iso(last), "message": f"alert {aid}",
           "event": {"kind": "alert", "id": aid, "dataset": "govsoc.alert"},
           "rule": {"id": "r-" + aid, "name": f"rule of {aid}"},
           "govsoc": {"alert": {"status": "open", "first_seen": iso(first),
                                "last_seen": iso(last)}}}
    if dept:
        doc["organization"] = {"id": dept}
    return doc


def setup(api, clock: list[float]):
    """Alerts of two departments, and a clock the test moves."""
    api.ctx.store.write([alert("a1", "wjw", T0 - 3600, T0 - 1800),
                         alert("a2", "wjw", T0 - 3000, T0 - 2900),
                         alert("a3", "wjw", T0 - 600, T0 - 60),
                         alert("g1", "gaj", T0 - 600, T0 - 60)], refresh=True)
    app = api.client.app.app
    app.state.cases = Cases(api.ctx.store, api.cfg, departments=["wjw", "gaj"],
                            clock=lambda: clock[0])


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


def test_a_case_from_alerts_to_close(api):
    clock = [T0]
    setup(api, clock)
    h = api.token("analyst", departments=["wjw"])
    c = api.client
    case = ok(c.post("/cases", headers=h, json={
        "title": "主机失陷", "alerts": ["a1", "a2"], "category": "网络攻击事件",
        "level": "较大"}), 201)
    cid = case["id"]
    assert (case["category"], case["level"], case["departments"]) == (
        "cyber_attack", "III", ["wjw"])
    assert case["reporting"] == [{"to": CII, "within": "1h", "due": iso(T0 + 3600),
                                  "reported_at": None, "overdue": False}]
    clock[0] = T0 + 600
    case = ok(c.patch(f"/cases/{cid}", headers=h, json={"assignee": "alice"}))
    assert case["acknowledged_at"] == iso(T0 + 600)
    case = ok(c.post(f"/cases/{cid}/alerts", headers=h, json={"ids": ["a3"]}))
    assert case["alert_ids"] == ["a1", "a2", "a3"]
    case = ok(c.delete(f"/cases/{cid}/alerts/a2", headers=h))
    assert case["alert_ids"] == ["a1", "a3"]
    task = ok(c.post(f"/cases/{cid}/tasks", headers=h, json={"title": "隔离主机"}), 201)
    tid = task["task_id"]
    case = ok(c.patch(f"/cases/{cid}/tasks/{tid}", headers=h, json={"status": "done"}))
    assert case["tasks"][0]["status"] == "done"
    case = ok(c.post(f"/cases/{cid}/observables", headers=h, json={"items": [
        {"type": "ip", "value": "10.1.0.5"}, {"type": "sha256", "value": "AB" * 32},
        {"type": "domain", "value": "Evil.Example.COM."}, {"type": "user", "value": "root"},
        {"type": "ip", "value": "10.1.0.5"}]}))
    assert [(o["type"], o["value"]) for o in case["observables"]] == [
        ("ip", "10.1.0.5"), ("sha256", "ab" * 32), ("domain", "evil.example.com"),
        ("user", "root")]
    # a second case with the alert we unlinked, merged into the first
    clock[0] = T0 + 900
    other = ok(c.post("/cases", headers=h, json={"title": "可疑登录", "alerts": ["a2"]}), 201)
    ok(c.post(f"/cases/{other['id']}/observables", headers=h,
              json={"type": "ip", "value": "10.1.0.9"}))
    case = ok(c.post(f"/cases/{cid}/merge", headers=h, json={"from": [other["id"]]}))
    assert sorted(case["alert_ids"]) == ["a1", "a2", "a3"]
    assert case["merged_from"] == [other["id"]]
    assert {o["value"] for o in case["observables"]} >= {"10.1.0.5", "10.1.0.9"}
    merged = ok(c.get(f"/cases/{other['id']}", headers=h))
    assert (merged["status"], merged["merged_into"]) == ("closed", cid)
    listed = ok(c.get("/cases", headers=h, params={"status": "open"}))
    assert [i["id"] for i in listed["items"]] == [cid] and listed["total"] == 1
    assert cid in [i["id"] for i in ok(c.get("/cases", headers=h,
                                             params={"alert": "a3"}))["items"]]
    # the report made in time, then closed two hours in
    clock[0] = T0 + 7200
    case = ok(c.patch(f"/cases/{cid}", headers=h, json={
        "reported": {"to": CII, "at": iso(T0 + 1800)}}))
    assert case["reporting"][0]["reported_at"] == iso(T0 + 1800)
    assert case["reporting"][0]["overdue"] is False
    case = ok(c.post(f"/cases/{cid}/close", headers=h, json={"resolution": "已清除木马"}))
    assert (case["status"], case["resolution"]) == ("closed", "已清除木马")
    # the timeline: alert times and every change, in time order
    items = ok(c.get(f"/cases/{cid}/timeline", headers=h))["items"]
    assert [e["at"] for e in items] == sorted(e["at"] for e in items)
    assert items[0] == {**items[0], "action": "alert.first_seen", "alert_id": "a1",
                        "at": iso(T0 - 3600)}
    actions = [e["action"] for e in items if e["kind"] == "change"]
    assert actions[:4] == ["created", "alert.linked", "alert.linked", "assignee.changed"]
    assert actions[-3:] == ["merged", "reported", "closed"]
    assert {"alert.unlinked", "task.added", "task.status", "observable.added"} <= set(actions)
    # MTTA 10 min, MTTR 2 h; the merged case is counted in the one it went into
    m = ok(c.get("/cases/metrics", headers=h))
    want = {"cases": 1, "acknowledged": 1, "closed": 1, "mtta_seconds": 600.0,
            "mttr_seconds": 7200.0}
    assert m == {"overall": want, "departments": {"wjw": want}}
    assert api.ctx.trail.flush(30)
    audited = {r["event"]["action"] for r in api.ctx.trail.recent}
    assert {"cases.create", "cases.update", "cases.link", "cases.unlink", "cases.merge",
            "cases.task.add", "cases.task.update", "cases.observables", "cases.close",
            "cases.search", "cases.metrics"} <= audited


def test_departments_and_roles(api):
    clock = [T0]
    setup(api, clock)
    wjw, gaj = api.token("analyst", departments=["wjw"]), api.token("responder",
                                                                      departments=["gaj"])
    both = api.token("analyst", departments=["wjw", "gaj"])
    c = api.client
    mine = ok(c.post("/cases", headers=wjw, json={"title": "w", "alerts": ["a1"]}), 201)
    theirs = ok(c.post("/cases", headers=gaj, json={"title": "g", "alerts": ["g1"]}), 201)
    # another department's alert cannot be linked, nor its case seen or changed
    r = c.post(f"/cases/{mine['id']}/alerts", headers=wjw, json={"ids": ["g1"]})
    assert r.status_code == 404 and "g1" in r.json()["detail"]
    for method, path in (("GET", ""), ("GET", "/timeline"), ("POST", "/close")):
        r = c.request(method, f"/cases/{theirs['id']}{path}", headers=wjw,
                      json={"resolution": "x"})
        assert r.status_code == 404, (method, path, r.text)
    assert [i["id"] for i in ok(c.get("/cases", headers=wjw))["items"]] == [mine["id"]]
    # an alert sits in one case; merging makes a case of both departments, which only
    # who holds both of them sees
    r = c.post(f"/cases/{mine['id']}/alerts", headers=both, json={"ids": ["g1"]})
    assert r.status_code == 409 and theirs["id"] in r.json()["detail"]
    ok(c.post(f"/cases/{mine['id']}/merge", headers=both, json={"from": [theirs["id"]]}))
    assert c.get(f"/cases/{mine['id']}", headers=wjw).status_code == 404
    assert ok(c.get("/cases", headers=wjw))["total"] == 0
    assert ok(c.get("/cases", headers=both))["total"] == 2
    assert ok(c.get("/cases/metrics", headers=wjw))["overall"]["cases"] == 0
    # roles: read-only and unrelated roles are refused
    for role in ("auditor", "viewer", "sysadmin", "secadmin"):
        h = api.token(role)
        assert c.get("/cases", headers=h).status_code == 403
        assert c.post("/cases", headers=h, json={"title": "x"}).status_code == 403


def test_concurrent_changes_are_all_kept(api):
    """Two clients add tasks and observables to one case at once: none is lost."""
    clock = [T0]
    setup(api, clock)
    h = api.token("analyst", departments=["wjw"])
    cid = ok(api.client.post("/cases", headers=h, json={"title": "c", "alerts": ["a1"]}),
             201)["id"]
    errors: list[str] = []

    def client(n: int) -> None:
        for i in range(8):
            if n == 0:
                r = api.client.post(f"/cases/{cid}/tasks", headers=h,
                                    json={"title": f"t{n}-{i}"})
            else:
                r = api.client.post(f"/cases/{cid}/observables", headers=h,
                                    json={"type": "ip", "value": f"10.1.9.{i}"})
            if r.status_code >= 300:
                errors.append(r.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    case = ok(api.client.get(f"/cases/{cid}", headers=h))
    assert sorted(t["title"] for t in case["tasks"]) == sorted(f"t0-{i}" for i in range(8))
    assert len(case["observables"]) == 8
    assert case["version"] == 1 + 16
    assert len([e for e in case["timeline"] if e["action"] in ("task.added",
                                                                 "observable.added")]) == 16


def test_a_change_made_between_read_and_write_is_kept(api):
    """Worker A reads the case; worker B changes it before A writes: A's write is refused,
    A re-reads and applies its change again, and both changes are in the case."""
    setup(api, [T0])
    p = Principal("alice", "user", ("analyst",), ("wjw",), ())
    b = Cases(api.ctx.store, api.cfg, departments=["wjw", "gaj"], clock=lambda: T0)
    cid = b.create(p, {"title": "race", "alerts": ["a1"]})["event"]["id"]
    calls = []

    def a_clock() -> float:  # A's clock is read between its read and its write
        if not calls:
            b.add_observables(p, cid, {"type": "user", "value": "bob"})
        calls.append(1)
        return T0

    a = Cases(api.ctx.store, api.cfg, departments=["wjw", "gaj"], clock=a_clock)
    a.add_task(p, cid, {"title": "by a"})
    case = a.get(p, cid)
    assert a.conflicts == 1 and case["version"] == 3
    assert [t["title"] for t in case["tasks"]] == ["by a"]
    assert [o["value"] for o in case["observables"]] == ["bob"]

def test_bad_input_is_a_clear_4xx(api_sqlite):
    api = api_sqlite
    setup(api, [T0])
    h = api.token("analyst", departments=["wjw"])
    c = api.client
    cid = ok(c.post("/cases", headers=h, json={"title": "c", "alerts": ["a1"]}), 201)["id"]
    bad = [("POST", "/cases", {"alerts": ["a1"]}, 400, "title"),
           ("POST", "/cases", {"title": "x", "department": "wjw", "level": "V"}, 400, "level"),
           ("POST", "/cases", {"title": "x", "department": "wjw", "category": "spam"}, 400,
            "category"),
           ("POST", "/cases", {"title": "x"}, 400, "department"),
           ("POST", "/cases", {"title": "x", "department": "gaj"}, 400, "gaj"),
           ("POST", "/cases", {"title": "x", "alerts": ["nope"]}, 404, "nope"),
           ("POST", "/cases", {"title": "x", "alerts": ["a1"]}, 409, cid),
           ("PATCH", f"/cases/{cid}", {"colour": "red"}, 400, "colour"),
           ("PATCH", f"/cases/{cid}", {"status": "closed"}, 400, "close"),
           ("POST", f"/cases/{cid}/observables", {"type": "ip", "value": "999.1.1.1"}, 400,
            "IP"),
           ("POST", f"/cases/{cid}/observables", {"type": "md5", "value": "abc"}, 400,
            "32 hex"),
           ("POST", f"/cases/{cid}/observables", {"type": "cve", "value": "x"}, 400, "type"),
           ("POST", f"/cases/{cid}/alerts", {"ids": "a1"}, 400, "alert ids"),
           ("POST", f"/cases/{cid}/merge", {"from": [cid]}, 400, "merge"),
           ("POST", f"/cases/{cid}/merge", {"from": ["case-0123456789abcdef"]}, 404,
            "no such case"),
           ("PATCH", f"/cases/{cid}/tasks/task-0000", {"status": "done"}, 404, "task"),
           ("DELETE", f"/cases/{cid}/alerts/a2", None, 404, "not in this case"),
           ("POST", f"/cases/{cid}/close", {}, 400, "resolution"),
           ("GET", "/cases?status=pending", None, 400, "status"),
           ("GET", "/cases?after=!!", None, 400, "cursor"),
           ("GET", "/cases/case-0123456789abcdef", None, 404, "no such case")]
    for method, path, body, status, words in bad:
        r = c.request(method, path, headers=h, json=body)
        assert r.status_code == status, (method, path, r.text)
        assert words in r.json()["detail"], (path, r.json())
    ok(c.post(f"/cases/{cid}/close", headers=h, json={"resolution": "done"}))
    r = c.post(f"/cases/{cid}/close", headers=h, json={"resolution": "again"})
    assert r.status_code == 409 and "closed already" in r.json()["detail"]
    # nothing of the refused requests reached the case
    case = ok(c.get(f"/cases/{cid}", headers=h))
    assert case["observables"] == [] and case["alert_ids"] == ["a1"]
    assert [e["action"] for e in case["timeline"]] == ["created", "alert.linked", "closed"]


@pytest.mark.parametrize("profile,level,want", [
    ("cii", "I", [(CII, 3600), ("国家网信部门、国务院公安部门", 5400)]),
    ("cii", "III", [(CII, 3600)]),
    ("cii", "IV", []),
    ("central", "II", [("本部门网信工作机构", 7200), ("国家网信部门", 10800)]),
    ("other", "III", [("属地省级网信部门", 14400)]),
])
def test_level_sets_the_reporting_deadlines(profile, level, want):
    table = reporting_table(Config(values={"cases": {"reporting_profile": profile}}))
    got = deadlines(level, iso(T0), table, now=T0 + 4000)
    assert [(d["to"], ecs.to_millis(d["due"]) // 1000 - int(T0)) for d in got] == want
    assert [d["overdue"] for d in got] == [s < 4000 for _, s in want]
    assert set(REPORTING_PROFILES[profile]) == {"I", "II", "III", "IV"}


def test_reporting_table_is_configurable():
    cfg = Config(values={"cases": {"report_deadlines": {"IV": [["本单位安全负责人", "24h"]]}}})
    table = reporting_table(cfg)
    assert table["IV"] == [("本单位安全负责人", "24h")] and table["I"] == []
    with pytest.raises(ValueError):
        reporting_table(Config(values={"cases": {"report_deadlines": {"I": [["x", "soon"]]}}}))
    with pytest.raises(CaseError):
        reporting_table(Config(values={"cases": {"reporting_profile": "mars"}}))
