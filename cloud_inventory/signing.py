"""Detached SM2 signatures of report files, by the platform key (crypto_svc's
`govsoc.role = audit-checkpoint` key, the one that signs the audit trail's checkpoints).

A signature file `<report>.sig` holds the bare DER `SEQUENCE { r, s }` of SM2 with SM3 over
the file's bytes with the default distinguishing ID `1234567812345678` (GM/T 0009), so an
auditor checks it with the OpenSSL 3 command line alone (the ID must be given: OpenSSL 3.0
uses an empty ID when none is):

    openssl dgst -sm3 -sigopt distid:1234567812345678 \\
        -verify platform-sm2.pub.pem -signature report.pdf.sig report.pdf

`platform-sm2.pub.pem` is written beside the reports (`export_public_key`); its SM3
fingerprint (over the DER SubjectPublicKeyInfo) is printed in every report's footer and by
`govsoc report verify`, so the key itself can be checked against the one the platform shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_svc import CryptoError, Keystore, SM2PublicKey, platform_key, sm3_digest
from crypto_svc.platform import LABEL, ROLE

DISTID = "1234567812345678"
PUBLIC_KEY_FILE = "platform-sm2.pub.pem"
SIG_SUFFIX = ".sig"


class SignatureError(ValueError):
    """A signature that cannot be made or checked (no key, unreadable file)."""


@dataclass(frozen=True)
class Signed:
    key_id: str
    version: int
    fingerprint: str  # SM3 of the public key's DER, hex
    sm3: str  # SM3 of the signed file, hex
    signature: bytes  # DER


def fingerprint(public: SM2PublicKey) -> str:
    return sm3_digest(public.to_der()).hex()


def signing_key(keystore: Keystore) -> tuple[Any, int, SM2PublicKey, str]:
    """(private key, version, public key, key id) of the platform key, made when none
    exists. Needs the master secret."""
    info = platform_key(keystore)
    key, version = keystore.private_key(info.id, purpose="sign")
    return key, version, key.public_key, info.id


def current_public_key(keystore: Keystore) -> tuple[SM2PublicKey, str, int]:
    info = platform_key(keystore)
    return info.version().public, info.id, info.current


def sign_bytes(data: bytes, keystore: Keystore) -> Signed:
    key, version, public, key_id = signing_key(keystore)
    return Signed(key_id, version, fingerprint(public), sm3_digest(data).hex(),
                  key.sign(data))


def sign_file(path: str | os.PathLike[str], keystore: Keystore) -> Signed:
    """Sign `path`; the signature goes to `path.sig` (DER). Returns what was signed."""
    p = Path(path)
    signed = sign_bytes(p.read_bytes(), keystore)
    _write(p.with_name(p.name + SIG_SUFFIX), signed.signature)
    return signed


def export_public_key(keystore: Keystore, folder: str | os.PathLike[str]) -> Path:
    """Write the platform public key (PEM) into `folder` for auditors; returns its path."""
    public, _, _ = current_public_key(keystore)
    out = Path(folder) / PUBLIC_KEY_FILE
    _write(out, public.to_pem().encode())
    return out


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Verified:
    ok: bool
    fingerprint: str | None = None
    key_id: str | None = None  # None when checked against a given public key
    version: int | None = None
    sm3: str | None = None


def platform_public_keys(keystore: Keystore) -> list[tuple[str, int, SM2PublicKey]]:
    """Every version of every key labelled as the platform key (older versions still
    verify what they signed before a rotation). Readable without the master secret."""
    out = []
    for info in keystore.list():
        if info.labels.get(LABEL) == ROLE and info.purpose == "sign":
            out.extend((info.id, v.version, v.public) for v in info.versions)
    return out


def verify_bytes(data: bytes, signature: bytes, *,
                 candidates: list[tuple[str | None, int | None, SM2PublicKey]]) -> Verified:
    digest = sm3_digest(data).hex()
    for key_id, version, public in candidates:
        try:
            ok = public.verify(data, signature)
        except CryptoError:  # not even a DER signature: it verifies with no key
            return Verified(False, sm3=digest)
        if ok:
            return Verified(True, fingerprint(public), key_id, version, digest)
    return Verified(False, sm3=digest)


def verify_file(path: str | os.PathLike[str], sig_path: str | os.PathLike[str], *,
                keystore: Keystore | None = None,
                public_pem: bytes | str | None = None) -> Verified:
    """Check `sig_path` (DER) over `path` with the given public key (PEM), else with the
    platform keys of `keystore`. SignatureError when a file or the key cannot be read."""
    try:
        data = Path(path).read_bytes()
        signature = Path(sig_path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if public_pem is not None:
        try:
            candidates = [(None, None, SM2PublicKey.from_pem(public_pem))]
        except (CryptoError, ValueError, TypeError) as exc:
            raise SignatureError(f"not an SM2 public key (PEM): {exc}") from None
    elif keystore is not None:
        candidates = platform_public_keys(keystore)
        if not candidates:
            raise SignatureError("the keystore holds no platform key: nothing was signed "
                                 "with it (give --pubkey)")
    else:
        raise SignatureError("no public key to check against")
    return verify_bytes(data, signature, candidates=candidates)
