"""`govsoc api serve`, `govsoc user ...`, `govsoc token ...`.

User and token administration from the command line works on the store directly (the
first administrator has no one to log in as) and writes the same audit records as the
API, with the operating-system account as the actor."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from soc_api import roles
from soc_api.identity import Identity, IdentityError
from soc_core.cliutil import fail, open_cli_store, store_option, user_errors
from soc_core.config import ConfigError, load_config


@contextmanager
def _identity(store_url: str | None) -> Iterator[tuple[Identity, object]]:
    from soc_api.app import checkpoint_signer
    from soc_core.audit import AuditTrail

    cfg = load_config()
    with open_cli_store(store_url) as store:
        trail = AuditTrail.from_config(cfg, name="cli", store=store,
                                       signer=checkpoint_signer(cfg))
        try:
            yield Identity.from_config(cfg, store), trail
        finally:
            trail.close()


def _actor() -> str:
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):
        return f"os:uid{os.getuid()}"


def _audit(trail, action: str, obj: str, outcome: str = "success", **extra) -> None:  # noqa: ANN001
    trail.record(action=action, outcome=outcome, user=_actor(), object=obj,
                 extra=extra or None)


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


# -- api -----------------------------------------------------------------------------------
@click.group("api")
def api() -> None:
    """The HTTPS API and console."""


@api.command("serve")
@click.option("--host", default=None, help="Address to listen on (api.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (api.port, 8443).")
@click.option("--workers", type=int, default=None, help="Worker processes (api.workers, 2).")
@click.option("--insecure-http", is_flag=True,
              help="Plain HTTP instead of HTTPS: only on a loopback address.")
def serve_cmd(host: str | None, port: int | None, workers: int | None,
              insecure_http: bool) -> None:
    """Serve the API (HTTPS; a self-signed certificate is made on first start)."""
    from soc_api.serve import Listen, ServeError, serve, uvicorn_options

    try:
        cfg = load_config()
        listen = Listen.from_config(cfg, host=host, port=port, workers=workers,
                                    insecure_http=insecure_http)
        uvicorn_options(cfg, listen)  # refuse bad options before anything starts
    except (ServeError, ConfigError, FileNotFoundError) as exc:
        fail(str(exc))
    click.echo(f"govsoc API on {listen.url} ({listen.workers} workers)", err=True)
    serve(cfg, listen)


# -- users ---------------------------------------------------------------------------------
@click.group("user")
def user() -> None:
    """Local users: accounts, passwords, second factors, grants."""


@user.command("add")
@click.argument("name")
@click.option("--role", "roles_", multiple=True, help=f"One of {', '.join(roles.ROLES)}.")
@click.option("--department", "departments", multiple=True, help="Department id, or '*'.")
@click.option("--key", "keys", multiple=True, help="Crypto key id the user may use, or '*'.")
@store_option
@user_errors(IdentityError, roles.RoleError)
def user_add(name: str, roles_: tuple[str, ...], departments: tuple[str, ...],
             keys: tuple[str, ...], store_url: str | None) -> None:
    """Create a user; prints a one-time password that must be changed at first login."""
    with _identity(store_url) as (ident, trail):
        otp = ident.add_user(name, roles_=list(roles_), departments=list(departments),
                             keys=list(keys))
        _audit(trail, "user.add", name, roles=sorted(roles_))
    click.echo(f"user {name} created; one-time password (shown once): {otp}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@store_option
def user_list(as_json: bool, store_url: str | None) -> None:
    with _identity(store_url) as (ident, _):
        users = [u.public() for u in ident.users()]
    if as_json:
        click.echo(json.dumps(users, ensure_ascii=False, indent=1))
        return
    for u in users:
        state = "disabled" if u["disabled"] else ("locked" if u["locked"] else "active")
        click.echo(f"{u['name']:20} {state:9} roles={','.join(u['roles']) or '-'} "
                   f"departments={','.join(u['departments']) or '-'} "
                   f"totp={'yes' if u['totp_enrolled'] else 'no'}")


def _state_cmd(action: str):  # noqa: ANN202
    @click.argument("name")
    @store_option
    @user_errors(IdentityError)
    def cmd(name: str, store_url: str | None) -> None:
        with _identity(store_url) as (ident, trail):
            ident.set_disabled(name, action == "disable")
            _audit(trail, f"user.{action}", name)
        click.echo(f"user {name} {action}d")

    cmd.__doc__ = f"{action.capitalize()} a user (disabling ends its sessions)."
    return cmd


user.command("disable")(_state_cmd("disable"))
user.command("enable")(_state_cmd("enable"))


@user.command("passwd")
@click.argument("name")
@store_option
@user_errors(IdentityError)
def user_passwd(name: str, store_url: str | None) -> None:
    """Reset a password to a new one-time password (changed at next login)."""
    with _identity(store_url) as (ident, trail):
        otp = ident.reset_password(name)
        _audit(trail, "user.reset", name)
    click.echo(f"one-time password for {name} (shown once): {otp}")


@user.command("totp")
@click.argument("name")
@click.option("--reset", is_flag=True, help="Remove the second factor: enrol again at login.")
@store_option
@user_errors(IdentityError)
def user_totp(name: str, reset: bool, store_url: str | None) -> None:
    """Reset a user's TOTP second factor (the user enrols a new one at next login)."""
    if not reset:
        fail("users enrol their second factor themselves at login; "
             "use --reset to remove a lost one")
    with _identity(store_url) as (ident, trail):
        ident.totp_reset(name)
        _audit(trail, "user.totp_reset", name)
    click.echo(f"second factor of {name} removed; it enrols a new one at next login")


