"""The namespace fleet itself: isolation of each host, refusal of foreign addresses,
complete teardown (also from another process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playbooks.fleet import Fleet, FleetError, check_address

pytestmark = pytest.mark.fleet


def test_each_host_has_its_own_identity_and_writes(fleet, hosts):
    names = {h: fleet.ssh(h, "hostname").stdout.strip() for h in hosts}
    assert names == {h: h for h in hosts}
    ids = {fleet.ssh(h, "cat /etc/machine-id").stdout.strip() for h in hosts}
    assert len(ids) == len(hosts)
    fleet.ssh(hosts[0], "echo mine > /etc/govsoc-fleet-probe")
    try:
        assert fleet.ssh(hosts[0], "cat /etc/govsoc-fleet-probe").stdout == "mine\n"
        assert fleet.ssh(hosts[1], "test -e /etc/govsoc-fleet-probe", check=False).returncode == 1
        assert not Path("/etc/govsoc-fleet-probe").exists()  # the controller's root untouched
    finally:
        fleet.ssh(hosts[0], "rm -f /etc/govsoc-fleet-probe")


def test_host_network_is_confined_to_the_fleet_subnet(fleet, hosts):
    st = fleet.state()
    h = st.hosts[0]
    routes = fleet.ssh(h.name, "ip -4 route").stdout
    assert "default" not in routes and str(st.subnet) in routes
    listen = fleet.ssh(h.name, "/usr/sbin/sshd -T | grep -i '^listenaddress'").stdout
    assert listen.split()[1].startswith(h.address)
    # its own processes only (PID namespace): the controller's pytest is not visible
    procs = fleet.ssh(h.name, "ps -eo comm").stdout
    assert "pytest" not in procs and "sshd" in procs


def test_addresses_outside_the_subnet_are_refused(fleet):
    k = fleet.index
    check_address(k, f"10.213.{k}.17")
    for bad in ("10.0.0.1", f"10.213.{(k + 1) % 256}.5", "192.168.1.1", f"10.213.{k}.0",
                f"10.213.{k}.255", "not-an-ip"):
        with pytest.raises(FleetError):
            check_address(k, bad)
    with pytest.raises(FleetError):
        Fleet(256)


def test_refuses_a_bridge_it_does_not_own(tmp_path):
    f = Fleet.claim(state_root=tmp_path)
    bridge = f"gsfbr{f.index}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        with pytest.raises(FleetError, match="not ours"):
            f.up(1)
        assert subprocess.run(["ip", "link", "show", bridge],
                              capture_output=True).returncode == 0  # left alone
    finally:
        subprocess.run(["ip", "link", "del", bridge], check=True)


def test_down_from_another_process_removes_everything(tmp_path):
    f = Fleet.claim()
    st = f.up(1)
    host = st.hosts[0]
    try:
        f.ssh(host.name, "nohup sleep 600 >/dev/null 2>&1 & echo started")
        pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True,
                              text=True).stdout.split()
        assert len(pids) >= 3  # init, sshd, the stray sleep
    finally:
        out = subprocess.run([sys.executable, "-P", "-m", "soc_core.cli", "fleet", "down",
                              "--index", str(f.index)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1 hosts removed" in out.stdout
    assert host.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                            text=True).stdout
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
    names = {link["ifname"] for link in json.loads(links)}
    assert not {f"gsfbr{f.index}", host.veth} & names
    assert not [p for p in pids if _running(p)]
    assert f.state() is None and not f.dir.exists()
    assert not Path(f"/run/govsoc-fleet-stage/{host.name}").exists()
    assert f.down() == 0  # twice is fine


def _running(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
