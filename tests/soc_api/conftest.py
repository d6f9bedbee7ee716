"""Fixtures for the API: a real app on a real store (both backends) with the real audit
trail and crypto service, driven in-process (TestClient) or over real HTTPS (uvicorn)."""

from __future__ import annotations

import pytest
from api_helpers import MASTER, Api, close_context_keep_store, make_config
from fastapi.testclient import TestClient

from soc_api.app import build_context, create_app


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
