"""The console end to end in a real headless Chromium (Debian's, driven by
pytest-playwright) against the API served on loopback over a real SQLite store: one browser,
one logged-in context shared by the tests; every page is checked for console errors and
with axe (no serious or critical violation), and its screenshot kept in build/screenshots."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from api_helpers import STRONG, close_context_keep_store, make_config
from console_helpers import Server, Tab, alert, events, login
from packets_ring import HTTP_PCAP, first, replay, ring_settings
from playwright.sync_api import expect

from soc_api import totp
from soc_api.app import build_context, create_app
from soc_core.store import Selection, open_store

# the runs' one host: never reached (port 9 refuses), so a run fails fast, no fleet needed
INVENTORY = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 9},
                     "hosts": {"wjw-web": {}}}}
CHARTS = ("chart-index", "chart-trend", "chart-level", "chart-tactic", "chart-dept",
          "chart-sources", "chart-targets")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVSOC_MASTER_KEY", "console-test-master-secret-" + "z" * 12)
    tmp = tmp_path_factory.mktemp("console")
    store = open_store(f"sqlite:///{tmp}/govsoc.db")
    inventory = tmp / "inventory.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    cfg = make_config(tmp, store.url, **{"console.poll_seconds": 1,
                                         "console.refresh_seconds": 3600,
                                         "playbooks.inventory": str(inventory),
                                         **ring_settings(tmp)})
    ctx = build_context(cfg, store=store)
    ctx.login_rate = 1000.0  # every test logs in from 127.0.0.1
    store.use_departments(ctx.departments)
    now = datetime.now(UTC)
    evs = events(150, "wjw", now=now) + events(60, "gaj", now=now)
    store.write(evs, refresh=True)
    wjw_ids = [e["event"]["id"] for e in evs[:3]]
    alerts = [alert("wjw", i, event_ids=wjw_ids if i == 0 else None) for i in range(24)]
    alerts += [alert("gaj", i, title="公安内网横向移动") for i in range(8)]
    # a closed alert on a real HTTP flow whose packets are in the ring (kept out of the queue)
    http = first(replay(cfg, store, HTTP_PCAP), "network.http", url__path="/")
    alerts.append(alert("wjw", 77, when=now - timedelta(days=3), status="closed",
                        event_ids=[http["event"]["id"]], title="HTTP packets"))
    store.write(alerts, refresh=True)
    users = {}
    for name, roles_, depts in (("ana", ["analyst", "responder"], ["*"]),
                                ("wana", ["analyst"], ["wjw"]), ("sec", ["secadmin"], ["*"]),
                                ("aud", ["auditor"], ["*"]), ("sys", ["sysadmin"], ["*"])):
        otp = ctx.identity.add_user(name, roles_=roles_, departments=depts)
        ctx.identity.change_password(name, otp, STRONG)
    for name in ("ana", "sec", "aud", "sys"):
        secret, _ = ctx.identity.totp_begin(name)
        ctx.identity.totp_confirm(name, totp.code_at(secret, totp.now_step()))
        users[name] = secret
    users["newbie"] = ctx.identity.add_user("newbie", roles_=["analyst"], departments=["*"])
    ctx.identity.add_user("locky", roles_=["analyst"], departments=["*"])
    app = create_app(cfg, context=ctx)
    with Server(cfg, app) as server:
        yield {"url": server.url, "ctx": ctx, "store": store, "users": users}
    close_context_keep_store(ctx)
    store.close()
    mp.undo()


@pytest.fixture(scope="module")
def ana(site, browser):
    """The shared context: analyst `ana` (all departments) logged in with TOTP."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    tab = Tab(context, site["url"])
    tab.page.goto(site["url"] + "/ui/alerts")
    assert tab.page.url.startswith(site["url"] + "/login?next=")  # not logged in yet
    tab.check("login")
    login(tab.page, site["url"], "ana", code=fresh_code(site, "ana"))
    tab.page.wait_for_url(site["url"] + "/ui/alerts")  # back where it was sent from
    yield tab
    context.close()


def test_login_with_totp_lands_on_the_page_asked_for(ana):
    assert ana.page.locator("header .user strong").inner_text() == "ana"
    assert ana.page.locator("#rows tr").count() > 0


def charts_drawn(page, ids) -> dict[str, bool]:
    """Each chart: an ECharts instance with a canvas that has painted pixels."""
    return page.evaluate("""ids => Object.fromEntries(ids.map(id => {
        const el = document.getElementById(id);
        const inst = el && echarts.getInstanceByDom(el);
        const c = el && el.querySelector('canvas');
        if (!inst || !c || !c.width) return [id, false];
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
        return [id, painted > 50];
    }))""", list(ids))


