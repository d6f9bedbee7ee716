"""LDAP (RFC 4511) binds on port 389: the bind's name and method and the server's result
code. A simple bind carries its password in clear; the parser reports only whether one
was there (`password_sent`), never the password itself."""

from __future__ import annotations

from typing import Any

from collectors.packet.proto import asn1

PORTS = frozenset({389, 3268})  # LDAP and the Global Catalog; LDAPS (636) is encrypted
BIND_REQUEST, BIND_RESPONSE = 0x60, 0x61  # [APPLICATION 0] / [APPLICATION 1], constructed
SASL_IN_PROGRESS = 14  # a SASL bind's intermediate step: not an outcome
RESULTS = {0: "success", 1: "operationsError", 2: "protocolError", 7: "authMethodNotSupported",
           8: "strongerAuthRequired", 14: "saslBindInProgress", 32: "noSuchObject",
           34: "invalidDNSyntax", 48: "inappropriateAuthentication",
           49: "invalidCredentials", 50: "insufficientAccessRights", 51: "busy",
           52: "unavailable", 53: "unwillingToPerform"}


def result_name(code: int) -> str:
    return RESULTS.get(code) or str(code)


def parse(data: bytes) -> dict[str, Any] | None:
    """The first LDAPMessage of a segment when it is a bind request or response ->
    {id, op bind_request|bind_response, name, method simple|sasl, mechanism,
    password_sent, result}; None for any other message."""
    if len(data) < 7 or data[0] != 0x30:
        return None
    _tag, s, e = asn1.tlv(data, 0, len(data))
    tag, is_, ie = asn1.tlv(data, s, e)
    if tag != 0x02:
        return None
    ident = int.from_bytes(data[is_:ie], "big")
    op, os_, oe = asn1.tlv(data, ie, e)
    if op == BIND_REQUEST:
        parts = list(asn1.children(data, os_, oe))
        if len(parts) < 3:
            raise ValueError("ldap bind request truncated")
        _t, ns, ne = parts[1]
        atag, as_, ae = parts[2]
        msg: dict[str, Any] = {"id": ident, "op": "bind_request",
                               "name": data[ns:ne].decode("utf-8", "backslashreplace")}
        if atag == 0x80:  # simple [0]: the password; only its presence is kept
            msg.update(method="simple", mechanism=None, password_sent=ae > as_)
        else:  # sasl [3] SaslCredentials { mechanism, credentials }
            mech = next(asn1.children(data, as_, ae), None)
            msg.update(method="sasl", password_sent=False,
                       mechanism=data[mech[1]:mech[2]].decode("ascii", "backslashreplace")
                       if mech else None)
        return msg
    if op == BIND_RESPONSE:
        return {"id": ident, "op": "bind_response", "result": asn1.integer(data, os_, oe)}
    return None
