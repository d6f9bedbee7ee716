"""Helpers of the API tests: the test configuration and a driver for the app (tokens, users
who have passed their first login, session logins)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from soc_api import totp
from soc_api.app import close_context
from soc_core.config import Config

MASTER = "api-test-master-secret-" + "x" * 16
STRONG = "Gov-Soc-2026-strong!"


def make_config(tmp_path, store_url: str, **extra: Any) -> Config:
    values = {"store_url": store_url, "data_dir": str(tmp_path / "data"),
              "retention_days": 180, "timezone": "Asia/Shanghai",
              "crypto": {"kdf_iterations": 1000},
              "audit": {"checkpoint_every": 50, "checkpoint_seconds": 3600},
              "departments": [
                  {"id": "wjw", "name": "市卫健委", "cidrs": ["10.1.0.0/16"]},
                  {"id": "gaj", "name": "市公安局", "cidrs": ["10.2.0.0/16"]}]}
    for key, value in extra.items():
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return Config(values=values)


@dataclass
class Api:
    client: TestClient
    ctx: Any
    cfg: Config

    def token(self, *roles: str, departments=("*",), keys=("*",), rate: float = 0.0) -> dict:
        _, secret = self.ctx.identity.create_token(
            "t-" + "-".join(roles), roles_=list(roles), departments=list(departments),
            keys=list(keys), rate=rate, created_by="test")
        return {"Authorization": f"Bearer {secret}"}

    def user(self, name: str, *roles: str, departments=("*",)) -> str:
        """A user who has changed the one-time password (and enrolled TOTP if needed);
        returns the TOTP secret ("" when none)."""
        otp = self.ctx.identity.add_user(name, roles_=list(roles),
                                         departments=list(departments))
        self.ctx.identity.change_password(name, otp, STRONG)
        if set(roles) & {"sysadmin", "secadmin", "auditor"}:
            secret, _ = self.ctx.identity.totp_begin(name)
            self.ctx.identity.totp_confirm(name, totp.code_at(secret, totp.now_step()))
            return secret
        return ""

    def login(self, name: str, secret: str = "", password: str = STRONG) -> dict:
        """Log in as a session; returns the headers of unsafe requests (CSRF)."""
        body = {"username": name, "password": password}
        if secret:  # the next step's code: the current one was used at enrolment
            body["totp"] = totp.code_at(secret, totp.now_step() + 1)
        r = self.client.post("/auth/login", json=body)
        assert r.status_code == 200, r.text
        return {"X-CSRF-Token": r.json()["csrf_token"]}


def close_context_keep_store(ctx) -> None:
    """The store fixture closes the store; the rest is the API's to close."""
    store, ctx.store = ctx.store, _NoClose()
    close_context(ctx)
    ctx.store = store


class _NoClose:
    def close(self) -> None:
        pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def random_name() -> str:
    return "u" + secrets.token_hex(4)


PARAMS = {"name": "nobody", "token_id": "t0000000000000000", "event_id": "e1",
          "alert_id": "a1", "key_id": "k0000000000000000", "channel": "nochannel",
          "case_id": "case-0000000000000000", "task_id": "task-00000000",
          "rule_id": "5e0c1a10-0003-4000-8000-000000000003", "exc_id": "e0",
          "run_id": "000000000000", "field": "host.name",
          "key": "no-such-asset", "sha256": "0" * 64, "frame": "1",
          "view_id": "v0000000000000000"}


def app_routes(client) -> list[tuple[str, str]]:
    """Every (method, path) the app serves: its schema's operations (included routers
    are resolved lazily, so the schema is the complete list) and its own hidden routes."""
    app = client.app.app  # inside the ASGI guard
    out = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    routes = list(app.routes)
    while routes:  # hidden routes (the console's) of included routers too
        r = routes.pop()
        if isinstance(r, APIRoute):
            out.update((m, r.path) for m in r.methods if m != "HEAD")
        elif getattr(r, "original_router", None) is not None:
            routes.extend(r.original_router.routes)
    return sorted(out)
