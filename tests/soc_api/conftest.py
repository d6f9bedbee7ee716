"""Fixtures for the API: a real app on a real store (both backends) with the real audit
trail and crypto service, driven in-process (TestClient) or over real HTTPS (uvicorn)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from soc_api import totp
from soc_api.app import build_context, close_context, create_app
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


@pytest.fixture(autouse=True)
def _master(monkeypatch):
    monkeypatch.setenv("GOVSOC_MASTER_KEY", MASTER)
    monkeypatch.delenv("GOVSOC_MASTER_KEY_FILE", raising=False)


def _api(tmp_path, store) -> Api:
    url = store.url if store.backend == "sqlite" else store.url
    cfg = make_config(tmp_path, url)
    ctx = build_context(cfg, store=store)
    client = TestClient(create_app(cfg, context=ctx), base_url="https://testserver")
    return Api(client, ctx, cfg)


@pytest.fixture
def api(tmp_path, store) -> Api:
    """The API on both stores."""
    a = _api(tmp_path, store)
    yield a
    close_context_keep_store(a.ctx)


@pytest.fixture
def api_sqlite(tmp_path, sqlite_store) -> Api:
    a = _api(tmp_path, sqlite_store)
    yield a
    close_context_keep_store(a.ctx)


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
