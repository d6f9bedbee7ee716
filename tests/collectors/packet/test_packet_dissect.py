"""Deep dissection and carving (issue 18 points 3 and 4) on real traffic: HTTP the test
captures itself on loopback and the published captures in ../shared/pcaps, compared with
what Wireshark itself (tshark -V / -T json) shows for the same packets; hostile captures
give partial results with a note, never an exception."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import struct
import subprocess
from functools import partial

import pytest
from click.testing import CliRunner
from loopback_http import AGENT, capture_http
from scapy.all import rdpcap

from collectors.packet import CaptureError
from collectors.packet import carving as carver
from collectors.packet import dissection as d
from collectors.pcap_show_cli import carve as carve_cmd
from collectors.pcap_show_cli import show as show_cmd
from soc_core.sm3 import sm3_hex

# tshark's time limit: generous, so a loaded test machine is not mistaken for a slow capture
Limits = partial(d.Limits, timeout_s=300.0)



@pytest.fixture(scope="module")
def shared(shared_dir):
    return shared_dir / "pcaps"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One GET of a known file from a real HTTP server on loopback, captured by dumpcap."""
    return capture_http(tmp_path_factory.mktemp("http"))


def tshark_v(path, frames: list[int]) -> dict[int, list[str]]:
    """`tshark -V` of those frames, by frame number."""
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-V", "-Y",
                          "frame.number in {" + ",".join(map(str, frames)) + "}"],
                         capture_output=True, text=True, check=True).stdout
    found: dict[int, list[str]] = {}
    for ln in out.splitlines():
        if ln.startswith("Frame ") and ":" in ln:
            cur = found.setdefault(int(ln.split(":")[0].split()[1]), [])
        if ln.strip():
            cur.append(ln)
    return found


def tshark_layers(path, frame: int) -> dict:
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "json", "-Y",
                          f"frame.number == {frame}"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]["_source"]["layers"]


def same_as_wireshark(path, packets: list[dict]) -> None:
    """Each packet's tree line for line as `tshark -V` prints it (brackets of generated
    fields aside: PDML does not mark them; so are the deltas to the previous *displayed*
    frame, which depend on the display filter)."""
    v = tshark_v(path, [p["number"] for p in packets])
    for p in packets:
        ours = [ln.strip().strip("[]").strip() for ln in d.tree_text(p["layers"])
                if "displayed frame" not in ln]
        theirs = [ln.strip().strip("[]").strip() for ln in v[p["number"]]
                  if "displayed frame" not in ln]
        assert ours == theirs, p["number"]


def shows(layers: list[dict], name: str) -> list[str]:
    found, stack = [], list(layers)
    while stack:
        n = stack.pop()
        if n.get("name") == name:
            found.append(n.get("show", ""))
        stack.extend(n.get("children", []))
    return found


def labels(value, out=None) -> set[str]:
    """The text items (keys that are not field names) of a tshark JSON layer."""
    out = set() if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            if "." not in k.split(" ")[0] or " " in k:
                out.add(k)
            labels(v, out)
    return out


# -- HTTP ---------------------------------------------------------------------------------

def check_http_request(path, packet: dict) -> None:
    same_as_wireshark(path, [packet])
    http = tshark_layers(path, packet["number"])["http"]
    line = next(k for k in http if k.endswith("HTTP/1.1\\r\\n") or k.endswith("HTTP/1.0\\r\\n"))
    ours = [n for n in packet["layers"] if n["name"] == "http"][0]
    assert line in [c["showname"] for c in ours["children"]], "request line"
    for field in ("http.host", "http.user_agent", "http.request.method", "http.request.uri"):
        want = http.get(field) or http[line].get(field)
        assert shows(packet["layers"], field) == [want], field
    assert packet["protocol"] == "HTTP" and packet["info"].startswith(
        line.replace("\\r\\n", "").strip())


@pytest.mark.live
def test_a_dissected_http_request_shows_what_wireshark_shows(served):
    got = d.dissect(served.pcap, display_filter="http.request", limits=Limits())
    assert len(got.packets) == 1 and not got.truncated
    p = got.packets[0]
    check_http_request(served.pcap, p)
    assert f"GET {served.path} HTTP/1.1" in p["info"]
    assert shows(p["layers"], "http.user_agent") == [AGENT]
    assert any("X-Govsoc-Test: dissect" in s for s in d.tree_text(p["layers"]))
    # the hex dump is the frame's bytes, as scapy reads them from the file
    frame = bytes(rdpcap(str(served.pcap))[p["number"] - 1])
    dumped = bytes.fromhex("".join(ln[6:55].replace(" ", "") for ln in p["hex"].splitlines()))
    assert dumped == frame


def test_a_published_http_capture_dissects_as_wireshark_shows(shared):
    path = shared / "zeek" / "http_bro.org.pcap"
    got = d.dissect(path, display_filter="http.request", limits=Limits(packets=2))
    assert len(got.packets) == 2 and got.truncated
    assert any("first 2 packets" in n for n in got.notes)
    for p in got.packets:
        check_http_request(path, p)


