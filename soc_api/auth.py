"""The one gate every request passes: find the route's permission in `roles.ROUTES`,
authenticate (API token or console session), check CSRF on unsafe methods, rate limits,
the login stage and the permission. Fails closed: a route missing from the table is 403."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from soc_api import roles
from soc_api.identity import Principal

SESSION_COOKIE = "govsoc_session"
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def route_permission(request: Request) -> str | None:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return roles.ROUTES.get((request.method, path)) if path else None


async def gate(request: Request) -> Principal | None:
    ctx = request.app.state.ctx
    perm = route_permission(request)
    if perm is None:
        raise HTTPException(403, "this route is not in the permission table")
    if perm == roles.PUBLIC:
        return None
    # a token known to this worker is checked here; anything that may read the store (a
    # token's refetch every CACHE_SECONDS, sessions) runs in a thread: on Elasticsearch a
    # lookup took up to 94 ms, and every request of the worker's event loop waited for it
    if _cached_token(request):
        principal = authenticate(request)
    else:
        principal = await run_in_threadpool(authenticate, request)
    request.state.principal = principal
    if principal.kind == "token":
        rate = principal.rate or ctx.token_rate
        if not ctx.limiter.take("token:" + str(principal.token_id), rate, rate):
            raise HTTPException(429, "rate limit of this token exceeded",
                                headers={"Retry-After": "1"})
    elif request.method not in _SAFE:
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


def _cached_token(request: Request) -> bool:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and request.app.state.ctx.identity.token_cached(
        value.strip())


def authenticate(request: Request) -> Principal:
    ctx = request.app.state.ctx
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
