"""The one gate every request passes: find the route's permission in `roles.ROUTES`,
authenticate (API token or console session), check CSRF on unsafe methods, rate limits,
the login stage and the permission. Fails closed: a route missing from the table is 403."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from soc_api import roles
from soc_api.context import context_of
from soc_api.identity import Principal

SESSION_COOKIE = "govsoc_session"
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def route_permission(request: Request) -> str | None:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return roles.ROUTES.get((request.method, path)) if path else None


async def gate(request: Request) -> Principal | None:
    # Read through the ASGI scope, not Starlette's conveniences: on CPython 3.11 each
    # attribute read through a `State` (request.state.x, app.state.x) and the first
    # `request.headers` build and drop an AttributeError inside the interpreter before
    # they answer. Those made the gate ~75 K instructions a request, as much as the audit
    # record's SM3 and both serializations together.
    scope = request.scope
    route = scope.get("route")
    path = getattr(route, "path", None)
    perm = roles.ROUTES.get((scope["method"], path)) if path else None
    if perm is None:
        raise HTTPException(403, "this route is not in the permission table")
    if perm == roles.PUBLIC:
        return None
    ctx = context_of(request)
    # a token this worker verified and still holds is checked here, on the event loop;
    # anything that may read the store (a token's refetch every CACHE_SECONDS, sessions)
    # runs in a thread: on Elasticsearch a lookup took up to 94 ms, and every request of
    # the worker's event loop waited for it
    bearer = _bearer(scope)
    principal = ctx.identity.token_known(bearer) if bearer else None
    if principal is None:
        principal = await run_in_threadpool(authenticate, request)
    scope["state"]["principal"] = principal  # = request.state.principal
    if principal.kind == "token":
        rate = principal.rate or ctx.token_rate
        if not ctx.limiter.take("token:" + str(principal.token_id), rate, rate):
            raise HTTPException(429, "rate limit of this token exceeded",
                                headers={"Retry-After": "1"})
    elif scope["method"] not in _SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not principal.csrf or not hmac.compare_digest(sent, principal.csrf):
            deny(request, principal, "CSRF token missing or wrong")
    if principal.stage != "full" and perm != roles.SELF:
        deny(request, principal,
             "change your password first" if principal.stage == "password"
             else "enrol a TOTP second factor first (POST /auth/totp/enroll)")
    if not roles.allowed(principal.roles, perm):
        deny(request, principal, f"your roles do not allow this ({perm})")
    return principal


def _bearer(scope: dict) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, straight from the ASGI
    headers (None for any other header or scheme: `authenticate` answers those)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, cred = value.partition(b" ")
            return cred.strip().decode("latin-1") if scheme.lower() == b"bearer" else None
    return None


def authenticate(request: Request) -> Principal:
    ctx = context_of(request)
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        principal = ctx.identity.token(value.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            ctx.audit(request, "auth.token", "failure", reason="invalid, expired or revoked")
            raise HTTPException(401, "invalid, expired or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = ctx.identity.session(cookie)
        if principal is not None:
            return principal
        raise HTTPException(401, "session expired: log in again")
    raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})


def deny(request: Request, principal: Principal, why: str) -> None:
    request.app.state.ctx.audit(request, "access.denied", "failure", principal=principal,
                                object=f"{request.method} {request.url.path}", reason=why)
    raise HTTPException(403, why)
