"""The tshark engine: Wireshark's dissectors (`tshark -T fields`) as the reference and
for deep dissection. tshark decodes every layer; the same flow table, DNS/HTTP/TLS
pairing and event builders as the fast engine turn its fields into events, so the two
engines' output can be compared field by field (tests/collectors/packet/
test_differential.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

from collectors.packet.decode import ARP, FRAGMENT, ICMP6_PAIR, ICMP_PAIR, NON_IP
from collectors.packet.pcapfile import CaptureFile
from collectors.packet.proto import http as httpp
from collectors.packet.proto import kerberos as krbp
from collectors.packet.proto import ldap as ldapp
from collectors.packet.proto import mail as mailp
from collectors.packet.proto import rdp as rdpp
from collectors.packet.proto import tls as tlsp
from collectors.packet.session import Session
from collectors.packet.stats import CaptureError

AGG = "\x1f"  # between occurrences of one field; never inside a value tshark prints
FIELDS = [
    "frame.time_epoch", "frame.cap_len", "vlan.id", "arp.opcode", "_ws.malformed",
    "ip.src", "ip.dst", "ip.proto", "ip.len", "ip.frag_offset",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.len",
    "udp.srcport", "udp.dstport", "udp.length",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
    "dns.id", "dns.flags.response", "dns.flags.opcode", "dns.flags.rcode",
    "dns.flags.authoritative", "dns.flags.truncated", "dns.flags.recdesired",
    "dns.flags.recavail", "dns.flags.authenticated", "dns.flags.checkdisable",
    "dns.qry.name", "dns.qry.type", "dns.qry.class",
    "dns.resp.name", "dns.resp.type", "dns.resp.class", "dns.resp.ttl",
    "dns.a", "dns.aaaa", "dns.cname", "dns.ns", "dns.ptr.domain_name",
    "dns.mx.mail_exchange", "dns.txt",
    "http.request.method", "http.request.uri", "http.request.version", "http.host",
    "http.user_agent", "http.referer", "http.response.code", "http.response.version",
    "http.content_length_header", "http.content_type", "http.response.phrase",
    "http.response.line", "http.transfer_encoding",
    "tls.record.version", "tls.handshake.type", "tls.handshake.version",
    "tls.handshake.ciphersuite", "tls.handshake.extensions_server_name",
    "tls.handshake.ja3", "tls.handshake.ja3_full",
    "tls.handshake.extensions.supported_version", "tls.handshake.extensions_alpn_str",
    "ssh.protocol",
    "ftp.request.command", "ftp.request.arg", "ftp.response.code", "ftp.response.arg",
    "cotp.type", "rdp.rt_cookie", "rdp.neg_type", "rdp.negReq.requestedProtocols",
    "rdp.negReq.selectedProtocol", "rdp.negFailure.failureCode",
    "tls.record.content_type", "tls.record.length", "tls.heartbeat_message.type",
    "tls.heartbeat_message.payload_length",
    "smtp.req.command", "smtp.response.code", "pop.request.command", "pop.request.parameter",
    "pop.response.indicator", "imap.request_tag", "imap.request.command",
    "imap.request.username", "imap.response_tag", "imap.response.status",
    "tls.handshake.certificate", "tls.handshake.cipherspec", "tcp.segment_data",
    "kerberos.msg_type", "kerberos.error_code", "kerberos.CNameString",
    "kerberos.SNameString", "kerberos.realm", "kerberos.crealm",
    # ldap.simple is the simple bind's password: read only to know whether one was sent
    "ldap.messageID", "ldap.protocolOp", "ldap.name", "ldap.authentication",
    "ldap.simple", "ldap.mechanism", "ldap.resultCode",
    "smb2.cmd", "smb2.flags.response", "smb2.nt_status", "smb2.dialect",
    "ntlmssp.auth.username", "ntlmssp.auth.domain", "sctp.srcport", "sctp.dstport",
]
IX = {name: i for i, name in enumerate(FIELDS)}
# Fragments are counted, not reassembled, as the fast engine does; TCP reassembly
# stays on (it is what makes tshark the deep reference for HTTP and TLS).
# HTTP bodies are not reassembled (heads are): a response is reported in the frame that
# ends its head, as the fast engine reads it, and a body that runs to the close is
# counted from the frames after it.
PREFS = ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
         "-o", "http.desegment_body:FALSE"]
_FLAG_NAMES = (("dns.flags.authoritative", "AA"), ("dns.flags.truncated", "TC"),
               ("dns.flags.recdesired", "RD"), ("dns.flags.recavail", "RA"),
               ("dns.flags.authenticated", "AD"), ("dns.flags.checkdisable", "CD"))
_RDATA = {"A": "dns.a", "AAAA": "dns.aaaa", "CNAME": "dns.cname", "NS": "dns.ns",
          "PTR": "dns.ptr.domain_name", "MX": "dns.mx.mail_exchange", "TXT": "dns.txt"}


def check_tshark() -> str:
    path = shutil.which("tshark")
    if not path:
        raise CaptureError("tshark is not installed (apt-get install tshark)")
    return path


def tshark_command(path: str) -> list[str]:
    cmd = [check_tshark(), "-n", "-r", path, *PREFS, "-T", "fields", "-E", "separator=/t",
           "-E", "occurrence=a", "-E", f"aggregator={AGG}", "-E", "quote=n"]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd


def _num(v: str) -> int:
    return int(v, 16) if v.startswith("0x") else int(v)


def _int(v: str) -> int:
    return int(v) if v.isdigit() else 0


# what a damaged frame's fields raise here: int('') / inet_pton('') / a missing occurrence
_ROW_ERRORS = (ValueError, IndexError, OSError)


def _flag(v: str) -> bool:
    return v in ("1", "True", "true")


def run_file(cap: CaptureFile, session: Session,
             progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    stats = session.stats
    out, drain = session.out, session.drain
    proc = subprocess.Popen(tshark_command(str(cap.path)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            errors="backslashreplace")
    assert proc.stdout is not None
    pos = 24  # where in the file tshark is, roughly: header + records so far
    try:
        for n, line in enumerate(proc.stdout, 1):
            row = line.rstrip("\n").split("\t")
            if len(row) < len(FIELDS):
                row += [""] * (len(FIELDS) - len(row))
            stats.packets += 1
            caplen = _int(row[IX["frame.cap_len"]])
            stats.bytes += caplen
            pos += caplen + 16
            try:
                _packet(session, row)
            except _ROW_ERRORS:
                # a field tshark left empty or odd on a damaged frame: that frame is bad,
                # the rest of the capture is still read (as in the fast engine)
                stats.bad("malformed (tshark)")
            if out:
                yield from drain()
            if progress is not None and not n & 0x3FFF:
                progress(min(pos, cap.size))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
        if proc.returncode not in (0, -9) and "appears to have been cut short" not in err:
            stats.bad(f"tshark: {err.strip().splitlines()[-1] if err.strip() else 'failed'}")


def _first(row: list[str], name: str) -> str:
    return row[IX[name]].split(AGG, 1)[0]


def _all(row: list[str], name: str) -> list[str]:
    v = row[IX[name]]
    return v.split(AGG) if v else []


def _packet(session: Session, row: list[str]) -> None:  # noqa: C901 - one frame's fields
    stats = session.stats
    ts = float(row[0] or 0)
    src4 = _first(row, "ip.src")
    src6 = _first(row, "ipv6.src")
    if src4:
        if int(_first(row, "ip.frag_offset") or 0):
            stats.ignored[FRAGMENT] += 1
            return
        src = socket.inet_pton(socket.AF_INET, src4)
        dst = socket.inet_pton(socket.AF_INET, _first(row, "ip.dst"))
        proto = int(_first(row, "ip.proto"))
        ip_len = int(_first(row, "ip.len"))
    elif src6:
        src = socket.inet_pton(socket.AF_INET6, src6)
        dst = socket.inet_pton(socket.AF_INET6, _first(row, "ipv6.dst"))
        ip_len = int(_first(row, "ipv6.plen")) + 40
        if row[IX["icmpv6.type"]]:
            proto = 58
        elif row[IX["tcp.srcport"]]:
            proto = 6
        elif row[IX["udp.srcport"]]:
            proto = 17
        else:
            proto = int(_first(row, "ipv6.nxt"))
    elif row[IX["arp.opcode"]]:
        stats.ignored[ARP] += 1
        return
    elif row[IX["_ws.malformed"]]:
        stats.bad("malformed (tshark)")
        return
    else:
        stats.ignored[NON_IP] += 1
        return
    vlan = int(_first(row, "vlan.id") or 0)
    flags = 0
    if proto == 6:
        if not row[IX["tcp.srcport"]]:
            stats.bad("truncated tcp header")
            return
        if not row[IX["tcp.flags"]]:
            stats.bad("truncated tcp header")
            return
        sport, dport = int(_first(row, "tcp.srcport")), int(_first(row, "tcp.dstport"))
        flags = _num(_first(row, "tcp.flags")) & 0xFF
        plen = int(_first(row, "tcp.len") or 0)
    elif proto == 17:
        if not row[IX["udp.srcport"]]:
            stats.bad("truncated udp header")
            return
        sport, dport = int(_first(row, "udp.srcport")), int(_first(row, "udp.dstport"))
        plen = int(_first(row, "udp.length") or 8) - 8
    elif proto in (1, 58):
        name = "icmp" if proto == 1 else "icmpv6"
        t = _first(row, f"{name}.type")
        if not t:
            stats.bad("truncated icmp header")
            return
        itype = int(t)
        pairs = ICMP_PAIR if proto == 1 else ICMP6_PAIR
        sport = itype
        dport = pairs.get(itype, int(_first(row, f"{name}.code") or 0))
        plen = 1  # ICMP always carries a body beyond its 4-byte header here
    elif proto == 132 and row[IX["sctp.srcport"]]:
        sport, dport = int(_first(row, "sctp.srcport")), int(_first(row, "sctp.dstport"))
        plen = ip_len - (20 if src4 else 40) - 12  # chunks after the common header
    else:
        sport = dport = 0
        plen = 1
    f, fwd = session.table.packet(ts, proto, src, sport, dst, dport, vlan, ip_len, flags,
                                  plen)
    # the frame is in its flow now; a payload tshark could not fully dissect is an
    # application error of that flow, as in the fast engine, not a bad frame
    service = "tcp"
    if plen and not fwd and f.app and type(f.extra) is dict and "body" in f.extra:
        session.http_body(f, plen)  # a response body running to the close
    try:
        if row[IX["dns.id"]]:
            service = "dns"
            _dns(session, f, ts, row)
        if row[IX["http.request.method"]] or row[IX["http.response.code"]]:
            service = "http"
            _http(session, f, ts, row, plen)
        elif row[IX["tcp.segment_data"]] and row[IX["tcp.segment_data"]][:8] == "47455420":
            # "GET " in a segment Wireshark holds for a head that never ends: an HTTP/0.9
            # request (its dissector waits for a blank line a Simple-Request lacks)
            req = httpp.simple_request(bytes.fromhex(_first(row, "tcp.segment_data")))
            if req:
                service = "http"
                session.http_request(f, ts, req)
        if row[IX["tls.handshake.type"]]:
            service = "tls"
            _tls(session, f, ts, row)
        if not fwd and f.app and f.hello is not None and len(f.hello) == 3 \
                and {"20", "23"} & set(_all(row, "tls.record.content_type")):
            # the server went on without a certificate in clear (a resumed session)
            session.tls_certificate(f, ts, [])
        if row[IX["tls.heartbeat_message.type"]]:
            service = "tls"
            _heartbeat(session, f, ts, row)
        if row[IX["ftp.request.command"]] or row[IX["ftp.response.code"]]:
            service = "ftp"
            _ftp(session, f, ts, row)
        proto_name = mailp.PORTS.get(dport) or mailp.PORTS.get(sport)
        if proto_name and (row[IX["smtp.req.command"]] or row[IX["smtp.response.code"]]
                           or row[IX["pop.request.command"]] or row[IX["pop.response.indicator"]]
                           or row[IX["imap.request.command"]] or row[IX["imap.response.status"]]):
            service = proto_name
            _mail(session, f, ts, proto_name, row)
        if row[IX["smb2.cmd"]]:
            service = "smb"
            _smb(session, f, ts, row)
        if row[IX["kerberos.msg_type"]] and (sport in krbp.PORTS or dport in krbp.PORTS):
            service = "krb"
            _kerberos(session, f, ts, row)
        if row[IX["ldap.protocolOp"]] and (sport in ldapp.PORTS or dport in ldapp.PORTS):
            service = "ldap"
            _ldap(session, f, ts, row)
        if row[IX["cotp.type"]] and (sport in rdpp.PORTS or dport in rdpp.PORTS):
            service = "rdp"
            _rdp(session, f, ts, row)
    except _ROW_ERRORS:
        stats.app_errors[service] += 1
    if row[IX["ssh.protocol"]]:
        session.ssh(f, fwd, _first(row, "ssh.protocol"))


def _dns(session: Session, f, ts: float, row: list[str]) -> None:
    names, types = _all(row, "dns.qry.name"), _all(row, "dns.qry.type")
    classes = _all(row, "dns.qry.class")
    questions = [(names[i], int(types[i]), _num(classes[i]))
                 for i in range(min(len(names), len(types), len(classes)))]
    rdata = {k: _all(row, v) for k, v in _RDATA.items()}
    answers = []
    from collectors.packet.proto import dns as dnsp

    rnames, rtypes = _all(row, "dns.resp.name"), _all(row, "dns.resp.type")
    rclasses, ttls = _all(row, "dns.resp.class"), _all(row, "dns.resp.ttl")
    for i in range(min(len(rnames), len(rtypes))):
        rtype = dnsp.type_name(int(rtypes[i]))
        if rtype == "OPT":
            continue  # EDNS pseudo-record lives in the additional section
        pool = rdata.get(rtype)
        answers.append({"name": rnames[i], "type": rtype,
                        "class": dnsp.class_name(_num(rclasses[i])) if i < len(rclasses)
                        else "IN",
                        "ttl": int(ttls[i]) if i < len(ttls) else 0,
                        "data": pool.pop(0) if pool else ""})
    msg = {"id": _num(_first(row, "dns.id")), "response": _flag(_first(row, "dns.flags.response")),
           "opcode": int(_first(row, "dns.flags.opcode") or 0),
           "rcode": int(_first(row, "dns.flags.rcode") or 0),
           "flags": [n for field, n in _FLAG_NAMES if _flag(_first(row, field))],
           "questions": questions, "answers": answers}
    session.dns(f, ts, msg)


def _opt_int(v: str) -> int | None:
    return int(v) if v.isascii() and v.isdigit() and len(v) <= 18 else None


def _head_length(row: list[str], i: int) -> int:
    """Bytes of the i-th response head of the frame: status line, header lines (Wireshark
    prints their CR LF as the four characters \\r\\n) and the blank line."""
    versions, phrases = _all(row, "http.response.version"), _all(row, "http.response.phrase")
    status = len(versions[i] if i < len(versions) else "HTTP/1.1") + 5 + \
        len(phrases[i] if i < len(phrases) else "") + 2
    return status + sum(len(line.replace("\\r\\n", "\r\n"))
                        for line in _all(row, "http.response.line")) + 2


def _http(session: Session, f, ts: float, row: list[str], plen: int) -> None:
    methods = _all(row, "http.request.method")
    if methods:
        uris = _all(row, "http.request.uri")
        versions = _all(row, "http.request.version")
        for i, method in enumerate(methods):
            session.http_request(f, ts, {
                "method": method, "uri": uris[i] if i < len(uris) else "",
                "version": (versions[i] if i < len(versions) else "HTTP/1.1")[5:],
                "host": _first(row, "http.host") or None,
                "user_agent": _first(row, "http.user_agent") or None,
                "referrer": _first(row, "http.referer") or None,
                "content_length": _opt_int(_first(row, "http.content_length_header"))})
    for i, code in enumerate(_all(row, "http.response.code")):
        versions = _all(row, "http.response.version")
        session.http_response(f, ts, {
            "status": int(code),
            "version": (versions[i] if i < len(versions) else "HTTP/1.1")[5:],
            "content_type": _first(row, "http.content_type") or None,
            "content_length": _opt_int(_first(row, "http.content_length_header")),
            "chunked": "chunked" in _first(row, "http.transfer_encoding").lower(),
            "body_in_head": max(0, plen - _head_length(row, i))})


def _tls(session: Session, f, ts: float, row: list[str]) -> None:
    types = _all(row, "tls.handshake.type")
    ciphers = [_num(c) for c in _all(row, "tls.handshake.ciphersuite")]
    versions = [_num(v) for v in _all(row, "tls.handshake.extensions.supported_version")]
    if "1" in types and _first(row, "tls.record.version") == "0x0002":
        session.tls_client(f, ts, tlsp.sslv2_hello(
            _num(_first(row, "tls.handshake.version")),
            [_num(s) for s in _all(row, "tls.handshake.cipherspec")]))
    elif "1" in types:
        hv = _first(row, "tls.handshake.version")
        full = _first(row, "tls.handshake.ja3_full")
        session.tls_client(f, ts, {
            "client_version": _num(hv) if hv else 0,
            "record_version": _num(_first(row, "tls.record.version") or "0"),
            "ciphers": [c for c in ciphers if not tlsp.is_grease(c)],
            "sni": _first(row, "tls.handshake.extensions_server_name") or None,
            "supported_versions": [v for v in versions if not tlsp.is_grease(v)],
            "alpn": _all(row, "tls.handshake.extensions_alpn_str"),
            "ja3_full": full, "ja3": _first(row, "tls.handshake.ja3")})
    elif "2" in types and ciphers:
        hv = _first(row, "tls.handshake.version")
        session.tls_server(f, ts, {"version": versions[-1] if versions else _num(hv),
                                   "cipher": ciphers[0]})
    if "11" in types:
        certs = _all(row, "tls.handshake.certificate")
        session.tls_certificate(f, ts, [bytes.fromhex(c.replace(":", "")) for c in certs])
    elif "14" in types:  # ServerHelloDone: the flight had no certificate
        session.tls_certificate(f, ts, [])


def _ftp(session: Session, f, ts: float, row: list[str]) -> None:
    cmds = _all(row, "ftp.request.command")
    args = _all(row, "ftp.request.arg")
    codes = _all(row, "ftp.response.code")
    texts = _all(row, "ftp.response.arg")
    session.ftp(f, ts, [(c.upper(), args[i] if i < len(args) else "") for i, c in enumerate(cmds)],
                [(int(c), texts[i] if i < len(texts) else "") for i, c in enumerate(codes)])


def _rdp(session: Session, f, ts: float, row: list[str]) -> None:
    kind = _num(_first(row, "cotp.type"))
    msg: dict[str, Any] = {}
    if kind == rdpp.CR >> 4:
        msg["type"] = "request"
        cookie = _first(row, "rdp.rt_cookie")
        if cookie.startswith(rdpp.COOKIE.decode()):
            msg["cookie"] = cookie[len(rdpp.COOKIE):]
        if row[IX["rdp.negReq.requestedProtocols"]]:
            msg["requested"] = _num(_first(row, "rdp.negReq.requestedProtocols"))
    elif kind == rdpp.CC >> 4:
        msg["type"] = "confirm"
        if row[IX["rdp.negReq.selectedProtocol"]]:
            msg["selected"] = _num(_first(row, "rdp.negReq.selectedProtocol"))
        if row[IX["rdp.negFailure.failureCode"]]:
            msg["failure"] = _num(_first(row, "rdp.negFailure.failureCode"))
    else:
        return
    session.rdp(f, ts, msg)


def _heartbeat(session: Session, f, ts: float, row: list[str]) -> None:
    types = _all(row, "tls.record.content_type")
    lengths = _all(row, "tls.record.length")
    kinds = _all(row, "tls.heartbeat_message.type")
    payloads = _all(row, "tls.heartbeat_message.payload_length")
    records = [int(lengths[i]) for i, t in enumerate(types)
               if t == str(tlsp.HEARTBEAT) and i < len(lengths)]
    for i, kind in enumerate(kinds):
        if i < len(records) and i < len(payloads):
            session.tls_heartbeat(f, ts, int(kind), int(payloads[i]), records[i])


def _mail(session: Session, f, ts: float, proto: str, row: list[str]) -> None:
    """Wireshark's SMTP/POP/IMAP fields as the (tag, VERB, account) requests and (tag,
    status) replies of proto.mail."""
    verbs = mailp.LOGIN_VERBS[proto]
    reqs: list[tuple[str | None, str, str | None]] = []
    reps: list[tuple[str | None, str]] = []
    if proto == "smtp":
        reqs = [(None, c.upper(), None) for c in _all(row, "smtp.req.command")
                if c.upper() in verbs]
        codes = _all(row, "smtp.response.code")
        reps = [(None, codes[0])] if codes else []
    elif proto == "pop3":
        params = _all(row, "pop.request.parameter")
        for i, c in enumerate(_all(row, "pop.request.command")):
            verb = c.upper()
            if verb in verbs:
                arg = params[i].split(" ")[0] if i < len(params) else ""
                reqs.append((None, verb, mailp.unquote(arg) if verb in ("USER", "APOP") and arg
                             else None))
        reps = [(None, v) for v in _all(row, "pop.response.indicator") if v in ("+OK", "-ERR")]
    else:
        tags, users = _all(row, "imap.request_tag"), _all(row, "imap.request.username")
        for i, c in enumerate(_all(row, "imap.request.command")):
            verb = c.upper()
            if verb in verbs:
                user = mailp.unquote(users[0]) if verb == "LOGIN" and users else None
                reqs.append((tags[i] if i < len(tags) else None, verb, user))
        rtags = _all(row, "imap.response_tag")
        for i, st in enumerate(_all(row, "imap.response.status")):
            if st.upper() in ("OK", "NO", "BAD") and i < len(rtags) and rtags[i] not in ("*", "+"):
                reps.append((rtags[i], st.upper()))
    session.mail(f, ts, proto, reqs, reps)


def _smb(session: Session, f, ts: float, row: list[str]) -> None:
    """The first SMB2 message of the frame, as proto.smb.parse reads it."""
    msg: dict[str, Any] = {"command": int(_first(row, "smb2.cmd")),
                           "response": _flag(_first(row, "smb2.flags.response")),
                           "status": _num(_first(row, "smb2.nt_status") or "0")}
    if msg["command"] == 0 and msg["response"] and row[IX["smb2.dialect"]]:
        msg["dialect"] = _num(_first(row, "smb2.dialect"))
    user = _first(row, "ntlmssp.auth.username")
    if msg["command"] == 1 and not msg["response"] and user and user != "NULL":
        msg["user"] = user
        domain = _first(row, "ntlmssp.auth.domain")
        if domain and domain != "NULL":
            msg["domain"] = domain
    session.smb(f, ts, msg)


_KRB_TYPES = {10: ("AS", "request"), 11: ("AS", "reply"), 12: ("TGS", "request"),
              13: ("TGS", "reply"), 30: (None, "error")}


def _kerberos(session: Session, f, ts: float, row: list[str]) -> None:
    """Wireshark's Kerberos fields as proto.kerberos.parse reads the message."""
    kind_type = _KRB_TYPES.get(int(_first(row, "kerberos.msg_type")))
    if kind_type is None:
        return
    kind, mtype = kind_type
    cname = "/".join(_all(row, "kerberos.CNameString")) or None
    sname = "/".join(_all(row, "kerberos.SNameString")) or None
    msg = {"kind": kind, "type": mtype, "client": cname, "realm": None, "service": None,
           "error_code": None}
    if mtype == "request":
        msg["realm"] = _first(row, "kerberos.realm") or None
        msg["service"] = sname
    elif mtype == "reply":
        msg["realm"] = _first(row, "kerberos.crealm") or None
    else:
        msg["error_code"] = int(_first(row, "kerberos.error_code"))
        msg["realm"] = _first(row, "kerberos.realm") or None
        msg["service"] = sname
    session.kerberos(f, ts, msg)


def _ldap(session: Session, f, ts: float, row: list[str]) -> None:
    """The frame's first LDAP message when it is a bind (as proto.ldap.parse reads it)."""
    op = int(_first(row, "ldap.protocolOp"))
    ident = int(_first(row, "ldap.messageID"))
    if op == 0:
        simple = _first(row, "ldap.authentication") == "0"
        msg: dict[str, Any] = {"id": ident, "op": "bind_request",
                               "name": _first(row, "ldap.name"),
                               "method": "simple" if simple else "sasl",
                               "mechanism": None if simple
                               else _first(row, "ldap.mechanism") or None,
                               "password_sent": simple and bool(row[IX["ldap.simple"]])}
        session.ldap(f, ts, msg)
    elif op == 1:
        session.ldap(f, ts, {"id": ident, "op": "bind_response",
                             "result": int(_first(row, "ldap.resultCode"))})
