"""Serving the API with uvicorn: HTTPS by default; plain HTTP only on a loopback address
and only when asked for by name."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import uvicorn

from soc_api import tls


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
    """Run in the foreground until interrupted (several workers: uvicorn's supervisor)."""
    opts = uvicorn_options(cfg, listen)
    uvicorn.run("soc_api.app:app_from_config", factory=True, workers=listen.workers, **opts)


def serve_in_thread(cfg, listen: Listen, stop: threading.Event, app: Any) -> None:  # noqa: ANN001
    """One worker in this thread until `stop` is set (for `govsoc up`)."""
    # uvicorn leaves signals alone outside the main thread: the main job owns them
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(cfg, listen)))
    watcher = threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit",
                                                                     True)), daemon=True)
    watcher.start()
    server.run()