def test_overview_renders_every_chart(ana):
    page = ana.visit("/", "overview", wait="#chart-trend canvas")
    assert charts_drawn(page, CHARTS) == {c: True for c in CHARTS}
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#h-index").inner_text() == "安全指数"
    assert page.locator("#newest li").count() == 10
    # the 7 d range redraws the trend
    page.click("[data-range='7d']")
    assert page.locator("[data-range='7d']").get_attribute("aria-pressed") == "true"


def test_bigscreen_renders_every_chart_dark_at_1920x1080(ana, site, browser):
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.add_cookies(ana.page.context.cookies())
    tab = Tab(context, site["url"])
    page = tab.visit("/ui/bigscreen", "bigscreen", wait="#chart-trend canvas")
    assert charts_drawn(page, CHARTS) == {c: True for c in CHARTS}
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(map(int, re.findall(r"\d+", bg)[:3])) < 100, bg  # dark
    # it fits the wall: nothing to scroll
    assert page.evaluate("[document.documentElement.scrollWidth, "
                         "document.documentElement.scrollHeight]") == [1920, 1080]
    context.close()


def test_switch_to_english_and_back(ana):
    page = ana.visit("/ui/alerts")
    page.click("#lang-switch")
    page.wait_for_selector("html[lang='en']")
    assert page.locator("h1").inner_text() == "Alert queue"
    assert page.url.endswith("/ui/alerts")
    ana.check("alerts-en")
    page.click("#lang-switch")
    page.wait_for_selector("html[lang='zh-CN']")
    assert page.locator("h1").inner_text() == "告警队列"


def test_chinese_text_renders_as_glyphs(ana):
    """Two different characters draw differently (a missing CJK font draws both as the
    same empty box)."""
    page = ana.visit("/")
    same = page.evaluate("""() => {
        const draw = ch => { const c = document.createElement('canvas'); c.width = c.height = 40;
            const x = c.getContext('2d'); x.font = '32px "Noto Sans CJK SC", sans-serif';
            x.fillText(ch, 2, 34); return Array.from(x.getImageData(0, 0, 40, 40).data); };
        const a = draw('态'), b = draw('势');
        return [a.some(v => v > 0), a.join() === b.join()]; }""")
    assert same == [True, False]


def status_of(site, alert_id: str) -> str:
    return site["store"].get("alerts", alert_id)["govsoc"]["alert"]["status"]


