"""Serving the API with uvicorn: HTTPS by default; plain HTTP only on a loopback address
and only when asked for by name.

Several workers each listen on a socket of their own, bound to the same address with
SO_REUSEPORT, so the kernel spreads new connections over them. (uvicorn's own supervisor
shares one listening socket: asyncio accepts every connection waiting on one wake-up, and
16 client connections split 16/0 ... 8/8 between two workers from run to run.)"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from soc_api import tls

log = logging.getLogger("govsoc.api")
APP = "soc_api.app:app_from_config"
# a worker that ends sooner after its start is broken (its app, TLS files or address):
# restarting it would only repeat the failure
MIN_UPTIME = 10.0


class ServeError(ValueError):
    """The serving options cannot be honoured (plain HTTP off loopback, no certificate)."""


@dataclass
class Listen:
    host: str
    port: int
    workers: int
    insecure_http: bool

    @classmethod
    def from_config(cls, cfg, *, host: str | None = None, port: int | None = None,  # noqa: ANN001
                    workers: int | None = None, insecure_http: bool = False) -> Listen:
        return cls(host or str(cfg.get("api.host", "127.0.0.1")),
                   int(port if port is not None else cfg.get("api.port", 8443)),
                   int(workers or cfg.get("api.workers", 2)), insecure_http)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'http' if self.insecure_http else 'https'}://{host}:{self.port}"


def uvicorn_options(cfg, listen: Listen) -> dict[str, Any]:  # noqa: ANN001
    if listen.insecure_http and not tls.is_loopback(listen.host):
        raise ServeError(f"plain HTTP is allowed only on loopback, not on {listen.host}: "
                         "drop --insecure-http to serve HTTPS")
    if not 1 <= listen.port <= 65535 or not 1 <= listen.workers <= 64:
        raise ServeError("port 1-65535 and 1-64 workers")
    opts: dict[str, Any] = {"host": listen.host, "port": listen.port,
                            "log_level": "warning", "access_log": False,
                            "server_header": False, "proxy_headers": False}
    if not listen.insecure_http:
        cert, key = tls.certificate(cfg)
        opts.update(ssl_certfile=cert, ssl_keyfile=key)
    return opts


def serve(cfg, listen: Listen) -> None:  # noqa: ANN001
    """Run in the foreground until interrupted (several workers: `run_workers`, with the
    audit drain in this supervisor process)."""
    opts = uvicorn_options(cfg, listen)
    with audit_drain(cfg, "external" if listen.workers > 1 else "inline"):
        if listen.workers == 1:
            uvicorn.run(APP, factory=True, **opts)
            return
        status = run_workers(APP, listen.workers, opts)
    if status:
        raise SystemExit(1)


@contextlib.contextmanager
def audit_drain(cfg, default: str) -> Iterator[None]:  # noqa: ANN001
    """With `audit.drain = "external"` (`default` when unset), an `AuditDrain` thread in
    this process moves the API trails' records to the store, and the workers it starts
    only spool them (see soc_core.audit_drain); the drain ends after the workers, storing
    what they left."""
    if str(cfg.get("audit.drain", default)) != "external":
        yield
        return
    from soc_core.audit_drain import AuditDrain

    drain = AuditDrain.from_config(cfg, name="api").start()
    os.environ["GOVSOC_AUDIT_DRAIN"] = "external"  # read by the workers' configuration
    try:
        yield
    finally:
        drain.close()


def _tcp_socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT: every worker binds its own,
    and the kernel gives each new connection to one of them."""
    sock = _tcp_socket(host)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on (a socket without SO_REUSEPORT cannot
    bind beside any listener), instead of sharing it silently."""
    probe = _tcp_socket(host)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def _worker(app: str, factory: bool, opts: dict[str, Any]) -> None:
    """One worker process: its own listening socket, one uvicorn server on it."""
    try:
        sock = reuseport_socket(opts["host"], opts["port"])
    except OSError as exc:
        print(f"govsoc API worker: cannot listen on {opts['host']}:{opts['port']}: "
              f"{exc.strerror}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    uvicorn.Server(uvicorn.Config(app, factory=factory, **opts)).run(sockets=[sock])


def run_workers(app: str, workers: int, opts: dict[str, Any], *, factory: bool = True,
                stop: threading.Event | None = None) -> int:
    """Serve `app` (an import string) from `workers` processes, each on a SO_REUSEPORT
    socket of its own, until SIGINT/SIGTERM (or `stop`). A worker that dies after it ran
    `MIN_UPTIME` seconds is replaced; one that dies sooner stops them all. Returns the
    exit status (0, or 1 when workers failed)."""
    _port_free(opts["host"], opts["port"])
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked locks
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    procs: list[tuple[Any, float]] = []

    def start() -> tuple[Any, float]:
        proc = spawn.Process(target=_worker, args=(app, factory, opts), daemon=False)
        proc.start()
        return proc, time.monotonic()

    status = 0
    try:
        procs = [start() for _ in range(workers)]
        while not stop.is_set():
            wait([p.sentinel for p, _ in procs], timeout=0.5)
            for i, (proc, began) in enumerate(procs):
                if proc.is_alive() or stop.is_set():
                    continue
                proc.join()
                if proc.exitcode == STARTUP_FAILURE or time.monotonic() - began < MIN_UPTIME:
                    log.error("API worker %s ended at start (exit %s): stopping",
                              proc.pid, proc.exitcode)
                    status = 1
                    stop.set()
                    break
                log.warning("API worker %s ended (exit %s): starting another", proc.pid,
                            proc.exitcode)
                procs[i] = start()
    finally:
        for proc, _ in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)  # uvicorn's graceful shutdown
        for proc, _ in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return status


def serve_in_thread(cfg, listen: Listen, stop: threading.Event, app: Any) -> None:  # noqa: ANN001
    """One worker in this thread until `stop` is set (for `govsoc up`)."""
    # uvicorn leaves signals alone outside the main thread: the main job owns them
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(cfg, listen)))
    watcher = threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit",
                                                                     True)), daemon=True)
    watcher.start()
    with audit_drain(cfg, "inline"):  # the app's own trail drains, unless configured not to
        server.run()
