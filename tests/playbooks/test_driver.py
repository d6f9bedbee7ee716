"""The driver: runner events streamed to the store, run status kept in place, per-host
summary, unreachable hosts, host locks, cancel (from another process) and timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from playbooks.catalog import PlaybookError
from playbooks.driver import Driver
from playbooks.events import status_id
from playbooks.locks import HostLocks
from soc_core.store import Selection

pytestmark = pytest.mark.fleet


def _events(store, run_id: str) -> list[dict]:
    return list(store.scan(Selection(family="playbook_runs", dataset="govsoc.playbook_run",
                                     query=f"govsoc.playbook.run_id:{run_id}")))


def test_every_runner_event_is_stored_and_the_status_updated_in_place(fleet, hosts, driver,
                                                                      pb_store):
    seen: list[str] = []
    statuses: list[str] = []

    def on_event(data: dict) -> None:
        seen.append(data["event"])
        if data["event"] == "runner_on_ok" and not statuses:
            statuses.append(driver.status(run_id_box[0])["status"])

    run_id_box = ["a1b2c3d4e5f6"]
    result = driver.run("block_ip", fleet.inventory(), limit=hosts[0], check=True,
                        extravars={"ip": "10.213.99.9"}, on_event=on_event, run_id=run_id_box[0])
    assert statuses == ["running"]  # the status document was live during the run
    docs = _events(pb_store, result.run_id)
    states = [d for d in docs if d["event"]["kind"] == "state"]
    events = [d for d in docs if d["event"]["kind"] == "event"]
    assert len(states) == 1  # one status document, rewritten, never duplicated
    assert sorted(d["event"]["action"] for d in events) == sorted(seen)
    assert {"playbook_on_start", "runner_on_ok", "playbook_on_stats"} <= set(seen)
    run = states[0]["govsoc"]["playbook"]
    assert run["status"] == "successful" and run["check"] is True
    assert run["summary"][hosts[0]]["status"] == "changed"
    assert run["extra_vars"] == ["ip"] and "10.213.99.9" not in str(run)
    assert states[0]["event"]["id"] == status_id(result.run_id)


def test_unreachable_host_is_its_own_result_and_others_complete(fleet, hosts, driver, pb_store):
    inventory = fleet.inventory()
    ghost = str(fleet.state().subnet.network_address + 99)  # in the subnet, nobody there
    inventory["all"]["children"]["fleet"]["hosts"]["ghost"] = {"ansible_host": ghost}
    result = driver.run("asset_sweep", inventory, timeout=120)
    assert result.status == "failed" and not result.ok
    assert result.hosts["ghost"].status == "unreachable" and result.hosts["ghost"].error
    for h in hosts:
        assert result.hosts[h].status == "ok" and result.hosts[h].result
    summary = next(pb_store.scan(Selection(dataset="govsoc.asset_sweep",
                                           query=f"govsoc.sweep.run_id:{result.run_id}")))
    assert summary["govsoc"]["sweep"]["recorded"] == len(hosts)
    assert summary["govsoc"]["sweep"]["failed_hosts"] == ["ghost"]


def test_unknown_playbook_and_empty_limit_are_user_errors(fleet, driver):
    with pytest.raises(PlaybookError, match="unknown playbook 'nope'"):
        driver.run("nope", fleet.inventory())
    with pytest.raises(PlaybookError, match="no hosts match"):
        driver.run("asset_sweep", fleet.inventory(), limit="no-such-host")


def test_two_runs_on_the_same_host_are_refused(fleet, hosts, driver, pb_store):
    with HostLocks(driver.work_dir / "locks", "busyrun00001") as held:
        held.acquire([hosts[1]])
        with pytest.raises(PlaybookError, match=f"host {hosts[1]} is busy with run busyrun00001"):
            driver.run("asset_sweep", fleet.inventory())
        other = driver.run("asset_sweep", fleet.inventory(), limit=hosts[0])  # a free host
        assert other.ok
    assert driver.run("asset_sweep", fleet.inventory(), limit=hosts[1]).ok  # released


def test_a_concurrent_run_is_refused_while_one_runs(fleet, hosts, driver, apt_repo):
    started = threading.Event()
    release = threading.Event()
    outcome: dict = {}

    def on_event(data: dict) -> None:
        if data["event"] == "playbook_on_task_start" and not started.is_set():
            started.set()
            release.wait(60)

    def first() -> None:
        outcome["first"] = driver.run("block_ip", fleet.inventory(), limit=hosts[2], check=True,
                                      extravars={"ip": "10.213.99.8"}, on_event=on_event)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert started.wait(60)
        with pytest.raises(PlaybookError, match="busy"):
            driver.run("asset_sweep", fleet.inventory(), limit=hosts[2])
    finally:
        release.set()
        t.join(120)
    assert outcome["first"].ok


def test_cancel_from_another_process(fleet, hosts, pb_store, apt_repo, tmp_path):
    driver = Driver(pb_store, work_dir=tmp_path / "playbooks")
    env = {**os.environ, "GOVSOC_DATA_DIR": str(tmp_path), "GOVSOC_STORE_URL": pb_store.url}
    sleeping = threading.Event()

    def on_event(data: dict) -> None:
        if (data.get("event_data") or {}).get("task", "").startswith("Post-check the service"):
            sleeping.set()

    def canceller() -> None:
        sleeping.wait(120)
        outcome["cli"] = subprocess.run(
            [sys.executable, "-P", "-m", "soc_core.cli", "playbook", "cancel", "cancelme0001"],
            env=env, capture_output=True, text=True)

    outcome: dict = {}
    t = threading.Thread(target=canceller)
    t.start()
    result = driver.run("patch", fleet.inventory(), limit=hosts[2], run_id="cancelme0001",
                        on_event=on_event,
                        extravars={"patch_repo": apt_repo["source"], "patch_packages": ["none"],
                                   "patch_health_cmd": "sleep 120"})
    t.join(30)
    assert outcome["cli"].returncode == 0, outcome["cli"].stderr
    assert result.status == "canceled"
    assert driver.status("cancelme0001")["status"] == "canceled"
    again = subprocess.run([sys.executable, "-P", "-m", "soc_core.cli", "playbook", "cancel",
                            "cancelme0001"], env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "already finished: canceled" in again.stderr


def test_timeout_fails_the_run_with_the_reason(fleet, hosts, driver, apt_repo):
    result = driver.run("patch", fleet.inventory(), limit=hosts[2], timeout=5,
                        extravars={"patch_repo": apt_repo["source"], "patch_packages": ["none"],
                                   "patch_health_cmd": "sleep 120"})
    assert result.status == "failed" and result.reason == "timed out after 5s"
    assert driver.status(result.run_id)["status"] == "failed"
