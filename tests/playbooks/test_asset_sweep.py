"""asset_sweep against the real fleet: the records match what each host has."""

from __future__ import annotations

import pytest

from cloud_inventory import asset_id
from playbooks import inventory as inv
from playbooks.events import status_id
from soc_core.store import Selection

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def swept(fleet, hosts, driver, pb_store):
    """One sweep after giving host 2 a listening port and host 1 a sudo user."""
    h1, h2 = hosts[0], hosts[1]
    addr2 = fleet.host(h2).address
    fleet.ssh(h1, "useradd -m -s /bin/bash -G sudo alice")
    fleet.ssh(h2, f"nohup python3 -m http.server 18765 --bind {addr2} >/dev/null 2>&1 & "
                  "echo $! > /run/probe.pid")
    fleet.ssh(h2, "for i in $(seq 50); do ss -ltn | grep -q :18765 && exit 0; sleep 0.1; done")
    try:
        result = driver.run("asset_sweep", fleet.inventory())
    finally:
        fleet.ssh(h2, "kill $(cat /run/probe.pid)")
        fleet.ssh(h1, "userdel -r alice")
    assets = {d["host"]["name"]: d for d in pb_store.scan(Selection(family="assets"))}
    return result, assets


def test_sweep_records_one_asset_per_host_with_its_identity(fleet, hosts, swept):
    result, assets = swept
    assert result.ok and result.status == "successful"
    assert set(assets) == set(hosts)
    for h in hosts:
        doc = assets[h]
        machine_id = fleet.ssh(h, "cat /etc/machine-id").stdout.strip()
        assert doc["event"]["kind"] == "asset"
        assert doc["host"]["id"] == machine_id
        assert doc["event"]["id"] == asset_id({"machine_id": machine_id})
        assert doc["host"]["hostname"] == h
        assert fleet.host(h).address in doc["host"]["ip"]
        mac = fleet.ssh(h, "cat /sys/class/net/eth0/address").stdout.strip()
        assert doc["host"]["mac"] == [mac]
        assert doc["host"]["os"]["platform"] == "debian"
        kernel = fleet.ssh(h, "uname -r").stdout.strip()
        assert doc["host"]["os"]["kernel"] == kernel


def test_sweep_sees_a_port_open_on_one_host_only(hosts, swept):
    _, assets = swept
    listening = {h: assets[h]["govsoc"]["asset"]["listening"] for h in hosts}
    probe = [s for s in listening[hosts[1]] if s["port"] == 18765]
    assert probe and probe[0]["process"].startswith("python3") and probe[0]["protocol"] == "tcp"
    assert all(s["port"] != 18765 for h in (hosts[0], hosts[2]) for s in listening[h])
    for h in hosts:  # sshd on every host, on its own address
        assert any(s["port"] == 22 and s["process"] == "sshd" for s in listening[h])


def test_sweep_reports_packages_users_sudoers_and_sshd(fleet, hosts, swept):
    _, assets = swept
    a1, a2 = assets[hosts[0]]["govsoc"]["asset"], assets[hosts[1]]["govsoc"]["asset"]
    version = fleet.ssh(hosts[0], "dpkg-query -W -f '${Version}' openssh-server").stdout
    assert {"name": "openssh-server", "version": version} in a1["packages"]
    assert "alice" in [u["name"] for u in a1["users"]] and "alice" in a1["sudoers"]
    assert "alice" not in [u["name"] for u in a2["users"]]
    assert a1["sshd"]["password_authentication"] is False
    assert a1["sshd"]["permit_root_login"] in ("without-password", "prohibit-password")
    assert a1["sshd"]["ciphers"]
    assert any(d["mount"] == "/" for d in a1["disks"])
    assert a1["last_patch"]
    assert "sshd" in [s["name"] for s in a1["services"]]


def test_sweep_is_idempotent_and_summarized(fleet, hosts, driver, pb_store, swept):
    result, assets = swept
    again = driver.run("asset_sweep", fleet.inventory())
    assert again.ok
    docs = list(pb_store.scan(Selection(family="assets")))
    assert len(docs) == len(hosts)  # same ids: records replaced, not duplicated
    summary = list(pb_store.scan(Selection(dataset="govsoc.asset_sweep",
                                           query=f"govsoc.sweep.run_id:{result.run_id}")))
    assert len(summary) == 1 and summary[0]["govsoc"]["sweep"]["recorded"] == len(hosts)
    status = pb_store.get("playbook_runs", status_id(result.run_id))
    assert status["govsoc"]["playbook"]["status"] == "successful"


def test_inventory_from_the_asset_registry_reaches_the_hosts(fleet, hosts, driver, pb_store,
                                                             swept):
    conn = fleet.inventory()["all"]["children"]["fleet"]["vars"]
    source = inv.from_assets(pb_store, conn)
    assert set(source["all"]["children"]["assets"]["hosts"]) == set(hosts)
    result = driver.run("asset_sweep", source, limit=hosts[2])
    assert result.ok and list(result.hosts) == [hosts[2]]
