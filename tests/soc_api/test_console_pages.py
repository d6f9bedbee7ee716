"""The console's pages without a browser (TestClient): on both stores, what each page
shows is the caller's departments only; the message catalogue covers every string the
templates and scripts use; the CSP and the login redirect; preferences."""

from __future__ import annotations

import re
from pathlib import Path

from console_helpers import alert, events

from soc_api.console import MESSAGES

CONSOLE = Path(__file__).resolve().parents[2] / "soc_api" / "console"
HTML = {"accept": "text/html"}


def _seed(api) -> None:
    store = api.ctx.store
    store.use_departments(api.ctx.departments)
    store.write(events(30, "wjw", tag="p") + events(20, "gaj", tag="p"), refresh=True)
    store.write([alert("wjw", i) for i in range(3)] + [alert("gaj", i, title="公安告警")
                                                      for i in range(2)], refresh=True)


def test_pages_show_the_callers_departments_only(api):
    _seed(api)
    api.user("wana", "analyst", departments=["wjw"])
    api.login("wana")
    c = api.client
    data = c.get("/ui/overview.json").json()
    assert data["open_alerts"] == 3
    assert data["by_department"] == [["市卫健委", 3]]
    assert {a["id"] for a in data["newest"]} == {f"al-wjw-{i}" for i in range(3)}
    assert all(ip.startswith("10.1.") for ip, _ in data["top_targets"])
    assert sum(n for _, n in data["trend"]["24h"]) == 3
    # the page asks for the slow part (the day's traffic) apart from the alerts' figures
    traffic = c.get("/ui/overview.json", params={"part": "traffic"}).json()
    assert traffic["top_targets"] == data["top_targets"] and "security_index" not in traffic
    core = c.get("/ui/overview.json", params={"part": "core"}).json()
    assert core["open_alerts"] == 3 and "top_targets" not in core
    bad = c.get("/ui/overview.json", params={"part": "x"})
    assert bad.status_code == 422 and bad.json()["detail"]
    page = c.get("/ui/alerts", headers=HTML).text
    assert re.findall(r'data-id="(al-[a-z]+-\d+)"', page) == [f"al-wjw-{i}" for i in range(3)]
    assert c.get("/ui/alerts/al-gaj-0", headers=HTML).status_code == 404
    found = c.get("/ui/events", params={"q": "destination.port:443", "from": "now-7d"},
                  headers=HTML).text
    assert "命中 30 条" in found and "gaj" not in found
    top = c.get("/ui/events/top", params={"field": "destination.ip", "from": "now-7d"}).text
    assert "10.1.0.1" in top and "10.2." not in top


def test_the_catalogue_covers_every_string_used(api_sqlite):
    used = set()
    for path in CONSOLE.rglob("*"):
        if path.suffix == ".html":
            used |= set(re.findall(r"""\bt\(['"]([a-z0-9_.]+)['"]""", path.read_text()))
        elif path.suffix == ".js" and "vendor" not in path.parts:
            used |= set(re.findall(r"""\bg\.t\(["']([a-z0-9_.]+)["']""", path.read_text()))
    assert len(used) > 80
    missing = sorted(k for k in used if k not in MESSAGES and not k.endswith("."))
    assert not missing, missing
    assert all(zh and en and zh != en or k == "ov.count" and zh and en
               for k, (zh, en) in MESSAGES.items())
    # keys made of parts at run time: every level, status and reason has its strings
    for prefix, names in (("level.", ("critical", "high", "medium", "low", "informational")),
                          ("status.", ("open", "acknowledged", "closed")),
                          ("reason.", ("false_positive", "true_positive", "duplicate",
                                       "benign", "resolved"))):
        assert all(prefix + n in MESSAGES for n in names)
    page = api_sqlite.client.get("/login", headers=HTML).text
    assert "登录" in page and 'lang="zh-CN"' in page


