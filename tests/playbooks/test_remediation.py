"""block_ip, isolate_host, kill_process, disable_account on the real fleet: each is
idempotent, --check changes nothing, and the undo restores the host."""

from __future__ import annotations

import pytest

from playbooks.catalog import PlaybookError

pytestmark = pytest.mark.fleet


def _can_connect(fleet, src: str, dst_addr: str, port: int = 22) -> bool:
    probe = f"timeout 1 bash -c '</dev/tcp/{dst_addr}/{port}'"
    return fleet.ssh(src, probe, check=False).returncode == 0


def test_block_ip_blocks_only_the_given_address_and_undo_restores(fleet, hosts, driver):
    h1, h2, h3 = hosts
    a1, a2 = fleet.host(h1).address, fleet.host(h2).address
    assert _can_connect(fleet, h2, a1)

    dry = driver.run("block_ip", fleet.inventory(), limit=h1, check=True, extravars={"ip": a2})
    assert dry.ok and dry.hosts[h1].status == "changed"
    assert _can_connect(fleet, h2, a1)  # --check changed nothing
    assert "govsoc_block" not in fleet.ssh(h1, "nft list tables").stdout

    run = driver.run("block_ip", fleet.inventory(), limit=h1, extravars={"ip": a2})
    assert run.ok and run.hosts[h1].result == {"blocked": [a2]}
    try:
        assert not _can_connect(fleet, h2, a1)
        assert _can_connect(fleet, h3, a1)  # only the blocked address
        again = driver.run("block_ip", fleet.inventory(), limit=h1, extravars={"ip": a2})
        assert again.ok and again.hosts[h1].status == "ok"  # idempotent
    finally:
        undo = driver.run("block_ip", fleet.inventory(), limit=h1,
                          extravars={"ip": a2, "undo": "true"})
    assert undo.ok and undo.hosts[h1].status == "changed"
    assert _can_connect(fleet, h2, a1)


def test_block_ip_rejects_a_bad_address_before_the_run(fleet, hosts, driver):
    with pytest.raises(PlaybookError, match="not an IPv4 address"):
        driver.run("block_ip", fleet.inventory(), limit=hosts[0],
                   extravars={"ip": "10.213.1.999"})


def test_isolate_host_leaves_only_the_management_address(fleet, hosts, driver):
    h1, h2, _ = hosts
    a1 = fleet.host(h1).address
    dry = driver.run("isolate_host", fleet.inventory(), limit=h1, check=True)
    assert dry.ok and dry.hosts[h1].status == "changed"
    assert "govsoc_isolate" not in fleet.ssh(h1, "nft list tables").stdout
    run = driver.run("isolate_host", fleet.inventory(), limit=h1)
    try:
        assert run.ok and run.hosts[h1].result["isolated"] is True
        assert not _can_connect(fleet, h2, a1)
        assert fleet.ssh(h1, "hostname").stdout.strip() == h1  # the SOC still gets in
        again = driver.run("isolate_host", fleet.inventory(), limit=h1)
        assert again.ok and again.hosts[h1].status == "ok"
    finally:
        undo = driver.run("isolate_host", fleet.inventory(), limit=h1,
                          extravars={"undo": "true"})
    assert undo.ok and undo.hosts[h1].result["isolated"] is False
    assert _can_connect(fleet, h2, a1)


