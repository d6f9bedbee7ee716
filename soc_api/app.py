"""The govsoc API: `create_app(config)` composes the routes behind one gate (`auth.gate`)
and the plain ASGI guard (request ids, body limits, security headers).

Only `/healthz` and `/readyz` answer without credentials; the OpenAPI schema needs a
login. (No Swagger page: FastAPI's loads its scripts from a CDN, which a government cloud
neither reaches nor should trust; the console will vendor what it shows.)

Errors are JSON with a one-line `detail`; an unexpected error is a 500 naming the request
id, with the stack trace in the server's log only.
"""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from crypto_svc.api import Limits, make_router, one_line_validation_error
from detections import workflow
from soc_api import (
    routes_admin,
    routes_alerts,
    routes_audit,
    routes_auth,
    routes_console,
    routes_console_admin,
    routes_console_assets,
    routes_console_cases,
    routes_console_inventory,
    routes_console_packets,
    routes_console_rules,
    routes_console_runs,
    routes_data,
    routes_inventory,
    routes_inventory_write,
    routes_notify,
    routes_packets,
    routes_pcap,
    routes_posture,
    routes_reports,
    routes_rules,
    routes_runs,
    routes_views,
)
from soc_api.auth import gate
from soc_api.console import html_error, mount_static
from soc_api.context import Context, client_ip
from soc_api.identity import Identity, Principal
from soc_api.middleware import Guard
from soc_api.routes_cases import router as cases_router
from soc_core.audit import Actor, AuditTrail, AuditUnavailable
from soc_core.config import Config, load_config, redact_url
from soc_core.departments import Departments
from soc_core.store import StoreError, open_store

log = logging.getLogger("govsoc.api")


@dataclass(frozen=True)
class Caller(Actor):
    principal: Principal | None = None
MAX_BODY = 16 << 20


def build_context(cfg: Config, store: Any = None, trail: Any = None) -> Context:
    """Open what the API stands on. `store`/`trail` may be given (tests, `govsoc up`)."""
    # the trail drains through a connection of its own unless the caller gave the store
    # (then it shares it: the same Elasticsearch namespace, the same SQLite file)
    trail = trail or AuditTrail.from_config(cfg, name="api", store=store,
                                            signer=checkpoint_signer(cfg))
    store = store or open_store(cfg.store_url)
    ctx = Context(cfg=cfg, store=store, identity=Identity.from_config(cfg, store),
                  trail=trail, departments=Departments.from_config(cfg),
                  token_rate=float(cfg.get("api.token_rate", 3000)))
    try:  # finish any bulk alert change a crash interrupted (each bulk also does first)
        workflow.recover(store)
    except StoreError as exc:
        log.warning("interrupted bulk alert changes not finished yet: %s",
                    redact_url(str(exc))[:300])
    return ctx


def checkpoint_signer(cfg: Config) -> Any:
    """The platform key's signer for the trail's checkpoints; None (unsigned checkpoints
    are not made, and the server log says so) when no master secret is configured."""
    from crypto_svc import Keystore, KeystoreError, platform_signer

    try:
        return platform_signer(Keystore.from_config(cfg))
    except KeystoreError as exc:
        log.warning("audit checkpoints will not be signed: %s", exc)
        return None


def create_app(cfg: Config | None = None, *, context: Context | None = None) -> Any:
    """The ASGI app. Without a context, one is built at startup from `cfg` (or the
    configuration files and GOVSOC_* variables) and closed at shutdown."""
    holder: dict[str, Context] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        own = context is None
        ctx = context or build_context(cfg or load_config())
        app.state.ctx = ctx
        holder["ctx"] = ctx
        # What startup built (modules, routes, the context: ~120k objects) lives as long as
        # the app. Out of the cyclic GC's reach, a full collection scans only what requests
        # left (~8 ms CPU instead of ~60 ms, during which every request of the worker
        # waited: the sign p99). O(1) both ways; unfrozen again at shutdown.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if own:
                close_context(ctx)

    app = FastAPI(title="govsoc", version="0.1.0", lifespan=lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None, dependencies=[Depends(gate)])
    if context is not None:
        app.state.ctx = context
        holder["ctx"] = context

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        ctx = request.app.state.ctx
        try:
            ctx.store.count()
            ctx.trail.check()
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            return JSONResponse({"status": "unavailable",
                                 "detail": redact_url(type(exc).__name__)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    def crypto_service() -> Any:
        return holder["ctx"].crypto_service()

    async def caller(request: Request) -> Caller:
        """The principal, with what each key-use record names besides the user."""
        p = request.state.principal
        return Caller(p.name, ",".join(p.roles), ",".join(p.departments),
                      client_ip(request), getattr(request.state, "request_id", None),
                      principal=p)

    # routes match in the order included, each candidate a Python call (FastAPI 0.165
    # walks every route of every router before it): the busiest routes come first
    app.include_router(make_router(crypto_service, principal=caller,
                                   may_use=lambda c, key_id: c.principal.may_use_key(key_id),
                                   limits=Limits(max_body=MAX_BODY), bodies_bounded=True))

    for r in (routes_data.router, routes_alerts.router, routes_auth.router,
              routes_admin.router, routes_audit.router, routes_console.router):
        app.include_router(r)
    app.include_router(routes_posture.router)
    app.include_router(routes_notify.router)
    app.include_router(cases_router)
    app.include_router(routes_rules.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_reports.router)
    app.include_router(routes_console_cases.router)
    app.include_router(routes_console_runs.router)
    app.include_router(routes_console_rules.router)
    app.include_router(routes_console_admin.router)
    app.include_router(routes_inventory.router)
    app.include_router(routes_console_assets.router)
    app.include_router(routes_packets.router)
    app.include_router(routes_console_packets.router)
    app.include_router(routes_pcap.router)
    app.include_router(routes_inventory_write.router)
    app.include_router(routes_console_inventory.router)
    app.include_router(routes_views.router)
    mount_static(app)

    app.add_exception_handler(RequestValidationError, one_line_validation_error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        page = html_error(request, exc)  # a console page: the login, or an error page
        if page is not None:
            return page
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse({"detail": detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        rid = getattr(request.state, "request_id", "-")
        log.warning("request %s: store error: %s", rid, redact_url(str(exc))[:300])
        return JSONResponse({"detail": f"the event store is unavailable now; try again "
                                       f"(request {rid})"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(AuditUnavailable)
    async def audit_down(request: Request, exc: AuditUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "-")
        log.error("request %s failed: %s", rid, redact_url(f"{type(exc).__name__}: {exc}"))
        return JSONResponse({"detail": f"internal error (request {rid})"}, status_code=500)

    return Guard(app, max_body=MAX_BODY)


def close_context(ctx: Context) -> None:
    if ctx.crypto is not None:
        ctx.crypto.close()
    ctx.trail.close()
    ctx.store.close()


def app_from_config() -> Any:
    """uvicorn factory (`govsoc api serve` with several workers): config from govsoc.toml
    and GOVSOC_* variables."""
    return create_app(load_config())
