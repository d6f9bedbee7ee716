"""Reads by id and bulk writes over the store's own keep-alive HTTP connections.

A GET or multi-get of one document through elasticsearch-py costs about 400 µs of CPU in
the client (request building, elastic-transport's node pool, urllib3, response
re-parsing): more than Elasticsearch spends answering it, and the limit of the API's
`GET /events/{id}`. The same request over a persistent `http.client` connection with the
body parsed by orjson costs about a quarter of that; a bulk write (the audit drain's, several
a second from every API worker) about half (`ElasticStore._send_bulk`).

The nodes, their order, headers (basic auth from the URL) and path prefixes are the
client's own node configs, so both paths go to the same places with the same
credentials. An https node is read here only with the client's default TLS options
(verified certificates, the system and certifi CAs, TLS 1.2 or later); with any other TLS
option it is left to the client. A node that fails to answer is skipped for
`DEAD_SECONDS` and the next one is tried, as the client does; when none answers, `request`
returns None and the caller asks the client, whose retries and errors are the store's. A
timeout is the client's ConnectionTimeout at once, with no other node tried (the store's
client does not retry timeouts either), so a hung cluster is not waited for twice.
"""

from __future__ import annotations

import http.client
import itertools
import os
import ssl
import threading
import time
from typing import Any

from elastic_transport import ConnectionTimeout

DEAD_SECONDS = 30.0  # how long a node that failed is skipped (elastic-transport: 1 s to 30 s)


class DirectReads:
    def __init__(self, node_configs: list[Any], timeout: float) -> None:
        self._nodes = [c for c in node_configs if _plain_tls(c)]
        self._timeout = timeout
        self._idle: list[tuple[int, http.client.HTTPConnection]] = []
        self._dead_until = [0.0] * len(self._nodes)
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._pid = os.getpid()

    def request(self, method: str, path: str, body: bytes | None = None
                ) -> tuple[int, bytes] | None:
        """(status, body) of the first node that answers, or None when none did (or no node
        can be read here): the caller then goes through the client."""
        if self._pid != os.getpid():  # a forked child: its parent's sockets are not its own
            self._idle, self._pid = [], os.getpid()
        tried: set[int] = set()
        while len(tried) < len(self._nodes):
            reused, (i, conn) = self._take(tried)
            tried.add(i)
            node = self._nodes[i]
            try:
                got = _exchange(conn, method, node.path_prefix + path, body, node.headers)
                if got is None and reused:  # an idle keep-alive connection the node closed
                    conn.close()
                    conn = self._connect(i)
                    got = _exchange(conn, method, node.path_prefix + path, body, node.headers)
            except TimeoutError as exc:
                self._drop(i, conn)
                raise ConnectionTimeout(f"timed out after {self._timeout} s") from exc
            except (OSError, http.client.HTTPException):
                got = None
            if got is None:
                self._drop(i, conn)
                continue
            self._dead_until[i] = 0.0
            self._idle.append((i, conn))
            return got
        return None

    def _drop(self, i: int, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._dead_until[i] = time.monotonic() + DEAD_SECONDS

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()

    def _take(self, tried: set[int]) -> tuple[bool, tuple[int, http.client.HTTPConnection]]:
        """An idle connection to a node not tried yet, else a new one to the next live node
        (round robin, like the client), else to the next node not tried."""
        with self._lock:
            for k in range(len(self._idle) - 1, -1, -1):
                if self._idle[k][0] not in tried:
                    return True, self._idle.pop(k)
        now = time.monotonic()
        start = next(self._next)
        order = [(start + k) % len(self._nodes) for k in range(len(self._nodes))]
        fresh = [i for i in order if i not in tried]
        live = [i for i in fresh if self._dead_until[i] <= now]
        i = (live or fresh)[0]
        return False, (i, self._connect(i))

    def _connect(self, i: int) -> http.client.HTTPConnection:
        node = self._nodes[i]
        if node.scheme == "https":
            return http.client.HTTPSConnection(node.host, node.port, timeout=self._timeout,
                                               context=self._tls())
        return http.client.HTTPConnection(node.host, node.port, timeout=self._timeout)

    def _tls(self) -> ssl.SSLContext:
        """The client's default: verified certificates (system CAs and certifi's), host name
        checked (an IP address too), TLS 1.2 or later."""
        if self._ssl is None:
            ctx = ssl.create_default_context()
            try:
                import certifi
                ctx.load_verify_locations(certifi.where())
            except ImportError:  # the client then trusts the system CAs alone too
                pass
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ssl = ctx
        return self._ssl


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
              headers: Any) -> tuple[int, bytes] | None:
    """One request on `conn`; None when the node closed it before answering."""
    hdrs = {**headers, "accept": "application/json"}
    if body is not None:
        hdrs["content-type"] = "application/json"
    try:
        conn.request(method, path, body, hdrs)
        resp = conn.getresponse()
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        return None
    data = resp.read()
    if resp.status == 200 and resp.getheader("x-elastic-product") != "Elasticsearch":
        raise http.client.HTTPException("not Elasticsearch")  # the client says so clearly
    return resp.status, data


def _plain_tls(config: Any) -> bool:
    """A node this module can read as the client would: http, or https with default TLS."""
    if config.scheme == "http":
        return True
    return (config.scheme == "https" and config.verify_certs and config.ca_certs is None
            and config.ssl_context is None and config.client_cert is None
            and not config.ssl_assert_fingerprint and not config.ssl_assert_hostname
            and config.ssl_version is None)
