"""Live capture on a veth pair between two network namespaces this test creates, with
real TCP, DNS and HTTP traffic between small servers and clients run inside them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from collectors.packet import CaptureError
from collectors.packet.live import capture
from collectors.packet.vethpair import veth_pair as make_veth_pair

pytestmark = pytest.mark.live

CLIENT_IP, SERVER_IP, ANSWER = "10.203.0.1", "10.203.0.2", "10.203.0.80"
VLAN_CLIENT, VLAN_SERVER = "10.204.0.1", "10.204.0.2"

# A frame tagged VLAN 100 sent raw from B's end of the wire: A's kernel moves the tag
# out of the frame into packet metadata, which the collector must put back.
TAGGED = textwrap.dedent(f"""
    import socket, struct, sys
    def csum(b):
        s = sum(struct.unpack(">10H", b))
        s = (s >> 16) + (s & 0xFFFF)
        return ~(s + (s >> 16)) & 0xFFFF
    udp = struct.pack(">HHHH", 5353, 9999, 8 + 6, 0) + b"tagged"
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton("{VLAN_SERVER}"), socket.inet_aton("{VLAN_CLIENT}"))
    ip = ip[:10] + struct.pack(">H", csum(ip)) + ip[12:]
    frame = (bytes.fromhex("ffffffffffff020000000009") + struct.pack(">HHH", 0x8100, 100, 0x0800)
             + ip + udp)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((sys.argv[1], 0))
    s.send(frame)
