"""`govsoc agent` as a process on this machine (SQLite store): every event names its agent
and host, heartbeats carry the agent's own health, SIGTERM drains, the agent id survives a
restart; a config that cannot work is one error line. (On the fleet, with deploy_agent,
SIGKILL and rotation: tests/playbooks/test_agent_fleet.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")
LINE = "Nov 30 10:00:{:02d} h sshd[1]: Failed password for invalid user u{} from 10.0.0.9 " \
       "port 4242 ssh2\n"


def _config(tmp_path: Path, interval: str = "1") -> Path:
    (tmp_path / "auth.log").write_text("".join(LINE.format(i, i) for i in range(5)))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'store_url = "sqlite:///{tmp_path}/store.db"\n'
                   f'data_dir = "{tmp_path}/data"\n'
                   f"[agent]\nname = \"edge-1\"\nhealth_interval = {interval}\n"
                   "[collectors.host]\ninterval = 1\n"
                   f'[collectors.logs]\nauth_paths = ["{tmp_path}/auth.log"]\n'
                   "syslog_paths = []\nauditd_paths = []\n")
    return cfg


def _run_until(cfg: Path, tmp_path: Path, ready) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([GOVSOC, "agent", "--config", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_agent_identifies_itself_reports_health_and_drains_on_sigterm(tmp_path):
    cfg = _config(tmp_path)
    url = f"sqlite:///{tmp_path}/store.db"

    def count(dataset: str, family: str = "events") -> int:
        try:
            with open_store(url) as s:
                return s.count(Selection(family=family, dataset=dataset))
        except Exception:  # noqa: BLE001 - not created yet
            return 0

    first = _run_until(cfg, tmp_path, lambda: count("govsoc.agent", "metrics") >= 2)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "agent edge-1 stopped" in first.stderr
    agent_id = (tmp_path / "data" / "agent" / "id").read_text().strip()
    with (tmp_path / "auth.log").open("a") as fh:  # read by the next run, once
        fh.write(LINE.format(9, 9))
    # the host collector's first cycle describes every process on the machine: on a busy
    # machine it can take longer than the two heartbeats and the log line
    second = _run_until(cfg, tmp_path, lambda: count("system.auth") >= 6
                        and count("system.process") > 0)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (tmp_path / "data" / "agent" / "id").read_text().strip() == agent_id
    with open_store(url) as s:
        auth = list(s.scan(Selection(family="events", dataset="system.auth")))
        procs = s.count(Selection(family="events", dataset="system.process"))
        beats = list(s.scan(Selection(family="metrics", dataset="govsoc.agent")))
    assert sorted(d["user"]["name"] for d in auth) == [f"u{i}" for i in (0, 1, 2, 3, 4, 9)]
    assert procs > 0
    for d in auth + beats:
        assert d["agent"] == {**d["agent"], "id": agent_id, "name": "edge-1", "type": "govsoc"}
        assert d["host"]["id"] and d["host"]["name"]
    a = beats[-1]["govsoc"]["agent"]
    assert a["interval_s"] == 1.0 and a["rss_bytes"] > 0 and a["cpu_seconds"] > 0
    assert {"events_per_s", "dropped", "spool", "queued", "last_error"} <= set(a)


def test_agent_refuses_a_config_that_cannot_work(tmp_path):
    cfg = _config(tmp_path, interval="-1")
    out = subprocess.run([GOVSOC, "agent", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: agent.health_interval: must be above 0, got -1"]
    missing = subprocess.run([GOVSOC, "agent", "--config", str(tmp_path / "nope.toml")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
