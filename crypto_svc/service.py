"""The crypto service: keystore-backed SM2 operations with an audit record for every use of
a key. The CLI and the HTTP router are thin layers over this class; both pass the caller's
identity as `user` (a name, or a `soc_core.audit.Actor` that adds role, department, source
address and request id), which becomes `user.name` in the audit records.

Every record is on disk in the audit trail (`soc_core.audit.AuditTrail`) before the
signature, ciphertext or plaintext is returned; when the trail cannot keep records, key use
is refused (AuditUnavailable, HTTP 503).

Private keys never leave this object: there is no method that returns private material.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from crypto_svc import sm3 as _sm3
from crypto_svc import sm4
from crypto_svc.audit import key_record
from crypto_svc.errors import AuditUnavailable, CryptoError, DecryptionError, KeyStateError
from crypto_svc.keystore import KeyInfo, Keystore
from crypto_svc.platform import platform_signer
from crypto_svc.sm2 import DEFAULT_ID, InvalidSignature, SM2PublicKey
from soc_core import audit as trail_mod
from soc_core.audit import AuditTrail

T = TypeVar("T")
LOCAL_USER = "local"
ENVELOPE_MAGIC = b"GSE1"


@dataclass
class Signed:
    key_id: str
    version: int
    signature: bytes


@dataclass
class Verdict:
    valid: bool
    key_id: str | None
    version: int | None
    reason: str | None = None


class CryptoService:
    """`audit` is the trail the records go to; without one, the service opens its own
    (name "crypto", in `<keystore dir>/audit`, draining to `store`, checkpoints signed by
    the platform key) and closes it in `close()`."""

    def __init__(self, keystore: Keystore, store: Any = None, *,
                 audit: AuditTrail | None = None) -> None:
        self.keystore = keystore
        self._own_audit = audit is None
        self.audit = audit or AuditTrail(Path(keystore.path).parent / "audit", store,
                                         name="crypto", signer=platform_signer(keystore))

    @classmethod
    def from_config(cls, cfg: Any = None, store: Any = None, *, name: str = "crypto",
                    trail: AuditTrail | None = None) -> CryptoService:
        """The keystore from the configuration, and `trail` (the caller's: the API shares
        its own, and closes it) or else a trail of its own from the configuration
        (`AuditTrail.from_config`, checkpoints signed by the platform key) draining to
        `store` (an EventStore or URL; default `store_url`)."""
        if cfg is None:
            from soc_core.config import load_config

            cfg = load_config()
        keystore = Keystore.from_config(cfg)
        if trail is not None:
            return cls(keystore, audit=trail)
        own = AuditTrail.from_config(cfg, name=name, store=store,
                                     signer=platform_signer(keystore))
        svc = cls(keystore, audit=own)
        svc._own_audit = True
        return svc

    def close(self) -> None:
        if self._own_audit:
            self.audit.close()

    def __enter__(self) -> CryptoService:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auditing ------------------------------------------------------------------------
    def _check(self) -> None:
        try:
            self.audit.check()  # no key use that cannot be recorded
        except trail_mod.AuditUnavailable as exc:
            raise AuditUnavailable(str(exc)) from None

    def _record(self, entries: list[dict[str, Any]]) -> None:
        """On disk before the caller sees a result; if it cannot be kept, the result is
        withheld (fail closed)."""
        try:
            self.audit.record_many(entries)
        except trail_mod.AuditUnavailable as exc:
            raise AuditUnavailable(str(exc)) from None

    def _run(self, action: str, user: str, key_id: str | None, data: bytes | None,
             fn: Callable[[], tuple[T, dict[str, Any]]], *,
             digest_of_input: str | None = None, size: int | None = None) -> T:
        """Run `fn` (-> result, facts for the record: version, purpose, and optionally
        key_id, outcome, reason) and record one audit record, also when it fails."""
        self._check()
        name, context = _actor(user)
        if data is not None:
            digest_of_input, size = _sm3.sm3_hex(data), len(data)
        try:
            result, facts = fn()
        except CryptoError as exc:
            self._record([key_record(action=action, outcome="failure", user=name,
                                     key_id=key_id, input_sm3=digest_of_input,
                                     input_bytes=size, reason=str(exc), **context)])
            raise
        facts = {"key_id": key_id, "outcome": "success", "input_sm3": digest_of_input,
                 "input_bytes": size, **facts}
        self._record([key_record(action=action, user=name, **facts, **context)])
        return result

    # -- key administration --------------------------------------------------------------
    def create_key(self, purpose: str, labels: dict[str, str] | None = None, *,
                   user: str = LOCAL_USER) -> KeyInfo:
        def go() -> tuple[KeyInfo, dict[str, Any]]:
            info = self.keystore.create(purpose, labels)
            return info, _facts(info.current, info.purpose, key_id=info.id)

        return self._run("keygen", user, None, None, go)

    def list_keys(self) -> list[KeyInfo]:
        return self.keystore.list()

    def key_info(self, key_id: str) -> KeyInfo:
        return self.keystore.info(key_id)

    def _admin(self, action: str, key_id: str, user: str,
               op: Callable[[str], KeyInfo]) -> KeyInfo:
        def go() -> tuple[KeyInfo, dict[str, Any]]:
            info = op(key_id)
            return info, _facts(info.current, info.purpose)

        return self._run(action, user, key_id, None, go)

    def rotate_key(self, key_id: str, *, user: str = LOCAL_USER) -> KeyInfo:
        return self._admin("rotate", key_id, user, self.keystore.rotate)

    def disable_key(self, key_id: str, *, user: str = LOCAL_USER) -> KeyInfo:
        return self._admin("disable", key_id, user, self.keystore.disable)

    def enable_key(self, key_id: str, *, user: str = LOCAL_USER) -> KeyInfo:
        return self._admin("enable", key_id, user, self.keystore.enable)

    def destroy_key(self, key_id: str, *, user: str = LOCAL_USER) -> KeyInfo:
        return self._admin("destroy", key_id, user, self.keystore.destroy)

    def public_pem(self, key_id: str, version: int | None = None) -> str:
        pub, _ = self.keystore.public_key(key_id, version)
        return pub.to_pem()

    # -- signatures ----------------------------------------------------------------------
    def sign(self, key_id: str, data: bytes, *, uid: bytes = DEFAULT_ID, fmt: str = "der",
             prehashed: bool = False, user: str = LOCAL_USER) -> Signed:
        """Sign `data` (or, with `prehashed`, the 32-byte e = SM3(Z_A || M) for large
        files) with the current version of `key_id`."""
        def go() -> tuple[Signed, dict[str, Any]]:
            key, version = self.keystore.private_key(key_id, purpose="sign")
            sig = (key.sign_digest(data, fmt=fmt) if prehashed
                   else key.sign(data, uid=uid, fmt=fmt))
            return Signed(key_id, version, sig), _facts(version, "sign")

        return self._run("sign_digest" if prehashed else "sign", user, key_id, data, go)

    def sign_many(self, key_id: str, items: Iterable[bytes], *, uid: bytes = DEFAULT_ID,
                  fmt: str = "der", user: str = LOCAL_USER) -> list[Signed]:
        """Batch signing: one keystore look-up for the batch, one audit record per
        signature (each with its own input digest), all written to disk in one append
        before any signature is returned."""
        items = list(items)
        self._check()
        name, context = _actor(user)
        try:
            key, version = self.keystore.private_key(key_id, purpose="sign")
            z = key.public_key.za(uid)
        except CryptoError as exc:
            self._record([key_record(action="sign", outcome="failure", user=name,
                                     key_id=key_id, reason=str(exc),
                                     extra={"batch": len(items)}, **context)])
            raise
        out, records = [], []
        for item in items:
            sig = key.sign_digest(_sm3.sm3(z + item), fmt=fmt)
            records.append(key_record(action="sign", outcome="success", user=name,
                                      key_id=key_id, version=version, purpose="sign",
                                      input_sm3=_sm3.sm3_hex(item), input_bytes=len(item),
                                      **context))
            out.append(Signed(key_id, version, sig))
        self._record(records)
        return out

    def sign_stream(self, key_id: str, stream: BinaryIO, *, uid: bytes = DEFAULT_ID,
                    fmt: str = "der", user: str = LOCAL_USER) -> Signed:
        """Sign a large input in one pass, never holding it in memory: e = SM3(Z_A || M)
        and the audit digest SM3(M) are computed side by side."""
        facts: dict[str, Any] = {}

        def go() -> tuple[Signed, dict[str, Any]]:
            key, version = self.keystore.private_key(key_id, purpose="sign")
            e_hash, plain, size = _sm3.new(), _sm3.new(), 0
            e_hash.update(key.public_key.za(uid))
            while chunk := stream.read(1 << 20):
                e_hash.update(chunk)
                plain.update(chunk)
                size += len(chunk)
            facts.update(input_sm3=plain.finalize().hex(), input_bytes=size)
            sig = key.sign_digest(e_hash.finalize(), fmt=fmt)
            return Signed(key_id, version, sig), {**_facts(version, "sign"), **facts}

        return self._run("sign", user, key_id, None, go)

    def verify(self, key_id: str, data: bytes, signature: bytes, *,
               version: int | None = None, uid: bytes = DEFAULT_ID, fmt: str = "der",
               prehashed: bool = False, user: str = LOCAL_USER) -> Verdict:
        """Verify against the named version, or else every remaining version (newest
        first): a signature made before a rotation still verifies."""
        def go() -> tuple[Verdict, dict[str, Any]]:
            info = self.keystore.info(key_id)
            if info.state == "destroyed":
                raise KeyStateError(f"key {key_id} is destroyed")
            if info.purpose != "sign":
                raise KeyStateError(f"key {key_id} is for {info.purpose}, not sign")
            candidates = ([info.version(version)] if version is not None
                          else sorted(info.versions, key=lambda v: -v.version))
            reason = "no usable key version"
            for v in candidates:
                try:
                    if prehashed:
                        v.public.check_digest(data, signature, fmt=fmt)
                    else:
                        v.public.check(data, signature, uid=uid, fmt=fmt)
                    return Verdict(True, key_id, v.version), _facts(v.version, "sign")
                except InvalidSignature as exc:
                    reason = str(exc)
            return (Verdict(False, key_id, version, reason),
                    _facts(version, "sign", outcome="failure", reason=reason))

        return self._run("verify", user, key_id, data, go)

    @staticmethod
    def verify_with_public(pub: SM2PublicKey, data: bytes, signature: bytes, *,
                           uid: bytes = DEFAULT_ID, fmt: str = "der") -> Verdict:
        """Verification with a caller-supplied public key: no keystore, no key use."""
        try:
            pub.check(data, signature, uid=uid, fmt=fmt)
        except InvalidSignature as exc:
            return Verdict(False, None, None, str(exc))
        return Verdict(True, None, None)

    # -- encryption ----------------------------------------------------------------------
    def _current_public(self, key_id: str) -> tuple[SM2PublicKey, int]:
        info = self.keystore.info(key_id)
        if info.state != "active":
            raise KeyStateError(f"key {key_id} is {info.state}")
        if info.purpose != "encrypt":
            raise KeyStateError(f"key {key_id} is for {info.purpose}, not encrypt")
        v = info.version()
        return v.public, v.version

    def _decrypt_any(self, key_id: str, ciphertext: bytes, fmt: str,
                     version: int | None) -> tuple[bytes, int]:
        """Decrypt with the named version, or else each remaining version newest first
        (C3 tells the right one)."""
        info = self.keystore.info(key_id)
        if info.state != "active":
            raise KeyStateError(f"key {key_id} is {info.state}")
        if info.purpose != "encrypt":
            raise KeyStateError(f"key {key_id} is for {info.purpose}, not encrypt")
        numbers = ([version] if version is not None
                   else [v.version for v in sorted(info.versions, key=lambda v: -v.version)
                         if not v.destroyed])
        for number in numbers:
            key, _ = self.keystore.private_key(key_id, number, purpose="encrypt")
            try:
                return key.decrypt(ciphertext, fmt=fmt), number
            except DecryptionError:
                continue
        raise DecryptionError()

    def encrypt(self, key_id: str, plaintext: bytes, *, fmt: str = "der",
                user: str = LOCAL_USER) -> tuple[bytes, int]:
        def go() -> tuple[tuple[bytes, int], dict[str, Any]]:
            pub, version = self._current_public(key_id)
            return (pub.encrypt(plaintext, fmt=fmt), version), _facts(version, "encrypt")

        return self._run("encrypt", user, key_id, plaintext, go)

    def decrypt(self, key_id: str, ciphertext: bytes, *, fmt: str = "der",
                version: int | None = None, user: str = LOCAL_USER) -> tuple[bytes, int]:
        def go() -> tuple[tuple[bytes, int], dict[str, Any]]:
            plaintext, number = self._decrypt_any(key_id, ciphertext, fmt, version)
            return (plaintext, number), _facts(number, "encrypt")

        return self._run("decrypt", user, key_id, ciphertext, go)

    # -- envelope encryption (data of any size) --------------------------------------------
    def seal(self, key_id: str, data: bytes, *, aad: bytes = b"",
             user: str = LOCAL_USER) -> bytes:
        """Encrypt data of any size (backups, reports): a fresh SM4 key encrypts the data
        with SM4-GCM and is itself wrapped with SM2 under `key_id` (purpose encrypt).

        Format: b"GSE1" || len(wrapped) (2 bytes) || wrapped (GM/T 0009 DER) ||
        nonce(12) || ciphertext || tag(16); the header and wrapped key are authenticated
        as associated data with the caller's `aad`. The audit event carries the digest of
        the data, never anything about the data key."""
        def go() -> tuple[bytes, dict[str, Any]]:
            pub, version = self._current_public(key_id)
            dek = sm4.generate_key()
            wrapped = pub.encrypt(dek)
            header = ENVELOPE_MAGIC + len(wrapped).to_bytes(2, "big") + wrapped
            return header + sm4.seal(dek, data, aad=header + aad), _facts(version, "encrypt")

        return self._run("seal", user, key_id, data, go)

    def unseal(self, key_id: str, blob: bytes, *, aad: bytes = b"",
               user: str = LOCAL_USER) -> bytes:
        def go() -> tuple[bytes, dict[str, Any]]:
            if len(blob) < 6 or blob[:4] != ENVELOPE_MAGIC:
                raise DecryptionError("decryption failed: not a govsoc envelope (GSE1)")
            n = int.from_bytes(blob[4:6], "big")
            header, body = blob[:6 + n], blob[6 + n:]
            if len(header) != 6 + n:
                raise DecryptionError()
            dek, version = self._decrypt_any(key_id, header[6:], "der", None)
            return sm4.open_sealed(dek, body, aad=header + aad), _facts(version, "encrypt")

        return self._run("unseal", user, key_id, blob, go)

    # -- keyless helpers -----------------------------------------------------------------
    @staticmethod
    def hash(data: bytes) -> str:
        return _sm3.sm3_hex(data)

    @staticmethod
    def hmac(key: bytes, data: bytes) -> str:
        if not key:
            raise CryptoError("HMAC-SM3 needs a non-empty key")
        return _sm3.hmac_sm3(key, data).hex()


def _actor(user: Any) -> tuple[str, dict[str, Any]]:
    """`user` is a name, or an `Actor` (or any object with `.name` and `audit_context()`)
    whose role, department, source address and request id go into the record too."""
    if isinstance(user, str):
        return user, {}
    context = getattr(user, "audit_context", None)
    return str(user.name), dict(context()) if callable(context) else {}


def _facts(version: int | None, purpose: str, **more: Any) -> dict[str, Any]:
    return {"version": version, "purpose": purpose, **more}