def test_alert_queue_keyboard_triage_and_new_alerts(ana, site):
    page = ana.visit("/ui/alerts", "alerts")
    rows = page.locator("#rows tr")
    assert rows.count() == 32  # both departments: ana sees all
    assert "current" in rows.nth(0).get_attribute("class")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert "current" in rows.nth(1).get_attribute("class")
    page.keyboard.press("x")
    assert page.locator("#bulk").is_visible()
    page.keyboard.press("x")
    # `a` acknowledges through the API's transition route; the alert leaves the open queue
    target = rows.nth(1).get_attribute("data-id")
    with page.expect_request(lambda r: r.method == "POST") as req:
        page.keyboard.press("a")
    assert req.value.url == f"{site['url']}/alerts/{target}/transition"
    assert req.value.post_data_json == {"status": "acknowledged"}
    assert req.value.headers["x-csrf-token"]
    assert req.value.response().status == 200
    page.wait_for_selector("#toast.show")
    expect(page.locator(f"#rows tr[data-id='{target}']")).to_have_count(0)
    assert status_of(site, target) == "acknowledged"
    # `c` asks for a reason, then closes the row now current through the same route
    closed = page.locator("#rows tr.current").get_attribute("data-id")
    page.keyboard.press("c")
    page.select_option("#close-reason", "false_positive")
    with page.expect_request(lambda r: r.method == "POST") as req:
        page.click("#close-ok")
    assert req.value.url == f"{site['url']}/alerts/{closed}/transition"
    assert req.value.post_data_json == {"status": "closed", "reason": "false_positive"}
    assert req.value.response().status == 200
    expect(page.locator(f"#rows tr[data-id='{closed}']")).to_have_count(0)
    assert status_of(site, closed) == "closed"
    # every change is in the alert's history, by whom and from what to what
    for aid, step in ((target, ("ana", "open", "acknowledged")),
                      (closed, ("ana", "open", "closed"))):
        history = site["store"].get("alerts", aid)["govsoc"]["alert"]["history"]
        assert step in [(h["by"], h.get("from"), h.get("to")) for h in history]
    # `m` assigns the current alert to me
    mine = page.locator("#rows tr.current").get_attribute("data-id")
    with page.expect_request(lambda r: r.method == "POST") as req:
        page.keyboard.press("m")
    assert req.value.url == f"{site['url']}/alerts/{mine}/assign"
    assert req.value.post_data_json == {"assignee": "ana"}
    assert req.value.response().status == 200
    assert site["store"].get("alerts", mine)["govsoc"]["alert"]["assignee"] == "ana"
    # with rows selected, `a` acts on all of them at once (bulk)
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    assert page.locator("#bulk-count").inner_text() == "已选 2 条"
    with page.expect_request(lambda r: r.method == "POST") as req:
        page.keyboard.press("a")
    assert req.value.url == f"{site['url']}/alerts/bulk"
    body = req.value.post_data_json
    assert len(body.pop("ids")) == 2 and body == {"action": "transition",
                                                  "status": "acknowledged"}
    assert req.value.response().status == 200
    for aid in req.value.post_data_json["ids"]:
        expect(page.locator(f"#rows tr[data-id='{aid}']")).to_have_count(0)
        assert status_of(site, aid) == "acknowledged"
    assert rows.count() == 32 - 4
    # a new alert appears without a reload
    new = alert("wjw", 99, when=datetime.now(UTC) + timedelta(seconds=1), title="新的告警")
    site["store"].write([new], refresh=True)
    page.wait_for_selector("#rows tr[data-id='al-wjw-99']", timeout=10_000)
    assert rows.count() == 32 - 4 + 1
    # Enter opens the alert
    page.keyboard.press("Escape")
    rows.nth(0).locator("td").nth(2).click()
    opened = page.locator("#rows tr.current").get_attribute("data-id")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf".*/ui/alerts/{re.escape(opened)}$"))
    # the alert with matched events (it may have left the open queue in the triage above)
    page = ana.visit("/ui/alerts/al-wjw-0", "alert-detail")
    assert page.locator("details.doc").count() == 3  # the matched events
    assert "T1110" in page.locator(".facts").inner_text()
    assert page.get_attribute("#open-case", "href") == "/ui/cases?alerts=al-wjw-0"
    assert page.get_attribute("#run-playbook", "href").startswith("/ui/runs?hosts=wjw-")


def test_alert_page_triage_and_a_note_shown_from_the_answer_without_a_reload(ana, site):
    page = ana.visit("/ui/alerts/al-gaj-5", "alert-triage")
    page.evaluate("window.__same = true")  # gone if the page reloaded
    expect(page.locator("#d-status")).to_have_text("待处置")
    with page.expect_response(lambda r: r.url.endswith("/transition")) as resp:
        page.click("#act-ack")
    assert resp.value.request.post_data_json == {"status": "acknowledged"}
    expect(page.locator("#d-status")).to_have_text("已确认")
    expect(page.locator("#act-ack")).to_be_disabled()
    page.select_option("#d-reason", "false_positive")
    page.click("#act-close")
    expect(page.locator("#d-status")).to_have_text("已关闭 (误报)")
    expect(page.locator("#act-close")).to_be_disabled()
    page.fill("#note-text", "已核实：测试账号")
    page.click("#note-form button[type=submit]")
    # the empty list shows one placeholder item ("暂无记录") until the answer is drawn
    expect(page.locator("#notes li", has_text="已核实：测试账号")).to_have_count(1)
    expect(page.locator("#notes li")).to_have_count(1)
    note = page.locator("#notes li").inner_text()
    assert "ana" in note and "已核实：测试账号" in note
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", note), note  # the viewer's zone
    assert page.evaluate("window.__same") is True
    al = site["store"].get("alerts", "al-gaj-5")["govsoc"]["alert"]
    assert [(h["action"], h.get("from"), h.get("to")) for h in al["history"]] == [
        ("transition", "open", "acknowledged"), ("transition", "acknowledged", "closed"),
        ("note", None, None)]
    # what the server renders again on a visit is what the page showed
    page = ana.visit("/ui/alerts/al-gaj-5")
    expect(page.locator("#d-status")).to_have_text("已关闭 (误报)")
    assert page.locator("#notes li").inner_text() == note
    ana.check(None)