@pytest.mark.live
def test_follow_tcp_and_http_stream_and_a_flow_filter(served):
    tcp = d.follow(served.pcap, "tcp", 0, limits=Limits())
    assert tcp["nodes"][0].endswith(tcp["nodes"][0].rsplit(":", 1)[1])
    assert tcp["nodes"][1] == f"127.0.0.1:{served.port}"
    client, server = tcp["chunks"][0], tcp["chunks"][1]
    assert client["from"] == 0 and client["text"].startswith(f"GET {served.path} HTTP/1.1\r\n")
    assert f"User-Agent: {AGENT}\r\n" in client["text"]
    assert server["from"] == 1 and server["text"].startswith("HTTP/1.0 200 OK\r\n")
    assert server["bytes"] > len(served.body)
    cut = d.follow(served.pcap, "http", 0, limits=Limits(follow_bytes=100))
    assert cut["chunks"][0]["text"].startswith("GET ")
    assert cut["bytes"] == 100 and cut["truncated"] and cut["notes"]
    # the flow's 5-tuple and time span select exactly its packets (counted by tshark)
    client_port = int(tcp["nodes"][0].rsplit(":", 1)[1])
    flow = {"@timestamp": "2000-01-01T00:00:00.000Z",
            "source": {"ip": "127.0.0.1", "port": client_port},
            "destination": {"ip": "127.0.0.1", "port": served.port},
            "network": {"transport": "tcp"}}

    def count(filt: str | None) -> int:
        return len(subprocess.run(["tshark", "-n", "-r", str(served.pcap), "-T", "fields",
                                   "-e", "frame.number", *(["-Y", filt] if filt else [])],
                                  capture_output=True, text=True).stdout.split())

    assert count(d.flow_filter(flow)) == count(None) > 8
    flow["destination"]["port"] = served.port + 1
    assert count(d.flow_filter(flow)) == 0
    flow["source"]["ip"] = "127.0.0.1 || 1"  # only addresses reach the filter text
    with pytest.raises(d.DissectError):
        d.flow_filter(flow)


# -- carving ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def carved(served, tmp_path_factory):
    """The served capture carved twice into one data directory."""
    data = tmp_path_factory.mktemp("carved")
    return data, carver.carve(served.pcap, data), carver.carve(served.pcap, data)


@pytest.mark.live
def test_a_carved_file_hashes_as_the_file_served(served, carved):
    data, got, _ = carved
    [ev] = got.files
    assert ev["file"]["name"] == served.name  # (the request's query is not part of it)
    assert ev["file"]["hash"]["sha256"] == hashlib.sha256(served.body).hexdigest()
    assert ev["govsoc"]["file"]["hash"]["sm3"] == sm3_hex(served.body)
    assert ev["file"]["size"] == len(served.body)
    assert ev["file"]["mime_type"] == "application/octet-stream"  # the server's header
    assert ev["network"]["protocol"] == "http" and ev["event"]["dataset"] == "file.carved"
    kept = carver.carved_path(data, ev["file"]["hash"]["sha256"])
    assert kept.read_bytes() == served.body
    assert [p.name for p in (data / "carved").iterdir()] == [kept.parent.name]  # no leftovers


@pytest.mark.live
def test_carved_files_are_recorded_once(carved, store):
    _, first, second = carved
    assert [e["event"]["id"] for e in first.files] == [e["event"]["id"] for e in second.files]
    assert carver.record(store, first).written == len(first.files)
    assert carver.record(store, second).written == 0
    ev = first.files[0]
    stored = store.get("events", ev["event"]["id"])
    assert stored["file"]["hash"]["sha256"] == ev["file"]["hash"]["sha256"]
    assert stored["govsoc"]["file"]["hash"]["sm3"] == ev["govsoc"]["file"]["hash"]["sm3"]


def test_an_ftp_capture_dissects_in_full_and_its_download_is_carved(shared, tmp_path):
    path = shared / "zeek" / "ftp_ipv4.pcap"
    got = d.dissect(path, display_filter="ftp", with_hex=False, limits=Limits())
    want = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "ftp", "-T", "fields",
                           "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    assert [str(p["number"]) for p in got.packets] == want and not got.notes
    commands = [c for p in got.packets for c in shows(p["layers"], "ftp.request.command")]
    assert {"USER", "PASS", "RETR"} <= set(commands)
    same_as_wireshark(path, got.packets)  # each packet line for line as Wireshark shows it
    files = carver.carve(path, tmp_path).files
    [robots] = [f for f in files if f["file"]["name"] == "robots.txt"]
    assert robots["network"]["protocol"] == "ftp"
    kept = carver.carved_path(tmp_path, robots["file"]["hash"]["sha256"]).read_bytes()
    assert hashlib.sha256(kept).hexdigest() == robots["file"]["hash"]["sha256"]
    assert sm3_hex(kept) == robots["govsoc"]["file"]["hash"]["sm3"]
    assert kept.startswith(b"User-agent") or b"Disallow" in kept


