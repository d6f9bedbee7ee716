"""What every request handler shares: the configuration, the store, identities, the
crypto service, the audit trail, departments and rate limits (one per API process)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from soc_api.identity import Identity, Principal

_BUILD_LOCK = threading.Lock()


class RateLimiter:
    """Token buckets by key (a token id, a source address): `rate` a second, bursts of
    `burst`. In-process: each API worker limits what reaches it."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: float, burst: float) -> bool:
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) > 100_000:
                    self._buckets.clear()  # bounded memory under a flood of new keys
                b = self._buckets[key] = [burst, now]
            b[0] = min(burst, b[0] + (now - b[1]) * rate)
            b[1] = now
            if b[0] < 1:
                return False
            b[0] -= 1
            return True


@dataclass
class Context:
    cfg: Any
    store: Any
    identity: Identity
    trail: Any  # soc_core.audit.AuditTrail
    crypto: Any = None  # crypto_svc.CryptoService, built on first use
    departments: Any = None  # soc_core.departments.Departments
    limiter: RateLimiter = field(default_factory=RateLimiter)
    token_rate: float = 3000.0
    login_rate: float = 10 / 60  # per source address: 10 a minute

    def crypto_service(self) -> Any:
        """The crypto service, built on first use (opening the keystore needs the master
        secret, which a deployment without the crypto API may not have)."""
        if self.crypto is None:
            with _BUILD_LOCK:
                if self.crypto is None:
                    from crypto_svc import CryptoService

                    self.crypto = CryptoService.from_config(self.cfg, self.store,
                                                            trail=self.trail)
        return self.crypto

    def verify_trail(self, *, start: Any = None, end: Any = None) -> dict[str, Any]:
        from crypto_svc import platform_verifier
        from soc_core.audit import audit_dir, local_heads, verify

        # the heads this machine's writers saved: a tail cut off the store shows against them
        heads = local_heads(audit_dir(self.cfg))
        report = verify(self.store, start=start, end=end, heads=heads,
                        verifier=platform_verifier(self.crypto_service()),
                        retention_days=int(self.cfg.get("retention_days", 180)))
        return report.to_dict()

    def audit(self, request: Any, action: str, outcome: str = "success", *,
              principal: Principal | None = None, object: str | None = None,  # noqa: A002
              reason: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """One audit record, on disk before this returns (the caller answers after)."""
        # the request's state read as the dict it is (see auth.gate: a read through
        # Starlette's State costs an AttributeError inside the interpreter)
        scope = request.scope
        state = scope.get("state") or {}
        p = principal or state.get("principal")
        client = scope.get("client")
        if p is not None:
            user, role, department = p.name, p.audit_roles, p.audit_departments
        else:
            user, role, department = state.get("claimed_user") or "-", None, None
        self.trail.record(
            action=action, outcome=outcome, user=user, role=role, department=department,
            object=object, source_ip=client[0] if client else None,
            request_id=state.get("request_id"), reason=reason, extra=extra)


def context_of(request: Any) -> Context:
    """The app's Context (`request.app.state.ctx`), read by key: an attribute read through
    Starlette's State builds and drops an AttributeError first on CPython 3.11."""
    return request.scope["app"].state["ctx"]


def client_ip(request: Any) -> str | None:
    return request.client.host if request.client else None