def test_login_redirect_csp_and_preferences(api_sqlite):
    c = api_sqlite.client
    r = c.get("/ui/alerts?status=open", headers=HTML, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fui%2Falerts%3Fstatus%3Dopen"
    assert c.get("/ui/alerts").status_code == 401  # an API client gets JSON, not a page
    login = c.get("/login", headers=HTML)
    csp = login.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in login.text and " style=" not in login.text
    static = c.get("/static/vendor/echarts/echarts.min.js")
    assert static.status_code == 200 and "max-age" in static.headers["cache-control"]
    assert c.get("/static/vendor/echarts/LICENSE").status_code == 200
    assert c.get("/static/vendor/htmx/LICENSE").status_code == 200
    r = c.get("/ui/prefs", params={"lang": "en", "next": "/ui/alerts"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/alerts"
    assert "English" not in c.get("/login", headers=HTML).text  # now in English: 中文 offered
    assert "Log in" in c.get("/login", headers=HTML).text
    r = c.get("/ui/prefs", params={"lang": "en", "next": "//evil.example/"},
              follow_redirects=False)
    assert r.headers["location"] == "/"  # never another site
    assert c.get("/ui/prefs", params={"lang": "fr"}).json()["detail"].startswith("unknown")
    assert c.get("/ui/prefs", params={"tz": "Mars/Base"}).status_code == 400
    # a session at its first-login stage is sent to the login page to finish it
    otp = api_sqlite.ctx.identity.add_user("fresh", roles_=["analyst"], departments=["*"])
    api_sqlite.login("fresh", password=otp)
    r = c.get("/", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"


def test_what_a_role_may_not_do_is_not_offered(api_sqlite):
    _seed(api_sqlite)
    c = api_sqlite.client
    viewer = api_sqlite.token("viewer")
    page = c.get("/", headers={**HTML, **viewer}).text
    assert 'href="/"' in page and 'href="/ui/alerts"' not in page
    assert 'href="/ui/events"' not in page and 'id="newest"' not in page
    assert c.get("/ui/overview.json", headers=viewer).json()["newest"] == []
    refused = c.get("/ui/alerts", headers={**HTML, **viewer})
    assert refused.status_code == 403 and "您的角色无权访问此页" in refused.text
    analyst = api_sqlite.token("analyst")
    queue = c.get("/ui/alerts", headers={**HTML, **analyst}).text
    assert 'id="close-dialog"' in queue and 'class="pick"' in queue  # alerts:write


NAV = {"cases": 'href="/ui/cases"', "runs": 'href="/ui/runs"', "rules": 'href="/ui/rules"',
       "audit": 'href="/ui/audit"', "reports": 'href="/ui/reports"',
       "users": 'href="/ui/users"', "assets": 'href="/ui/assets"'}
OFFERED = {"analyst": {"cases", "runs", "rules", "assets"},
           "secadmin": {"runs", "rules", "assets"},
           "auditor": {"audit", "reports"}, "sysadmin": {"users"}, "viewer": set()}
PAGE_OF = {"cases": "/ui/cases", "runs": "/ui/runs", "rules": "/ui/rules",
           "audit": "/ui/audit", "reports": "/ui/reports", "users": "/ui/users",
           "assets": "/ui/assets"}


def test_each_role_is_offered_its_pages_only_and_refused_the_others(api_sqlite):
    c = api_sqlite.client
    for role, offered in OFFERED.items():
        h = {**HTML, **api_sqlite.token(role)}
        for name, path in PAGE_OF.items():
            r = c.get(path, headers=h)
            assert (r.status_code == 200) == (name in offered), (role, path, r.status_code)
            if r.status_code == 200:  # the layout links exactly the pages it may open
                assert {n for n, link in NAV.items() if link in r.text} == offered, role


def test_case_pages_show_the_callers_departments_only(api):
    _seed(api)
    api.user("wana", "analyst", departments=["wjw"])
    api.user("gana", "analyst", departments=["gaj"])
    h = api.login("gana")
    c = api.client
    made = c.post("/cases", headers=h, json={"title": "公安案件", "alerts": ["al-gaj-0"]})
    assert made.status_code == 201, made.text
    case_id = made.json()["id"]
    page = c.get(f"/ui/cases/{case_id}", headers=HTML).text
    assert "公安案件" in page and "al-gaj-0" in page
    api.login("wana")
    assert "公安案件" not in c.get("/ui/cases", headers=HTML).text
    assert c.get(f"/ui/cases/{case_id}", headers=HTML).status_code == 404