""")

SERVER = textwrap.dedent(f"""
    import http.server, socket, socketserver, struct, sys, threading

    ip = sys.argv[1]
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind((ip, 53))

    def answer():
        while True:
            data, addr = dns.recvfrom(512)
            qid = struct.unpack(">H", data[:2])[0]
            end = data.index(b"\\0", 12) + 5
            rr = b"\\xc0\\x0c" + struct.pack(">HHIH", 1, 1, 120, 4) + socket.inet_aton("{ANSWER}")
            dns.sendto(struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + data[12:end] + rr, addr)

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"govsoc live page\\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(self.request.recv(1024).upper())

    web = http.server.HTTPServer((ip, 8080), Page)
    echo = socketserver.TCPServer((ip, 7000), Echo)
    for target in (answer, web.serve_forever, echo.serve_forever):
        threading.Thread(target=target, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
""")

CLIENT = textwrap.dedent(f"""
    import http.client, json, socket, struct

    out = {{}}
    q = struct.pack(">HHHHHH", 0x5150, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in "portal.example.gov.cn".split("."))
    q += b"\\0" + struct.pack(">HH", 1, 1)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(q, ("{SERVER_IP}", 53))
    reply = u.recv(512)
    out["dns_port"] = u.getsockname()[1]
    out["dns_answer"] = socket.inet_ntoa(reply[-4:])

    c = http.client.HTTPConnection("{SERVER_IP}", 8080, timeout=5)
    c.request("GET", "/hello.txt?lang=zh", headers={{"User-Agent": "govsoc-live/1.0",
                                                     "Host": "portal.example.gov.cn"}})
    out["http_port"] = c.sock.getsockname()[1]
    r = c.getresponse()
    out["http_status"], out["http_body"] = r.status, r.read().decode()
    c.close()

    t = socket.create_connection(("{SERVER_IP}", 7000), timeout=5)
    out["tcp_port"] = t.getsockname()[1]
    t.sendall(b"hello govsoc")
    out["tcp_echo"] = t.recv(1024).decode()
    t.close()

    r = socket.socket()
    r.settimeout(5)
    r.bind(("{CLIENT_IP}", 0))
    out["closed_port"] = r.getsockname()[1]
    try:
        r.connect(("{SERVER_IP}", 9))
    except ConnectionRefusedError:
        out["refused"] = True
    print(json.dumps(out))
""")


@pytest.fixture
def veth_pair():
    """Namespaces A (client) and B (server) joined by a veth pair; names unique to this
    test; everything removed afterwards, also when the test fails."""
    with make_veth_pair("gs", (CLIENT_IP, SERVER_IP)) as pair:
        yield pair


def test_live_capture_matches_the_traffic_sent(veth_pair, tmp_path):
    ns_a, ns_b, va, vb = veth_pair
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "client.py").write_text(CLIENT)
    server = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable,
                               str(tmp_path / "server.py"), SERVER_IP],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    events: list[dict] = []
    stop, ready = threading.Event(), threading.Event()
    result: dict = {}

    def run():
        try:
            result["stats"] = capture(va, "ip", stop, events.append, netns=ns_a, ready=ready)
        except BaseException as exc:  # surfaced by the asserts below
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=run)
    try:
        assert server.stdout.readline().strip() == "ready"
        thread.start()
        assert ready.wait(30) and "error" not in result, result.get("error")
        client = subprocess.run(["ip", "netns", "exec", ns_a, sys.executable,
                                 str(tmp_path / "client.py")], capture_output=True, text=True,
                                timeout=60)
        assert client.returncode == 0, client.stderr
        sent = json.loads(client.stdout)
        subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, "-c", TAGGED, vb],
                       check=True, timeout=60)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)
        server.kill()
        server.wait()
    assert "error" not in result, result.get("error")
    stats = result["stats"]
    assert sent["http_status"] == 200 and sent["tcp_echo"] == "HELLO GOVSOC"
    assert sent["dns_answer"] == ANSWER and sent["refused"]

    flows = {(e["source"]["ip"], e["source"]["port"], e["destination"]["port"]): e
             for e in events if e["event"]["dataset"] == "network.flow"}
    web = flows[(CLIENT_IP, sent["http_port"], 8080)]
    assert web["network"]["protocol"] == "http"
    assert web["destination"]["ip"] == SERVER_IP
    assert web["govsoc"]["flow"]["state"] in ("finished", "established")
    assert web["zeek"]["connection"]["history"].startswith("ShAD")
    echo = flows[(CLIENT_IP, sent["tcp_port"], 7000)]
    assert echo["source"]["packets"] >= 3 and echo["destination"]["packets"] >= 2
    # 12 bytes each way of payload on top of the headers
    assert echo["source"]["bytes"] >= 12 + 20 * echo["source"]["packets"]
    refused = flows[(CLIENT_IP, sent["closed_port"], 9)]
    assert refused["govsoc"]["flow"]["state"] == "rejected"
    assert refused["zeek"]["connection"]["state"] == "REJ"
    dns_flow = flows[(CLIENT_IP, sent["dns_port"], 53)]
    assert dns_flow["network"]["transport"] == "udp"

    tagged = flows[(VLAN_SERVER, 5353, 9999)]
    assert tagged["network"]["vlan"]["id"] == "100"  # restored from the kernel's auxdata

    [dns] = [e for e in events if e["event"]["dataset"] == "network.dns"]
    assert dns["dns"]["question"]["name"] == "portal.example.gov.cn"
    assert dns["dns"]["id"] == str(0x5150)
    assert dns["dns"]["resolved_ip"] == [ANSWER]
    assert dns["dns"]["response_code"] == "NOERROR"
    assert dns["source"]["port"] == sent["dns_port"]

    [http] = [e for e in events if e["event"]["dataset"] == "network.http"]
    assert http["url"]["original"] == "/hello.txt?lang=zh"
    assert http["url"]["domain"] == "portal.example.gov.cn"
    assert http["http"]["request"]["method"] == "GET"
    assert http["http"]["response"]["status_code"] == 200
    assert http["user_agent"]["original"] == "govsoc-live/1.0"
    assert http["source"]["port"] == sent["http_port"]

    assert stats.kernel_drops == 0
    assert stats.kernel_packets >= stats.packets > 0
    assert stats.bad_total == 0
    assert len({e["event"]["id"] for e in events}) == len(events)


def test_bad_interface_and_filter_are_clear_errors(veth_pair):
    ns_a, _, va, _ = veth_pair
    stop = threading.Event()
    stop.set()
    with pytest.raises(CaptureError, match="no such network interface"):
        capture("nosuch0", None, stop, lambda e: None, netns=ns_a)
    with pytest.raises(CaptureError, match="bad BPF filter"):
        capture(va, "tcp port banana", stop, lambda e: None, netns=ns_a)
    with pytest.raises(CaptureError, match="does not exist"):
        capture(va, None, stop, lambda e: None, netns="gs-no-such-ns")
    stats = capture(va, "tcp", stop, lambda e: None, netns=ns_a)
    assert stats.packets == 0 and stats.kernel_drops == 0


def test_unprivileged_capture_is_refused_with_one_line(tmp_path):
    code = ("import threading\nfrom collectors.packet.live import capture\n"
            "from collectors.packet import CaptureError\n"
            "try:\n    capture('lo', None, threading.Event(), print)\n"
            "except CaptureError as e:\n    print('ERR', e)\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-P", "-c", code],
                       capture_output=True, text=True, timeout=60,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[3]))
    assert r.stdout.strip() == ("ERR live capture on lo is not permitted: it needs root or "
                                "the CAP_NET_RAW capability"), r.stderr
