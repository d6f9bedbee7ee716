"""Notification channels over HTTP: the configured channels with their delivery counts
(never a secret: no webhook URL, key, HMAC secret or password), and a test message sent
through one channel now. Channels are platform configuration, so both belong to the
sysadmin (`config:read`, `notify:test`); the test is rate-limited per channel and audited
with its outcome."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam

from soc_core import ecs
from soc_core.config import ConfigError
from soc_core.notify import DeliveryError, Message, Outbox, channels_from_config, outbox_path

router = APIRouter(tags=["notifications"])
TEST_RATE = (1 / 10, 3)  # per channel: a test every 10 s, bursts of 3


def _channels(request: Request) -> dict[str, Any]:
    try:
        return channels_from_config(request.app.state.ctx.cfg)
    except ConfigError as exc:  # the message names the key, never its value
        raise HTTPException(409, f"notifications are misconfigured: {exc}") from None


@router.get("/notifications/channels")
def list_channels(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    channels = _channels(request)
    path = outbox_path(ctx.cfg)
    outbox = Outbox(path) if channels and path.exists() else None
    try:
        items = []
        for ch in channels.values():
            item = ch.public()
            if outbox is not None:
                stats = outbox.stats(ch.name)
                item.update(deliveries=stats["deliveries"], last_error=stats["last_error"],
                            last_sent=_iso(stats["last_sent_ms"]))
            items.append(item)
    finally:
        if outbox is not None:
            outbox.close()
    return {"items": items, "total": len(items), "next": None}


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ecs.format_time(datetime.fromtimestamp(ms / 1000, UTC))


@router.post("/notifications/test/{channel}")
def test_channel(request: Request,
                 channel: str = PathParam(max_length=40, pattern=r"^[a-z0-9_]+$")
                 ) -> dict[str, Any]:
    ctx = request.app.state.ctx
    ch = _channels(request).get(channel)
    if ch is None:
        raise HTTPException(404, "no such channel")
    if not ctx.limiter.take(f"notify-test:{channel}", *TEST_RATE):
        raise HTTPException(429, "a test was sent to this channel moments ago; try again "
                                 "in a few seconds")
    p = request.state.principal
    now = int(time.time() * 1000)
    msg = Message(id=f"test:{secrets.token_hex(8)}", kind="test",
                  title="通知测试 notification test",
                  text=f"- channel: {channel}\n- requested by: {p.name}\n- time: {_iso(now)}")
    error = None
    try:
        ch.send(msg)
    except DeliveryError as exc:
        error = ch.scrub(str(exc))
    ctx.audit(request, "notify.test", "failure" if error else "success", object=channel,
              reason=error)
    return {"channel": channel, "delivered": error is None, "error": error,
            "message_id": msg.id}
