"""Logging in and out, the caller's own account: password change and TOTP enrolment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from soc_api.auth import SESSION_COOKIE
from soc_api.context import client_ip
from soc_api.identity import AuthError, IdentityError
from soc_api.passwords import PolicyError

router = APIRouter(tags=["auth"])


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    totp: str | None = Field(None, max_length=10)


class PasswordChange(BaseModel):
    current: str = Field(min_length=1, max_length=256)
    new: str = Field(min_length=1, max_length=256)


class TotpCode(BaseModel):
    code: str = Field(min_length=6, max_length=10)


@router.post("/auth/login")
def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
    ctx = request.app.state.ctx
    request.state.claimed_user = body.username[:64]
    if not ctx.limiter.take("login:" + str(client_ip(request)), ctx.login_rate, 10):
        ctx.audit(request, "auth.login", "failure", reason="rate limited")
        raise HTTPException(429, "too many logins from this address; wait a minute",
                            headers={"Retry-After": "60"})
    try:
        user, stage = ctx.identity.authenticate(body.username, body.password, body.totp)
    except AuthError as exc:
        ctx.audit(request, "auth.login", "failure", reason=str(exc))
        raise HTTPException(401, str(exc)) from None
    cookie, csrf = ctx.identity.open_session(user, stage, client_ip(request))
    p = ctx.identity.session(cookie)
    ctx.audit(request, "auth.login", principal=p, extra={"stage": stage})
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, secure=True,
                        samesite="strict", path="/")
    return {"user": user.name, "roles": user.roles, "stage": stage, "csrf_token": csrf}


@router.post("/auth/logout")
def logout(request: Request, response: Response) -> dict[str, Any]:
    ctx = request.app.state.ctx
    p = request.state.principal
    if p.session_id:
        ctx.identity.end_session(p.session_id)
    ctx.audit(request, "auth.logout")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    return {"ok": True}


@router.get("/auth/me")
def me(request: Request) -> dict[str, Any]:
    p = request.state.principal
    return {"name": p.name, "kind": p.kind, "roles": list(p.roles),
            "departments": list(p.departments), "keys": list(p.keys), "stage": p.stage}


def _own_user(request: Request) -> str:
    p = request.state.principal
    if p.kind != "user":
        raise HTTPException(403, "only a user account has a password or a second factor")
    return p.name


@router.post("/auth/password")
def change_password(body: PasswordChange, request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    name = _own_user(request)
    try:
        ctx.identity.change_password(name, body.current, body.new)
    except (AuthError, PolicyError, IdentityError) as exc:
        ctx.audit(request, "auth.password_change", "failure", object=name, reason=str(exc))
        raise HTTPException(400 if isinstance(exc, PolicyError) else 403, str(exc)) from None
    ctx.identity.end_session(request.state.principal.session_id or "")
    ctx.audit(request, "auth.password_change", object=name)
    return {"ok": True, "detail": "password changed: log in again with the new one"}


@router.post("/auth/totp/enroll")
def totp_enroll(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    name = _own_user(request)
    if request.state.principal.stage == "password":
        raise HTTPException(403, "change your password first")
    user = ctx.identity.user(name)
    if user.totp:
        raise HTTPException(409, "a second factor is enrolled; an administrator can reset it")
    secret, uri = ctx.identity.totp_begin(name)
    ctx.audit(request, "auth.totp_enroll", object=name)
    return {"secret": secret, "otpauth_uri": uri}


@router.post("/auth/totp/confirm")
def totp_confirm(body: TotpCode, request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    name = _own_user(request)
    try:
        ctx.identity.totp_confirm(name, body.code)
    except (AuthError, IdentityError) as exc:
        ctx.audit(request, "auth.totp_confirm", "failure", object=name, reason=str(exc))
        raise HTTPException(400, str(exc)) from None
    ctx.identity.end_session(request.state.principal.session_id or "")
    ctx.audit(request, "auth.totp_confirm", object=name)
    return {"ok": True, "detail": "second factor enrolled: log in again with a code"}
