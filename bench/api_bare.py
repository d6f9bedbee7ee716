"""The reference apps of `bench/api.py`: the real API without authentication and without
audit records. The difference between the request rates is what authentication and
audit cost.

- `bare` (the reference the target is measured against): the same app `create_app`
  builds (the same routers in the same order, the same exception handlers, the same ASGI
  guard), with the gate replaced by a fixed principal that may see everything and an
  audit trail that keeps nothing. Only the gate's work and the audit record differ, so
  the comparison is like with like. (The gate is swapped while the app is built, not
  through FastAPI's `dependency_overrides`: an override makes FastAPI analyse the
  replacement's signature again on every request, which would slow the reference.)
- `bare_router` (the reference before session 6, kept for comparison): only the data
  router in an app of its own, so its routing walks 4 routes instead of the real app's.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

import soc_api.app as app_module
from soc_api import routes_data
from soc_api.context import Context
from soc_api.identity import Identity, Principal
from soc_api.middleware import Guard
from soc_core.config import load_config
from soc_core.departments import Departments
from soc_core.store import open_store

EVERYTHING = Principal("bench", "user", ("analyst",), ("*",), ("*",))


class NoTrail:
    def record(self, **_: Any) -> None:
        return None

    def record_many(self, entries: Any) -> list[Any]:
        return [None for _ in entries]

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None


async def no_gate(request: Request) -> Principal:
    """What the real gate leaves in request.state, without looking at the request."""
    request.state.principal = EVERYTHING
    return EVERYTHING


def _context() -> Context:
    cfg = load_config()
    store = open_store(cfg.store_url)
    return Context(cfg=cfg, store=store, identity=Identity.from_config(cfg, store),
                   trail=NoTrail(), departments=Departments.from_config(cfg),
                   token_rate=float(cfg.get("api.token_rate", 3000)))


def bare() -> Any:
    real, app_module.gate = app_module.gate, no_gate  # what create_app puts before every route
    try:
        return app_module.create_app(context=_context())
    finally:
        app_module.gate = real


# Variants for `bench/api_attrib.py`, which splits the difference between the real app and
# `bare` into its parts (each the real app with one thing swapped).

def gate_only() -> Any:
    """The real gate, a trail that keeps nothing."""
    return app_module.create_app(context=app_module.build_context(load_config(),
                                                                  trail=NoTrail()))


def audit_only() -> Any:
    """The real trail (spooled, drained into the store), no gate."""
    ctx = app_module.build_context(load_config())
    real, app_module.gate = app_module.gate, no_gate
    try:
        return app_module.create_app(context=ctx)
    finally:
        app_module.gate = real


def _own_trail(store: Any) -> Any:
    import os
    from pathlib import Path

    from soc_core.audit import AuditTrail

    cfg = load_config()
    trail = AuditTrail(Path(cfg.data_dir) / f"audit-attrib-{os.getpid()}", store, name="api",
                       signer=None)
    return app_module.create_app(context=app_module.build_context(cfg, trail=trail))


def spool_only() -> Any:
    """The real gate; each record sealed and spooled as the real trail does, no drain."""
    return _own_trail(None)


class NullStore:
    """Takes every document and keeps none: the drain's own cost, without the store's."""

    backend = "sqlite"

    def write(self, docs: Any, **_: Any) -> Any:
        from soc_core.store import WriteResult

        result = WriteResult()
        result.written = len(list(docs))
        return result

    def close(self) -> None:
        return None


def null_drain() -> Any:
    """The real gate and trail, draining into a store that keeps nothing."""
    return _own_trail(NullStore())


def bare_router() -> Any:
    ctx = _context()
    app = FastAPI(openapi_url=None, docs_url=None)
    app.state.ctx = ctx
    app.include_router(routes_data.router)

    async def with_principal(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] == "http":  # what the real gate leaves in request.state
            scope.setdefault("state", {})["principal"] = EVERYTHING
        await app(scope, receive, send)

    return Guard(with_principal, max_body=16 << 20)


if __name__ == "__main__":  # served as `govsoc api serve` serves: soc_api.serve.run_workers
    import argparse
    import sys

    from soc_api.serve import run_workers

    ap = argparse.ArgumentParser()
    ap.add_argument("--factory", default="bare")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    sys.exit(run_workers(f"api_bare:{args.factory}", args.workers, {
        "host": "127.0.0.1", "port": args.port, "log_level": "warning", "access_log": False,
        "server_header": False, "proxy_headers": False, "ssl_certfile": args.cert,
        "ssl_keyfile": args.key}))


# Floors for `bench/api_attrib.py`: what the least an audit record a request could cost,
# served. Neither keeps a chain, frames, locks or drains: they are not an audit trail.

class WriteFloor(NoTrail):
    """One append of a fixed 560-byte blob (a record's size) a request, nothing else,
    written as the spool writes a record (without letting go of the interpreter lock)."""

    def __init__(self) -> None:
        import os
        from pathlib import Path

        from soc_core.spool import write_holding_gil

        path = Path(load_config().data_dir) / f"floor-{os.getpid()}"
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.blob = b"x" * 560
        self.write = write_holding_gil

    def record(self, **_: Any) -> None:
        self.write(self.fd, self.blob)


class HashFloor(WriteFloor):
    """The real record's body, its SM3 over the sorted JSON and its JSON, and one append:
    the trail's record without the lock, the chain's bookkeeping and the spool's frame."""

    def __init__(self) -> None:
        super().__init__()
        import orjson

        from soc_core.audit import AuditTrail
        from soc_core.sm3 import sm3_hex

        self.body = AuditTrail.__new__(AuditTrail)._body  # uses no instance state
        self.dumps, self.sorted_keys, self.sm3_hex = orjson.dumps, orjson.OPT_SORT_KEYS, sm3_hex

    def record(self, **kw: Any) -> None:
        doc = self.body(**kw)
        doc["@timestamp"] = "2026-12-03T00:00:00.000Z"
        doc["govsoc"]["audit"]["prev"] = "0" * 64
        doc["govsoc"]["audit"]["hash"] = self.sm3_hex(self.dumps(doc, option=self.sorted_keys))
        self.write(self.fd, self.dumps(doc))


def write_floor() -> Any:
    """The real gate, one fixed append a request."""
    return app_module.create_app(context=app_module.build_context(load_config(),
                                                                  trail=WriteFloor()))


def hash_floor() -> Any:
    """The real gate, a hashed record appended a request (no chain, no drain)."""
    return app_module.create_app(context=app_module.build_context(load_config(),
                                                                  trail=HashFloor()))
