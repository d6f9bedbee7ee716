"""Departments through the real paths: a crafted capture read by `govsoc collect pcap` and
an NDJSON file loaded by `govsoc ingest` are stamped at ingest from govsoc.toml, the real
engine's alerts carry their events' departments (a correlation the union of them), and
the posture counts alerts per department — on both stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from detect_helpers import BASE
from scapy.all import IP, TCP, Ether, wrpcap

from detections.engine import Engine
from detections.posture import posture
from detections.rules import load_pack
from soc_core import ecs
from soc_core.config import load_config
from soc_core.departments import Departments
from soc_core.store import Selection

GOVSOC = str(Path(sys.executable).parent / "govsoc")
H_SCAN = "5e0c1a10-0103-4000-8000-000000000103"
V_SCAN = "5e0c1a10-0104-4000-8000-000000000104"
BRUTE = "5e0c1a10-0003-4000-8000-000000000003"

CONFIG = """
[[departments]]
id = "wjw"
name = "市卫健委"
cidrs = ["10.1.0.0/16"]
hosts = ["wjw-*"]

[[departments]]
id = "jyj"
name = "市教育局"
cidrs = ["10.1.9.0/24"]

[[departments]]
id = "gaj"
name = "市公安局"
cidrs = ["10.2.0.0/16"]
"""


def _syn_rst(src: str, dst: str, dport: int, t: float, sport: int) -> list:
    syn = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=7)
    rst = Ether() / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="RA", ack=8)
    syn.time, rst.time = t, t + 0.001
    return [syn, rst]


def _capture(path: Path) -> None:
    pkts = []
    # one scan over two departments, 卫健委's hosts first: 25 hosts, the rule's threshold
    targets = [f"10.1.0.{i}" for i in range(1, 11)] + [f"10.2.0.{i}" for i in range(1, 16)]
    for i, dst in enumerate(targets):
        pkts += _syn_rst("203.0.113.50", dst, 22, BASE + i * 0.5, 41000 + i)
    for i in range(25):  # a vertical scan of one 教育局 host inside 卫健委's /16
        pkts += _syn_rst("203.0.113.60", "10.1.9.10", 1000 + i, BASE + 30 + i * 0.5, 42000 + i)
    pkts += _syn_rst("10.1.3.3", "10.2.5.5", 8080, BASE + 60, 43000)  # between departments
    pkts += _syn_rst("203.0.113.70", "198.51.100.1", 80, BASE + 61, 43001)  # nobody's
    pkts.sort(key=lambda p: p.time)
    wrpcap(str(path), pkts)


def _auth_ndjson(path: Path) -> None:
    lines = []
    for i in range(12):
        t = BASE + 100 + i
        lines.append(orjson.dumps(ecs.make_event("system.auth", t, ("auth", i), {
            "event.action": "ssh_login", "event.outcome": "failure",
            "event.category": "authentication", "source.ip": "203.0.113.7",
            "user.name": "root", "host.name": "wjw-web01", "process.name": "sshd",
            "message": f"Failed password for root from 203.0.113.7 port {40000 + i} ssh2"})))
    path.write_bytes(b"\n".join(lines) + b"\n")


def _govsoc(args: list[str], store, tmp_path: Path) -> str:
    env = {**os.environ, "GOVSOC_CONFIG": str(tmp_path / "govsoc.toml"),
           "GOVSOC_STORE_URL": store.url, "GOVSOC_DATA_DIR": str(tmp_path / "data")}
    if store.backend == "elasticsearch":
        env["GOVSOC_ES_NAMESPACE"] = store.namespace
    r = subprocess.run([GOVSOC, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_collected_events_and_their_alerts_belong_to_departments(store, tmp_path):
    (tmp_path / "govsoc.toml").write_text(CONFIG, encoding="utf-8")
    _capture(tmp_path / "scan.pcap")
    _auth_ndjson(tmp_path / "auth.ndjson")
    _govsoc(["collect", "pcap", str(tmp_path / "scan.pcap")], store, tmp_path)
    _govsoc(["ingest", str(tmp_path / "auth.ndjson")], store, tmp_path)
    store.refresh()

    flows = {(d["source"]["ip"], d["destination"]["ip"]): d
             for d in store.scan(Selection(dataset="network.flow"))}
    assert flows["203.0.113.50", "10.1.0.1"]["organization"] == {"id": "wjw", "name": "市卫健委"}
    assert flows["203.0.113.50", "10.2.0.15"]["organization"]["id"] == "gaj"
    assert flows["203.0.113.60", "10.1.9.10"]["organization"]["id"] == "jyj"  # longest prefix
    across = flows["10.1.3.3", "10.2.5.5"]
    assert across["organization"]["id"] == "wjw" and across["govsoc"]["departments"] == [
        "wjw", "gaj"]
    assert "organization" not in flows["203.0.113.70", "198.51.100.1"]
    auth = list(store.scan(Selection(dataset="system.auth")))
    assert len(auth) == 12 and {a["organization"]["id"] for a in auth} == {"wjw"}

    summary = Engine(store, load_pack()).run_once(now=BASE + 3600, since=BASE - 3600)
    assert not summary.errors, summary.errors
    store.refresh()
    alerts = {a["rule"]["id"]: a for a in store.scan(Selection(family="alerts"))}
    assert {H_SCAN, V_SCAN, BRUTE} <= set(alerts), sorted(alerts)
    scan = alerts[H_SCAN]  # a correlation over both departments' hosts: either sees it
    assert scan["organization"] == {"id": "wjw", "name": "市卫健委"}
    assert scan["govsoc"]["departments"] == ["wjw", "gaj"]
    assert alerts[V_SCAN]["organization"]["id"] == "jyj"
    assert alerts[V_SCAN]["govsoc"]["departments"] == ["jyj"]
    assert alerts[BRUTE]["organization"]["id"] == "wjw"

    # `govsoc posture` opens the store with the config's departments, as here
    store.use_departments(Departments.from_config(load_config(tmp_path / "govsoc.toml")))
    by_dept = posture(store, now=BASE + 3600)["by_department"]
    expected: dict[str, int] = {}
    for a in alerts.values():
        for did in a.get("govsoc", {}).get("departments") or ["(unassigned)"]:
            name = {"wjw": "市卫健委", "jyj": "市教育局", "gaj": "市公安局"}.get(did, did)
            expected[name] = expected.get(name, 0) + 1
    assert by_dept == expected
    assert by_dept["市卫健委"] >= 2 and by_dept["市公安局"] >= 1 and by_dept["市教育局"] >= 1
