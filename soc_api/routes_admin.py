"""Identity administration (sysadmin: accounts and tokens; secadmin: grants) and the
platform's own status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from soc_api import roles
from soc_api.identity import IdentityError
from soc_core.config import redact_url

router = APIRouter(tags=["admin"])
UserName = PathParam(min_length=2, max_length=64, pattern=r"^[a-z][a-z0-9._-]+$")
TokenId = PathParam(pattern=r"^t[0-9a-f]{16}$")
_List = Field(default_factory=list, max_length=64)


class NewUser(BaseModel):
    name: str = Field(min_length=2, max_length=64)


class Grants(BaseModel):
    roles: list[str] | None = Field(None, max_length=16)
    departments: list[str] | None = Field(None, max_length=64)
    keys: list[str] | None = Field(None, max_length=64)


class NewToken(BaseModel):
    label: str = Field(min_length=1, max_length=100)
    roles: list[str] = Field(min_length=1, max_length=16)
    departments: list[str] = _List
    keys: list[str] = _List
    days: int | None = Field(None, ge=1, le=3650)
    rate: float = Field(0.0, ge=0, le=100_000)


def _fail(exc: IdentityError) -> HTTPException:
    return HTTPException(404 if str(exc).startswith("no ") else 400, str(exc))


@router.get("/users")
def list_users(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    ctx.audit(request, "user.list")
    return {"users": [u.public() for u in ctx.identity.users()]}


@router.post("/users", status_code=201)
def add_user(body: NewUser, request: Request) -> dict[str, Any]:
    """A new account with no roles and a one-time password (shown once): a security
    administrator grants its roles (三权分立: who makes accounts does not grant rights)."""
    ctx = request.app.state.ctx
    try:
        otp = ctx.identity.add_user(body.name)
    except IdentityError as exc:
        ctx.audit(request, "user.add", "failure", object=body.name, reason=str(exc))
        raise HTTPException(409 if "exists" in str(exc) else 400, str(exc)) from None
    ctx.audit(request, "user.add", object=body.name)
    return {"name": body.name, "one_time_password": otp}


@router.get("/users/{name}")
def get_user(request: Request, name: str = UserName) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        return ctx.identity.user(name).public()
    except IdentityError as exc:
        raise _fail(exc) from None


def _user_action(action: str, request: Request, name: str) -> dict[str, Any]:
    ctx = request.app.state.ctx
    if name == request.state.principal.name and action == "disable":
        raise HTTPException(409, "you cannot disable your own account")
    try:
        if action == "reset":
            otp = ctx.identity.reset_password(name)
            ctx.audit(request, "user.reset", object=name)
            return {"name": name, "one_time_password": otp}
        user = ctx.identity.set_disabled(name, action == "disable")
    except IdentityError as exc:
        ctx.audit(request, f"user.{action}", "failure", object=name, reason=str(exc))
        raise _fail(exc) from None
    ctx.audit(request, f"user.{action}", object=name)
    return user.public()


@router.post("/users/{name}/disable")
def disable_user(request: Request, name: str = UserName) -> dict[str, Any]:
    return _user_action("disable", request, name)


@router.post("/users/{name}/enable")
def enable_user(request: Request, name: str = UserName) -> dict[str, Any]:
    return _user_action("enable", request, name)


@router.post("/users/{name}/reset")
def reset_user(request: Request, name: str = UserName) -> dict[str, Any]:
    return _user_action("reset", request, name)


@router.put("/users/{name}/grants")
def grant(body: Grants, request: Request, name: str = UserName) -> dict[str, Any]:
    ctx = request.app.state.ctx
    if name == request.state.principal.name:
        raise HTTPException(409, "you cannot change your own grants")
    try:
        user = ctx.identity.grant(name, roles_=body.roles, departments=body.departments,
                                  keys=body.keys)
    except (IdentityError, roles.RoleError) as exc:
        ctx.audit(request, "user.grant", "failure", object=name, reason=str(exc))
        raise (_fail(exc) if isinstance(exc, IdentityError)
               else HTTPException(400, str(exc))) from None
    ctx.audit(request, "user.grant", object=name,
              extra={"roles": user.roles, "departments": user.departments, "keys": user.keys})
    return user.public()


@router.get("/tokens")
def list_tokens(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    ctx.audit(request, "token.list")
    return {"tokens": [t.public() for t in ctx.identity.tokens()]}


@router.post("/tokens", status_code=201)
def create_token(body: NewToken, request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    p = request.state.principal
    beyond = set(body.roles) - roles.TOKEN_ROLES_FOR_SYSADMIN
    if beyond and not roles.allowed(p.roles, "roles:grant"):
        raise HTTPException(403, f"only a security administrator may give a token the "
                                 f"roles {', '.join(sorted(beyond))}")
    try:
        tok, secret = ctx.identity.create_token(
            body.label, roles_=body.roles, departments=body.departments, keys=body.keys,
            days=body.days, rate=body.rate, created_by=p.name)
    except (IdentityError, roles.RoleError) as exc:
        ctx.audit(request, "token.create", "failure", object=body.label, reason=str(exc))
        raise HTTPException(400, str(exc)) from None
    ctx.audit(request, "token.create", object=tok.id,
              extra={"roles": tok.roles, "departments": tok.departments, "keys": tok.keys})
    return {**tok.public(), "token": secret}


@router.delete("/tokens/{token_id}")
def revoke_token(request: Request, token_id: str = TokenId) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        tok = ctx.identity.revoke_token(token_id)
    except IdentityError as exc:
        raise _fail(exc) from None
    ctx.audit(request, "token.revoke", object=token_id)
    return tok.public()


@router.get("/departments")
def departments(request: Request) -> dict[str, Any]:
    deps = request.app.state.ctx.departments
    return {"departments": [d.to_dict() for d in deps.all()] if deps is not None else []}


@router.get("/system/status")
def system_status(request: Request) -> dict[str, Any]:
    ctx = request.app.state.ctx
    try:
        info = ctx.store.info()
        store = {"backend": info.get("backend"), "version": info.get("version"), "up": True}
    except Exception as exc:  # noqa: BLE001 - a status page reports a broken store
        store = {"backend": ctx.store.backend, "up": False,
                 "error": redact_url(f"{type(exc).__name__}: {exc}")[:300]}
    return {"store": store, "audit": ctx.trail.status() if hasattr(ctx.trail, "status")
            else {}}
