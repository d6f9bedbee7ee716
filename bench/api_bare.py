"""The reference app of `bench/api.py`: the same data handlers and the same ASGI guard as
the real API, without authentication and without audit records (a fixed principal that
may see everything, an audit trail that keeps nothing). The difference between the two
apps' request rates is what authentication and audit cost."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from soc_api import routes_data
from soc_api.context import Context
from soc_api.identity import Identity, Principal
from soc_api.middleware import Guard
from soc_core.config import load_config
from soc_core.store import open_store

EVERYTHING = Principal("bench", "user", ("analyst",), ("*",), ("*",))


class NoTrail:
    def record(self, **_: Any) -> None:
        return None

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None


def bare() -> Any:
    cfg = load_config()
    store = open_store(cfg.store_url)
    ctx = Context(cfg=cfg, store=store, identity=Identity.from_config(cfg, store),
                  trail=NoTrail())
    app = FastAPI(openapi_url=None, docs_url=None)
    app.state.ctx = ctx
    app.include_router(routes_data.router)

    async def with_principal(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] == "http":  # what the real gate leaves in request.state
            scope.setdefault("state", {})["principal"] = EVERYTHING
        await app(scope, receive, send)

    return Guard(with_principal, max_body=16 << 20)
