"""The console's playbook runs against the real test fleet, in a headless Chromium: a
responder requests a remediation (block_ip of a documentation address on one fleet host),
a secadmin approves it from the approvals inbox in a second browser context, and the
requester's run page follows it live over SSE to its successful end and the per-host
summary; the address is then really blocked on the host, and the page's undo (approved the
same way) takes it off again. An analyst's check-mode sweep needs no approval and streams
the same way."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from api_helpers import STRONG, close_context_keep_store, make_config
from console_helpers import Server, Tab
from playwright.sync_api import expect

from soc_api import totp
from soc_api.app import build_context, create_app
from soc_core.store import open_store

pytestmark = pytest.mark.fleet
RUN_URL = re.compile(r".*/ui/runs/[0-9a-f]{12}$")
BLOCKED = "192.0.2.77"  # TEST-NET-1 (RFC 5737): never a real peer
# the run page notes the run's status when its first output line arrives: a line that came
# before the `result` event proves the output is live, not read at the end
FIRST_LINE = """
    document.addEventListener('DOMContentLoaded', () => {
      const out = document.getElementById('output');
      if (!out) return;
      new MutationObserver(() => {
        if (out.children.length && window.firstLineStatus === undefined)
          window.firstLineStatus = document.getElementById('run-status').dataset.status;
      }).observe(out, {childList: true});
    });"""


@pytest.fixture(scope="module")
def fleet_site(fleet, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVSOC_MASTER_KEY", "console-fleet-master-secret-" + "f" * 12)
    tmp = tmp_path_factory.mktemp("consolefleet")
    inv = tmp / "fleet.yml"
    inv.write_text(yaml.safe_dump(fleet.inventory()))
    store = open_store(f"sqlite:///{tmp}/govsoc.db")
    cfg = make_config(tmp, store.url, departments=[
        {"id": "lab", "name": "实验室", "cidrs": [str(fleet.state().subnet)]}],
        **{"playbooks.inventory": str(inv), "playbooks.timeout": 300})
    ctx = build_context(cfg, store=store)
    ctx.login_rate = 1000.0
    secrets = {}
    for name, roles_, depts in (("labana", ["analyst"], ["lab"]),
                                ("resp", ["responder"], ["lab"]), ("sec", ["secadmin"], ["*"])):
        otp = ctx.identity.add_user(name, roles_=roles_, departments=depts)
        ctx.identity.change_password(name, otp, STRONG)
    secret, _ = ctx.identity.totp_begin("sec")  # an administrator needs a second factor
    ctx.identity.totp_confirm("sec", totp.code_at(secret, totp.now_step()))
    secrets["sec"] = secret
    with Server(cfg, create_app(cfg, context=ctx)) as server:
        yield {"url": server.url, "secrets": secrets}
    close_context_keep_store(ctx)
    store.close()
    mp.undo()


@pytest.fixture
def tab(fleet_site, browser):
    """A logged-in browser context of its own for `user` (TOTP for the administrator)."""
    contexts = []

    def open_as(user: str) -> Tab:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        contexts.append(context)
        data = {"username": user, "password": STRONG}
        if user in fleet_site["secrets"]:
            data["totp"] = totp.code_at(fleet_site["secrets"][user], totp.now_step() + 1)
        r = context.request.post(fleet_site["url"] + "/auth/login", data=data)
        assert r.ok, r.text()
        context.add_init_script(FIRST_LINE)
        return Tab(context, fleet_site["url"])

    yield open_as
    for context in contexts:
        context.close()


def follow_to_success(page, host: str) -> None:
    """The run page follows the run live to its successful end and the per-host summary."""
    expect(page.locator("#run-status")).to_have_attribute("data-status", "successful",
                                                          timeout=240_000)
    expect(page.locator("#stream-state")).to_have_text("执行已结束")
    lines = page.locator("#output li").all_inner_texts()
    assert any(host in line for line in lines), lines
    # the first line came while the run was still going: live, not read at the end
    assert page.evaluate("window.firstLineStatus") in ("approved", "running"), lines


def test_a_check_run_streams_its_output_live_into_the_page(fleet_site, hosts, tab):
    ana = tab("labana")
    page = ana.visit("/ui/runs")
    page.select_option("#r-playbook", "asset_sweep")
    page.fill("#r-hosts", hosts[0])
    assert page.is_checked("#r-check") and page.is_disabled("#r-check")  # analyst: check
    page.click("#request-run button[type=submit]")
    page.wait_for_url(RUN_URL)
    follow_to_success(page, hosts[0])
    row = page.locator(f"#summary tr[data-host='{hosts[0]}']")
    expect(row).to_have_attribute("data-status", "ok")  # a check changes nothing
    assert page.locator("button.undo").count() == 0  # nothing to undo
    ana.check("run-fleet")


def request_and_approve(resp: Tab, sec: Tab, url: str, requested) -> str:
    """`requested` leads the responder's page to a pending run; the secadmin approves it
    from the inbox in the other context. Returns the run's id."""
    page = resp.page
    before = page.url
    requested(page)
    page.wait_for_url(lambda u: RUN_URL.match(u) is not None and u != before)
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#run-status")).to_have_attribute("data-status", "pending")
    expect(page.locator("#stream-state")).to_have_text("正在接收实时输出")
    assert page.locator("button.approve").count() == 0  # a responder may not approve
    inbox = sec.visit("/ui/runs")
    with inbox.expect_response(f"{url}/runs/{run_id}/approve") as answer:
        inbox.click(f"#inbox button.approve[data-id='{run_id}']")
    assert answer.value.ok
    return run_id


def test_a_remediation_approved_in_another_context_runs_live_and_undoes(
        fleet_site, fleet, hosts, tab):
    host, url = hosts[1], fleet_site["url"]
    assert BLOCKED not in fleet.ssh(host, "nft list ruleset").stdout
    resp, sec = tab("resp"), tab("sec")

    def block(page):
        resp.visit("/ui/runs")
        page.select_option("#r-playbook", "block_ip")
        page.fill("#r-hosts", host)
        page.fill("#r-vars", json.dumps({"ip": BLOCKED}))
        page.uncheck("#r-check")  # a remediation: it waits for approval
        page.click("#request-run button[type=submit]")

    try:
        run_id = request_and_approve(resp, sec, url, block)
        page = resp.page
        follow_to_success(page, host)
        assert page.locator("#run-approver").inner_text().startswith("sec · ")
        expect(page.locator(f"#summary tr[data-host='{host}']")).to_have_attribute(
            "data-status", "changed")
        resp.check("run-fleet-remediation")
        # the effect on the fleet host: the address is in the block set, no other host has it
        assert BLOCKED in fleet.ssh(host, "nft list table inet govsoc_block").stdout
        assert BLOCKED not in fleet.ssh(hosts[0], "nft list ruleset").stdout
        # the requester undoes it from the same page; the undo is approved the same way
        undo_id = request_and_approve(resp, sec, url, lambda p: p.click("button.undo"))
        assert undo_id != run_id
        follow_to_success(page, host)
        expect(page.locator(f"#summary tr[data-host='{host}']")).to_have_attribute(
            "data-status", "changed")
        assert page.locator("button.undo").count() == 0  # an undo is not undone
        assert BLOCKED not in fleet.ssh(host, "nft list ruleset").stdout
    finally:  # never leave the address blocked on the shared fleet
        fleet.ssh(host, f"nft delete element inet govsoc_block blocked {{ {BLOCKED} }}",
                  check=False)
