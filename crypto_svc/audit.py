"""Audit records of key use, written to the platform's audit trail (`soc_core.audit`): one
per use of a key — who, which key and version, which operation, the outcome and the SM3
digest and size of the input. Never the input, the output or any key material.

`CryptoService` appends each record to the trail's durable spool before it returns the
signature or plaintext; the trail drains to the event store (`event.dataset:
govsoc.audit`), chains the records with SM3 and signs checkpoints with the platform key
(`crypto_svc.platform`).
"""

from __future__ import annotations

from typing import Any

_KEY_ADMIN = frozenset({"keygen", "rotate", "disable", "enable", "destroy"})


def key_record(*, action: str, outcome: str, user: str, key_id: str | None = None,
               version: int | None = None, purpose: str | None = None,
               input_sm3: str | None = None, input_bytes: int | None = None,
               reason: str | None = None, extra: dict[str, Any] | None = None,
               **context: Any) -> dict[str, Any]:
    """The arguments of `AuditTrail.record` for one key use. `reason` must be a safe text
    (our own error messages are); `context` passes the caller's role, department, source
    address and request id through."""
    crypto: dict[str, Any] = {"operation": action}
    if key_id is not None:
        crypto["key"] = {"id": key_id, "version": version, "purpose": purpose}
    if input_sm3 is not None:
        crypto["input"] = {"sm3": input_sm3, "bytes": input_bytes}
    if extra:
        crypto.update(extra)
    subject = f"key {key_id}" + (f" v{version}" if version else "") if key_id else "crypto"
    admin = action in _KEY_ADMIN
    return {"action": f"crypto.{action}", "outcome": outcome, "user": user,
            "reason": reason, "category": "configuration" if admin else "process",
            "type": "change" if admin else "access",
            "object": {"type": "key", "id": key_id, "version": version} if key_id else None,
            "message": f"{action} with {subject} by {user}: {outcome}"
                       + (f" ({reason})" if reason else ""),
            "extra": {"crypto": crypto}, **context}
