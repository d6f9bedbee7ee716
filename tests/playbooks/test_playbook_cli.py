"""`govsoc playbook ...` and `govsoc fleet ...` as a script would use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from playbooks.driver import Driver
from soc_core.store import Selection

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def cli(fleet, tmp_path_factory):
    data = tmp_path_factory.mktemp("clidata")
    env = {**os.environ, "GOVSOC_DATA_DIR": str(data),
           "GOVSOC_STORE_URL": f"sqlite:///{data}/govsoc.db",
           "GOVSOC_FLEET_INDEX": str(fleet.index)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "-m", "soc_core.cli", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    run.store_url = env["GOVSOC_STORE_URL"]
    return run


def test_fleet_inventory_is_an_ansible_inventory(cli, hosts, fleet):
    out = cli("fleet", "inventory")
    assert out.returncode == 0, out.stderr
    inv = yaml.safe_load(out.stdout)
    fleet_group = inv["all"]["children"]["fleet"]
    assert sorted(fleet_group["hosts"]) == sorted(hosts)
    assert fleet_group["vars"]["ansible_user"] == "root"
    missing = cli("fleet", "inventory", "--index", "250")
    assert missing.returncode == 2 and missing.stderr.startswith("error: fleet 250 is not up")


def test_playbook_list(cli):
    out = cli("playbook", "list", "--json")
    names = set(json.loads(out.stdout))
    assert {"asset_sweep", "patch", "dr_drill", "block_ip", "isolate_host", "kill_process",
            "disable_account"} <= names


def test_run_json_and_status(cli, hosts):
    out = cli("playbook", "run", "asset_sweep", "--fleet", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "successful"
    assert {h: s["status"] for h, s in result["hosts"].items()} == {h: "ok" for h in hosts}
    status = cli("playbook", "status", result["run_id"], "--json")
    assert json.loads(status.stdout)["status"] == "successful"
    text = cli("playbook", "status", result["run_id"])
    assert f"run {result['run_id']}: asset_sweep successful" in text.stdout


def test_run_exit_code_is_1_when_a_host_failed(cli, hosts):
    out = cli("playbook", "run", "block_ip", "--fleet", "--limit", hosts[0], "-e", "ip=300.1.1.1")
    assert out.returncode == 1
    assert f"{hosts[0]}" in out.stdout and "failed" in out.stdout
    assert "not an IPv4 address" in out.stdout


def test_run_with_an_inventory_file(cli, fleet, hosts, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(fleet.inventory()))
    out = cli("playbook", "run", "asset_sweep", "--inventory", str(inv), "--limit", hosts[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("run ") and f"{hosts[2]}" in out.stdout


def test_run_against_the_asset_registry(cli, hosts):
    out = cli("playbook", "run", "block_ip", "--assets", "--limit", hosts[1], "--check",
              "-e", "ip=10.213.99.7", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["hosts"][hosts[1]]["status"] == "changed"


@pytest.mark.parametrize("args, message", [
    (["run", "nope", "--fleet"], "unknown playbook 'nope'"),
    (["run", "asset_sweep", "--inventory", "/nonexistent/inv.yml"], "inventory file not found"),
    (["run", "asset_sweep"], "give exactly one of"),
    (["run", "asset_sweep", "--fleet", "-e", "novalue"], "bad -e 'novalue'"),
    (["status", "000000000000"], "no playbook run '000000000000'"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    out = cli("playbook", *args)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {out.stderr.strip()[7:]}"]
    assert message in out.stderr


def test_a_refused_run_loses_nothing_already_recorded(cli, fleet):
    from soc_core.store import open_store

    with open_store(cli.store_url) as store:
        before = store.count(Selection(family="playbook_runs"))
        assets = store.count(Selection(family="assets"))
    assert cli("playbook", "run", "nope", "--fleet").returncode == 2
    with open_store(cli.store_url) as store:
        assert store.count(Selection(family="playbook_runs")) == before
        assert store.count(Selection(family="assets")) == assets


@pytest.mark.es
def test_runs_and_assets_on_elasticsearch(fleet, hosts, es_store, tmp_path):
    driver = Driver(es_store, work_dir=tmp_path)
    result = driver.run("asset_sweep", fleet.inventory(), limit=hosts[0])
    assert result.ok
    es_store.refresh()
    assert driver.status(result.run_id)["status"] == "successful"
    assets = list(es_store.scan(Selection(family="assets")))
    assert [a["host"]["name"] for a in assets] == [hosts[0]]
    events = es_store.count(Selection(family="playbook_runs",
                                      query=f"govsoc.playbook.run_id:{result.run_id}"))
    assert events >= 5
