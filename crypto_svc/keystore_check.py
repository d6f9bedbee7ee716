"""The shape of a keystore file, checked whole when it is read: a file damaged on disk or
edited by hand is one clear KeystoreError naming the bad field, never a ValueError from
deep inside a key operation, and KDF parameters outside what govsoc writes (another KDF,
an iteration count that would stall every key use) are refused, not obeyed."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from crypto_svc.errors import KeystoreError

KDF_NAME = "pbkdf2-hmac-sm3"
# what govsoc writes: 200,000 by default, configurable for tests and small machines; ten
# times the default is the most a key use may cost (PBKDF2-SM3 runs ~1 s per million here)
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 2_000_000
_HEX = re.compile(r"(?:[0-9a-f]{2})+\Z")
_MAX_FIELD = 1 << 16  # characters in any one text field


def check_iterations(n: Any, where: str = "kdf iterations") -> int:
    if type(n) is not int or not MIN_ITERATIONS <= n <= MAX_ITERATIONS:
        raise KeystoreError(f"{where} must be a whole number from {MIN_ITERATIONS:,} to "
                            f"{MAX_ITERATIONS:,}, got {str(n)[:40]}")
    return n


def check_document(doc: Any, path: Any, formats: tuple[str, ...], purposes: tuple[str, ...],
                   states: tuple[str, ...]) -> None:
    """Raise KeystoreError unless `doc` is a keystore as govsoc writes it."""

    def bad(what: str) -> KeystoreError:
        return KeystoreError(f"keystore {path} is damaged: {what}")

    if not isinstance(doc, dict) or doc.get("format") not in formats:
        raise KeystoreError(f"{path} is not a govsoc keystore")
    kdf = doc.get("kdf")
    if kdf is not None:
        if not isinstance(kdf, dict):
            raise bad("kdf is not an object")
        if kdf.get("name") != KDF_NAME:
            raise KeystoreError(f"keystore {path} uses KDF {str(kdf.get('name'))[:40]!r}; "
                                f"govsoc only reads {KDF_NAME}")
        salt = kdf.get("salt")
        if not isinstance(salt, str) or not 32 <= len(salt) <= 128 or not _HEX.match(salt):
            raise bad("kdf salt is not 16-64 bytes of hex")
        check_iterations(kdf.get("iterations"), f"keystore {path}: kdf iterations")
        if not _b64(doc.get("check")):
            raise bad("check is not base64")
    keys = doc.get("keys")
    if not isinstance(keys, dict):
        raise bad("keys is not an object")
    for kid, entry in keys.items():
        shown = repr(str(kid)[:64])
        if not isinstance(entry, dict) or entry.get("id") != kid:
            raise bad(f"key {shown} is not a key entry")
        if entry.get("purpose") not in purposes or entry.get("state") not in states:
            raise bad(f"key {shown} has an unknown purpose or state")
        if not _text(entry.get("created")) or not (entry.get("rotated") is None
                                                  or _text(entry.get("rotated"))):
            raise bad(f"key {shown} has a bad time")
        labels = entry.get("labels", {})
        if not isinstance(labels, dict) or not all(
                _text(k) and _text(v) for k, v in labels.items()):
            raise bad(f"key {shown} has bad labels")
        versions = entry.get("versions")
        if not isinstance(versions, list) or not versions:
            raise bad(f"key {shown} has no versions")
        numbers = set()
        for v in versions:
            if not isinstance(v, dict) or type(v.get("version")) is not int \
                    or not 1 <= v["version"] <= 1_000_000:
                raise bad(f"key {shown} has a bad version number")
            if not _text(v.get("created")):
                raise bad(f"key {shown} version {v['version']} has a bad time")
            public = v.get("public")
            if not isinstance(public, str) or len(public) > 1024 or not _HEX.match(public):
                raise bad(f"key {shown} version {v['version']} public key is not hex")
            if "sealed" not in v or (v["sealed"] is not None and not _b64(v["sealed"])):
                raise bad(f"key {shown} version {v['version']} sealed key is not base64")
            numbers.add(v["version"])
        if type(entry.get("current")) is not int or entry["current"] not in numbers:
            raise bad(f"key {shown} current version is not one of its versions")


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= _MAX_FIELD


def _b64(value: Any) -> bool:
    if not _text(value):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
