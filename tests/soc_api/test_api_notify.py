"""Notification channels over HTTP: listed without a secret, a test message delivered to the
receiver (which checks its signature), a channel that is down reported, not raised."""

from __future__ import annotations

import pytest
from api_helpers import close_context_keep_store, make_config
from fastapi.testclient import TestClient
from notify_helpers import DING_SECRET, FEISHU_SECRET, WECOM_KEY, Receivers

from soc_api.app import build_context, create_app


@pytest.fixture
def notify_api(tmp_path, sqlite_store):
    receivers = Receivers()
    cfg = make_config(tmp_path, sqlite_store.url, **{"notify.channels": receivers.config()})
    ctx = build_context(cfg, store=sqlite_store)
    client = TestClient(create_app(cfg, context=ctx), base_url="https://testserver")
    yield client, ctx, receivers
    close_context_keep_store(ctx)
    receivers.close()


def _token(ctx, role):
    _, secret = ctx.identity.create_token("t-" + role, roles_=[role], departments=["*"],
                                          keys=["*"], rate=0.0, created_by="test")
    return {"Authorization": f"Bearer {secret}"}


def test_channels_and_test_messages(notify_api):
    client, ctx, receivers = notify_api
    admin, analyst = _token(ctx, "sysadmin"), _token(ctx, "analyst")
    r = client.get("/notifications/channels", headers=admin)
    assert r.status_code == 200
    assert {c["name"]: c["type"] for c in r.json()["items"]} == \
        {"ding": "dingtalk", "feishu": "feishu", "wecom": "wecom"}
    for secret in (DING_SECRET, FEISHU_SECRET, WECOM_KEY, "access_token", "hook-token"):
        assert secret not in r.text
    assert client.get("/notifications/channels", headers=analyst).status_code == 403

    ok = client.post("/notifications/test/ding", headers=admin)
    assert ok.status_code == 200 and ok.json()["delivered"] is True
    assert len(receivers.received["dingtalk"]) == 1
    receivers.down.add("feishu")
    down = client.post("/notifications/test/feishu", headers=admin).json()
    assert down["delivered"] is False and "503" in down["error"]
    assert client.post("/notifications/test/nosuch", headers=admin).status_code == 404
    assert client.post("/notifications/test/ding", headers=analyst).status_code == 403
    outcomes = [(d["event"]["outcome"], d.get("govsoc", {}).get("audit", {}))
                for d in ctx.trail.recent if d["event"]["action"] == "notify.test"]
    assert [o for o, _ in outcomes] == ["success", "failure"]
    assert FEISHU_SECRET not in str(ctx.trail.recent)
