"""The packet ring under live capture, on the test's own veth pair with real servers:

- `govsoc collect live --ring --workers 2` while dumpcap records the same wire: the pcap
  retrieved for each flow equals, packet for packet, what tshark's display filter on the
  flow's 5-tuple and time span selects from dumpcap's capture (on both stores); the ring's
  BPF keeps out what it should; a department with its own retention has its own files;
- sustained capture into a small budget: no file beyond it, oldest removed first;
- a disk that fills (a small tmpfs): writing stops without a crash, the health event is
  raised, flows go on being recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from ring_helpers import pcap_packets, tshark_select

from collectors.health import Health
from collectors.packet import PacketRing, RingConfig, write_flow_pcap
from collectors.packet.live import capture
from collectors.packet.ringfile import parse_name
from collectors.packet.vethpair import veth_pair
from soc_core.config import Config
from soc_core.store import Selection, open_store

pytestmark = pytest.mark.live

CLIENT, SERVER, SERVER2 = "10.206.0.1", "10.206.0.2", "10.206.0.3"

SERVERS = textwrap.dedent("""
    import http.server, socket, socketserver, sys, threading
    body = bytes(range(256)) * 4096  # 1 MiB: segments of many sizes, over two ring files
    class Page(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(self.request.recv(1024).upper())
    def udp(ip):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((ip, 5000))
        while True:
            data, peer = u.recvfrom(2048)
            u.sendto(data.upper(), peer)
    for ip in sys.argv[1:]:
        for srv in (http.server.ThreadingHTTPServer((ip, 8080), Page),
                    socketserver.ThreadingTCPServer((ip, 7000), Echo)):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        threading.Thread(target=udp, args=(ip,), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
""")

TRAFFIC = textwrap.dedent(f"""
    import http.client, socket
    for i in range(6):
        ip = "{SERVER}" if i % 2 else "{SERVER2}"
        c = http.client.HTTPConnection(ip, 8080, timeout=10)
        c.request("GET", "/file%d" % i)
        assert len(c.getresponse().read()) == 1048576
        c.close()
        with socket.create_connection((ip, 7000), timeout=10) as s:
            s.sendall(b"echo %d" % i)
            assert s.recv(1024) == b"ECHO %d" % i
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(10)
        u.sendto(b"dgram %d" % i, (ip, 5000))
        assert u.recv(1024) == b"DGRAM %d" % i
        u.close()
""")

# frames for the sustained and disk-full runs: sent raw from B's end, as fast as it goes
FLOOD = textwrap.dedent("""
    import socket, struct, sys, time
    iface, seconds = sys.argv[1], float(sys.argv[2])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    def frame(sport):
        payload = bytes(900)
        udp = struct.pack(">HHHH", sport, 9000, 8 + len(payload), 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton("10.207.0.2"), socket.inet_aton("10.207.0.1"))
        return b"\\x02\\0\\0\\0\\0\\x01\\x02\\0\\0\\0\\0\\x02\\x08\\x00" + ip + udp
    end = time.time() + seconds
    n = 0
    while time.time() < end:  # a new flow every 200 frames, each idle a second later
        f = frame(10000 + (n // 200) % 50000)
        for _ in range(200):
            s.send(f)
        n += 200
        time.sleep(0.001)
    print(n)
""")


def _toml(path: Path, tmp: Path) -> Path:
    path.write_text(textwrap.dedent(f"""
        store_url = "sqlite:///{tmp}/live.db"
        data_dir = "{tmp}/data"
        [[departments]]
        id = "wjw"
        name = "市卫健委"
        cidrs = ["{SERVER2}/32"]
        [collectors.ring]
        file_mb = 1
        max_mb = 64
        min_free_mb = 0
        bpf = "not udp port 5000"
        [collectors.ring.retention]
        wjw = "30d"
    """))
    return path


@pytest.fixture(scope="module")
def live_ring(tmp_path_factory):
    """One `collect live --ring --workers 2` run with dumpcap on the same interface."""
    tmp = tmp_path_factory.mktemp("ringlive")
    env = {**os.environ, "GOVSOC_CONFIG": str(_toml(tmp / "govsoc.toml", tmp))}
    env.pop("GOVSOC_STORE_URL", None)
    env.pop("GOVSOC_DATA_DIR", None)
    govsoc = str(Path(sys.executable).with_name("govsoc"))
    (tmp / "servers.py").write_text(SERVERS)
    (tmp / "traffic.py").write_text(TRAFFIC)
    with veth_pair("gr", (CLIENT, SERVER)) as (ns_a, ns_b, va, vb):
        subprocess.run(["ip", "-n", ns_b, "addr", "add", f"{SERVER2}/24", "dev", vb],
                       check=True)
        servers = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable,
                                    str(tmp / "servers.py"), SERVER, SERVER2],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        dumpcap = subprocess.Popen(["ip", "netns", "exec", ns_a, "dumpcap", "-i", va, "-w",
                                    str(tmp / "original.pcapng")],
                                   stderr=subprocess.PIPE, text=True)
        live = subprocess.Popen(["ip", "netns", "exec", ns_a, govsoc, "collect", "live",
                                 "--iface", va, "--ring", "--workers", "2"], env=env,
                                cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert servers.stdout.readline().strip() == "ready"
            line = ""
            while "Capturing on" not in line:
                line = dumpcap.stderr.readline()
                assert line, "dumpcap did not start"
            assert live.stderr.readline().strip() == f"capturing on {va} with 2 workers"
            subprocess.run(["ip", "netns", "exec", ns_a, sys.executable,
                            str(tmp / "traffic.py")], check=True, timeout=120)
            time.sleep(1.0)
        finally:
            live.send_signal(signal.SIGINT)
            out, err = live.communicate(timeout=120)
            dumpcap.send_signal(signal.SIGTERM)
            dumpcap.communicate(timeout=30)
            servers.kill()
            servers.wait()
    assert live.returncode == 0, err
    return {"tmp": tmp, "out": out, "store_url": f"sqlite:///{tmp}/live.db",
            "original": tmp / "original.pcapng", "ring_dir": tmp / "data" / "pcap",
            "tshark": {}}


def _client_flows(store) -> list[dict]:
    return [f for f in store.scan(Selection(dataset="network.flow"))
            if CLIENT in (f["source"]["ip"], f["destination"]["ip"])]


def test_live_ring_flows_equal_tshark(live_ring, store, tmp_path):
    out = live_ring["out"]
    assert "worker 0:" in out and "worker 1:" in out and "0 kernel drops" in out, out
    with open_store(live_ring["store_url"]) as captured:
        events = list(captured.scan(Selection()))
    store.write(events, refresh=True)  # the same flow events on this test's backend
    flows = _client_flows(store)
    by = {(f["network"]["transport"], f["destination"].get("port")): 0 for f in flows}
    for f in flows:
        by[(f["network"]["transport"], f["destination"].get("port"))] += 1
    assert by[("tcp", 8080)] == 6 and by[("tcp", 7000)] == 6 and by[("udp", 5000)] == 6, by
    cfg = Config(values={"data_dir": str(live_ring["tmp"] / "data")})
    spans_files = 0
    singles = {}  # flow id -> its packets as written alone, in the order written
    for f in flows:
        got = tmp_path / "got.pcap"
        result = write_flow_pcap(store, cfg, got, flows=[f["event"]["id"]])
        assert result.flows == 1
        if f["network"]["transport"] == "udp":  # the ring's filter keeps these out
            assert "pcap" not in f["govsoc"] and result.packets == 0
            assert "no packets in the ring" in result.notes[0]
            continue
        loc = f["govsoc"]["pcap"]
        dept = "wjw" if f["destination"]["ip"] == SERVER2 else "all"
        assert loc["stream"].endswith(f"-{dept}"), loc  # the department's own files
        spans_files += loc["first"]["file"] != loc["last"]["file"]
        cache = live_ring["tshark"]  # tshark once a flow, whichever backend runs first
        if f["event"]["id"] not in cache:
            cache[f["event"]["id"]] = tshark_select(live_ring["original"], f,
                                                    tmp_path / "ref.pcap")
        expected = cache[f["event"]["id"]]
        assert result.notes == [] and result.packets == f["network"]["packets"]
        mine = singles[f["event"]["id"]] = pcap_packets(got)
        # the same frames, in the same order in each direction; each socket stamps a packet
        # as the kernel hands it over (an outgoing packet reaches each tap separately), so
        # the ring's and dumpcap's times may differ a little (up to 187 µs seen on a loaded
        # machine), and two packets of opposite directions that close together may reach
        # the two sockets in either order
        assert sorted(d for _, d in mine) == sorted(d for _, d in expected), f["event"]["id"]
        for src in {d[6:12] for _, d in expected}:  # each direction by its source MAC
            assert [d for _, d in mine if d[6:12] == src] == \
                [d for _, d in expected if d[6:12] == src], f["event"]["id"]
        mine = sorted(mine, key=lambda p: p[1])
        expected = sorted(expected, key=lambda p: p[1])
        worst = max(abs(a - b) for (a, _), (b, _) in zip(mine, expected, strict=True))
        assert worst <= 5000, (f["event"]["id"], worst)
    assert spans_files, "no flow spanned two ring files: rotation was not exercised"
    # an HTTP event's packets are its flow's
    http = next(store.scan(Selection(dataset="network.http")))
    r1 = write_flow_pcap(store, cfg, tmp_path / "a.pcap", flows=[http["event"]["id"]])
    [flow] = [f for f in flows if f["event"]["id"] == r1.flow_ids[0]]
    assert flow["source"]["port"] == http["source"]["port"] and r1.packets > 20
    # several flows at once: merged by time, each flow's packets in its own capture order
    # (which may hold a microsecond's inversion between the two directions, see above), so
    # time goes back only from one packet of a flow to the next of the same flow
    chosen = [f["event"]["id"] for f in flows[:4]]
    both = write_flow_pcap(store, cfg, tmp_path / "b.pcap", flows=chosen)
    merged = pcap_packets(tmp_path / "b.pcap")
    owner = {d: fid for fid in chosen for _, d in singles.get(fid, ())}
    assert both.flows == 4 and len(merged) == sum(len(singles.get(i, ())) for i in chosen)
    for fid in chosen:
        assert [p for p in merged if owner[p[1]] == fid] == singles.get(fid, []), fid
    for (t0, d0), (t1, d1) in pairwise(merged):
        assert t1 >= t0 or owner[d0] == owner[d1], (t0, t1)
    assert len({owner[d] for _, d in merged}) >= 2, "the merge saw one flow only"


def _flood(ns: str, dev: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", FLOOD, dev,
                             str(seconds)], stdout=subprocess.PIPE, text=True)


def _capture_with(ring: PacketRing, ns_a: str, ns_b: str, va: str, vb: str,
                  seconds: float, watch=None) -> tuple[list[dict], object]:
    events: list[dict] = []
    stop, ready = threading.Event(), threading.Event()
    result: dict = {}

    def run() -> None:
        try:
            result["stats"] = capture(va, "udp", stop, events.append, netns=ns_a,
                                      ready=ready, ring=ring, idle={17: 1.0},
                                      sweep_every=0.5)
        except BaseException as exc:  # surfaced below
            result["error"] = exc
            ready.set()

    th = threading.Thread(target=run)
    th.start()
    try:
        assert ready.wait(30) and "error" not in result, result.get("error")
        flood = _flood(ns_b, vb, seconds)
        while flood.poll() is None:
            if watch:
                watch()
            time.sleep(0.02)
        time.sleep(0.5)
    finally:
        stop.set()
        th.join(60)
    assert "error" not in result, result.get("error")
    return events, result["stats"]


def test_ring_budget_and_full_disk(tmp_path):
    with veth_pair("gq", ("10.207.0.1", "10.207.0.2")) as (ns_a, ns_b, va, vb):
        # sustained capture into a 3 MiB budget of 1 MiB files
        ring_dir = tmp_path / "ring"
        cfg = RingConfig(dir=ring_dir, file_bytes=1 << 20, max_bytes=3 << 20,
                         max_age_s=3600, min_free_bytes=0)
        health = Health("live")
        ring = PacketRing(cfg, health=health)
        peak = [0]

        def watch() -> None:
            sizes = []
            for p in ring_dir.glob("*.pcapng"):
                try:  # the ring may remove its oldest file between the listing and the stat
                    sizes.append(p.stat().st_size)
                except FileNotFoundError:
                    pass
            peak[0] = max(peak[0], sum(sizes))

        events, stats = _capture_with(ring, ns_a, ns_b, va, vb, 2.5, watch)
        watch()
        files = sorted(ring_dir.glob("*.pcapng"))
        seqs = [parse_name(p.name)[1] for p in files]
        assert ring.written > 4000 and ring.removed_files >= 3, ring.status()
        assert peak[0] <= cfg.max_bytes + (1 << 20) // 8, peak  # (+ unflushed buffer)
        assert sum(p.stat().st_size for p in files) <= cfg.max_bytes
        assert seqs == list(range(seqs[-1] - len(seqs) + 1, seqs[-1] + 1)), seqs
        assert seqs[0] > 1  # the oldest went first
        assert all(p.stat().st_size <= cfg.file_bytes + 2048 for p in files)
        assert ring.paused is None and health.ring["writing"]

        # a disk that fills: a 4 MiB tmpfs, writing must stop, flows go on
        disk = tmp_path / "small"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                       check=True)
        try:
            cfg = RingConfig(dir=disk, file_bytes=1 << 20, max_bytes=64 << 20,
                             max_age_s=3600, min_free_bytes=1 << 20)
            health = Health("live")
            ring = PacketRing(cfg, health=health)
            events, stats = _capture_with(ring, ns_a, ns_b, va, vb, 3.0)
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    assert ring.paused and "free disk space" in ring.paused
    assert ring.not_written > 0 and ring.written > 0
    assert health.ring["writing"] is False and any("packet ring stopped" in r
                                                   for r in health.reasons)
    paused = [e for e in events if e["event"]["dataset"] == "govsoc.pcap"]
    assert paused and paused[0]["event"]["action"] == "pcap_ring_paused"
    flows = [e for e in events if e["event"]["dataset"] == "network.flow"]
    assert flows and stats.packets > ring.written
    late = [f for f in flows if "pcap" not in f["govsoc"]]
    assert late, "no flow was recorded after writing stopped"

