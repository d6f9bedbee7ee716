"""Live capture with 2 worker processes in one PACKET_FANOUT group (flow hash) on the
test's own veth pair: every flow the client made is reported exactly once, by one worker,
with the packets of both directions in that one record; each worker reports its own
kernel counters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pytest

from collectors.packet.vethpair import veth_pair as make_veth_pair
from collectors.packet.workers import capture_workers
from soc_core.store import Selection, open_store

pytestmark = pytest.mark.live

CLIENT_IP, SERVER_IP = "10.205.0.1", "10.205.0.2"
FLOWS = 40  # of each transport: all on one worker by chance has odds 2**-79

SERVER = textwrap.dedent("""
    import socket, sys, threading
    ip = sys.argv[1]
    tcp = socket.create_server((ip, 7000), backlog=128)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((ip, 5000))
    def udp_echo():
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(data.upper(), peer)
    threading.Thread(target=udp_echo, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = tcp.accept()
        with conn:
            conn.sendall(conn.recv(1024).upper())
""")

CLIENT = textwrap.dedent(f"""
    import json, socket
    tcp_ports, udp_ports = [], []
    for i in range({FLOWS}):
        with socket.create_connection(("{SERVER_IP}", 7000), timeout=10) as s:
            tcp_ports.append(s.getsockname()[1])
            s.sendall(b"flow %d" % i)
            assert s.recv(1024) == b"FLOW %d" % i
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(10)
        u.bind(("{CLIENT_IP}", 0))
        u.sendto(b"dgram %d" % i, ("{SERVER_IP}", 5000))
        assert u.recvfrom(1024)[0] == b"DGRAM %d" % i
        udp_ports.append(u.getsockname()[1])
        u.close()
    print(json.dumps({{"tcp": tcp_ports, "udp": udp_ports}}))
""")


def test_two_workers_each_flow_once_with_both_directions(tmp_path):
    with make_veth_pair("gf", (CLIENT_IP, SERVER_IP)) as (ns_a, ns_b, va, _vb):
        (tmp_path / "server.py").write_text(SERVER)
        (tmp_path / "client.py").write_text(CLIENT)
        server = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable,
                                   str(tmp_path / "server.py"), SERVER_IP],
                                  stdout=subprocess.PIPE, text=True)

        def make_sink(i: int):  # runs in worker i: events to its own file
            out = open(tmp_path / f"worker{i}.jsonl", "wb")  # noqa: SIM115
            return (lambda ev: out.write(orjson.dumps(ev) + b"\n")), out.close

        stop, ready = threading.Event(), threading.Event()
        result: dict = {}

        def run() -> None:
            try:
                result["workers"] = capture_workers(va, "ip", 2, stop, make_sink,
                                                    netns=ns_a, ready=ready)
            except BaseException as exc:  # surfaced by the asserts below
                result["error"] = exc
                ready.set()

        thread = threading.Thread(target=run)
        try:
            assert server.stdout.readline().strip() == "ready"
            thread.start()
            assert ready.wait(60) and "error" not in result, result.get("error")
            client = subprocess.run(["ip", "netns", "exec", ns_a, sys.executable,
                                     str(tmp_path / "client.py")], capture_output=True,
                                    text=True, timeout=120)
            assert client.returncode == 0, client.stderr
            sent = json.loads(client.stdout)
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(60)
            server.kill()
            server.wait()
    assert "error" not in result, result.get("error")
    stats = [s for s, _ in result["workers"]]

    flows_by_worker = []
    for i in range(2):
        events = [orjson.loads(line) for line in
                  (tmp_path / f"worker{i}.jsonl").read_bytes().splitlines()]
        flows_by_worker.append([e for e in events if e["event"]["dataset"] == "network.flow"
                                and e["source"]["ip"] == CLIENT_IP])
    keys = [[(e["network"]["transport"], e["source"]["port"], e["destination"]["port"])
             for e in flows] for flows in flows_by_worker]
    expected = ({("tcp", p, 7000) for p in sent["tcp"]}
                | {("udp", p, 5000) for p in sent["udp"]})
    everything = keys[0] + keys[1]
    assert len(everything) == len(set(everything)), "a flow was reported twice"
    assert set(everything) == expected
    assert keys[0] and keys[1], "the fan-out gave one worker every flow"
    for flows in flows_by_worker:
        for e in flows:  # both directions of the flow in its one record
            assert e["source"]["packets"] >= 1 and e["destination"]["packets"] >= 1, e
            if e["network"]["transport"] == "tcp":
                assert e["source"]["packets"] >= 3 and e["destination"]["packets"] >= 2, e
    for s in stats:
        assert s.kernel_packets >= s.packets > 0
        assert s.kernel_drops == 0
    assert sum(s.flows for s in stats) >= len(expected)


def test_collect_live_workers_command(tmp_path):
    """`govsoc collect live --workers 2`: each worker ships through its own shipper;
    every connection is one flow in the store; a line a worker, with its kernel drops."""
    govsoc = str(Path(sys.executable).with_name("govsoc"))
    env = {**os.environ, "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/live.db",
           "GOVSOC_DATA_DIR": str(tmp_path / "data")}
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    proc = subprocess.Popen([govsoc, "collect", "live", "--iface", "lo", "--bpf",
                             f"tcp port {port}", "--duration", "6", "--workers", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().strip() == "capturing on lo with 2 workers"
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = srv.accept()
        c.sendall(b"hello")
        s.recv(5)
        c.close()
        s.close()
    out, err = proc.communicate(timeout=120)
    srv.close()
    assert proc.returncode == 0, err
    assert "worker 0:" in out and "worker 1:" in out and "0 kernel drops" in out, out
    with open_store(env["GOVSOC_STORE_URL"]) as store:
        flows = list(store.scan(Selection(dataset="network.flow")))
    assert len(flows) == 20 and {f["destination"]["port"] for f in flows} == {port}
    assert all(f["source"]["packets"] >= 3 and f["destination"]["packets"] >= 2 for f in flows)
