"""dr_drill between two fleet hosts: byte-identical restore, SM4 at rest, RTO/RPO."""

from __future__ import annotations

import time
import urllib.request

import pytest

from soc_core.store import Selection

pytestmark = pytest.mark.fleet
DATA = "/srv/govsoc-svc/data"


def _manifest(fleet, host: str) -> str:
    return fleet.ssh(host, f"cd {DATA} && find . -type f -print0 | sort -z | "
                           "xargs -0 sha256sum").stdout


def _get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(50):
        try:
            return opener.open(url, timeout=2).read()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_dr_drill_restores_identical_data_and_reports_rto_rpo(fleet, hosts, driver, pb_store):
    primary, standby = hosts[0], hosts[1]
    vip = f"{fleet.state().subnet.network_address + 250}"
    fleet.ssh(primary, f"mkdir -p {DATA}/db && echo healthy > {DATA}/health.txt && "
                       f"head -c 300000 /dev/urandom > {DATA}/db/records.bin && "
                       f"printf 'a\\nb\\n' > '{DATA}/db/name with space.txt' && "
                       f"ip addr add {vip}/24 dev eth0 && "
                       f"(python3 -m http.server 8080 --bind {vip} --directory {DATA} "
                       "</dev/null >/dev/null 2>&1 & echo $! > /run/govsoc-dr-service.pid)")
    for h in (primary, standby):  # the SM4 key is provisioned on the hosts, never sent
        fleet.ssh(h, "umask 077; echo 'drill-key-0123456789' > /etc/govsoc-dr.key")
    try:
        assert _get(f"http://{vip}:8080/health.txt") == b"healthy\n"
        run = driver.run("dr_drill", fleet.inventory(), extravars={
            "dr_primary": primary, "dr_standby": standby, "dr_vip": vip,
            "dr_sm4_key_file": "/etc/govsoc-dr.key"})
        assert run.ok, (run.reason, {h: s.error for h, s in run.hosts.items()})

        assert _manifest(fleet, standby) == _manifest(fleet, primary)  # byte-identical
        at_rest = fleet.ssh(standby, "ls /var/backups/govsoc-dr").stdout.split()
        assert "backup.tar.gz.sm4" in at_rest
        head = fleet.ssh(primary, "head -c 8 /var/backups/govsoc-dr/backup.tar.gz.sm4").stdout
        assert head == "Salted__"  # openssl enc output, not a plain gzip
        assert fleet.ssh(primary, "test -e /var/backups/govsoc-dr/backup.tar.gz",
                         check=False).returncode == 1  # no plaintext left at rest
        # failed back: the primary holds the address and serves again
        assert vip in fleet.ssh(primary, "ip -4 addr show eth0").stdout
        assert vip not in fleet.ssh(standby, "ip -4 addr show eth0").stdout
        assert _get(f"http://{vip}:8080/health.txt") == b"healthy\n"

        reports = list(pb_store.scan(Selection(dataset="govsoc.dr_drill",
                                               query=f"govsoc.dr.run_id:{run.run_id}")))
        assert len(reports) == 1
        dr = reports[0]["govsoc"]["dr"]
        assert reports[0]["event"]["outcome"] == "success"
        assert dr["verified"] and dr["encrypted"] and dr["failed_back"]
        assert dr["rto_s"] > 0 and dr["rpo_s"] >= 0
        artifact = fleet.ssh(primary, "cat /var/backups/govsoc-dr/backup.tar.gz.sm4 | "
                                      "openssl dgst -sm3 -r").stdout.split()[0]
        assert dr["checksum_sm3"] == artifact
        assert "drill-key" not in str(reports[0])
    finally:
        fleet.ssh(primary, f"kill $(cat /run/govsoc-dr-service.pid); ip addr del {vip}/24 dev eth0",
                  check=False)
        for h in (primary, standby):
            fleet.ssh(h, f"rm -rf {DATA} /var/backups/govsoc-dr /etc/govsoc-dr.key", check=False)


def test_dr_drill_without_its_variables_is_a_clear_failure(fleet, driver, pb_store):
    run = driver.run("dr_drill", fleet.inventory())
    assert run.status == "failed"
    assert "dr_drill needs" in run.reason
    reports = list(pb_store.scan(Selection(dataset="govsoc.dr_drill",
                                           query=f"govsoc.dr.run_id:{run.run_id}")))
    assert reports and reports[0]["event"]["outcome"] == "failure"
