"""What both engines share above the decoder: the flow table, the per-flow
application state (DNS transactions, HTTP request/response pairs, TLS hellos, SSH
banners) and the events they turn into. An engine feeds packets and parsed
application messages in; events collect in `out` for the engine to yield."""

from __future__ import annotations

from collections import deque
from typing import Any

from collectors.packet.events import EventBuilder
from collectors.packet.flows import Flow, FlowTable
from collectors.packet.stats import ReadStats

MAX_PENDING = 64  # unanswered DNS queries / HTTP requests kept per flow


class AppState:
    __slots__ = ("service", "budget", "dns", "http", "http_seq", "hello", "tls_buf",
                 "tls_parts", "ssh")

    def __init__(self, budget: int) -> None:
        self.service: str | None = None
        # payload segments still worth looking at: >0 counts down, -1 = all (HTTP), 0 = done
        self.budget = budget
        self.dns: dict[int, tuple[float, dict]] | None = None
        self.http: deque | None = None
        self.http_seq = 0
        self.hello: tuple[float, dict] | None = None
        self.tls_buf = b""
        self.tls_parts = 0
        self.ssh: dict[str, str] | None = None


class Session:
    def __init__(self, builder: EventBuilder, stats: ReadStats, **table_opts: Any) -> None:
        self.builder = builder
        self.stats = stats
        self.out: list[dict[str, Any]] = []
        self.buffered = 0  # bytes of partial TLS hellos held by all flows
        self.table = FlowTable(self._flow_ended, **table_opts)

    def emit(self, event: dict[str, Any]) -> None:
        self.out.append(event)
        self.stats.events[event["event"]["dataset"]] += 1

    @staticmethod
    def app(f: Flow, budget: int = 4) -> AppState:
        if f.app is None:
            f.app = AppState(budget)
        return f.app

    # -- DNS: one event per transaction (query + its answer), as Zeek's dns.log
    def dns(self, f: Flow, ts: float, msg: dict) -> None:
        app = self.app(f)
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
            if pending:
                self.emit(self.builder.dns(f, pending[0], pending[1], msg, ts))
            else:
                self.emit(self.builder.dns(f, ts, None, msg, ts))

    # -- HTTP: requests and responses paired in order on a connection
    def http_request(self, f: Flow, ts: float, req: dict) -> None:
        app = self.app(f)
        app.service = "http"
        if app.http is None:
            app.http = deque()
        if len(app.http) >= MAX_PENDING:
            rts, seq, r = app.http.popleft()
            self.emit(self.builder.http(f, rts, seq, r, None))
        app.http.append((ts, app.http_seq, req))
        app.http_seq += 1

    def http_response(self, f: Flow, ts: float, resp: dict) -> None:
        app = self.app(f)
        app.service = "http"
        if app.http:
            rts, seq, req = app.http.popleft()
            self.emit(self.builder.http(f, rts, seq, req, resp))
        else:
            self.emit(self.builder.http(f, ts, app.http_seq, None, resp))
            app.http_seq += 1

    # -- TLS: the ClientHello, completed by the ServerHello when one is seen
    def tls_client(self, f: Flow, ts: float, hello: dict) -> None:
        app = self.app(f)
        app.service = "tls"
        if app.hello:
            self.emit(self.builder.tls(f, app.hello[0], app.hello[1], None))
        app.hello = (ts, hello)

    def tls_server(self, f: Flow, ts: float, server: dict) -> None:
        app = self.app(f)
        app.service = "tls"
        if app.hello:
            self.emit(self.builder.tls(f, app.hello[0], app.hello[1], server))
            app.hello = None

    def ssh(self, f: Flow, from_client: bool, banner: str) -> None:
        app = self.app(f)
        app.service = "ssh"
        if app.ssh is None:
            app.ssh = {}
        app.ssh.setdefault("client" if from_client else "server", banner)

    def finish(self) -> None:
        self.table.flush()

    def _flow_ended(self, f: Flow, reason: str) -> None:
        app: AppState | None = f.app
        service = ssh = None
        if app is not None:
            service, ssh = app.service, app.ssh
            for qts, q in (app.dns or {}).values():
                self.emit(self.builder.dns(f, qts, q, None, None))
            for rts, seq, req in app.http or ():
                self.emit(self.builder.http(f, rts, seq, req, None))
            if app.hello:
                self.emit(self.builder.tls(f, app.hello[0], app.hello[1], None))
            self.buffered -= len(app.tls_buf)
            f.app = None
        self.stats.flows += 1
        self.emit(self.builder.flow(f, reason, service, ssh))
