"""The console's live run output against the real test fleet: an analyst requests a
check-mode sweep of one fleet host in a headless Chromium; it needs no approval, and the
runner's output streams into the run page over SSE while the run is still going, to its
successful end."""

from __future__ import annotations

import pytest
import yaml
from api_helpers import STRONG, close_context_keep_store, make_config
from console_helpers import Server, Tab
from playwright.sync_api import expect

from soc_api.app import build_context, create_app
from soc_core.store import open_store

pytestmark = pytest.mark.fleet


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
    otp = ctx.identity.add_user("labana", roles_=["analyst"], departments=["lab"])
    ctx.identity.change_password("labana", otp, STRONG)
    with Server(cfg, create_app(cfg, context=ctx)) as server:
        yield server.url
    close_context_keep_store(ctx)
    store.close()
    mp.undo()


def test_a_check_run_streams_its_output_live_into_the_page(fleet_site, hosts, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    assert context.request.post(fleet_site + "/auth/login", data={
        "username": "labana", "password": STRONG}).ok
    tab = Tab(context, fleet_site)
    page = tab.visit("/ui/runs")
    page.select_option("#r-playbook", "asset_sweep")
    page.fill("#r-hosts", hosts[0])
    assert page.is_checked("#r-check") and page.is_disabled("#r-check")  # analyst: check
    # the run page notes the run's status when the first output line arrives
    page.context.add_init_script("""
        document.addEventListener('DOMContentLoaded', () => {
          const out = document.getElementById('output');
          if (!out) return;
          new MutationObserver(() => {
            if (out.children.length && window.firstLineStatus === undefined)
              window.firstLineStatus = document.getElementById('run-status').dataset.status;
          }).observe(out, {childList: true});
        });""")
    page.click("#request-run button[type=submit]")
    page.wait_for_url(f"{fleet_site}/ui/runs/*")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "successful",
                                                          timeout=240_000)
    expect(page.locator("#stream-state")).to_have_text("执行已结束")
    lines = page.locator("#output li").all_inner_texts()
    assert any(hosts[0] in line for line in lines), lines
    # the first line came while the run was still going: live, not read at the end
    assert page.evaluate("window.firstLineStatus") in ("approved", "running")
    tab.check("run-fleet")
    context.close()
