"""Real third-party captures (../shared/pcaps, described by its MANIFEST.json) replayed as a
user would: `govsoc collect pcap` into a store, then the detection engine over the span of
the captures. Every attack capture raises the alert the manifest expects, naming the
attacker; no benign capture raises a high or critical alert, nor do the benign hosts the
manifest points out inside attack captures. The thresholds are the rules' own (reasoned
from Zeek's and Emerging Threats' policies), not fitted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from detections.engine import Engine
from detections.rules import load_pack
from soc_core.store import Selection, open_store

PCAPS = Path(__file__).resolve().parents[3] / "shared" / "pcaps"
GOVSOC = str(Path(sys.executable).parent / "govsoc")
HIGH = 73  # rule severity of level high (critical is 99)

SSH_GUESSING = "5e0c1a10-0803-4000-8000-000000000803"
FTP_BRUTE = "5e0c1a10-0806-4000-8000-000000000806"
RDP_SPRAY = "5e0c1a10-0808-4000-8000-000000000808"
SLOW_ADDRESS_PROBE = "5e0c1a10-0810-4000-8000-000000000810"
SLOW_PORT_PROBE = "5e0c1a10-0811-4000-8000-000000000811"
ICMP_SWEEP = "5e0c1a10-0813-4000-8000-000000000813"
ADMIN_SWEEP = "5e0c1a10-0814-4000-8000-000000000814"
HEARTBLEED = "5e0c1a10-0815-4000-8000-000000000815"
HEARTBLEED_LEAK = "5e0c1a10-0816-4000-8000-000000000816"
BEACON_IN_FLOW = "5e0c1a10-0817-4000-8000-000000000817"
DNS_TUNNEL = "5e0c1a10-0202-4000-8000-000000000202"
MANY_SUBDOMAINS = "5e0c1a10-0209-4000-8000-000000000209"
HIGH_ENTROPY_NAMES = "5e0c1a10-0211-4000-8000-000000000211"
ZONE_TRANSFER = "5e0c1a10-0207-4000-8000-000000000207"
LOG4SHELL = "5e0c1a10-0305-4000-8000-000000000305"
SQLI = "5e0c1a10-0306-4000-8000-000000000306"

# capture -> the rules that must alert on it, the attacker the alert names, and when (the
# start of the alert's first event: captures of one lab share addresses)
EXPECTED = {
    "try-zeek/ssh.pcap": ([SSH_GUESSING], "172.16.238.1", "2011-11-04T19:"),
    "initconf-ftp-bruteforce/FTP-bruteforce.pcap": ([FTP_BRUTE], "54.204.121.138",
                                                    "2018-02-19T1"),
    "initconf-rdp-bruteforce/RDP-bruteforce.pcap": ([RDP_SPRAY], "51.235.163.75", "2018-08-2"),
    # threshold-edge scans (manifest: informational/low with common thresholds)
    "ncsa-bro-simple-scan/port_scan.pcap": ([SLOW_PORT_PROBE], "192.168.2.154",
                                            "2017-10-25T21:56"),
    "ncsa-bro-simple-scan/445_scan.pcap": ([SLOW_ADDRESS_PROBE], "176.192.150.3", "2017-09-10T"),
    "ncsa-bro-simple-scan/multiport_scan.pcap": ([SLOW_ADDRESS_PROBE], "125.27.226.209",
                                                 "2017-09-10T"),
    "initconf-vnc-scanner/VNCScanner.pcap": ([ADMIN_SWEEP], "13.245.45.3", "2017-11-29T"),
    "initconf-icmp-scans/icmp-nmap-sP-PI.pcap": ([ICMP_SWEEP], "40.233.107.130",
                                                 "2015-05-07T22:01"),
    "korving-dns-tunnel-dataset/dnscat2_c2_bind9_8c2ef973.pcap": (
        [DNS_TUNNEL, MANY_SUBDOMAINS, HIGH_ENTROPY_NAMES], "192.168.0.30", "2022-04-01T12:0"),
    "korving-dns-tunnel-dataset/dns2tcp_c2_bind9_txt_af88c701.pcap": (
        [DNS_TUNNEL, MANY_SUBDOMAINS, HIGH_ENTROPY_NAMES], "192.168.0.30",
        "2022-04-01T13:1"),
    "initconf-dns-heuristics/dnsrecon.pcap-anon.pcap": ([ZONE_TRANSFER], "196.194.174.12",
                                                        "2020-08-24T23:24"),
    "zeek/http_cooper-grill-dvwa.pcapng": ([SQLI], "192.168.111.148", "2024-10-28T19:5"),
    "corelight-cve-2021-44228/log4j-user_agent.pcap": ([LOG4SHELL], "10.10.10.31",
                                                       "2021-12-13T20:09"),
    "zeek/tls_heartbleed-success.pcap": ([HEARTBLEED, HEARTBLEED_LEAK], "173.203.79.216",
                                         "2014-04-08T16:57"),
    "corelight-caldera-detector/sandcat.pcap": ([BEACON_IN_FLOW], "172.18.0.3", "2024-12-18T"),
    "zeek/quic_merlinc2_Zeek_example.pcapng": ([BEACON_IN_FLOW], "10.0.0.4", "2025-01-01T21:3"),
}
# benign hosts inside attack captures (manifest): no high or critical alert names them
QUIET = {"6.97.113.95",  # Googlebot's anonymous FTP logins beside the brute force
         "172.16.238.129", "172.16.238.168",  # ordinary SSH sessions beside the guessing
         "87.38.92.73", "84.181.52.15", "3.71.110.124"}  # two-host VNC probes


def _manifest() -> dict:
    return json.loads((PCAPS / "MANIFEST.json").read_text())["files"]


def _replay(url: str, namespace: str | None, files: list[str], data: Path) -> list[dict]:
    """`govsoc collect pcap FILES --store URL`, then one engine pass over all of time."""
    env = {**os.environ, "GOVSOC_DATA_DIR": str(data)}
    if namespace:
        env["GOVSOC_ES_NAMESPACE"] = namespace
    r = subprocess.run([GOVSOC, "collect", "pcap", *[str(PCAPS / f) for f in files],
                        "--store", url], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "0 rejected by the store, 0 dropped" in r.stdout, r.stdout
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVSOC_DATA_DIR", str(data))  # detection state of an ES run
        store = open_store(url, namespace=namespace) if namespace else open_store(url)
        try:
            summary = Engine(store, load_pack()).run_once(now="2030-01-01T00:00:00Z",
                                                          since="2000-01-01T00:00:00Z")
            assert not summary.errors, summary.errors
            store.refresh()
            alerts = list(store.scan(Selection(family="alerts")))
        finally:
            if namespace:
                store.drop_all()
            store.close()
    return alerts


@pytest.fixture(scope="module", params=["sqlite", pytest.param("es", marks=pytest.mark.es)])
def replayed(request, tmp_path_factory) -> dict[str, list[dict]]:
    """label (attack|benign) -> the alerts its captures raised, one store each."""
    files = _manifest()
    out = {}
    for label in ("attack", "benign"):
        data = tmp_path_factory.mktemp(f"corpus-{label}")
        chosen = sorted(f for f, meta in files.items() if meta["label"] == label)
        if request.param == "sqlite":
            out[label] = _replay(f"sqlite:///{data}/g.db", None, chosen, data)
        else:
            out[label] = _replay(request.getfixturevalue("es_url"),
                                 "t" + uuid.uuid4().hex[:10], chosen, data)
    return out


def test_every_attack_capture_has_an_expectation():
    attacks = {f for f, meta in _manifest().items() if meta["label"] == "attack"}
    assert attacks == set(EXPECTED)


def _names(alert: dict, address: str) -> bool:
    return address in ((alert.get("source") or {}).get("ip"),
                       (alert.get("destination") or {}).get("ip"))


@pytest.mark.parametrize("capture", sorted(EXPECTED))
def test_attack_capture_raises_its_alert(replayed, capture):
    rules, attacker, when = EXPECTED[capture]
    for rule in rules:
        hits = [a for a in replayed["attack"] if a["rule"]["id"] == rule
                and _names(a, attacker) and a["event"]["start"].startswith(when)]
        assert hits, (capture, rule, sorted({(a["rule"]["name"], a["source"].get("ip"))
                                             for a in replayed["attack"]}))


def test_benign_hosts_inside_attack_captures_stay_below_high(replayed):
    loud = [(a["rule"]["name"], a["source"].get("ip")) for a in replayed["attack"]
            if a["event"]["severity"] >= HIGH and any(_names(a, ip) for ip in QUIET)]
    assert not loud


def test_dns_reconnaissance_is_not_taken_for_a_tunnel(replayed):
    """dnsrecon asks for many names, but short dictionary words under two domains."""
    tunnel = [a["rule"]["name"] for a in replayed["attack"]
              if a["rule"]["id"] in (DNS_TUNNEL, MANY_SUBDOMAINS)
              and _names(a, "196.194.174.12")]
    assert not tunnel


def test_benign_captures_raise_nothing_high(replayed):
    loud = [(a["rule"]["name"], a["source"].get("ip"), a["event"]["severity"])
            for a in replayed["benign"] if a["event"]["severity"] >= HIGH]
    assert not loud
    # and they were read: the benign store did get events and ran every rule
    assert all(a["event"]["severity"] < HIGH for a in replayed["benign"])
