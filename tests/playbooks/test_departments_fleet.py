"""Departments and patch lag in the posture, from a real asset sweep and a real patch run
over the namespace fleet: the sweep's assets are stamped from the config, a registry
assignment overrides it, traffic to the hosts raises alerts of the right departments, and
the security index's patch-lag part follows `last_patch` and the patch run."""

from __future__ import annotations

import time

import pytest
from scapy.all import IP, TCP, Ether, wrpcap

from collectors.packet import read_pcaps
from detections.engine import Engine
from detections.posture import posture
from detections.rules import load_pack
from playbooks.driver import Driver
from soc_core import ecs
from soc_core.config import Config
from soc_core.departments import Departments
from soc_core.store import Selection, open_store

pytestmark = pytest.mark.fleet


def _vertical_scan(path, target: str, t0: float) -> None:
    pkts = []
    for i in range(25):
        syn = Ether() / IP(src="203.0.113.60", dst=target) / TCP(sport=42000 + i,
                                                                  dport=1000 + i, flags="S")
        rst = Ether() / IP(src=target, dst="203.0.113.60") / TCP(sport=1000 + i,
                                                                  dport=42000 + i, flags="RA")
        syn.time, rst.time = t0 + i * 0.5, t0 + i * 0.5 + 0.001
        pkts += [syn, rst]
    wrpcap(str(path), pkts)


@pytest.fixture
def h3_unpatched_for_years(fleet, hosts):
    """Host 3's dpkg log says its last install was in 2020; restored afterwards, with the
    demo package back at 1.0 for the patch tests."""
    h3 = hosts[2]
    fleet.ssh(h3, "cp -p /var/log/dpkg.log /root/dpkg.log.keep && "
                  "sed -i -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}/2020-01-15/' /var/log/dpkg.log* ")
    yield h3
    fleet.ssh(h3, "dpkg -i /tmp/demo.deb >/dev/null 2>&1; "
                  "mv /root/dpkg.log.keep /var/log/dpkg.log")


def test_posture_departments_and_patch_lag_from_real_runs(fleet, hosts, apt_repo, tmp_path,
                                                          monkeypatch, h3_unpatched_for_years):
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path / "state"))
    h1, h2, h3 = hosts
    a1, a3 = fleet.host(h1).address, fleet.host(h3).address
    depts = Departments.from_config(Config(values={"departments": [
        {"id": "wjw", "name": "市卫健委", "cidrs": [f"{a1}/32"]},
        {"id": "gaj", "name": "市公安局", "hosts": ["*-host2"]},
        {"id": "dsj", "name": "市大数据局", "cidrs": [str(fleet.state().subnet)]},
        {"id": "jyj", "name": "市教育局"},
    ]}))
    store = open_store(f"sqlite:///{tmp_path}/g.db", departments=depts)
    driver = Driver(store, work_dir=tmp_path / "work")
    try:
        sweep = driver.run("asset_sweep", fleet.inventory())
        assert sweep.ok, sweep.reason
        assets = {d["host"]["name"]: d for d in store.scan(Selection(family="assets"))}
        assert assets[h1]["organization"]["id"] == "wjw"  # its /32 beats the fleet's /24
        assert assets[h2]["organization"]["id"] == "gaj"  # by name; its address is dsj's
        assert assets[h2]["govsoc"]["departments"] == ["gaj", "dsj"]
        assert assets[h3]["organization"]["id"] == "dsj"
        assert assets[h3]["govsoc"]["asset"]["last_patch"].startswith("2020-01-15")

        # the asset registry gives host 3 to 教育局: its name and addresses follow
        doc = assets[h3]
        doc["organization"] = {"id": "jyj", "name": "市教育局"}
        del doc["govsoc"]["asset"]["department_source"]
        assert not store.write([doc], refresh=True).rejected

        now = time.time()
        _vertical_scan(tmp_path / "s3.pcap", a3, now - 600)
        _vertical_scan(tmp_path / "s1.pcap", a1, now - 300)
        events, _ = read_pcaps([tmp_path / "s3.pcap", tmp_path / "s1.pcap"])
        assert not store.write(list(events), refresh=True).rejected
        summary = Engine(store, load_pack()).run_once(now=now, since=now - 3600)
        assert not summary.errors, summary.errors

        p = posture(store, now=now)
        # each host's scan raises the same rules (how many is the pack's business): every
        # alert counts for the department of the host it concerns, and for no other
        per_host = {}
        for a in store.scan(Selection(family="alerts")):
            per_host.setdefault(a["organization"]["name"], []).append(a)
        assert set(per_host) == {"市教育局", "市卫健委"}
        assert len(per_host["市教育局"]) == len(per_host["市卫健委"]) >= 1
        assert p["by_department"] == {k: len(v) for k, v in per_host.items()}
        idx = p["security_index"]
        assert (idx["assets"], idx["lagging_assets"], idx["patch_lag"]) == (3, 1, 5.0)

        ev = {"patch_repo": apt_repo["source"]}
        dry = driver.run("patch", fleet.inventory(), limit=h3, check=True, extravars=ev)
        assert dry.ok, dry.reason  # check mode patches nothing: still lagging
        assert posture(store)["security_index"]["lagging_assets"] == 1
        run = driver.run("patch", fleet.inventory(), limit=h3, extravars=ev)
        assert run.ok and run.hosts[h3].result["upgrades"][0]["after"] == "1.1", run.reason
        idx = posture(store)["security_index"]
        assert (idx["lagging_assets"], idx["patch_lag"]) == (0, 0.0)

        again = driver.run("asset_sweep", fleet.inventory(), limit=h3)  # keeps the registry's
        assert again.ok, again.reason
        swept = {d["host"]["name"]: d for d in store.scan(Selection(family="assets"))}[h3]
        assert swept["organization"]["id"] == "jyj"
        assert ecs.to_millis(swept["govsoc"]["asset"]["last_patch"]) > ecs.to_millis(
            "2026-01-01T00:00:00Z")
    finally:
        store.close()
