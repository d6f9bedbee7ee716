"""Who may use govsoc: local users, API tokens and console sessions, kept in the event
store's `state` family so every API worker (and every machine over one Elasticsearch)
sees the same accounts at once.

- Users: argon2id password hashes with the 等保 level 3 policy (`passwords.Policy`),
  lockout after repeated failures, a TOTP second factor (required for the admin roles),
  a one-time password at creation and reset that must be changed at first login.
- Tokens, for other systems: `gst_<id>_<secret>`; 256 random bits, shown once, stored as
  their SM3 (a fast hash suffices for a random secret: argon2 per request would cap the
  signing API), scoped to roles, departments and keys, expiring, revocable.
- Sessions, for the console: a random cookie value whose SM3 names the session document,
  with its CSRF token, idle and absolute timeouts.

Looked-up tokens and sessions are cached for `CACHE_SECONDS` per process: a revocation
takes effect at once in the worker that made it and within that time in the others. A
token whose secret was verified keeps its principal beside the cached record, for as long
as that very record stays cached: a request with the same secret then skips the SM3 of
it (an exact comparison, in constant time, with the secret verified before), and the
revocation bound above is unchanged (the record is checked for revocation and expiry
first, on every request). A record read past half that time is served from memory and
refetched once in the background, so no request waits on the store for a record it
holds; a record is never served older than `CACHE_SECONDS`.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crypto_svc import sm4_open, sm4_seal
from soc_api import passwords, roles, totp
from soc_core import ecs
from soc_core.sm3 import sm3_hex
from soc_core.store import EventStore, Selection

CACHE_SECONDS = 2.0
USER_DS, TOKEN_DS, SESSION_DS = ("govsoc.state.user", "govsoc.state.token",
                                 "govsoc.state.session")
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
DEPT_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9_-]{0,62})$")
KEY_RE = re.compile(r"^(\*|k[0-9a-f]{16})$")
TOKEN_RE = re.compile(r"^gst_(t[0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class IdentityError(ValueError):
    """A request about identities that cannot be done (unknown user, bad name, policy)."""


class AuthError(Exception):
    """Authentication failed; the message is safe to show (never says which part)."""


@dataclass
class User:
    name: str
    roles: list[str] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    password_hash: str = ""
    password_changed: int = 0
    history: list[str] = field(default_factory=list)
    must_change: bool = True
    disabled: bool = False
    failures: int = 0
    locked_until: int = 0
    totp: str = ""  # sealed secret, empty when not enrolled
    totp_pending: str = ""
    totp_last_step: int = -1
    created: int = 0

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "roles": self.roles, "departments": self.departments,
                "keys": self.keys, "disabled": self.disabled, "must_change": self.must_change,
                "totp_enrolled": bool(self.totp), "locked": self.locked_until > time.time(),
                "password_changed": _iso(self.password_changed), "created": _iso(self.created)}


@dataclass
class Token:
    id: str
    label: str
    secret_sm3: str
    roles: list[str]
    departments: list[str]
    keys: list[str]
    created: int
    expires: int
    created_by: str
    revoked: bool = False
    rate: float = 0.0  # requests a second; 0: the configured default

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "roles": self.roles,
                "departments": self.departments, "keys": self.keys,
                "created": _iso(self.created), "expires": _iso(self.expires),
                "created_by": self.created_by, "revoked": self.revoked,
                "expired": self.expires <= time.time(), "rate": self.rate}


@dataclass
class Principal:
    """The authenticated caller of one request."""

    name: str
    kind: str  # "user" or "token"
    roles: tuple[str, ...]
    departments: tuple[str, ...]
    keys: tuple[str, ...]
    stage: str = "full"  # "password": must change it first; "totp": must enrol first
    session_id: str | None = None
    csrf: str | None = None
    token_id: str | None = None
    rate: float = 0.0

    @property
    def all_departments(self) -> bool:
        return "*" in self.departments

    def may_use_key(self, key_id: str) -> bool:
        return "*" in self.keys or key_id in self.keys

    # what each of this principal's audit records names (computed once: a principal of a
    # cached token serves every request of that token)
    @functools.cached_property
    def audit_roles(self) -> str | None:
        return ",".join(self.roles) or None

    @functools.cached_property
    def audit_departments(self) -> str | None:
        return ",".join(self.departments) or None


def _iso(epoch: int | float) -> str | None:
    return ecs.format_time(datetime.fromtimestamp(epoch, UTC)) if epoch else None


class Identity:
    def __init__(self, store: EventStore, data_dir: str | os.PathLike[str], *,
                 policy: passwords.Policy | None = None, idle_minutes: int = 15,
                 session_hours: int = 12, default_token_days: int = 365) -> None:
        self.store = store
        self.policy = policy or passwords.Policy()
        self.idle = idle_minutes * 60
        self.absolute = session_hours * 3600
        self.default_token_days = default_token_days
        self._seal_key = _local_secret(Path(data_dir) / "api" / "identity.key")
        self._cache: dict[str, tuple[float, Any]] = {}
        # token id -> (the cached Token record it was verified against, secret, principal)
        self._verified: dict[str, tuple[Token, str, Principal]] = {}
        self._lock = threading.Lock()
        # refresh-ahead: one background refetch of a record past half its cache time, so a
        # request never waits on the store for a record it already holds (a slow store
        # otherwise stalls every request that arrives while the record is refetched)
        self._refreshing: set[str] = set()
        self._refresher: Any = None
        self._dropped = 0  # bumped by every drop: a refetch begun before it is not kept

    @classmethod
    def from_config(cls, cfg, store: EventStore) -> Identity:  # noqa: ANN001
        return cls(store, cfg.data_dir, policy=passwords.Policy.from_config(cfg),
                   idle_minutes=int(cfg.get("api.session_idle_minutes", 15)),
                   session_hours=int(cfg.get("api.session_max_hours", 12)),
                   default_token_days=int(cfg.get("api.token_days", 365)))

    # -- persistence ---------------------------------------------------------------------
    def _put(self, dataset: str, doc_id: str, record: dict[str, Any],
             refresh: bool = True) -> None:
        doc = {"@timestamp": _iso(time.time()),
               "event": {"kind": "state", "dataset": dataset, "id": doc_id},
               "govsoc": {"identity": record}}
        result = self.store.write([doc], refresh=refresh)
        if result.rejected:
            raise IdentityError(f"cannot store {dataset.rsplit('.', 1)[1]}: "
                                f"{result.rejected[0].reason}")

    def _get(self, doc_id: str) -> dict[str, Any] | None:
        doc = self.store.get("state", doc_id)
        return None if doc is None else doc.get("govsoc", {}).get("identity")

    def _all(self, dataset: str) -> list[dict[str, Any]]:
        sel = Selection(family="state", dataset=dataset)
        return [d["govsoc"]["identity"] for d in self.store.scan(sel)]

    # -- users ---------------------------------------------------------------------------
    def user(self, name: str) -> User:
        rec = self._get("user:" + name) if NAME_RE.match(name or "") else None
        if rec is None:
            raise IdentityError(f"no user {name!r}")
        return User(**rec)

    def users(self) -> list[User]:
        return sorted((User(**r) for r in self._all(USER_DS)), key=lambda u: u.name)

    def _save_user(self, user: User) -> None:
        self._put(USER_DS, "user:" + user.name, asdict(user))

    def add_user(self, name: str, *, roles_: list[str] = (), departments: list[str] = (),
                 keys: list[str] = ()) -> str:
        """A new user with a one-time password (returned, shown once)."""
        if not NAME_RE.match(name or ""):
            raise IdentityError("user name: 2-64 of a-z 0-9 . _ -, starting with a letter")
        if self._get("user:" + name) is not None:
            raise IdentityError(f"user {name!r} exists")
        otp = passwords.one_time_password()
        now = int(time.time())
        user = User(name=name, roles=roles.check_roles(list(roles_)),
                    departments=_check(departments, DEPT_RE, "department"),
                    keys=_check(keys, KEY_RE, "key id"),
                    password_hash=passwords.hash_password(otp), password_changed=now,
                    must_change=True, created=now)
        self._save_user(user)
        return otp

    def set_disabled(self, name: str, disabled: bool) -> User:
        user = self.user(name)
        user.disabled = disabled
        if not disabled:
            user.failures, user.locked_until = 0, 0
        self._save_user(user)
        if disabled:
            self._drop_sessions(name)
        return user

    def reset_password(self, name: str) -> str:
        user = self.user(name)
        otp = passwords.one_time_password()
        user.password_hash = passwords.hash_password(otp)
        user.password_changed, user.must_change = int(time.time()), True
        user.failures, user.locked_until = 0, 0
        self._save_user(user)
        self._drop_sessions(name)
        return otp

    def grant(self, name: str, *, roles_: list[str] | None = None,
              departments: list[str] | None = None, keys: list[str] | None = None) -> User:
        user = self.user(name)
        if roles_ is not None:
            user.roles = roles.check_roles(roles_)
        if departments is not None:
            user.departments = _check(departments, DEPT_RE, "department")
        if keys is not None:
            user.keys = _check(keys, KEY_RE, "key id")
        self._save_user(user)
        self._drop_sessions(name)  # a session must not keep rights it lost
        return user

    def change_password(self, name: str, old: str, new: str) -> None:
        user = self.user(name)
        if not passwords.verify_password(user.password_hash, old):
            raise AuthError("the current password is wrong")
        self.policy.check(new, username=name)
        if passwords.verify_password(user.password_hash, new) or \
                passwords.in_history(user.history, new):
            raise passwords.PolicyError(f"password must differ from the last "
                                        f"{self.policy.history} passwords")
        user.history = ([user.password_hash] + user.history)[: self.policy.history]
        user.password_hash = passwords.hash_password(new)
        user.password_changed, user.must_change = int(time.time()), False
        self._save_user(user)

    # -- TOTP ----------------------------------------------------------------------------
    def _seal(self, secret: str) -> str:
        return base64.b64encode(sm4_seal(self._seal_key, secret.encode())).decode()

    def _unseal(self, sealed: str) -> str:
        return sm4_open(self._seal_key, base64.b64decode(sealed)).decode()

    def totp_begin(self, name: str) -> tuple[str, str]:
        """A new secret waiting for its first code (`totp_confirm`); (secret, otpauth URI)."""
        user = self.user(name)
        secret = totp.new_secret()
        user.totp_pending = self._seal(secret)
        self._save_user(user)
        return secret, totp.uri(secret, name)

    def totp_confirm(self, name: str, code: str) -> None:
        user = self.user(name)
        if not user.totp_pending:
            raise IdentityError("no TOTP enrolment is waiting: start one first")
        step = totp.verify(self._unseal(user.totp_pending), code)
        if step is None:
            raise AuthError("the TOTP code is wrong")
        user.totp, user.totp_pending, user.totp_last_step = user.totp_pending, "", step
        self._save_user(user)

    def totp_reset(self, name: str) -> User:
        user = self.user(name)
        user.totp, user.totp_pending, user.totp_last_step = "", "", -1
        self._save_user(user)
        self._drop_sessions(name)
        return user

    # -- logging in ----------------------------------------------------------------------
    def authenticate(self, name: str, password: str, code: str | None) -> tuple[User, str]:
        """(user, stage) for a correct login. Stage "password": the password must be
        changed first (one-time or expired); "totp": an admin must enrol a second factor."""
        now = int(time.time())
        try:
            user = self.user(name)
        except IdentityError:
            passwords.verify_password(_DUMMY_HASH, password)  # same time as a real user
            raise AuthError("invalid user name or password") from None
        if user.locked_until > now:
            raise AuthError(f"account locked after {self.policy.max_failures} failed logins; "
                            f"try again after {_iso(user.locked_until)}")
        ok = passwords.verify_password(user.password_hash, password) and not user.disabled
        if ok and user.totp:
            if not code:
                raise AuthError("TOTP code required")
            step = totp.verify(self._unseal(user.totp), code, last_step=user.totp_last_step)
            ok = step is not None
            if ok:
                user.totp_last_step = step
        if not ok:
            user.failures += 1
            if user.failures >= self.policy.max_failures:
                user.locked_until = now + self.policy.lockout_minutes * 60
                user.failures = 0
            self._save_user(user)
            raise AuthError("invalid user name, password or code")
        user.failures = 0
        self._save_user(user)
        expired = now - user.password_changed > self.policy.max_age_days * 86400
        if user.must_change or expired:
            return user, "password"
        if set(user.roles) & roles.ADMIN_ROLES and not user.totp:
            return user, "totp"
        return user, "full"

    # -- sessions ------------------------------------------------------------------------
    def open_session(self, user: User, stage: str, source_ip: str | None) -> tuple[str, str]:
        """(cookie value, CSRF token) of a new session."""
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = int(time.time())
        self._put(SESSION_DS, "session:" + sm3_hex(cookie.encode()),
                  {"user": user.name, "stage": stage, "csrf": csrf, "created": now,
                   "last_seen": now, "source_ip": source_ip, "ended": False})
        return cookie, csrf

    def session(self, cookie: str) -> Principal | None:
        if not cookie or len(cookie) > 128:
            return None
        sid = "session:" + sm3_hex(cookie.encode())
        rec = self._cached(sid)
        now = time.time()
        if rec is None or rec["ended"] or now - rec["created"] > self.absolute \
                or now - rec["last_seen"] > self.idle:
            return None
        user = self._cached("user:" + rec["user"], User)
        if user is None or user.disabled:
            return None
        if now - rec["last_seen"] > 30:  # idle time, kept to the half minute
            rec["last_seen"] = int(now)
            # no forced refresh: sessions are read by id (real time on both stores), and
            # on Elasticsearch a refresh here would cost the request it rides on (an
            # analyst's acknowledge, every half minute) far more than the write
            self._put(SESSION_DS, sid, rec, refresh=False)
        return Principal(user.name, "user", tuple(user.roles), tuple(user.departments),
                         tuple(user.keys), stage=rec["stage"], session_id=sid,
                         csrf=rec["csrf"])

    def end_session(self, session_id: str) -> None:
        rec = self._get(session_id)
        if rec is not None:
            rec["ended"] = True
            self._put(SESSION_DS, session_id, rec)
        self._drop(session_id)

    def _drop_sessions(self, name: str) -> None:
        for rec_doc in self.store.scan(Selection(family="state", dataset=SESSION_DS,
                                                 filters={"govsoc.identity.user": name})):
            rec = rec_doc["govsoc"]["identity"]
            if not rec["ended"]:
                rec["ended"] = True
                self._put(SESSION_DS, rec_doc["event"]["id"], rec)
        self._drop(None)

    # -- tokens --------------------------------------------------------------------------
    def create_token(self, label: str, *, roles_: list[str], departments: list[str] = (),
                     keys: list[str] = (), days: int | None = None, rate: float = 0.0,
                     created_by: str) -> tuple[Token, str]:
        """A new token and its secret (shown once, never stored)."""
        if not label or len(label) > 100:
            raise IdentityError("token label: 1-100 characters")
        days = self.default_token_days if days is None else days
        if not 1 <= days <= 3650:
            raise IdentityError("token lifetime: 1 to 3650 days")
        if not roles_:
            raise IdentityError("a token needs at least one role")
        tid = "t" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = int(time.time())
        tok = Token(id=tid, label=label, secret_sm3=sm3_hex(secret.encode()),
                    roles=roles.check_roles(list(roles_)),
                    departments=_check(departments, DEPT_RE, "department"),
                    keys=_check(keys, KEY_RE, "key id"), created=now,
                    expires=now + days * 86400, created_by=created_by, rate=float(rate))
        self._put(TOKEN_DS, "token:" + tid, asdict(tok))
        return tok, f"gst_{tid}_{secret}"

    def tokens(self) -> list[Token]:
        return sorted((Token(**r) for r in self._all(TOKEN_DS)), key=lambda t: t.created)

    def revoke_token(self, token_id: str) -> Token:
        rec = self._get("token:" + token_id) if re.match(r"^t[0-9a-f]{16}$", token_id) else None
        if rec is None:
            raise IdentityError(f"no token {token_id!r}")
        tok = Token(**rec)
        tok.revoked = True
        self._put(TOKEN_DS, "token:" + tok.id, asdict(tok))
        self._drop("token:" + tok.id)
        self._verified.pop(tok.id, None)
        return tok

    def token(self, bearer: str) -> Principal | None:
        m = TOKEN_RE.match(bearer or "")
        if not m:
            return None
        tid, secret = m.group(1), m.group(2)
        tok = self._cached("token:" + tid, Token)
        if tok is None or tok.revoked or tok.expires <= time.time():
            return None
        known = self._verified.get(tid)
        # only against the same cached record: a refetch (every CACHE_SECONDS, or at once
        # after a revocation here) makes a new Token object, checked in full again
        if known is not None and known[0] is tok and hmac.compare_digest(known[1], secret):
            return known[2]
        if not hmac.compare_digest(tok.secret_sm3, sm3_hex(secret.encode())):
            return None
        principal = Principal(tok.label, "token", tuple(tok.roles), tuple(tok.departments),
                              tuple(tok.keys), token_id=tok.id, rate=tok.rate)
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[tid] = (tok, secret, principal)
        return principal

    def token_known(self, bearer: str) -> Principal | None:
        """`token(bearer)` when this process can answer it from memory: the secret is the
        one verified against the Token record still cached (fresh, not revoked, not
        expired). None otherwise, which means "ask `token`", not "invalid": the gate
        answers known tokens on its event loop and sends the rest to a thread."""
        # gst_<t + 16 hex>_<43>: the shape TOKEN_RE checked when the secret was verified
        if len(bearer) != 65 or bearer[21] != "_":
            return None
        known = self._verified.get(bearer[4:21])
        if known is None:
            return None
        tok, secret, principal = known
        hit = self._cache.get("token:" + tok.id)
        if hit is None or hit[1] is not tok or time.monotonic() - hit[0] >= CACHE_SECONDS \
                or tok.revoked or tok.expires <= time.time() \
                or not hmac.compare_digest(secret, bearer[22:]) or bearer[:4] != "gst_":
            return None
        return principal

    def _cached(self, doc_id: str, kind: type | None = None) -> Any:
        now = time.monotonic()
        hit = self._cache.get(doc_id)
        if hit is not None:
            age = now - hit[0]
            if age < CACHE_SECONDS:
                if age >= CACHE_SECONDS / 2 and doc_id not in self._refreshing:
                    self._refresh_ahead(doc_id, kind)
                return hit[1]
        return self._fetch(doc_id, kind, now, self._dropped)

    def _fetch(self, doc_id: str, kind: type | None, now: float, dropped: int) -> Any:
        rec = self._get(doc_id)
        value = None if rec is None else (kind(**rec) if kind else rec)
        with self._lock:
            if dropped == self._dropped:  # else a drop came meanwhile: this read may predate it
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[doc_id] = (now, value)
        return value

    def _refresh_ahead(self, doc_id: str, kind: type | None) -> None:
        with self._lock:
            if doc_id in self._refreshing:
                return
            self._refreshing.add(doc_id)
            if self._refresher is None:
                from concurrent.futures import ThreadPoolExecutor
                self._refresher = ThreadPoolExecutor(1, thread_name_prefix="identity-refresh")
        dropped = self._dropped

        def run() -> None:
            try:
                self._fetch(doc_id, kind, time.monotonic(), dropped)
            except Exception:  # noqa: BLE001 - the store is down: the next request reads it
                pass
            finally:
                with self._lock:
                    self._refreshing.discard(doc_id)
        self._refresher.submit(run)

    def _drop(self, doc_id: str | None) -> None:
        """Forget one cached record (None: all) at once, and any refetch still running."""
        with self._lock:
            self._dropped += 1
            if doc_id is None:
                self._cache.clear()
            else:
                self._cache.pop(doc_id, None)


def _check(values: Any, pattern: re.Pattern[str], what: str) -> list[str]:
    out = sorted(set(values or ()))
    for v in out:
        if not isinstance(v, str) or not pattern.match(v):
            raise IdentityError(f"bad {what} {str(v)[:40]!r}")
    return out


def _local_secret(path: Path) -> bytes:
    """A 16-byte SM4 key kept in a 0600 file of the API's own (it seals TOTP secrets)."""
    try:
        return path.read_bytes()[:16] if path.stat().st_size >= 16 else _new_secret(path)
    except FileNotFoundError:
        return _new_secret(path)


def _new_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first: use theirs
        time.sleep(0.05)
        return path.read_bytes()[:16]
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


_DUMMY_HASH = passwords.hash_password(secrets.token_urlsafe(16))
