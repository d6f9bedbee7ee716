"""`govsoc api serve --workers 2`: each worker listens on a socket of its own
(SO_REUSEPORT) and the kernel spreads the connections over both (one shared socket let
one worker accept them all)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from soc_api.serve import ServeError, reuseport_socket, run_workers
from soc_core.store import Selection, open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listeners(pid: int, port: int) -> dict[int, str]:
    """{worker pid: inode of its listening socket on `port`} for `pid`'s children."""
    out = {}
    for child in psutil.Process(pid).children():
        try:
            for c in child.net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port:
                    out[child.pid] = os.readlink(f"/proc/{child.pid}/fd/{c.fd}")
        except psutil.NoSuchProcess:
            continue
    return out


def _established(pid: int, port: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def test_two_workers_each_listen_on_their_own_socket_and_both_serve(tmp_path):
    port = free_port()
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db", "GOVSOC_DATA_DIR": str(tmp_path),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen([sys.executable, "-m", "soc_core.cli", "api", "serve", "--port",
                             str(port), "--workers", "2", "--insecure-http"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    conns: list[http.client.HTTPConnection] = []
    try:
        deadline = time.monotonic() + 120
        listeners: dict[int, str] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            listeners = _listeners(proc.pid, port)
            if len(listeners) == 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        # two workers, two distinct listening sockets, none in the supervisor
        assert len(listeners) == 2 and len(set(listeners.values())) == 2, listeners
        assert not any(c.laddr.port == port for c in psutil.Process(proc.pid)
                       .net_connections("tcp"))
        for _ in range(32):  # kept open: each stays with the worker that accepted it
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b'{"status":"ok"}'
            conns.append(conn)
        served = {pid: _established(pid, port) for pid in listeners}
        # the kernel hashes each connection to one of the two sockets: all 32 on one
        # worker has a chance of 2 in 2**32
        assert sum(served.values()) == 32 and all(served.values()), served
        # the workers spool their audit records; the supervisor moves them to the store
        conns[0].request("GET", "/events/x", headers={"Authorization": "Bearer forged"})
        assert conns[0].getresponse().status == 401
        with open_store(f"sqlite:///{tmp_path}/g.db") as store:
            deadline = time.monotonic() + 30
            found: list[dict] = []
            while not found and time.monotonic() < deadline:
                store.refresh()
                found = [d for d in store.scan(Selection(family="audit"))
                         if d["event"]["action"] == "auth.token"]
                time.sleep(0.1)
        assert len(found) == 1 and found[0]["event"]["outcome"] == "failure"
        assert json.loads((tmp_path / "audit" / "drain.json").read_text())["pid"] == proc.pid
    finally:
        for conn in conns:
            conn.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0  # both workers stopped cleanly on SIGTERM


def test_a_port_in_use_is_one_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match="cannot listen on 127.0.0.1"):
            run_workers("soc_api.app:app_from_config", 2, {"host": "127.0.0.1", "port": port})
        # nor can a worker's SO_REUSEPORT socket join a listener that did not ask for it
        with pytest.raises(OSError):
            reuseport_socket("127.0.0.1", port).close()
