"""Kerberos 5 (RFC 4120) AS/TGS requests, replies and errors on port 88: the client and
service principals, the realm and the error code, as Zeek's kerberos.log keeps them.
Over TCP a message carries a 4-byte length in front (RFC 4120 7.2.2)."""

from __future__ import annotations

from typing import Any

from collectors.packet.proto import asn1

PORTS = frozenset({88})
# APPLICATION tags of the messages read: AS-REQ 10, AS-REP 11, TGS-REQ 12, TGS-REP 13,
# KRB-ERROR 30
MESSAGES = {0x6A: ("AS", "request"), 0x6B: ("AS", "reply"), 0x6C: ("TGS", "request"),
            0x6D: ("TGS", "reply"), 0x7E: (None, "error")}
ERRORS = {
    0: "KDC_ERR_NONE", 1: "KDC_ERR_NAME_EXP", 2: "KDC_ERR_SERVICE_EXP",
    3: "KDC_ERR_BAD_PVNO", 6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN", 12: "KDC_ERR_POLICY", 14: "KDC_ERR_ETYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED", 23: "KDC_ERR_KEY_EXPIRED", 24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED", 31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED", 37: "KRB_AP_ERR_SKEW", 41: "KRB_AP_ERR_MODIFIED",
    52: "KRB_ERR_RESPONSE_TOO_BIG", 60: "KRB_ERR_GENERIC", 68: "KDC_ERR_WRONG_REALM",
}
# errors that refuse the account's credentials or the account itself: a failed login.
# PREAUTH_REQUIRED (25) is the KDC's normal first answer, RESPONSE_TOO_BIG (52) asks the
# client to retry over TCP: neither is an outcome.
REFUSALS = frozenset({6, 12, 18, 23, 24})
NOT_OUTCOMES = frozenset({25, 52})


def error_name(code: int) -> str:
    return ERRORS.get(code) or f"KRB_ERROR_{code}"


def _principal(data: bytes, s: int, e: int) -> str:
    """PrincipalName ::= SEQUENCE { name-type [0], name-string [1] SEQUENCE OF
    KerberosString } -> the components joined with '/'."""
    _tag, ps, pe = asn1.tlv(data, s, e)
    f = asn1.fields(data, ps, pe)
    if 1 not in f:
        return ""
    _tag, ls, le = asn1.tlv(data, *f[1])
    return "/".join(data[a:b].decode("utf-8", "backslashreplace")
                    for _t, a, b in asn1.children(data, ls, le))


def parse(data: bytes, tcp: bool = False) -> dict[str, Any] | None:
    """One Kerberos message -> {kind AS|TGS|None, type request|reply|error, client,
    realm, service, error_code}; None when the bytes are not one."""
    if tcp:
        if len(data) < 6 or data[0] & 0x80:
            return None
        data = data[4:]
    if not data or data[0] not in MESSAGES:
        return None
    kind, mtype = MESSAGES[data[0]]
    _tag, s, e = asn1.tlv(data, 0, len(data), partial=True)
    _tag, s, e = asn1.tlv(data, s, e, partial=True)  # the SEQUENCE in the application tag
    f = asn1.fields(data, s, e)
    msg: dict[str, Any] = {"kind": kind, "type": mtype, "client": None, "realm": None,
                           "service": None, "error_code": None}
    if mtype == "request":
        if 4 not in f:
            raise ValueError("kerberos request without a body")
        _tag, bs, be = asn1.tlv(data, *f[4])
        body = asn1.fields(data, bs, be)
        if 1 in body:
            msg["client"] = _principal(data, *body[1])
        if 2 in body:
            msg["realm"] = asn1.string(data, *body[2])
        if 3 in body:
            msg["service"] = _principal(data, *body[3])
    elif mtype == "reply":
        if 4 in f:
            msg["client"] = _principal(data, *f[4])
        if 3 in f:
            msg["realm"] = asn1.string(data, *f[3])
    else:
        if 6 not in f:
            raise ValueError("kerberos error without a code")
        msg["error_code"] = asn1.integer(data, *f[6])
        if 8 in f:
            msg["client"] = _principal(data, *f[8])
        if 9 in f:
            msg["realm"] = asn1.string(data, *f[9])
        if 10 in f:
            msg["service"] = _principal(data, *f[10])
    return msg