@user.command("grant")
@click.argument("name")
@click.option("--roles", "roles_", default=None, help="Comma-separated roles (replaces).")
@click.option("--departments", default=None, help="Comma-separated department ids or '*'.")
@click.option("--keys", default=None, help="Comma-separated crypto key ids or '*'.")
@store_option
@user_errors(IdentityError, roles.RoleError)
def user_grant(name: str, roles_: str | None, departments: str | None, keys: str | None,
               store_url: str | None) -> None:
    """Set a user's roles, departments and keys (each given option replaces the list)."""
    with _identity(store_url) as (ident, trail):
        u = ident.grant(name, roles_=_csv(roles_), departments=_csv(departments),
                        keys=_csv(keys))
        _audit(trail, "user.grant", name, roles=u.roles, departments=u.departments,
               keys=u.keys)
    click.echo(f"{name}: roles={','.join(u.roles) or '-'} "
               f"departments={','.join(u.departments) or '-'} keys={','.join(u.keys) or '-'}")


# -- tokens --------------------------------------------------------------------------------
@click.group("token")
def token() -> None:
    """API tokens for other systems."""


@token.command("create")
@click.option("--label", required=True)
@click.option("--role", "roles_", multiple=True, required=True)
@click.option("--department", "departments", multiple=True)
@click.option("--key", "keys", multiple=True, help="Crypto key id the token may use.")
@click.option("--days", type=int, default=None, help="Lifetime in days (api.token_days).")
@click.option("--rate", type=float, default=0.0, help="Requests a second (0: api.token_rate).")
@store_option
@user_errors(IdentityError, roles.RoleError)
def token_create(label: str, roles_: tuple[str, ...], departments: tuple[str, ...],
                 keys: tuple[str, ...], days: int | None, rate: float,
                 store_url: str | None) -> None:
    """Create a token; the secret is printed once and never stored."""
    with _identity(store_url) as (ident, trail):
        tok, secret = ident.create_token(label, roles_=list(roles_),
                                         departments=list(departments), keys=list(keys),
                                         days=days, rate=rate, created_by=_actor())
        _audit(trail, "token.create", tok.id, roles=tok.roles, keys=tok.keys)
    click.echo(f"token {tok.id} ({label}), expires {tok.public()['expires']}")
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@store_option
def token_list(as_json: bool, store_url: str | None) -> None:
    with _identity(store_url) as (ident, _):
        toks = [t.public() for t in ident.tokens()]
    if as_json:
        click.echo(json.dumps(toks, ensure_ascii=False, indent=1))
        return
    for t in toks:
        state = "revoked" if t["revoked"] else ("expired" if t["expired"] else "active")
        click.echo(f"{t['id']} {state:8} {t['label']:24} roles={','.join(t['roles'])} "
                   f"keys={','.join(t['keys']) or '-'} expires={t['expires']}")


@token.command("revoke")
@click.argument("token_id")
@store_option
@user_errors(IdentityError)
def token_revoke(token_id: str, store_url: str | None) -> None:
    with _identity(store_url) as (ident, trail):
        ident.revoke_token(token_id)
        _audit(trail, "token.revoke", token_id)
    click.echo(f"token {token_id} revoked")
