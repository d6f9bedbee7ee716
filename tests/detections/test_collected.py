"""Attack traffic and host activity recorded by the real collectors (scapy-crafted pcaps
read by collectors.packet, an sshd auth log read by collectors.logs) raise the expected
alerts on both stores, and benign recordings stay silent."""

from __future__ import annotations

from detect_helpers import BASE, alerts_by_rule
from scapy.all import DNS, DNSQR, IP, TCP, UDP, Ether, Raw, wrpcap

from collectors.logs import LogReader, parser_for
from collectors.packet import read_pcaps
from detections.engine import Engine
from detections.rules import load_pack
from soc_core import ecs

H_SCAN = "5e0c1a10-0103-4000-8000-000000000103"
V_SCAN = "5e0c1a10-0104-4000-8000-000000000104"
TUNNEL = "5e0c1a10-0202-4000-8000-000000000202"
BRUTE = "5e0c1a10-0003-4000-8000-000000000003"
AFTER = "5e0c1a10-0005-4000-8000-000000000005"
ROOT_OUT = "5e0c1a10-0006-4000-8000-000000000006"
WATCHED = {H_SCAN, V_SCAN, TUNNEL, BRUTE, AFTER, ROOT_OUT}


def _syn_rst(src: str, dst: str, dport: int, t: float, sport: int) -> list:
    syn = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1000)
    rst = Ether() / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="RA", ack=1001)
    syn.time, rst.time = t, t + 0.001
    return [syn, rst]


def _dns(src: str, name: str, qtype: str, t: float, qid: int) -> list:
    q = Ether() / IP(src=src, dst="10.20.0.53") / UDP(sport=30000 + qid, dport=53) / DNS(
        id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    q.time = t
    return [q]


def _http(src: str, dst: str, t: float, sport: int) -> list:
    pkts = [
        Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags="S", seq=1),
        Ether() / IP(src=dst, dst=src) / TCP(sport=80, dport=sport, flags="SA", seq=9, ack=2),
        Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags="A", seq=2, ack=10),
        Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags="PA", seq=2, ack=10)
        / Raw(b"GET /index.html HTTP/1.1\r\nHost: www.gov.example\r\n\r\n"),
    ]
    for i, p in enumerate(pkts):
        p.time = t + i * 0.01
    return pkts


def _attack_pcap(path) -> None:
    pkts = []
    for i in range(25):  # horizontal: one port on 25 hosts
        pkts += _syn_rst("203.0.113.50", f"10.20.1.{i + 1}", 22, BASE + i * 0.5, 41000 + i)
    for i in range(30):  # vertical: 30 ports on one host
        pkts += _syn_rst("203.0.113.60", "10.20.2.10", 1000 + i, BASE + 20 + i * 0.5, 42000 + i)
    label = "4a6f686e446f6547656e65726174656444617461456e636f6465644c6f6e67"
    for i in range(25):  # DNS tunnel: long labels, TXT
        pkts += _dns("10.20.12.2", f"{i:02d}{label}.t.example.net", "TXT", BASE + 60 + i, i)
    pkts.sort(key=lambda p: p.time)
    wrpcap(str(path), pkts)


def _benign_pcap(path) -> None:
    pkts = []
    for i in range(8):
        pkts += _http("10.20.30.4", f"10.20.20.{i + 1}", BASE + i, 43000 + i)
        pkts += _dns("10.20.30.4", f"www{i}.gov.cn", "A", BASE + i + 0.5, 100 + i)
    pkts.sort(key=lambda p: p.time)
    wrpcap(str(path), pkts)


def _auth_log(path, attack: bool) -> None:
    lines = []
    ip = "203.0.113.7" if attack else "10.10.0.4"
    n = 12 if attack else 2
    for i in range(n):
        ts = ecs.format_time(ecs.parse_time(BASE + 100 + i * 2)).replace("Z", "+00:00")
        lines.append(f"{ts} gov-web-01 sshd[{2000 + i}]: Failed password for root from {ip} "
                     f"port {50000 + i} ssh2")
    ts = ecs.format_time(ecs.parse_time(BASE + 140)).replace("Z", "+00:00")
    lines.append(f"{ts} gov-web-01 sshd[2100]: Accepted password for root from {ip} "
                 f"port 50100 ssh2")
    path.write_text("\n".join(lines) + "\n")


def _collect(store, tmp_path, attack: bool) -> None:
    pcap = tmp_path / ("attack.pcap" if attack else "benign.pcap")
    (_attack_pcap if attack else _benign_pcap)(pcap)
    events, _stats = read_pcaps([pcap])
    docs = list(events)
    log = tmp_path / "auth.log"
    _auth_log(log, attack)
    LogReader(log, parser_for("auth"), docs.append).import_once()
    res = store.write(docs, refresh=True)
    assert not res.rejected, res.rejected[:2]
    datasets = {d["event"]["dataset"] for d in docs}
    assert {"network.flow", "network.dns", "system.auth"} <= datasets, datasets


def test_recorded_attacks_raise_the_expected_alerts(store, tmp_path):
    _collect(store, tmp_path, attack=True)
    summary = Engine(store, load_pack()).run_once(now=BASE + 3600, since=BASE - 3600)
    assert not summary.errors, summary.errors
    fired = alerts_by_rule(store)
    missing = {H_SCAN, V_SCAN, TUNNEL, BRUTE, AFTER, ROOT_OUT} - set(fired)
    assert not missing, (missing, fired)


def test_benign_recordings_stay_silent(store, tmp_path):
    _collect(store, tmp_path, attack=False)
    summary = Engine(store, load_pack()).run_once(now=BASE + 3600, since=BASE - 3600)
    assert not summary.errors, summary.errors
    fired = alerts_by_rule(store)
    assert not (set(fired) & WATCHED), fired
    assert sum(fired.values()) == 0, fired
