"""patch against a local apt repository built with dpkg-deb: govsoc-demo 1.0 -> 1.1 on
exactly the targeted hosts, in serial batches, with pre- and post-checks."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.fleet


def _version(fleet, host: str) -> str:
    return fleet.ssh(host, "dpkg-query -W -f '${Version}' govsoc-demo").stdout


def test_patch_upgrades_exactly_the_targeted_hosts(fleet, hosts, driver, apt_repo):
    h1, h2, h3 = hosts
    assert {_version(fleet, h) for h in hosts} == {"1.0"}
    ev = {"patch_repo": apt_repo["source"], "patch_serial": "1",
          "patch_health_cmd": "test -s /usr/share/govsoc-demo/VERSION"}

    dry = driver.run("patch", fleet.inventory(), limit=f"{h1},{h2}", check=True, extravars=ev)
    assert dry.ok and dry.hosts[h1].result["upgrades"][0]["after"] == "1.1"
    assert {_version(fleet, h) for h in hosts} == {"1.0"}  # --check installs nothing

    run = driver.run("patch", fleet.inventory(), limit=f"{h1},{h2}", extravars=ev)
    assert run.ok, run.reason
    assert set(run.hosts) == {h1, h2}
    for h in (h1, h2):
        up = run.hosts[h].result["upgrades"]
        assert up == [{"name": "govsoc-demo", "before": "1.0", "after": "1.1",
                       "source": "govsoc-security:bookworm-security"}]
        assert run.hosts[h].result["reboot_required"] is False
    assert [_version(fleet, h) for h in hosts] == ["1.1", "1.1", "1.0"]

    fleet.ssh(h1, "touch /var/run/reboot-required")  # required, but not allowed: no reboot
    try:
        again = driver.run("patch", fleet.inventory(), limit=h1, extravars=ev)
    finally:
        fleet.ssh(h1, "rm -f /var/run/reboot-required")
    assert again.ok and again.hosts[h1].result["upgrades"] == []
    assert again.hosts[h1].status == "ok"  # idempotent
    assert again.hosts[h1].result["reboot_required"] is True
    assert again.hosts[h1].result["rebooted"] is False
    assert again.hosts[h1].skipped == 1  # the reboot task


def test_patch_post_check_failure_stops_the_next_batches(fleet, hosts, driver, apt_repo):
    """A failing health check fails that host; max_fail_percentage 0 stops the rest."""
    h3 = hosts[2]
    ev = {"patch_repo": apt_repo["source"], "patch_serial": "1", "patch_packages": ["none"],
          "patch_health_cmd": f"test $(hostname) != {hosts[0]}"}
    run = driver.run("patch", fleet.inventory(), extravars=ev)
    assert run.status == "failed"
    assert run.hosts[hosts[0]].status == "failed"
    assert "non-zero return code" in run.hosts[hosts[0]].error
    # serial 1 in inventory order: host1 failed first, so the later batches never ran
    assert run.hosts[hosts[1]].status == "not_run" and run.hosts[h3].status == "not_run"


def test_patch_pre_check_refuses_a_host_short_of_disk(fleet, hosts, driver, apt_repo):
    ev = {"patch_repo": apt_repo["source"], "patch_min_free_mb": "100000000"}
    run = driver.run("patch", fleet.inventory(), limit=hosts[2], extravars=ev)
    assert run.hosts[hosts[2]].status == "failed"
    assert "MB free under /var" in run.hosts[hosts[2]].error
    assert _version(fleet, hosts[2]) == "1.0"
