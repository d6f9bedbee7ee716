"""Errors of the crypto service. Every message is safe to show a user: it names the key id,
the operation and what was wrong, never key material or the input."""

from __future__ import annotations

from soc_core.audit import AuditUnavailable as _TrailUnavailable


class CryptoError(ValueError):
    """Bad input the caller can fix: a malformed key, signature or ciphertext, an unknown
    format. Shown as one line (CLI exit 2, HTTP 400)."""


class DecryptionError(CryptoError):
    """A ciphertext that is malformed, tampered with, or not made for this key. One message
    for all three so the error is no oracle."""

    def __init__(self, message: str = "decryption failed: the ciphertext is malformed, "
                 "was altered, or was not made for this key") -> None:
        super().__init__(message)


class KeystoreError(CryptoError):
    """The keystore cannot do what was asked (no master secret, wrong master secret,
    unreadable file)."""


class KeyNotFound(KeystoreError):
    """No key with that id (HTTP 404)."""


class KeyStateError(KeystoreError):
    """The key exists but its state or purpose forbids the operation (HTTP 409)."""


class AuditUnavailable(KeystoreError, _TrailUnavailable):
    """The audit trail cannot keep records (its spool is full while the event store is
    down, or the disk fails): key use is refused until it recovers, since every use must
    be recorded (HTTP 503). Also a `soc_core.audit.AuditUnavailable`."""
