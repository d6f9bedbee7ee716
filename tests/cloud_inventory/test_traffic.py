"""Passive discovery, the exposure surface and idle systems from real captured traffic (the
shared pcaps read by the packet collector), on both backends."""

from __future__ import annotations

import socket

import pytest

from cloud_inventory import exposure_surface, get_asset, inventory_config, list_assets
from cloud_inventory.idle import idle_systems, retire_plan, tag_idle
from cloud_inventory.passive import discover_flows, discover_host_collectors
from cloud_inventory.registry import InventoryError
from collectors.host import HostCollector
from collectors.packet import read_pcaps
from soc_core import ecs
from soc_core.config import Config, ConfigError
from soc_core.store import Selection

FTP = "zeek/ftp_ipv4.pcap"  # 141.142.220.235 -> ftp 199.233.217.249:21 (+ active data)
SSH = "zeek/ssh_single-conn.pcap"  # 192.150.186.169 -> ssh 131.159.14.23:22
DVWA = "zeek/http_cooper-grill-dvwa.pcapng"  # 192.168.111.148 -> http 192.168.111.154:80
CONF = {"inventory": {
    "local_nets": ["199.233.217.0/24", "131.159.14.0/24", "192.168.111.0/24"],
    "zones": [{"name": "office", "cidrs": ["192.168.111.148/32"], "allow": []},
              {"name": "ops", "cidrs": ["10.9.0.0/24"], "allow": ["management"]}],
    "classes": [{"cidrs": ["131.159.14.0/24"], "importance": "high", "djcp_level": 3,
                 "data_class": "core", "tags": ["bastion"]}],
}}


def _load(store, shared_dir, *names: str) -> None:
    paths = [str(shared_dir / "pcaps" / n) for n in names]
    events, _ = read_pcaps(paths)
    res = store.write(list(events), refresh=True)
    assert not res.rejected


@pytest.fixture(scope="module")
def traffic(inv_store, shared_dir):
    """The three captures in the store; passive discovery over the 2000s (the SSH capture:
    the baseline), then from 2010 on (the FTP and DVWA captures)."""
    conf = inventory_config(Config(values=CONF))
    _load(inv_store, shared_dir, FTP, SSH, DVWA)
    first = discover_flows(inv_store, since="2000-01-01T00:00:00Z",
                           until="2010-01-01T00:00:00Z", conf=conf)
    assert first.baseline and first.assets == 1 and first.changes == []
    rec = discover_flows(inv_store, conf=conf)  # from where the last passive run ended
    return inv_store, conf, rec


def test_flows_show_hosts_services_and_the_exposed_surface(traffic):
    store, conf, rec = traffic
    by_ip = {d["host"]["ip"][0]: d for d in list_assets(store)}
    # local addresses only (Zeek's Site::local_nets): the outside clients are no assets
    assert set(by_ip) == {"199.233.217.249", "131.159.14.23", "192.168.111.154",
                          "192.168.111.148"}
    services = {ip: {(s["protocol"], s["port"], s.get("service"))
                     for s in ecs.get_field(d, "govsoc.asset.listening")}
                for ip, d in by_ip.items()}
    assert services["199.233.217.249"] == {("tcp", 21, "ftp")}
    assert services["131.159.14.23"] == {("tcp", 22, "ssh")}
    assert ("tcp", 80, "http") in services["192.168.111.154"]
    assert services["192.168.111.148"] == set()  # a client: seen talking, offers nothing
    ftp = by_ip["199.233.217.249"]["govsoc"]["asset"]
    assert ftp["registered"] is False and ftp["first_seen"].startswith("2012-02-21")
    assert next(s for s in ftp["listening"] if s["port"] == 21)["flows"] == 1
    # the config's classes: importance, 等保 level and data class, with their source
    bastion = get_asset(store, "131.159.14.23")["govsoc"]["asset"]
    assert (bastion["importance"], bastion["djcp_level"], bastion["data_class"]) == (
        "high", 3, "core")
    assert bastion["sources"]["djcp_level"] == {"source": "config"}
    assert not rec.baseline
    assert sorted(c.name for c in rec.changes if c.kind == "shadow_it") == [
        "192.168.111.148", "192.168.111.154", "199.233.217.249"]
    assert store.count(Selection(family="alerts")) == 3

    found = exposure_surface(store, since="2000-01-01T00:00:00Z", conf=conf)
    kinds = {(f["kind"], f["ip"], f["port"]) for f in found}
    assert kinds == {
        ("plaintext_management", "199.233.217.249", 21),
        ("internet_facing", "199.233.217.249", 21),
        ("zone_violation", "131.159.14.23", 22),
        ("internet_facing", "131.159.14.23", 22),
    }  # DVWA's web server answers the office: allowed, and not from the internet
    ssh = next(f for f in found if f["kind"] == "zone_violation")
    assert (ssh["zone"], ssh["port_class"], ssh["service"], ssh["severity"]) == (
        "internet", "management", "ssh", "high")
    assert ssh["evidence"]["flows"]["sources"] == ["192.150.186.169"]
    assert ssh["evidence"]["flows"]["flows"] == 1
    assert ssh["evidence"]["listening"]["sources"] == ["passive"]
    plain = next(f for f in found if f["kind"] == "plaintext_management")
    assert plain["service"] == "ftp"
    assert plain["evidence"]["flows"]["internet"]["sources"] == ["141.142.220.235"]

    # the ops zone may manage: the same SSH flow from there would not be a violation
    allowed = inventory_config(Config(values={"inventory": {
        **CONF["inventory"], "zones": [{"name": "world", "cidrs": ["192.150.186.0/24"],
                                        "allow": ["management"]}]}}))
    assert not [f for f in exposure_surface(store, since="2000-01-01T00:00:00Z", conf=allowed)
                if f["kind"] == "zone_violation"]


