"""What both engines share above the decoder: the flow table, the per-flow
application state (DNS transactions, HTTP request/response pairs, TLS hellos, SSH
banners) and the events they turn into. An engine feeds packets and parsed
application messages in; what to emit collects in `out` and the engine yields it
through `drain()` (ended flows' events are built there, one flow at a time)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from collectors.packet.events import EventBuilder
from collectors.packet.events_directory import kerberos_event, ldap_event
from collectors.packet.events_login import (
    ftp_event,
    heartbeat_event,
    mail_event,
    rdp_event,
    smb_event,
)
from collectors.packet.flows import Flow, FlowTable
from collectors.packet.proto import http as httpp
from collectors.packet.proto import ldap as ldapp
from collectors.packet.proto import mail as mailp
from collectors.packet.proto import smb as smbp
from collectors.packet.proto import tls as tlsp
from collectors.packet.proto import x509 as x509p
from collectors.packet.stats import CaptureStats

MAX_PENDING = 64  # unanswered DNS queries / HTTP requests / FTP commands kept per flow
# FTP commands Zeek's ftp.log records (FTP::logged_commands); logins are recorded too
FTP_LOGGED = frozenset({"APPE", "DELE", "RETR", "STOR", "STOU", "ACCT", "PORT", "PASV",
                        "EPRT", "EPSV"})


class Session:
    def __init__(self, builder: EventBuilder, stats: CaptureStats, **table_opts: Any) -> None:
        self.builder = builder
        self.stats = stats
        # What to emit, in order: events, and (flow, reason) pairs for flows that ended.
        # An ended flow's events are built only when drained, one flow at a time: a
        # sweep or the final flush ends thousands of flows (a million at most) at
        # once, and building all their events up front held them all in memory and
        # made the garbage collector walk them (a tenth of the fast path's time).
        self.out: list[dict[str, Any] | tuple[Flow, str]] = []
        self.buffered = 0  # bytes of partial TLS hellos held by all flows
        self.table = FlowTable(self._flow_ended, **table_opts)

    def emit(self, event: dict[str, Any]) -> None:
        self.out.append(event)
        self.stats.events[event["event"]["dataset"]] += 1

    @staticmethod
    def app(f: Flow, budget: int = 4) -> Flow:
        """The flow, with its application state set up (the state lives in the flow's
        own slots: see flows.Flow)."""
        if f.app is None:
            f.app = True
            f.service = None
            # payload segments still worth looking at: >0 counts down, -1 = all (HTTP),
            # 0 = done
            f.budget = budget
            f.dns = None  # id -> (ts, query) of unanswered queries
            f.http = None  # deque of (ts, seq, request) not answered yet
            f.http_seq = 0
            f.hello = None  # (ts, ClientHello) until its ServerHello
            f.tls_buf = b""
            f.tls_parts = 0
            f.ssh = None
            f.extra = None  # FTP / mail / SMB / RDP / heartbeat state (their methods)
        return f

    # -- DNS: one event per transaction (query + its answer), as Zeek's dns.log
    def dns(self, f: Flow, ts: float, msg: dict) -> None:
        app = f if f.app else self.app(f)  # a call less when the state exists
        app.service = "dns"
        if app.dns is None:
            app.dns = {}
        if not msg["response"]:
            if len(app.dns) >= MAX_PENDING:
                oldest = next(iter(app.dns))
                qts, q = app.dns.pop(oldest)
                self.emit(self.builder.dns(f, qts, q, None, None))
            prev = app.dns.pop(msg["id"], None)
            if prev:  # same id asked again before an answer: the first went unanswered
                self.emit(self.builder.dns(f, prev[0], prev[1], None, None))
            app.dns[msg["id"]] = (ts, msg)
        else:
            pending = app.dns.pop(msg["id"], None)
            if not app.dns:
                app.dns = None  # nothing pending: see http_response
            if pending:
                self.emit(self.builder.dns(f, pending[0], pending[1], msg, ts))
            else:
                self.emit(self.builder.dns(f, ts, None, msg, ts))

    # -- HTTP: requests and responses paired in order on a connection
    def http_request(self, f: Flow, ts: float, req: dict) -> None:
        app = f if f.app else self.app(f)  # a call less when the state exists
        app.service = "http"
        if app.http is None:
            app.http = deque()
        if len(app.http) >= MAX_PENDING:
            rts, seq, r = app.http.popleft()
            self.emit(self.builder.http(f, rts, seq, r, None))
        app.http.append((ts, app.http_seq, req))
        app.http_seq += 1

    def http_response(self, f: Flow, ts: float, resp: dict) -> None:
        app = f if f.app else self.app(f)  # a call less when the state exists
        app.service = "http"
        if app.http:
            rts, seq, req = app.http.popleft()
            if req["method"] == "CONNECT" and 200 <= resp["status"] < 300:
                # a tunnel opens (RFC 9110 9.3.6): what follows is the tunnelled
                # protocol (TLS mostly), read afresh as on a new connection
                app.service = None
                app.budget = 4
                app.http = None
                self.emit(self.builder.http(f, rts, seq, req, resp))
                return
            if httpp.close_delimited(req, resp) and app.extra is None:
                # its body size is known at the close: held until then, counting
                app.extra = {"body": (rts, seq, req, resp), "bytes": resp["body_in_head"]}
                app.http = None
                return
            if not app.http:
                # no request left: drop the queue (the next request makes a new one), so
                # an idle keep-alive connection holds one object less for the garbage
                # collector to walk (a full collection over 10,000s of flows is 40 ms)
                app.http = None
            self.emit(self.builder.http(f, rts, seq, req, resp))
        else:
            self.emit(self.builder.http(f, ts, app.http_seq, None, resp))
            app.http_seq += 1

    @staticmethod
    def http_body(f: Flow, n: int) -> None:
        """`n` more bytes from the server of a response delimited by the close."""
        f.extra["bytes"] += n

    # -- TLS: the ClientHello, completed by the ServerHello when one is seen
    def tls_client(self, f: Flow, ts: float, hello: dict) -> None:
        app = f if f.app else self.app(f)  # a call less when the state exists
        app.service = "tls"
        if app.hello:
            self.emit(self.builder.tls(f, *app.hello))
        app.hello = (ts, hello)

    def tls_server(self, f: Flow, ts: float, server: dict) -> None:
        """The ServerHello completes the hello's event, which waits for the server's
        certificate when the version sends it in clear (TLS <= 1.2, TLCP)."""
        app = f if f.app else self.app(f)  # a call less when the state exists
        app.service = "tls"
        if app.hello:
            if server["version"] < 0x0304 and len(app.hello) == 2:
                app.hello = (app.hello[0], app.hello[1], server)
                return
            self.emit(self.builder.tls(f, app.hello[0], app.hello[1], server))
            app.hello = None

    def tls_certificate(self, f: Flow, ts: float, certs: list[bytes]) -> None:
        """The server's certificate chain ([] when its flight shows none): the waiting
        hello's event is emitted with the leaf's facts."""
        app = f if f.app else self.app(f)
        hello = app.hello
        if hello and len(hello) == 3:
            cert = x509p.facts(certs[0]) if certs else None
            self.emit(self.builder.tls(f, hello[0], hello[1], hello[2], cert, len(certs)))
            app.hello = None

    def tls_heartbeat(self, f: Flow, ts: float, kind: int, payload_length: int,
                      record_length: int) -> None:
        """A heartbeat record: a request declaring more than it carries is Heartbleed; a
        response longer than such a request is the server leaking memory."""
        app = f if f.app else self.app(f)
        app.service = "tls"
        verdict = tlsp.heartbeat_verdict(payload_length, record_length)
        request_length = None
        if kind == 1:
            if verdict == "malformed":
                app.extra = {"heartbeat": record_length}
        elif isinstance(app.extra, dict) and "heartbeat" in app.extra:
            request_length = app.extra["heartbeat"]
            verdict = "leak" if record_length > request_length else verdict
        self.emit(heartbeat_event(self.builder, f, ts, kind, payload_length, record_length,
                                  verdict, request_length))

    def ssh(self, f: Flow, from_client: bool, banner: str) -> None:
        app = f if f.app else self.app(f)  # a call less when the state exists
        app.service = "ssh"
        if app.ssh is None:
            app.ssh = {}
        app.ssh.setdefault("client" if from_client else "server", banner)

    # -- FTP: commands paired with their replies; logins and Zeek's logged commands emitted
    def ftp(self, f: Flow, ts: float, commands: list[tuple[str, str]],
            codes: list[tuple[int, str]]) -> None:
        """One segment's command lines (client) or reply lines (server). A server segment
        answers the oldest pending command with its first coded line (a multi-line reply
        repeats its code on its last line, which is not a second reply)."""
        app = f if f.app else self.app(f)
        app.service = "ftp"
        st = app.extra
        if st is None:
            st = app.extra = {"user": None, "pending": deque(), "seq": 0}
        pending = st["pending"]
        for cmd, arg in commands:
            if len(pending) >= MAX_PENDING:
                pending.popleft()
            pending.append((ts, cmd, arg))
        if not codes or not pending:
            return
        code, text = codes[0]
        cts, cmd, arg = pending.popleft()
        if cmd == "USER" or cmd == "PASS":
            if cmd == "USER":
                st["user"] = arg
            # 230 logs in, 4xx/5xx refuse; 331/332 ask for more and 221 closes: no outcome
            if code != 230 and not 400 <= code < 600:
                return
        elif cmd not in FTP_LOGGED:
            return
        st["seq"] += 1
        self.emit(ftp_event(self.builder, f, cts, st["seq"], cmd, arg, st["user"], code, text))

    # -- SMTP/POP3/IMAP: login commands paired with their final replies
    def mail(self, f: Flow, ts: float, proto: str,
             requests: list[tuple[str | None, str, str | None]],
             replies: list[tuple[str | None, str]]) -> None:
        app = f if f.app else self.app(f)
        app.service = proto
        st = app.extra
        if st is None:
            st = app.extra = {"user": None, "pending": [], "seq": 0}
        pending = st["pending"]
        for tag, verb, user in requests:
            if user:
                st["user"] = user
            if len(pending) >= MAX_PENDING:
                del pending[0]
            pending.append((ts, tag, verb))
        for tag, status in replies:
            # IMAP answers by tag; SMTP and POP3 answer in order
            i = next((k for k, p in enumerate(pending) if p[1] == tag), None) \
                if proto == "imap" else (0 if pending else None)
            if i is None:
                continue
            result = mailp.outcome(proto, status)
            if result is None:
                continue  # SMTP 334: the exchange goes on
            pts, _, verb = pending.pop(i)
            if proto == "pop3" and verb == "USER" and result == "success":
                continue  # the account is known; PASS decides
            st["seq"] += 1
            self.emit(mail_event(self.builder, f, pts, proto, st["seq"], verb, st["user"],
                                 status, result))

    # -- SMB2: the negotiated dialect and the session set-up's account and outcome
    def smb(self, f: Flow, ts: float, msg: dict) -> bool:
        """Returns True once a session set-up has its final answer (nothing more to read)."""
        app = f if f.app else self.app(f)
        app.service = "smb"
        st = app.extra
        if st is None:
            st = app.extra = {"dialect": None, "user": None, "domain": None, "ts": None,
                              "seq": 0}
        if msg["command"] == smbp.NEGOTIATE and msg["response"] and "dialect" in msg:
            st["dialect"] = msg["dialect"]
        elif msg["command"] == smbp.SESSION_SETUP:
            if not msg["response"]:
                st["ts"] = ts
                if msg.get("user"):
                    st["user"], st["domain"] = msg["user"], msg.get("domain")
            elif msg["status"] != smbp.MORE_PROCESSING:
                st["seq"] += 1
                self.emit(smb_event(self.builder, f, st["ts"] or ts, st["seq"], st,
                                    msg["status"]))
                return True
        return False

    # -- RDP: the X.224 request (cookie) completed by the server's confirm
    def rdp(self, f: Flow, ts: float, msg: dict) -> None:
        app = f if f.app else self.app(f)
        app.service = "rdp"
        if msg["type"] == "request":
            if isinstance(app.extra, dict) and "request" in app.extra:
                self.emit(rdp_event(self.builder, f, *app.extra["request"], None))
            app.extra = {"request": (ts, msg)}
        elif isinstance(app.extra, dict) and "request" in app.extra:
            self.emit(rdp_event(self.builder, f, *app.extra["request"], msg))
            app.extra = None

    # -- Kerberos: requests paired in order with their reply or error
    def kerberos(self, f: Flow, ts: float, msg: dict) -> None:
        app = f if f.app else self.app(f)
        app.service = "krb"
        st = app.extra
        if st is None or "krb" not in st:
            st = app.extra = {"krb": deque(), "seq": 0}
        if msg["type"] == "request":
            if len(st["krb"]) >= MAX_PENDING:
                self._kerberos_emit(f, st, *st["krb"].popleft(), None)
            st["krb"].append((ts, msg))
        elif st["krb"]:
            self._kerberos_emit(f, st, *st["krb"].popleft(), msg)
        else:
            self._kerberos_emit(f, st, ts, None, msg)

    def _kerberos_emit(self, f: Flow, st: dict, ts: float, req: dict | None,
                       rep: dict | None) -> None:
        st["seq"] += 1
        self.emit(kerberos_event(self.builder, f, ts, st["seq"], req, rep))

    # -- LDAP: bind requests paired with their responses by message id
    def ldap(self, f: Flow, ts: float, msg: dict) -> bool:
        """Returns True once a bind succeeded (nothing more to read)."""
        app = f if f.app else self.app(f)
        app.service = "ldap"
        st = app.extra
        if st is None or "ldap" not in st:
            st = app.extra = {"ldap": {}}
        pending = st["ldap"]
        if msg["op"] == "bind_request":
            if len(pending) >= MAX_PENDING:
                self.emit(ldap_event(self.builder, f, *pending.pop(next(iter(pending))),
                                     None))
            pending[msg["id"]] = (ts, msg)
            return False
        if msg["result"] == ldapp.SASL_IN_PROGRESS or msg["id"] not in pending:
            return False
        self.emit(ldap_event(self.builder, f, *pending.pop(msg["id"]), msg["result"]))
        return msg["result"] == 0

    def drain(self) -> Iterator[dict[str, Any]]:
        """The queued events, ended flows' built as they come (fast.run_file inlines
        this loop)."""
        out = self.out
        try:
            for item in out:
                if type(item) is tuple:
                    yield from self.flow_events(*item)
                else:
                    yield item
        finally:
            out.clear()

    def finish(self) -> None:
        self.table.flush()

    def _flow_ended(self, f: Flow, reason: str) -> None:
        if f.app:
            if f.tls_buf:
                self.buffered -= len(f.tls_buf)  # now: later hellos may need the room
                f.tls_buf = b""
            if type(f.extra) is dict and "cert" in f.extra:
                self.buffered -= len(f.extra.pop("cert"))
        self.stats.flows += 1
        self.out.append((f, reason))

    def flow_events(self, f: Flow, reason: str) -> list[dict[str, Any]]:
        """The events of an ended flow: its unanswered DNS queries, unanswered HTTP
        requests and unanswered TLS hello, then the flow itself."""
        app = f if f.app else None
        builder = self.builder
        counts = self.stats.events
        events = []
        service = ssh = None
        if app is not None:
            held = app.extra
            if type(held) is dict and "http" in held:  # a head cut off by the flow's end
                app.extra = None
                self.buffered -= len(held["http"])
                if held["http"][:5] == b"HTTP/":
                    resp = httpp.parse_response(held["http"])
                    if resp:
                        self.http_response(f, held["ts"], resp)
                else:
                    req = httpp.parse_request(held["http"])
                    if req:
                        self.http_request(f, held["ts"], req)
            held = app.extra
            if type(held) is dict and "body" in held:  # a body that ran to the close
                app.extra = None
                rts, seq, req, resp = held["body"]
                events.append(builder.http(f, rts, seq, req, {**resp,
                                                              "body_bytes": held["bytes"]}))
                counts["network.http"] += 1
            service, ssh = app.service, app.ssh
            if app.dns:
                for qts, q in app.dns.values():
                    events.append(builder.dns(f, qts, q, None, None))
                counts["network.dns"] += len(app.dns)
            if app.http:
                for rts, seq, req in app.http:
                    events.append(builder.http(f, rts, seq, req, None))
                counts["network.http"] += len(app.http)
            if app.hello:  # unanswered, or answered and its certificate not seen
                events.append(builder.tls(f, *app.hello))
                counts["network.tls"] += 1
            held = app.extra
            if type(held) is dict and held.get("krb"):  # Kerberos requests unanswered
                for rts, req in held["krb"]:
                    held["seq"] += 1
                    events.append(kerberos_event(builder, f, rts, held["seq"], req, None))
                counts["network.kerberos"] += len(held["krb"])
            if type(held) is dict and held.get("ldap"):  # LDAP binds unanswered
                for rts, req in held["ldap"].values():
                    events.append(ldap_event(builder, f, rts, req, None))
                counts["network.ldap"] += len(held["ldap"])
            if isinstance(app.extra, dict) and "request" in app.extra:  # RDP, unconfirmed
                events.append(rdp_event(builder, f, *app.extra["request"], None))
                counts["network.rdp"] += 1
            f.app = None
        events.append(builder.flow(f, reason, service, ssh))
        counts["network.flow"] += 1
        return events
