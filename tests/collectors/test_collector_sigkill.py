"""Exactly-once effect across a SIGKILL: a real `govsoc collect logs --follow` process is
killed mid-run, the log is rotated and grows while it is down, and a restarted process
delivers every line once (count and ids compared)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from collectors.logs import LogReader, parser_for
from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")


def _lines(start: int, n: int) -> bytes:
    return b"".join(b"Nov 23 10:%02d:%02d web1 app[%d]: message number %d padding-padding\n"
                    % ((i // 60) % 60, i % 60, 1000 + i % 50, i) for i in range(start, start + n))


def _position(data: Path) -> int:
    p = data / "collectors" / "positions-logs-syslog.json"
    try:
        return max((v["offset"] for v in orjson.loads(p.read_bytes()).values()), default=0)
    except (OSError, orjson.JSONDecodeError):
        return 0


def _start(tmp_path: Path, log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([GOVSOC, "collect", "logs", str(log), "--format", "syslog",
                             "--follow"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_sigkill_mid_run_then_restart_delivers_each_event_once(tmp_path):
    data = tmp_path / "data"
    url = f"sqlite:///{data}/govsoc.db"
    env = {**os.environ, "GOVSOC_STORE_URL": url, "GOVSOC_DATA_DIR": str(data),
           "GOVSOC_COLLECTORS_BATCH_SIZE": "500"}
    log = tmp_path / "app.log"
    log.write_bytes(_lines(0, 60_000))
    size = log.stat().st_size

    proc = _start(tmp_path, log, env)
    deadline = time.monotonic() + 120
    while _position(data) == 0 and time.monotonic() < deadline:  # a checkpoint was saved
        time.sleep(0.02)
    pos_at_kill = _position(data)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < pos_at_kill < size, "the kill must land mid-file"

    # while the collector is down: logrotate renames the file, the app writes on
    with open(log, "ab") as fh:
        fh.write(_lines(60_000, 5_000))
    rotated = tmp_path / "app.log.1"
    os.rename(log, rotated)
    log.write_bytes(_lines(65_000, 20_000))

    proc = _start(tmp_path, log, env)
    with open_store(url) as store:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if store.count(Selection(dataset="system.syslog")) >= 85_000:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        stored = {d["event"]["id"] for d in store.scan(Selection(dataset="system.syslog"),
                                                        page_size=10_000)}
        total = store.count(Selection(dataset="system.syslog"))

    expected: list[str] = []
    for path in (rotated, log):  # the same parser over both files gives the expected ids
        LogReader(path, parser_for("syslog"),
                  lambda d: expected.append(d["event"]["id"])).import_once()
    assert len(expected) == 85_000 == len(set(expected))
    assert total == 85_000
    assert stored == set(expected)
    assert b"resumed at byte" in out
