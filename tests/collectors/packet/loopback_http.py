"""Real HTTP traffic captured by the test itself: a Python HTTP server on a free loopback
port serves a known file, a client fetches it, and dumpcap (Wireshark's capture engine,
root) records the exchange into a pcapng file."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

AGENT = "govsoc-dissect-test/1.0"


@dataclass
class Served:
    pcap: Path
    name: str  # the file served
    body: bytes
    port: int
    path: str  # the request path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capture_http(folder: Path, *, size: int = 40_000) -> Served:
    """Capture one GET of a `size`-byte file from a loopback HTTP server."""
    root = folder / "www"
    root.mkdir(parents=True, exist_ok=True)
    body = os.urandom(size)
    name = "sample-payload.bin"
    (root / name).write_bytes(body)
    port = _free_port()
    pcap = folder / "http-loopback.pcapng"
    dump = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"tcp port {port}",
                             "-w", str(pcap)], stderr=subprocess.PIPE, text=True)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_started(dump, pcap)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/{name}?from=govsoc",
                                     headers={"User-Agent": AGENT, "X-Govsoc-Test": "dissect",
                                              "Connection": "close"})
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
            assert r.read() == body
        wait_for_close(pcap, "the HTTP exchange")
    finally:
        server.shutdown()
        server.server_close()
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
    return Served(pcap=pcap, name=name, body=body, port=port, path=f"/{name}?from=govsoc")


def wait_started(dump: subprocess.Popen, pcap: Path) -> None:
    """dumpcap has its filter in place once it has written the capture's header."""
    deadline = time.monotonic() + 20
    while not (pcap.exists() and pcap.stat().st_size > 0):
        assert dump.poll() is None, f"dumpcap failed: {dump.stderr.read() if dump.stderr else ''}"
        assert time.monotonic() < deadline, "dumpcap did not start"
        time.sleep(0.05)


def wait_for_close(pcap: Path, what: str) -> None:
    """Until both FINs of the connection are on disk (the exchange is complete)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "tcp.flags.fin == 1",
                               "-T", "fields", "-e", "frame.number"], capture_output=True,
                              text=True)
        if len(done.stdout.split()) >= 2:
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not reach the capture")
