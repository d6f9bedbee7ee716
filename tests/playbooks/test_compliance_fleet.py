"""The compliance self-assessment on the real fleet: a host with a telnet port listening
fails remote administration over encrypted channels, and only that host; every host's
login policy and SM3 baseline of its key executables come from the sweep."""

from __future__ import annotations

import pytest

from cloud_inventory import check_compliance
from soc_core.config import Config

pytestmark = pytest.mark.fleet


def test_a_host_with_telnet_listening_fails_its_control(fleet, hosts, driver, pb_store,
                                                         tmp_path):
    target = hosts[2]
    addr = fleet.host(target).address
    # a listener on the telnet port stands in for telnetd: the sweep sees the socket
    fleet.ssh(target, f"nohup python3 -c 'import socket,time; s=socket.socket(); "
                      f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                      f"s.bind((\"{addr}\", 23)); s.listen(); time.sleep(600)' "
                      ">/dev/null 2>&1 & echo $! > /run/telnet.pid")
    fleet.ssh(target, "for i in $(seq 50); do ss -ltn | grep -q ':23 ' && exit 0; "
                      "sleep 0.1; done; exit 1")
    try:
        result = driver.run("asset_sweep", fleet.inventory())
    finally:
        fleet.ssh(target, "kill $(cat /run/telnet.pid)")
    assert result.ok
    cfg = Config(values={"retention_days": 180, "data_dir": str(tmp_path)})
    found = {f.id: f for f in check_compliance(pb_store, cfg)}
    remote = found["djcp-3.4.1c"]
    assert remote.status == "fail" and remote.hosts == [target], remote.summary
    assert "telnet/tcp:23" in remote.summary
    assert found["mp-8.3f"].status == "pass", found["mp-8.3f"].summary  # SM3 baselines
    assert found["djcp-3.4.1a"].status in ("pass", "fail")
    assert "not reported" not in found["djcp-3.4.1a"].summary  # the policy was collected