def test_the_alert_pages_packets_view_shows_the_http_request(ana):
    page = ana.visit("/ui/alerts/al-wjw-77", "alert-packets", wait="#packet-detail .pk-tree")
    expect(page.locator("#packet-list")).to_contain_text("GET / HTTP/1.1")
    expect(page.locator("#packet-detail")).to_contain_text("Hypertext Transfer Protocol")


def test_open_a_case_from_two_alerts_and_classify_it(ana, site):
    page = ana.visit("/ui/alerts?status=")
    for aid in ("al-wjw-5", "al-wjw-6"):
        page.check(f"#rows tr[data-id='{aid}'] .pick")
    page.click("#bulk-case")
    page.wait_for_url(re.compile(r".*/ui/cases\?alerts=al-wjw-5%2Cal-wjw-6$"))
    assert page.input_value("#new-alerts") == "al-wjw-5,al-wjw-6"
    ana.check("cases")
    page.fill("#new-title", "卫健委暴力破解")
    page.click("#new-case button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/cases/case-[0-9a-f]{16}$"))
    assert page.locator("#linked li").count() == 2
    assert page.locator("#case-level").inner_text() == "未定"
    page.select_option("#c-category", "cyber_attack")
    page.select_option("#c-level", "II")
    page.click("#classify button[type=submit]")
    expect(page.locator("#case-level")).to_have_text("重大（II级）")
    assert page.locator("#case-category").inner_text() == "网络攻击事件"
    # level II owes two reports under the default (CII) profile, each with its due time
    assert page.locator("#reporting tbody tr").count() == 2
    assert "修改分级" in page.locator("#timeline").inner_text()
    page.wait_for_load_state("networkidle")
    ana.check("case")
    case_id = page.url.rsplit("/", 1)[1]
    doc = site["store"].get("state", case_id)
    assert doc["govsoc"]["case"]["level"] == "II"
    assert doc["govsoc"]["case"]["alert_ids"] == ["al-wjw-5", "al-wjw-6"]


@pytest.fixture(scope="module")
def sec(site, browser):
    """A second context: the security administrator `sec`, logged in with TOTP."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = Tab(context, site["url"])
    login(tab.page, site["url"], "sec", code=fresh_code(site, "sec"))
    tab.page.wait_for_url(site["url"] + "/")
    yield tab
    context.close()


def test_request_a_remediation_approve_it_in_another_context_and_watch_it(ana, site, sec):
    page = ana.visit("/ui/runs", "runs")
    page.select_option("#r-playbook", "block_ip")
    page.fill("#r-hosts", "wjw-web")
    page.fill("#r-vars", '{"ip": "10.213.99.9"}')
    page.uncheck("#r-check")  # a remediation: it waits for approval
    page.click("#request-run button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f]{12}$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#run-status")).to_have_text("待审批")
    expect(page.locator("#stream-state")).to_have_text("正在接收实时输出")
    assert page.locator("button.approve").count() == 0  # a responder may not approve
    # the security administrator approves from the inbox in a browser of its own
    inbox = sec.visit("/ui/runs", "runs-inbox")
    assert 'href="/ui/cases"' not in inbox.content()  # not the secadmin's to see
    with inbox.expect_response(f"{site['url']}/runs/{run_id}/approve") as resp:
        inbox.click(f"#inbox button.approve[data-id='{run_id}']")
    assert resp.value.ok
    # the requester's page follows the run live to its end (the host refuses: failed)
    expect(page.locator("#run-status")).to_have_attribute("data-status", "failed",
                                                          timeout=60_000)
    expect(page.locator("#stream-state")).to_have_text("执行已结束")
    assert page.locator("#output li").count() > 0
    assert page.locator("#run-approver").inner_text().startswith("sec · ")
    # the runner's times in the viewer's zone (Asia/Shanghai), as the server's own are
    first = page.locator("#output li").first.inner_text()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d · ", first), first
    ana.check("run")


def test_rules_with_health_and_a_secadmins_snooze(ana, sec):
    page = ana.visit("/ui/rules", "rules")
    assert page.locator("#rules tbody tr").count() > 10
    first = page.locator("#rules tbody tr a").first
    rule_id = page.locator("#rules tbody tr").first.get_attribute("data-id")
    first.click()
    page.wait_for_url(re.compile(rf".*/ui/rules/{re.escape(rule_id)}$"))
    assert "title:" in page.locator("#sigma").inner_text()  # the Sigma source
    assert page.locator("#switch, #snooze, #add-exception").count() == 0  # analyst: read
    ana.check("rule")
    page = sec.visit(f"/ui/rules/{rule_id}")
    page.fill("#snooze-hours", "2")
    page.fill("#snooze-reason", "变更窗口")
    page.click("#snooze button[type=submit]")
    expect(page.locator("#rule-state")).to_have_text("暂停中")
    assert "变更窗口" in page.locator("#snooze-until").inner_text()
    page.wait_for_load_state("networkidle")
    sec.check("rule-secadmin")


def fresh_code(site, name: str) -> str:
    """A TOTP code of a step this user has not logged in with yet: a step is accepted once
    (replay), and two tests of one module may log the same user in within one 30 s step."""
    used = site.setdefault("totp_used", {})
    step = max(totp.now_step() + 1, used.get(name, -1) + 1)
    while step > totp.now_step() + 1:  # accepted one step either side of now
        time.sleep(0.5)
    used[name] = step
    return totp.code_at(site["users"][name], step)


def admin_tab(site, browser, name: str) -> Tab:
    """A context of an administrator logged in through the API (TOTP), no page yet."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    r = context.request.post(site["url"] + "/auth/login", data={
        "username": name, "password": STRONG, "totp": fresh_code(site, name)})
    assert r.ok, r.text()
    return Tab(context, site["url"])


