"""ECS documents for Kerberos exchanges and LDAP binds, in the layout of Filebeat's Zeek
module (zeek.kerberos.*: request_type, client, service, success, error.code/msg;
zeek.ldap.*: message_id, opcode, result, object, argument), built the same way for both
engines. A refused Kerberos pre-authentication (KDC_ERR_PREAUTH_FAILED) or LDAP bind
(invalidCredentials) is a failed login: category authentication, outcome failure. An
LDAP simple bind's password never enters an event: Zeek's own "REDACTED" stands in its
place and `govsoc.ldap.plaintext_password` says one crossed the network."""

from __future__ import annotations

from typing import Any

from collectors.packet.events import EventBuilder
from collectors.packet.events_login import _doc
from collectors.packet.flows import Flow
from collectors.packet.proto import kerberos as krbp
from collectors.packet.proto import ldap as ldapp


def kerberos_event(builder: EventBuilder, f: Flow, ts: float, seq: int,
                   req: dict[str, Any] | None, rep: dict[str, Any] | None) -> dict[str, Any]:
    msg = req or rep
    assert msg is not None
    kind = (req or {}).get("kind") or (rep or {}).get("kind")
    client = (req or {}).get("client") or (rep or {}).get("client")
    realm = (req or {}).get("realm") or (rep or {}).get("realm")
    service = (req or {}).get("service") or (rep or {}).get("service")
    krb: dict[str, Any] = {}
    if kind:
        krb["request_type"] = kind
    if client:
        krb["client"] = f"{client}/{realm}" if realm else client
    if service:
        krb["service"] = service
    event: dict[str, Any] = {"kind": "event", "category": ["network"],
                             "type": ["protocol", "info"],
                             "action": f"kerberos_{(kind or 'unknown').lower()}"}
    if kind == "AS":
        event["category"] = ["network", "authentication"]
        event["type"] = ["protocol", "start"]
    if rep is not None:
        code = rep["error_code"]
        if code is None:
            krb["success"] = True
            event["outcome"] = "success"
        else:
            krb["success"] = False
            krb["error"] = {"code": code, "msg": krbp.error_name(code)}
            if code not in krbp.NOT_OUTCOMES:
                event["outcome"] = "failure"
    user = None
    if client:
        user = {"name": client.split("/")[0]}
        if realm:
            user["domain"] = realm
    return _doc(builder, f, ts, "kerberos", f"{seq}|", event, user, zeek={"kerberos": krb})


def ldap_event(builder: EventBuilder, f: Flow, ts: float, req: dict[str, Any],
               result: int | None) -> dict[str, Any]:
    method = req["method"]
    ldap: dict[str, Any] = {"message_id": req["id"],
                            "opcode": "bind simple" if method == "simple" else "bind SASL",
                            "object": req["name"]}
    if req["password_sent"]:
        ldap["argument"] = "REDACTED"
    g: dict[str, Any] = {"method": method}
    if req.get("mechanism"):
        g["mechanism"] = req["mechanism"]
    if req["password_sent"]:
        g["plaintext_password"] = True
    event: dict[str, Any] = {"kind": "event", "category": ["network", "authentication"],
                             "type": ["protocol", "start"], "action": "ldap_bind"}
    if result is not None:
        ldap["result"] = ldapp.result_name(result)
        event["outcome"] = "success" if result == 0 else "failure"
    user = {"name": req["name"]} if req["name"] else None
    return _doc(builder, f, ts, "ldap", f"{req['id']}|", event, user,
                govsoc={"ldap": g}, zeek={"ldap": ldap})
