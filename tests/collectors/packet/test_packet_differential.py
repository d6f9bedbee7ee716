"""The fast engine against the tshark engine (Wireshark's dissectors) on the same
crafted captures: flows, byte counts and DNS/HTTP/TLS fields must agree."""

from __future__ import annotations

import pytest
from packet_craft import HTTP_REQ, Traffic, client_hello, server_hello, standard_mix
from scapy.all import DNSRR

from collectors.packet import read_pcaps
from soc_core.ecs import get_field


def _both(path):
    out = {}
    for engine in ("fast", "tshark"):
        events, stats = read_pcaps([path], engine=engine)
        out[engine] = (list(events), stats)
    return out


def flows(events):
    return sorted(
        (get_field(e, "source.ip"), get_field(e, "source.port"),
         get_field(e, "destination.ip"), get_field(e, "destination.port"),
         e["network"]["transport"], e["source"]["packets"], e["source"]["bytes"],
         e["destination"]["packets"], e["destination"]["bytes"],
         e["zeek"]["connection"]["state"], e["zeek"]["connection"]["history"],
         e["network"].get("protocol"), e["event"]["id"])
        for e in events if e["event"]["dataset"] == "network.flow")


def dns(events):
    return sorted(
        (e["dns"]["id"], e["dns"].get("question", {}).get("name"),
         e["dns"].get("question", {}).get("type"), e["dns"].get("response_code"),
         str(e["dns"].get("answers")), str(e["dns"].get("resolved_ip")),
         str(e["dns"].get("header_flags")))
        for e in events if e["event"]["dataset"] == "network.dns")


def http(events):
    return sorted(
        (get_field(e, "http.request.method"), get_field(e, "url.original"),
         get_field(e, "url.domain"), get_field(e, "user_agent.original"),
         get_field(e, "http.response.status_code"), get_field(e, "http.version"))
        for e in events if e["event"]["dataset"] == "network.http")


def tls(events):
    return sorted(
        (get_field(e, "tls.client.server_name"), get_field(e, "tls.client.ja3"),
         get_field(e, "govsoc.tls.ja3_full"), get_field(e, "tls.version"),
         get_field(e, "tls.cipher"), str(get_field(e, "tls.client.supported_ciphers")),
         str(get_field(e, "govsoc.tls.sm_ciphers")))
        for e in events if e["event"]["dataset"] == "network.tls")


def _extra() -> Traffic:
    t = Traffic()
    # keep-alive: two requests, two responses on one connection
    t.tcp_session("10.0.2.1", 45000, "10.0.2.80", 80,
                  [HTTP_REQ, b"GET /second HTTP/1.1\r\nHost: www.example.gov.cn\r\n"
                             b"User-Agent: curl/8.5\r\n\r\n"],
                  [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                   b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"])
    t.dns("10.0.2.1", 5400, "10.0.2.53", "v6.example.gov.cn", 0x3333,
          [DNSRR(rrname="v6.example.gov.cn", type="AAAA", rdata="2001:db8::80", ttl=30)],
          qtype="AAAA")
    t.dns("10.0.2.1", 5401, "10.0.2.53", "lost.example.gov.cn", 0x4444, answered=False)
    t.tcp_session("10.0.2.1", 45001, "10.0.2.43", 443,
                  [client_hello("sm.example.gov.cn", ciphers=(0x00C6, 0xE053, 0x1301))],
                  [server_hello(0x1301)])
    return t


@pytest.fixture(scope="module", params=["standard", "extra"])
def results(request, tmp_path_factory):
    t = standard_mix() if request.param == "standard" else _extra()
    path = t.write(tmp_path_factory.mktemp("diff") / f"{request.param}.pcap")
    return _both(path)


def test_flows_and_bytes_agree(results):
    fast, ref = results["fast"], results["tshark"]
    assert flows(fast[0]) == flows(ref[0])
    assert fast[1].flows == ref[1].flows > 0
    assert fast[1].packets == ref[1].packets


def test_dns_fields_agree(results):
    assert dns(results["fast"][0]) == dns(results["tshark"][0])
    assert dns(results["fast"][0])


def test_http_fields_agree(results):
    assert http(results["fast"][0]) == http(results["tshark"][0])
    assert http(results["fast"][0])


def test_tls_fields_agree(results):
    assert tls(results["fast"][0]) == tls(results["tshark"][0])
    assert tls(results["fast"][0])


def test_tshark_engine_reports_missing_tool(monkeypatch, tmp_path):
    from collectors.packet import CaptureError

    path = standard_mix().write(tmp_path / "m.pcap")
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without tshark
    with pytest.raises(CaptureError, match="tshark is not installed"):
        read_pcaps([path], engine="tshark")


def _random_traffic(seed: int) -> Traffic:
    """Seeded random TCP/UDP/ICMP over IPv4 and IPv6 among a few hosts: odd flag
    combinations, empty and non-empty payloads, packets in both directions."""
    import random

    from packet_craft import ETH
    from scapy.all import ICMP, IP, TCP, UDP, IPv6, Raw

    rng = random.Random(seed)
    t = Traffic()
    v4 = [f"10.9.0.{i}" for i in range(1, 5)]
    v6 = [f"2001:db8:9::{i}" for i in range(1, 5)]
    flags = ["S", "SA", "A", "PA", "FA", "R", "RA", "F", "SF", "U", ""]
    for _ in range(300):
        pool = rng.choice([v4, v4, v6])
        a, b = rng.sample(pool, 2)
        ip = IP if pool is v4 else IPv6
        sport, dport = rng.choice([(20001, 20002), (20003, 20004), (20002, 20001)])
        payload = Raw(b"z" * rng.choice([0, 0, 1, 7, 100]))
        kind = rng.random()
        if kind < 0.6:
            l4 = TCP(sport=sport, dport=dport, flags=rng.choice(flags), seq=rng.randrange(2**32))
        elif kind < 0.9 or ip is IPv6:
            l4 = UDP(sport=sport, dport=dport)
        else:
            l4 = ICMP(type=rng.choice([8, 0, 3]), code=rng.choice([0, 1]))
        t.add(ETH / ip(src=a, dst=b) / l4 / payload)
    return t


def test_random_traffic_flows_agree(tmp_path):
    path = _random_traffic(20261123).write(tmp_path / "random.pcap")
    res = _both(path)
    fast, ref = flows(res["fast"][0]), flows(res["tshark"][0])
    assert len(fast) > 20
    assert fast == ref