def test_idle_systems_from_flows_and_cpu_metrics(traffic):
    store, conf, _ = traffic  # DVWA: .154 serves, .148 asks
    assert store.write([{"@timestamp": ecs.now_iso(), "event": {
        "kind": "asset", "dataset": "assets", "id": "a-quiet"}, "host": {
        "name": "gov-quiet-01", "ip": ["192.168.111.200"]},
        "organization": {"id": "jyj", "name": "市教育局"},
        "govsoc": {"asset": {"state": "active", "tags": []}}}], refresh=True).written
    until = "2024-10-29T00:00:00Z"  # the capture's day
    cpu = {"192.168.111.154": [0.01, 0.02], "gov-quiet-01": [0.01, 0.01, 0.03],
           "192.168.111.148": [0.4, 0.6]}
    metrics = [ecs.make_event("system.cpu", f"2024-10-28T1{i}:00:00Z", (host, i), {
        "host": {"name": host, "cpu": {"usage": u}}}, kind="metric")
        for host, values in cpu.items() for i, u in enumerate(values)]
    assert not store.write(metrics, refresh=True).rejected

    report = idle_systems(store, days=7, until=until, conf=conf)
    verdicts = {s["host"]: s["verdict"] for s in report["systems"]}
    # no inbound session and low CPU: a zombie; the web server is low-load but used; the
    # client is busy on its CPU; the others have no metrics, so no verdict on their load
    assert verdicts == {"gov-quiet-01": "zombie", "192.168.111.154": "low_load",
                        "192.168.111.148": "busy", "199.233.217.249": "unmeasured",
                        "131.159.14.23": "unmeasured"}
    quiet = next(s for s in report["systems"] if s["host"] == "gov-quiet-01")
    assert quiet["evidence"]["inbound_sessions"] == 0
    assert quiet["evidence"]["cpu"] == {"mean": round(0.05 / 3, 4), "peak": 0.03, "samples": 3,
                                        "first": "2024-10-28T10:00:00.000Z",
                                        "last": "2024-10-28T12:00:00.000Z"}
    web = next(s for s in report["systems"] if s["host"] == "192.168.111.154")
    assert web["evidence"]["inbound_sessions"] == 3
    assert report["departments"]["jyj"]["zombie"] == 1
    assert report["departments"]["unassigned"]["measured"] == 2
    assert report["departments"]["unassigned"]["assets"] == 4

    # before the tag, no stop; the tag notifies the department; then a stop needs approval
    with pytest.raises(InventoryError, match="not tagged zombie"):
        retire_plan(store, "gov-quiet-01", "zhang.wei", ["nginx"])
    (notice,) = tag_idle(store, report)
    assert notice["organization"]["id"] == "jyj" and "gov-quiet-01" in notice["message"]
    assert store.count(Selection(filters={"event.action": "idle_notice"})) == 1
    assert "zombie" in get_asset(store, "gov-quiet-01")["govsoc"]["asset"]["tags"]
    with pytest.raises(InventoryError, match="approver"):
        retire_plan(store, "gov-quiet-01", " ", ["nginx"])
    _, extravars = retire_plan(store, "gov-quiet-01", "zhang.wei", ["nginx"])
    assert extravars["retire_approved_by"] == "zhang.wei"
    with pytest.raises(ConfigError, match="inventory.rate"):
        inventory_config(Config(values={"inventory": {"rate": 0}}))


def test_host_collector_sockets_make_a_registered_asset(sqlite_store):
    # once, on SQLite: the path differs between backends only in `groups`, tested on both
    store = sqlite_store
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        docs: list[dict] = []
        HostCollector(docs.append, host_name="gov-agent-01", metrics=False).collect()
    sockets = [d for d in docs if d["event"]["dataset"] == "system.socket"]
    assert not store.write(sockets, refresh=True).rejected
    rec = discover_host_collectors(store, since="now-1h")
    assert rec.baseline and rec.assets == 1
    a = get_asset(store, "gov-agent-01")["govsoc"]["asset"]
    assert a["registered"] is True and a["seen_by"] == ["host"]
    mine = [s for s in a["listening"] if s["port"] == port]
    assert mine and mine[0]["sources"] == ["host"] and mine[0]["address"] == "127.0.0.1"