def test_protocols_the_fast_path_does_not_parse_show_in_full(shared):
    path = shared / "initconf-rdp-bruteforce" / "RDP-bruteforce.pcap"
    got = d.dissect(path, display_filter="rdp", with_hex=False, limits=Limits(packets=2))
    assert got.packets and all(p["protocol"] in ("RDP", "TLSv1", "TLSv1.2", "COTP", "T.125")
                               or "rdp" in p["protocols"] for p in got.packets)
    same_as_wireshark(path, got.packets[:1])


# -- hostile input and limits -------------------------------------------------------------

def test_hostile_captures_give_partial_results_with_a_note(shared, tmp_path):
    src = (shared / "zeek" / "http_bro.org.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src[:30000])  # cut in the middle of a packet
    got = d.dissect(cut, limits=Limits(packets=1000), with_hex=False)
    assert got.packets and any("truncated" in n for n in got.notes)
    assert carver.carve(cut, tmp_path / "c").notes
    # a record claiming 200 MB after a good one: Wireshark's reading of it, marked malformed
    huge = tmp_path / "huge.pcap"
    huge.write_bytes(src[:24 + 16 + 74] + struct.pack("<IIII", 1, 0, 200 << 20, 200 << 20)
                     + b"\0" * 64)
    got = d.dissect(huge, with_hex=False, limits=Limits())
    assert any("Malformed Packet" in ln for p in got.packets for ln in d.tree_text(p["layers"]))
    # random damage: whatever Wireshark makes of it, an answer and no exception
    rnd = random.Random(18)
    for i in range(2):
        data = bytearray(src[:60000])
        for _ in range(200):
            data[rnd.randrange(24, len(data))] = rnd.randrange(256)
        f = tmp_path / f"fuzz{i}.pcap"
        f.write_bytes(bytes(data))
        got = d.dissect(f, limits=Limits(packets=10, timeout_s=20), with_hex=False)
        assert isinstance(got.packets, list) and (got.packets or got.notes)
    assert isinstance(d.follow(f, "http", 0, limits=Limits())["chunks"], list)
    # a time limit is a note and what was decoded so far
    slow = d.dissect(shared / "zeek" / "http_bro.org.pcap", limits=Limits(timeout_s=0.001))
    assert slow.truncated and any("stopped after" in n for n in slow.notes)
    with pytest.raises(CaptureError):
        d.dissect(tmp_path / "missing.pcap", limits=Limits())
    not_pcap = tmp_path / "x.pcap"
    not_pcap.write_bytes(b"GET / HTTP/1.1\r\n" * 10)
    with pytest.raises(CaptureError):
        carver.carve(not_pcap, tmp_path)
    with pytest.raises(d.DissectError, match="bad display filter"):
        d.dissect(cut, display_filter="http.request ==", limits=Limits())
    with pytest.raises(d.DissectError):
        d.follow(cut, "smtp", 0, limits=Limits())


def test_caps_on_packets_tree_and_hex(shared):
    path = shared / "zeek" / "http_bro.org.pcap"
    got = d.dissect(path, display_filter="http.response", limits=Limits(
        packets=1, hex_bytes=64, tree_nodes=20))
    [p] = got.packets
    assert p["hex_truncated"] and len(p["hex"].splitlines()) == 4
    assert p["note"] and sum(1 for _ in d.tree_text(p["layers"])) <= 20
    assert got.truncated and len(got.notes) >= 2


# -- the CLI ------------------------------------------------------------------------------

def test_pcap_show_and_carve_commands(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("GOVSOC_STORE_URL", f"sqlite:///{tmp_path}/s.db")
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path / "data"))
    path = str(shared / "zeek" / "ftp_ipv4.pcap")
    runner = CliRunner()
    r = runner.invoke(show_cmd, ["--file", path, "--filter", "ftp.request.command == RETR",
                                 "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["packets"]
    assert got and all(shows(p["layers"], "ftp.request.command") == ["RETR"] and p["hex"]
                       for p in got)
    assert "robots.txt" in {a for p in got for a in shows(p["layers"], "ftp.request.arg")}
    r = runner.invoke(show_cmd, ["--file", path, "--follow", "tcp"])
    assert r.exit_code == 0 and "220 ftp.NetBSD.org FTP server" in r.stdout
    r = runner.invoke(show_cmd, ["--file", path, "--filter", "ftp", "--max-packets", "1",
                                 "--hex"])
    assert r.exit_code == 0 and "File Transfer Protocol (FTP)" in r.stdout
    assert "0000  " in r.stdout
    r = runner.invoke(carve_cmd, ["--file", path])
    assert r.exit_code == 0, r.output
    assert "robots.txt" in r.stdout and "1 files carved (1 new events)" in r.stdout
    for args in (["--file", path, "--filter", "ftp =="], ["--file", str(tmp_path / "none")],
                 [], ["--file", path, "--flow", "x"]):
        r = runner.invoke(show_cmd, args)
        assert r.exit_code == 2 and r.output.count("\n") == 1, (args, r.output)


def test_tshark_is_there():
    assert shutil.which("tshark") and shutil.which("dumpcap")