def test_audit_trail_and_reports_for_the_auditor_users_for_the_sysadmin(site, browser):
    aud = admin_tab(site, browser, "aud")
    page = aud.visit("/ui/audit?from=now-1h&verify=true", "audit")
    expect(page.locator("#verified")).to_have_class("ok")
    actions = page.eval_on_selector_all("#audit tbody tr td:nth-child(3)",
                                        "cs => cs.map(c => c.innerText)")
    assert "auth.login" in actions
    nav = page.locator("header nav").inner_text()
    assert "审计日志" in nav and "报告" in nav and "告警队列" not in nav and "用户" not in nav
    page = aud.visit("/ui/reports", "reports")
    assert page.locator("h1").inner_text() == "报告"
    assert aud.page.goto(site["url"] + "/ui/users").status == 403  # not the auditor's
    aud.page.context.close()
    sys = admin_tab(site, browser, "sys")
    page = sys.visit("/ui/users", "users")
    names = page.eval_on_selector_all("#users tbody tr", "rs => rs.map(r => r.dataset.name)")
    assert {"ana", "sec", "aud", "sys", "locky"} <= set(names)
    page.click("#users button.user-toggle[data-name='locky']")
    expect(page.locator("#users tr[data-name='locky'] .state")).to_have_text("已停用")
    assert site["ctx"].identity.user("locky").disabled
    page.click("#users button.user-toggle[data-name='locky']")  # and back
    expect(page.locator("#users tr[data-name='locky'] .state")).not_to_have_text("已停用")
    assert page.locator("#tokens").count() == 1
    sys.check(None)
    assert sys.page.goto(site["url"] + "/ui/audit").status == 403  # not the sysadmin's
    sys.page.context.close()


def test_event_search_with_query_and_time_range(ana):
    page = ana.visit("/ui/events")
    page.fill("#q", "destination.port:443 AND host.name:wjw-web-1")
    page.fill("#from", "now-60m")
    page.fill("#to", "now")
    page.click("#search button[type=submit]")
    page.wait_for_selector("#chart-histogram canvas")
    page.wait_for_load_state("networkidle")
    # 60 minutes, one event a minute, every third on wjw-web-1
    hits = int(re.search(r"\d+", page.locator("#hits").inner_text()).group())
    assert 19 <= hits <= 21, hits
    assert charts_drawn(page, ["chart-histogram"]) == {"chart-histogram": True}
    docs = page.locator("details.doc")
    assert docs.count() == hits
    docs.nth(0).locator("summary").click()
    assert '"wjw-web-1"' in docs.nth(0).locator("pre").inner_text()
    page.locator(".fields summary", has_text=re.compile(r"^source\.ip$")).click()
    page.wait_for_selector(".fields .topvals li a")
    ana.check("events")


