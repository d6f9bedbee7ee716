"""The platform signing key: the keystore key that signs the audit trail's checkpoints and
the evidence manifests of `govsoc audit export`.

It is an ordinary SM2 `sign` key of the keystore carrying the label
`govsoc.role = audit-checkpoint` (see `govsoc crypto list`); the oldest active key with that
label is the platform key, and the first checkpoint creates one when there is none (under a
lock file beside the keystore, so concurrent API workers agree on one key). Rotating it
with `govsoc crypto rotate` is safe: each signature names its key id and version, and the
verifier accepts only keys that carry the label.

Signing here goes to the keystore directly, not through `CryptoService`: a checkpoint is
itself the audit record of that key use, and signing through the audited path would record
a record about the checkpoint, recursively.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from typing import Any

from crypto_svc.errors import CryptoError, KeyStateError
from crypto_svc.keystore import KeyInfo, Keystore
from crypto_svc.sm2 import InvalidSignature

LABEL = "govsoc.role"
ROLE = "audit-checkpoint"
ALG = "SM2-SM3"


def _keystore(holder: Any) -> Keystore:
    return holder if isinstance(holder, Keystore) else holder.keystore


def find_platform_key(keystore: Keystore) -> KeyInfo | None:
    """The platform key, or None when none exists yet."""
    keys = [k for k in keystore.list() if k.labels.get(LABEL) == ROLE
            and k.state == "active" and k.purpose == "sign"]
    return min(keys, key=lambda k: (k.created, k.id)) if keys else None


def platform_key(keystore: Keystore) -> KeyInfo:
    """The platform key, created when there is none."""
    found = find_platform_key(keystore)
    if found is not None:
        return found
    lock_path = f"{keystore.path}.platform.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return find_platform_key(keystore) or keystore.create("sign", {LABEL: ROLE})
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def platform_signer(holder: Any) -> Callable[[bytes], dict[str, Any]]:
    """`signer(bytes) -> {"key_id", "version", "alg", "value"}` (SM2 DER, base64) with the
    platform key of `holder` (a Keystore or a CryptoService), for `AuditTrail(signer=...)`."""
    keystore = _keystore(holder)
    state: dict[str, str] = {}
    lock = threading.Lock()

    def sign(data: bytes) -> dict[str, Any]:
        with lock:
            if "id" not in state:
                state["id"] = platform_key(keystore).id
            try:
                key, version = keystore.private_key(state["id"], purpose="sign")
            except KeyStateError:  # disabled or destroyed since: find (or make) another
                state["id"] = platform_key(keystore).id
                key, version = keystore.private_key(state["id"], purpose="sign")
        return {"key_id": state["id"], "version": version, "alg": ALG,
                "value": base64.b64encode(key.sign(data)).decode()}

    return sign


def signer_from_config(cfg: Any) -> Callable[[bytes], dict[str, Any]] | None:
    """The platform signer of the configured keystore, or None without a master secret
    (nothing could be signed). Registered as entry point `govsoc.audit:signer`, which
    `soc_core.audit.AuditTrail.from_config` uses by default."""
    from crypto_svc.keystore import master_secret_from_env

    if master_secret_from_env(cfg) is None:
        return None
    return platform_signer(Keystore.from_config(cfg))


def platform_verifier(holder: Any) -> Callable[[bytes, dict[str, Any]], bool]:
    """`verifier(bytes, signature) -> bool` for `soc_core.audit.verify`: the signature must
    be by a version of a key labelled as the platform key."""
    keystore = _keystore(holder)

    def check(data: bytes, sig: dict[str, Any]) -> bool:
        try:
            info = keystore.info(str(sig["key_id"]))
            if info.labels.get(LABEL) != ROLE or sig.get("alg") != ALG:
                return False
            info.version(int(sig["version"])).public.check(
                data, base64.b64decode(str(sig["value"]), validate=True))
        except (CryptoError, InvalidSignature, KeyError, TypeError, ValueError):
            return False
        return True

    return check
