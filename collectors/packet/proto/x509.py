"""A server certificate's facts (subject, issuer, validity, self-signed, SHA-256) from its
DER bytes, as the TLS Certificate message carries them in clear up to TLS 1.2 and in
TLCP. TLS 1.3 encrypts the Certificate message: a passive sensor sees no certificate
there (Zeek and Suricata neither).

The ECS layout is `tls.server.x509.*` plus `tls.server.{subject,issuer,not_before,
not_after,hash.sha256}` (Filebeat's Zeek ssl/x509 datasets); whether the certificate
signed itself or is outside its validity at the connection's time is kept under
`govsoc.tls.server.*` and Zeek's `zeek.ssl.validation_status` wording."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

MAX_NAMES = 20  # subject alternative names kept a certificate
_FACTS: dict[str, dict[str, Any]] = {}  # by SHA-256: the same certificate recurs per connection


def _name(name: x509.Name) -> dict[str, Any]:
    out: dict[str, Any] = {"distinguished_name": name.rfc4514_string()}
    for key, oid in (("common_name", NameOID.COMMON_NAME),
                     ("organization", NameOID.ORGANIZATION_NAME),
                     ("organizational_unit", NameOID.ORGANIZATIONAL_UNIT_NAME),
                     ("country", NameOID.COUNTRY_NAME)):
        values = [str(a.value) for a in name.get_attributes_for_oid(oid)]
        if values:
            out[key] = values
    return out


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _self_signed(cert: x509.Certificate) -> bool:
    """Issuer equal to subject and, where the key type is one cryptography can check, the
    signature made by the certificate's own key (OpenSSL's "self signed certificate",
    the check Zeek's validation reports). SM2 keys are not checkable here: the names
    decide."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - unsupported key or signature type: names decide
        return True
    return True


def facts(der: bytes) -> dict[str, Any]:
    """What the events carry about one DER certificate; raises ValueError when the bytes
    are not a certificate (the engine counts an application error)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    got = _FACTS.get(digest)
    if got is not None:
        return got
    cert = x509.load_der_x509_certificate(der)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    xs: dict[str, Any] = {
        "subject": _name(cert.subject), "issuer": _name(cert.issuer),
        "not_before": _iso(not_before), "not_after": _iso(not_after),
        "serial_number": format(cert.serial_number, "X"),
        "version_number": str(cert.version.value + 1),
        "signature_algorithm": getattr(cert.signature_algorithm_oid, "_name", None)
        or cert.signature_algorithm_oid.dotted_string,
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)][:MAX_NAMES]
        if names:
            xs["alternative_names"] = names
    except (x509.ExtensionNotFound, ValueError):
        pass
    out = {"x509": xs, "sha256": digest, "self_signed": _self_signed(cert),
           "not_before_ts": not_before.timestamp(), "not_after_ts": not_after.timestamp()}
    if len(_FACTS) > 4096:
        _FACTS.clear()
    _FACTS[digest] = out
    return out


def validity(cert: dict[str, Any], ts: float) -> str | None:
    """Zeek's validation_status words for what is known without a trust store, at the
    connection's time `ts` (not now: an old capture's certificates are judged as they
    were then)."""
    if ts > cert["not_after_ts"]:
        return "certificate has expired"
    if ts < cert["not_before_ts"]:
        return "certificate is not yet valid"
    if cert["self_signed"]:
        return "self signed certificate"
    return None
