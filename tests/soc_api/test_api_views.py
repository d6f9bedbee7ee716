"""Saved views of the alert queue, on both stores: a user's own views and default (the
queue opens on it, its filters in the address), views shared with the owner's departments
only, bad input refused with one line and nothing saved; and the case's report record
(to whom, when, how) that the console's "reported" form sends."""

from __future__ import annotations

HTML = {"accept": "text/html"}


def test_saved_views_own_shared_default(api):
    c = api.client
    api.user("ana", "analyst", departments=["wjw"])
    api.user("bob", "analyst", departments=["wjw"])
    api.user("gus", "analyst", departments=["gaj"])
    api.login("ana")
    csrf = api.login("ana")
    mine = {"status": "open", "level": "high", "range": "24h", "sort": "newest", "q": ""}
    r = c.post("/views", json={"name": "高危未处置", "filters": mine, "shared": True,
                               "default": True}, headers=csrf)
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["filters"] == mine
    private = c.post("/views", json={"name": "mine only", "filters": {"status": "closed"}},
                     headers=csrf).json()
    # bad input: one line, nothing saved
    for bad in ({"name": "", "filters": {}}, {"name": "x", "filters": {"status": "odd"}},
                {"name": "x", "filters": {"colour": "red"}},
                {"name": "高危未处置", "filters": {}}):
        r = c.post("/views", json=bad, headers=csrf)
        assert r.status_code in (409, 422) and isinstance(r.json()["detail"], str), bad
    got = c.get("/views").json()
    assert [v["name"] for v in got["mine"]] == ["高危未处置", "mine only"]
    assert got["default"] == view["id"] and got["shared"] == []
    # the queue's own address opens the default view: its filters in the address
    r = c.get("/ui/alerts", headers=HTML, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == ("/ui/alerts?status=open&level=high&range=24h"
                                     "&sort=newest&q=")
    page = c.get(r.headers["location"], headers=HTML).text
    assert 'id="view-pick"' in page and "高危未处置" in page
    # another user of the department sees the shared view, not the private one; another
    # department's user sees neither
    csrf_bob = api.login("bob")
    got = c.get("/views").json()
    assert [(v["name"], v["owner"]) for v in got["shared"]] == [("高危未处置", "ana")]
    assert got["default"] is None
    assert c.put("/views/default", json={"id": private["id"]},
                 headers=csrf_bob).status_code == 404
    assert c.put("/views/default", json={"id": view["id"]}, headers=csrf_bob).json() == {
        "default": view["id"]}
    assert c.delete(f"/views/{view['id']}", headers=csrf_bob).status_code == 404  # not his
    api.login("gus")
    assert c.get("/views").json() == {"mine": [], "shared": [], "default": None}
    # the owner deletes it: gone for everyone, and no longer bob's default
    csrf = api.login("ana")
    assert c.delete(f"/views/{view['id']}", headers=csrf).status_code == 200
    assert c.get("/ui/alerts", headers=HTML, follow_redirects=False).status_code == 200
    api.login("bob")
    assert c.get("/views").json() == {"mine": [], "shared": [], "default": None}
    actions = [d["event"]["action"] for d in api.ctx.trail.recent]
    assert {"views.save", "views.default", "views.delete"} <= set(actions)


def test_a_case_report_records_to_whom_when_and_how(api_sqlite):
    c = api_sqlite.client
    api_sqlite.user("ana", "analyst", departments=["*"])
    csrf = api_sqlite.login("ana")
    case = c.post("/cases", json={"title": "勒索软件", "level": "II"}, headers=csrf).json()
    due = case["reporting"][0]
    r = c.patch(f"/cases/{case['id']}", headers=csrf, json={"reported": {
        "to": due["to"], "how": "phone", "ref": "网信办值班 0571", "at":
        "2026-11-30T08:00:00Z"}})
    assert r.status_code == 200, r.text
    made = r.json()["reports"][-1]
    assert made == {"to": due["to"], "at": "2026-11-30T08:00:00.000Z", "by": "ana",
                    "how": "phone", "ref": "网信办值班 0571"}
    assert r.json()["reporting"][0]["reported_at"] == made["at"]
    for bad in ({"to": due["to"], "how": "pigeon"}, {"to": due["to"], "colour": 1}):
        r = c.patch(f"/cases/{case['id']}", headers=csrf, json={"reported": bad})
        assert r.status_code == 400 and r.json()["detail"].startswith("reported"), bad
    page = c.get(f"/ui/cases/{case['id']}", headers=HTML).text
    assert 'id="reported"' in page and "电话" in page and "网信办值班 0571" in page
