"""ECS documents for FTP commands and logins, SMTP/POP3/IMAP and SMB logins, RDP connection
set-up (in the layout of Filebeat's Zeek module: zeek.ftp.*, zeek.rdp.*) and TLS
heartbeats, built the same way for both engines.

A login is an event of category authentication with `event.outcome`, so one rule shape
counts failed logins whatever the protocol. Passwords never enter an event: the PASS
argument is dropped here, the one place both engines build FTP events."""

from __future__ import annotations

from typing import Any

from collectors.packet.events import EventBuilder, _endpoints, event_id, iso_time
from collectors.packet.flows import Flow
from collectors.packet.proto import rdp as rdpp
from collectors.packet.proto import smb as smbp

MAX_TEXT = 200  # characters of a reply text or argument kept


def _doc(builder: EventBuilder, f: Flow, ts: float, proto: str, tag: str,
         event: dict[str, Any], user: dict[str, Any] | None = None,
         **fields: Any) -> dict[str, Any]:
    """What every event here shares: the flow's endpoints, the dataset `network.<proto>`,
    an id from the flow, `tag` (what tells two events of one flow apart) and the time, the
    user when one was named, `govsoc.capture` merged with `fields["govsoc"]`, then the
    other top-level `fields` (e.g. `zeek`)."""
    source, destination, network, key_text = _endpoints(f.key, proto)
    dataset = f"network.{proto}"
    event["dataset"] = dataset
    event["id"] = event_id(dataset, f"{builder.ident}|{key_text}|{tag}"
                                    f"{round(ts * 1_000_000)}")
    doc: dict[str, Any] = {"event": event, "source": source, "destination": destination,
                           "network": network}
    if user:
        doc["user"] = user
    doc["govsoc"] = {"capture": {"source": builder.source_name}, **fields.pop("govsoc", {})}
    doc.update(fields)
    doc["@timestamp"] = iso_time(ts)
    return doc


def ftp_event(builder: EventBuilder, f: Flow, ts: float, seq: int, cmd: str, arg: str,
              user: str | None, code: int, text: str) -> dict[str, Any]:
    ftp: dict[str, Any] = {"command": cmd, "reply": {"code": code, "msg": text[:MAX_TEXT]}}
    if arg and cmd != "PASS":
        ftp["arg"] = arg[:MAX_TEXT]
    login = cmd in ("USER", "PASS")
    if login:
        event: dict[str, Any] = {
            "kind": "event", "category": ["network", "authentication"],
            "type": ["protocol", "start"], "action": "ftp_login",
            # 2xx completes the login; any 4xx/5xx refuses it (RFC 959 4.2)
            "outcome": "success" if 200 <= code < 300 else "failure"}
    else:
        event = {"kind": "event", "category": ["network"], "type": ["protocol", "info"],
                 "action": "ftp_command",
                 "outcome": "success" if code < 400 else "failure"}
    return _doc(builder, f, ts, "ftp", f"{seq}|", event,
                {"name": user[:MAX_TEXT]} if user else None, zeek={"ftp": ftp})


def rdp_event(builder: EventBuilder, f: Flow, ts: float, request: dict,
              confirm: dict | None) -> dict[str, Any]:
    rdp: dict[str, Any] = {}
    cookie = request.get("cookie")
    if cookie:
        rdp["cookie"] = cookie[:MAX_TEXT]
    if request.get("requested") is not None:
        rdp["requested_protocols"] = rdpp.protocol_names(request["requested"])
    event: dict[str, Any] = {"kind": "event", "category": ["network"],
                             "type": ["protocol", "connection"], "action": "rdp_connect"}
    if confirm is None:
        rdp["result"] = "no confirm"
    elif confirm.get("failure") is not None:
        rdp["result"] = rdpp.FAILURES.get(confirm["failure"], f"failure {confirm['failure']}")
        event["outcome"] = "failure"
    else:
        rdp["security_protocol"] = rdpp.PROTOCOLS.get(confirm.get("selected") or 0,
                                                      str(confirm.get("selected")))
        rdp["result"] = "confirmed"
        event["outcome"] = "success"
    # the cookie names the account the client asks for
    return _doc(builder, f, ts, "rdp", "", event,
                {"name": cookie[:MAX_TEXT]} if cookie else None, zeek={"rdp": rdp})


def heartbeat_event(builder: EventBuilder, f: Flow, ts: float, kind: int, payload_length: int,
                    record_length: int, verdict: str, request_length: int | None
                    ) -> dict[str, Any]:
    hb: dict[str, Any] = {"type": "request" if kind == 1 else "response",
                          "payload_length": payload_length, "record_length": record_length,
                          "verdict": verdict}
    if request_length is not None:
        hb["request_length"] = request_length
    return _doc(builder, f, ts, "tls", f"hb|{kind}|",
                {"kind": "event", "category": ["network"], "type": ["protocol", "info"],
                 "action": "tls_heartbeat"}, govsoc={"tls": {"heartbeat": hb}})


def mail_event(builder: EventBuilder, f: Flow, ts: float, proto: str, seq: int, verb: str,
               user: str | None, status: str, outcome: str) -> dict[str, Any]:
    """One SMTP AUTH / POP3 USER-PASS-APOP-AUTH / IMAP LOGIN-AUTHENTICATE and its final
    reply (`govsoc.mail.*`: Filebeat's Zeek module has no POP3/IMAP log to follow)."""
    return _doc(builder, f, ts, proto, f"{seq}|",
                {"kind": "event", "category": ["network", "authentication"],
                 "type": ["protocol", "start"], "action": f"{proto}_login",
                 "outcome": outcome},
                {"name": user[:MAX_TEXT]} if user else None,
                govsoc={"mail": {"command": verb, "reply": status}})


def smb_event(builder: EventBuilder, f: Flow, ts: float, seq: int, state: dict,
              status: int) -> dict[str, Any]:
    """One SMB2 session set-up and its final status (the NTLM account when one was sent)."""
    smb: dict[str, Any] = {"status": smbp.status_name(status)}
    if state.get("dialect") is not None:
        smb["dialect"] = smbp.dialect_name(state["dialect"])
    user = None
    if state.get("user"):
        user = {"name": state["user"][:MAX_TEXT]}
        if state.get("domain"):
            user["domain"] = state["domain"][:MAX_TEXT]
    return _doc(builder, f, ts, "smb", f"{seq}|",
                {"kind": "event", "category": ["network", "authentication"],
                 "type": ["protocol", "start"], "action": "smb_login",
                 "outcome": "success" if status == 0 else "failure"},
                user, govsoc={"smb": smb})
