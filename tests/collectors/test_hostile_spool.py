"""The collector's spool under damage and outage, as a user sees it: damaged spooled
records are counted in the summary (not "skipped 0"), `collect status` does not count
bytes already reported lost, and Ctrl-C while the store is unreachable stops promptly,
keeping every spooled event for the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")
DOWN = "http://127.0.0.1:1"  # nothing listens there: connection refused at once


def _env(tmp_path) -> dict:
    return {**os.environ, "GOVSOC_DATA_DIR": str(tmp_path / "data"), "GOVSOC_ES_RETRIES": "0"}


def _auth_log(path: Path, n: int, start: int = 0) -> None:
    with open(path, "a") as fh:
        for i in range(start, start + n):
            fh.write(f"Nov 23 10:00:{i % 60:02d} h sshd[{1000 + i}]: Failed password for root "
                     f"from 192.0.2.{i % 250} port {2000 + i} ssh2\n")


def _collect(tmp_path, log: Path, store: str) -> subprocess.CompletedProcess:
    return subprocess.run([GOVSOC, "collect", "logs", "--format", "auth", str(log),
                           "--store", store], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)


def _status(tmp_path) -> dict:
    out = subprocess.run([GOVSOC, "collect", "status", "--json"], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    (snap,) = [orjson.loads(line) for line in out.stdout.splitlines()]
    return snap


def _spool_while_down(tmp_path, log: Path, expect: int, more: int = 0) -> str:
    """`collect logs --follow` with the store down until `expect` events are spooled, then
    `more` lines appended and followed, then Ctrl-C; returns its output."""
    proc = subprocess.Popen([GOVSOC, "collect", "logs", "--format", "auth", "--follow",
                             str(log), "--store", DOWN], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    health = tmp_path / "data" / "collectors" / "logs-auth.health.json"
    try:
        for _ in range(600):  # until the health snapshot shows the lines spooled
            if health.exists() and orjson.loads(health.read_bytes())["spooled"] >= expect:
                break
            time.sleep(0.2)
        if more:
            _auth_log(log, more, start=expect)  # followed while the store is down
            time.sleep(2)
        proc.send_signal(signal.SIGINT)
        # the drain window is for a store that answers; with it down, Ctrl-C stops now
        # (a bound on a hang, not a timing: before the fix it took over 30 s)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    return out


def test_spool_damage_is_counted_in_the_summary_and_not_as_waiting(tmp_path):
    log = tmp_path / "auth.log"
    _auth_log(log, 200)
    down = _spool_while_down(tmp_path, log, 200)
    assert "spooled 200 while the store was unavailable" in down, down
    (seg,) = (tmp_path / "data" / "spool" / "logs-auth").glob("seg-*.spool")
    data = bytearray(seg.read_bytes())
    data[100] ^= 0xFF  # inside the first spooled batch
    seg.write_bytes(bytes(data))
    url = f"sqlite:///{tmp_path}/g.db"
    up = _collect(tmp_path, log, url)
    assert up.returncode == 0, up.stderr
    assert "skipped 0 records" not in up.stdout
    assert "skipped 1 records:" in up.stdout and "damaged spool region" in up.stdout
    snap = _status(tmp_path)
    assert snap["spool_corruptions"] == 1 and 0 < snap["spool_lost_bytes"] < len(data)
    assert f"lost {snap['spool_lost_bytes']} spooled bytes in 1 damaged spool region(s)" \
        in up.stdout
    assert snap["spool_on_disk"] == 0  # reported lost once, never "waiting" afterwards
    assert "0 bytes waiting" in subprocess.run(
        [GOVSOC, "collect", "status"], env=_env(tmp_path), capture_output=True, text=True,
        timeout=120).stdout


@pytest.mark.timeout(120)
def test_ctrl_c_with_the_store_down_stops_promptly_and_keeps_the_spool(tmp_path):
    log = tmp_path / "auth.log"
    _auth_log(log, 150)
    out = _spool_while_down(tmp_path, log, 150, more=10)
    assert "still spooled on disk" in out
    url = f"sqlite:///{tmp_path}/g.db"
    up = _collect(tmp_path, log, url)  # the next run delivers what was spooled
    assert up.returncode == 0, up.stderr
    with open_store(url) as store:
        assert store.count(Selection(dataset="system.auth")) == 160