def test_a_department_analyst_never_sees_another_departments_alerts(site, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = Tab(context, site["url"])
    login(tab.page, site["url"], "wana")
    tab.page.wait_for_url(site["url"] + "/")
    page = tab.visit("/", "overview-wjw", wait="#chart-dept canvas")
    assert "公安" not in page.locator("#newest").inner_text()
    data = page.context.request.get(site["url"] + "/ui/overview.json").json()
    assert [d[0] for d in data["by_department"]] == ["市卫健委"]
    wjw_open = site["store"].count(Selection(family="alerts", filters={
        "organization.id": "wjw", "govsoc.alert.status": ["open", "acknowledged"]}))
    assert data["open_alerts"] == wjw_open >= 24
    assert page.locator("#open-alerts").inner_text() == str(wjw_open)
    page = tab.visit("/ui/alerts?status=")
    ids = page.eval_on_selector_all("#rows tr", "rs => rs.map(r => r.dataset.id)")
    assert ids and all(i.startswith("al-wjw-") for i in ids)
    page = tab.visit("/ui/events?q=&from=now-30d")
    assert "gaj" not in page.locator(".docs").inner_text()
    assert "10.2." not in page.locator(".docs").inner_text()
    r = page.goto(site["url"] + "/ui/alerts/al-gaj-0")
    assert r.status == 404
    tab.errors.clear()  # the 404 itself is logged by the browser
    tab.check("not-found")
    context.close()


def test_first_login_password_change_and_lockout_message(site, browser):
    context = browser.new_context()
    tab = Tab(context, site["url"])
    page = tab.page
    login(page, site["url"], "newbie", password=site["users"]["newbie"])
    page.wait_for_selector("#change-form:not([hidden])")
    page.fill("#new", "Another-Strong-2026!")
    page.fill("#new2", "Another-Strong-2026!")
    page.click("#change-form button[type=submit]")
    page.wait_for_selector("#login-form:not([hidden])")
    assert page.locator("#login-message").inner_text() == "密码已修改，请使用新密码重新登录"
    login(page, site["url"], "newbie", password="Another-Strong-2026!")
    page.wait_for_url(site["url"] + "/")
    # leave the overview first: its polls, logged out, would send the tab to
    # /login?next=/ while the lockout logins below are navigating
    page.goto("about:blank")
    context.clear_cookies()
    for _ in range(6):
        login(page, site["url"], "locky", password="wrong-password-1")
    expect(page.locator("#login-message")).to_contain_text("锁定")
    context.close()


@pytest.mark.es
def test_overview_on_elasticsearch(es_store, tmp_path, browser):
    """The same overview over the Elasticsearch store: every chart, the department's
    figures only."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVSOC_MASTER_KEY", "console-test-master-secret-" + "z" * 12)
    cfg = make_config(tmp_path, es_store.url)
    ctx = build_context(cfg, store=es_store)
    es_store.use_departments(ctx.departments)
    es_store.write(events(40, "wjw", tag="es") + events(20, "gaj", tag="es"), refresh=True)
    es_store.write([alert("wjw", i) for i in range(5)] + [alert("gaj", i) for i in range(3)],
                   refresh=True)
    otp = ctx.identity.add_user("esana", roles_=["analyst"], departments=["wjw"])
    ctx.identity.change_password("esana", otp, STRONG)
    try:
        with Server(cfg, create_app(cfg, context=ctx)) as server:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            r = context.request.post(server.url + "/auth/login",
                                     data={"username": "esana", "password": STRONG})
            assert r.ok, r.text()
            tab = Tab(context, server.url)
            page = tab.visit("/", "overview-es", wait="#chart-dept canvas")
            assert charts_drawn(page, CHARTS) == {c: True for c in CHARTS}
            assert page.locator("#open-alerts").inner_text() == "5"
            assert page.locator("#newest li").count() == 5
            context.close()
    finally:
        close_context_keep_store(ctx)
        mp.undo()


def test_saved_views_default_and_address(ana, site):
    page = ana.visit("/ui/alerts?status=open&level=high&range=&sort=newest&q=")
    page.fill("#view-name", "高危待处置")
    page.check("#view-as-default")
    with page.expect_navigation():  # saved, the page shows it again
        with page.expect_response(site["url"] + "/views") as resp:
            page.click("#view-save button[type=submit]")
    assert resp.value.status == 201
    # the queue's own address opens on the default view, its filters in the address
    page = ana.visit("/ui/alerts", "alerts-view")
    assert page.url.endswith("/ui/alerts?status=open&level=high&range=&sort=newest&q=")
    assert page.locator("#view-pick option:checked").inner_text().startswith("高危待处置")
    assert page.input_value("#f-level") == "high"
    levels = page.eval_on_selector_all("#rows tr .level", "ls => ls.map(l => l.innerText)")
    assert levels and set(levels) == {"高危"}
    with page.expect_navigation():
        with page.expect_response(lambda r: "/views/" in r.url) as resp:
            page.click("#view-delete")
    assert resp.value.ok
    assert site["ctx"].store.get("state", "alertviews:ana")["govsoc"]["alert_views"] == {
        "owner": "ana", "departments": ["*"], "views": [], "default": None}


def test_a_case_is_recorded_as_reported(ana, site):
    page = ana.visit("/ui/cases")
    page.fill("#new-title", "政务外网数据泄露")
    page.click("#new-case button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/cases/case-[0-9a-f]{16}$"))
    page.select_option("#c-level", "I")
    page.click("#classify button[type=submit]")
    expect(page.locator("#reporting tbody tr")).to_have_count(2)
    first = page.locator("#rp-to option").first.inner_text()
    assert "截止" in first or "·" in first  # each recipient with its deadline
    page.select_option("#rp-how", "phone")
    page.fill("#rp-ref", "值班电话记录 12")
    page.click("#reported button[type=submit]")
    expect(page.locator("#reports-made tbody tr")).to_have_count(1)
    assert "电话" in page.locator("#reports-made").inner_text()
    assert "overdue" not in (page.locator("#reporting tbody tr").first
                             .get_attribute("class") or "")
    page.wait_for_load_state("networkidle")
    ana.check("case-reported")
    case = site["store"].get("state", page.url.rsplit("/", 1)[1])["govsoc"]["case"]
    assert case["reports"][0]["how"] == "phone" and case["reports"][0]["by"] == "ana"


def test_sysadmin_adds_a_user_and_a_token_shown_once(site, browser):
    sys = admin_tab(site, browser, "sys")
    page = sys.visit("/ui/users")
    # a system administrator may give a token only the service and viewer roles
    offered = page.eval_on_selector_all(".nt-role", "cs => cs.map(c => c.value)")
    assert offered == ["service", "viewer"]
    page.fill("#nu-name", "newops")
    with page.expect_response(site["url"] + "/users") as resp:
        page.click("#add-user button[type=submit]")
    otp = resp.value.json()["one_time_password"]
    expect(page.locator("#secret-box")).to_be_visible()
    assert page.input_value("#secret") == otp
    assert site["ctx"].identity.user("newops").roles == []  # roles: the secadmin's to grant
    page.click("#secret-done")
    page.wait_for_selector("#users tr[data-name='newops']")
    assert page.locator("#secret-box").is_hidden()
    page.fill("#nt-label", "大屏只读")
    page.check("#nt-role-viewer")
    page.check("#nt-dept-wjw")
    page.fill("#nt-days", "30")
    with page.expect_response(site["url"] + "/tokens") as resp:
        page.click("#new-token button[type=submit]")
    made = resp.value.json()
    assert page.input_value("#secret") == made["token"]
    page.click("#secret-copy")
    expect(page.locator("#toast")).to_have_text("已复制")
    sys.check("users-forms")
    tok = next(t for t in site["ctx"].identity.tokens() if t.id == made["id"])
    assert (tok.roles, tok.departments) == (["viewer"], ["wjw"])
    page.click("#secret-done")
    page.wait_for_selector(f"#tokens tr[data-id='{made['id']}']")
    assert made["token"] not in page.content()  # shown once: never again
    sys.page.context.close()


def test_inventory_pages_and_annotating_an_asset(ana, site):
    import cloud_inventory as inv
    from soc_core import ecs

    store = site["store"]
    obs = inv.Observation(source="network", seen=ecs.now_iso(), ips=["10.1.0.23"],
                          macs=["02:00:00:00:01:23"],
                          listening=[{"protocol": "tcp", "port": 23}])
    inv.record(store, [obs], source="network", run_id="b1", baseline=False)
    asset = inv.get_asset(store, "10.1.0.23")["event"]["id"]
    store.refresh()
    page = ana.visit("/ui/exposure", "exposure")
    assert "明文管理协议" in page.locator("#exposure").inner_text()
    page = ana.visit("/ui/idle", "idle")
    assert page.locator("#utilisation tbody tr").count() >= 1
    page = ana.visit("/ui/changes", "changes")
    assert "10.1.0.23" in page.locator("#changes").inner_text()
    page = ana.visit(f"/ui/assets/{asset}", "asset")
    page.select_option("#an-level", "3")
    page.select_option("#an-class", "important")
    page.fill("#an-note", "核酸检测系统前置机")
    with page.expect_response(lambda r: r.request.method == "PATCH") as resp:
        page.click("#annotate button[type=submit]")
    assert resp.value.request.post_data_json == {"djcp_level": 3, "data_class": "important",
                                                 "note": "核酸检测系统前置机"}
    expect(page.locator("#asset-note")).to_have_text("核酸检测系统前置机")
    history = page.locator("#history li").first.inner_text()
    assert "ana" in history and "等保级别" in history and "→ 3" in history
    page.wait_for_load_state("networkidle")
    ana.check("asset-annotated")


def test_retire_button_requests_a_pending_run_and_is_not_offered_without_the_grant(
        ana, site, sec):
    import cloud_inventory as inv
    from soc_core import ecs

    store = site["store"]
    # a zombie of wjw: its inventory name is the runs' host, no inbound session, low CPU
    obs = inv.Observation(source="network", seen=ecs.now_iso(), name="wjw-web",
                          hostname="wjw-web", ips=["10.1.0.241"], macs=["02:00:00:00:02:41"])
    inv.record(store, [obs], source="network", run_id="retire", baseline=False)
    asset = inv.get_asset(store, "10.1.0.241")["event"]["id"]
    inv.annotate(store, asset, tags=["zombie"], by="test")
    hour = datetime.now(UTC) - timedelta(hours=1)
    assert not store.write([ecs.make_event(
        "system.cpu", ecs.format_time(hour + timedelta(minutes=i)), ("wjw-web", i),
        {"host": {"name": "wjw-web", "cpu": {"usage": 0.01}}}, kind="metric")
        for i in range(3)], refresh=True).rejected
    store.refresh()
    # the security administrator reads the page but holds no `assets:retire`: no button,
    # and the server refuses the request with the reason
    page = sec.visit("/ui/idle", "idle-secadmin")
    row = page.locator(f"#idle tr[data-asset='{asset}']")
    expect(row).to_have_attribute("data-verdict", "zombie")
    assert row.locator("form.retire").count() == 0
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    r = page.context.request.post(f"{site['url']}/idle/{asset}/retire",
                                  data={"services": ["nginx"]},
                                  headers={"x-csrf-token": csrf})
    assert r.status == 403 and "assets:retire" in r.json()["detail"]
    # the responder asks for it: a retire_host run, pending a secadmin's approval
    page = ana.visit("/ui/idle", "idle-retire")
    form = page.locator(f"#idle tr[data-asset='{asset}'] form.retire")
    form.locator(".retire-services").fill("nginx, php-fpm")
    with page.expect_response(lambda r: r.url.endswith(f"/idle/{asset}/retire")) as resp:
        form.locator("button[type=submit]").click()
    assert resp.value.status == 201
    assert resp.value.request.post_data_json == {"services": ["nginx", "php-fpm"]}
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f]{12}$"))  # the run's own page
    facts = page.locator("#run dl.facts").inner_text()
    assert "retire_host" in facts and "wjw-web" in facts
    assert '"retire_services": ["nginx", "php-fpm"]' in facts and asset in facts
    expect(page.locator("#run-status")).to_have_attribute("data-status", "pending")
    expect(page.locator("#run-status")).to_have_text("待审批")
    assert page.locator("button.approve").count() == 0  # not the requester's to approve
    ana.check("idle-retire-requested")


def test_an_acknowledgement_shows_live_in_another_analysts_queue(ana, site, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    assert context.request.post(site["url"] + "/auth/login", data={
        "username": "wana", "password": STRONG}).ok
    other = Tab(context, site["url"])
    theirs = other.visit("/ui/alerts?status=open")
    page = ana.visit("/ui/alerts?status=open&q=organization.id:wjw")
    target = page.locator("#rows tr.current").get_attribute("data-id")
    expect(theirs.locator(f"#rows tr[data-id='{target}']")).to_have_count(1)
    theirs.click("#f-q")  # the other analyst is typing a query meanwhile
    theirs.keyboard.type("host.name:")
    with page.expect_response(lambda r: r.url.endswith("/transition")):
        page.keyboard.press("a")
    # no reload: the other analyst's open queue drops the row it no longer lists
    expect(theirs.locator(f"#rows tr[data-id='{target}']")).to_have_count(0, timeout=10_000)
    # and the current row moves on without taking the focus out of the query being typed
    expect(theirs.locator("#rows tr.current")).to_have_count(1)
    expect(theirs.locator("#f-q")).to_be_focused()
    theirs.keyboard.type("wjw-web-1")
    assert theirs.input_value("#f-q") == "host.name:wjw-web-1"
    other.check("alerts-live")
    context.close()