def test_kill_process_by_name_and_hash_with_quarantine_and_undo(fleet, hosts, driver):
    h1, h2, _ = hosts
    for h in (h1, h2):
        fleet.ssh(h, "cp /usr/bin/sleep /usr/local/bin/evilminer && "
                     "(nohup /usr/local/bin/evilminer 600 >/dev/null 2>&1 &) && "
                     "(nohup sleep 601 >/dev/null 2>&1 &)")
    sha = fleet.ssh(h1, "sha256sum /usr/local/bin/evilminer").stdout.split()[0]
    ev = {"name": "evilminer", "sha256": sha, "quarantine": "true"}

    def alive(h: str, pattern: str) -> bool:
        return fleet.ssh(h, f"pgrep -x {pattern}", check=False).returncode == 0

    try:
        dry = driver.run("kill_process", fleet.inventory(), limit=h1, check=True, extravars=ev)
        assert dry.ok and dry.hosts[h1].status == "changed" and alive(h1, "evilminer")

        run = driver.run("kill_process", fleet.inventory(), limit=h1, extravars=ev)
        assert run.ok and [p["name"] for p in run.hosts[h1].result["killed"]] == ["evilminer"]
        assert not alive(h1, "evilminer")
        assert alive(h1, "sleep")  # same binary, other name: untouched
        assert alive(h2, "evilminer")  # other host: untouched
        assert fleet.ssh(h1, "test -e /usr/local/bin/evilminer", check=False).returncode == 1

        again = driver.run("kill_process", fleet.inventory(), limit=h1, extravars=ev)
        assert again.ok and again.hosts[h1].status == "ok"

        undo = driver.run("kill_process", fleet.inventory(), limit=h1,
                          extravars={"sha256": sha, "undo": "true"})
        assert undo.ok and undo.hosts[h1].status == "changed"
        assert fleet.ssh(h1, "sha256sum /usr/local/bin/evilminer").stdout.split()[0] == sha
        assert fleet.ssh(h1, "stat -c %a /usr/local/bin/evilminer").stdout.strip() == "755"
    finally:
        for h in (h1, h2):
            fleet.ssh(h, "pkill -x evilminer; pkill -x sleep; rm -f /usr/local/bin/evilminer",
                      check=False)


def test_disable_account_fails_cleanly_where_the_user_is_missing(fleet, hosts, driver):
    h1, h2, h3 = hosts
    for h in (h1, h2):
        fleet.ssh(h, "useradd -m -s /bin/bash -p '$6$salt$notarealhash' bob")
    try:
        dry = driver.run("disable_account", fleet.inventory(), limit=h1, check=True,
                         extravars={"user": "bob"})
        assert dry.ok
        assert fleet.ssh(h1, "getent shadow bob").stdout.split(":")[1][:1] != "!"

        run = driver.run("disable_account", fleet.inventory(), extravars={"user": "bob"})
        # the host without the account fails on its own; the others are done and recorded
        assert run.status == "failed" and not run.ok
        assert run.hosts[h3].status == "failed" and run.hosts[h3].error
        for h in (h1, h2):
            assert run.hosts[h].status == "changed"
            shadow = fleet.ssh(h, "getent shadow bob").stdout.split(":")
            assert shadow[1].startswith("!") and shadow[7] == "1"
            assert fleet.ssh(h, "getent passwd bob").stdout.strip().endswith("/usr/sbin/nologin")

        again = driver.run("disable_account", fleet.inventory(), limit=h1,
                           extravars={"user": "bob"})
        assert again.ok and again.hosts[h1].status == "ok"

        undo = driver.run("disable_account", fleet.inventory(), limit=f"{h1},{h2}",
                          extravars={"user": "bob", "undo": "true"})
        assert undo.ok
        for h in (h1, h2):
            shadow = fleet.ssh(h, "getent shadow bob").stdout.split(":")
            assert not shadow[1].startswith("!") and shadow[7] == ""
            assert fleet.ssh(h, "getent passwd bob").stdout.strip().endswith("/bin/bash")
    finally:
        for h in (h1, h2):
            fleet.ssh(h, "userdel -r bob", check=False)


def test_disable_account_refuses_root(fleet, hosts, driver):
    run = driver.run("disable_account", fleet.inventory(), limit=hosts[0],
                     extravars={"user": "root"})
    assert run.hosts[hosts[0]].status == "failed"
    assert "other than root" in run.hosts[hosts[0]].error
    assert fleet.ssh(hosts[0], "getent shadow root").stdout.split(":")[1][:1] != "!"
