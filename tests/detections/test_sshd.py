"""A real brute force against a real sshd (on loopback, started by the test): sshd's own
log lines, read by the auth-log collector, raise the brute-force alert on both stores; a
single mistyped password does not."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from detect_helpers import alerts_by_rule

from collectors.logs import LogReader, parser_for
from detections.engine import Engine
from detections.rules import load_pack
from soc_core import ecs

BRUTE = "5e0c1a10-0003-4000-8000-000000000003"
INVALID = "5e0c1a10-0007-4000-8000-000000000007"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """sshd -D -e on 127.0.0.1; its log lines are written to an auth.log with a syslog
    header stamped when each line arrived (sshd -e prints them without one)."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation directory
    port = _free_port()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")],
                   check=True)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path}/hk\n"
                   f"PidFile {tmp_path}/sshd.pid\nPasswordAuthentication yes\n"
                   "KbdInteractiveAuthentication no\nPubkeyAuthentication no\nUsePAM no\n"
                   "StrictModes no\nLogLevel INFO\nMaxAuthTries 10\n")
    log = tmp_path / "auth.log"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def pump() -> None:
        with open(log, "a") as out:
            for line in proc.stderr:
                if "Server listening" in line:
                    ready.set()
                stamp = datetime.now(UTC).isoformat(timespec="microseconds")
                out.write(f"{stamp} gov-bastion sshd[{proc.pid}]: {line.rstrip()}\n")
                out.flush()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    assert ready.wait(20), "sshd did not start"
    ask = tmp_path / "askpass.sh"
    ask.write_text("#!/bin/sh\necho not-the-password\n")
    ask.chmod(0o700)

    def attempt(prompts: int) -> None:
        env = {**os.environ, "SSH_ASKPASS": str(ask), "SSH_ASKPASS_REQUIRE": "force",
               "DISPLAY": ":0"}
        out = subprocess.run(
            ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password",
             "-o", f"NumberOfPasswordPrompts={prompts}", "-o", "ConnectTimeout=10",
             "govsoc-nobody@127.0.0.1", "true"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            start_new_session=True)
        assert "Permission denied" in out.stderr, out.stderr

    yield attempt, log
    proc.terminate()
    proc.wait(10)
    t.join(5)


def _alerts_after(store, log: Path) -> dict:
    time.sleep(0.5)  # let the last log lines arrive
    docs: list[dict] = []
    LogReader(log, parser_for("auth"), docs.append).import_once()
    res = store.write(docs, refresh=True)
    assert not res.rejected, res.rejected[:2]
    failures = [d for d in docs if ecs.get_field(d, "event.outcome") == "failure"
                and ecs.get_field(d, "event.action") == "ssh_login"]
    now = ecs.format_time(datetime.now(UTC) + timedelta(seconds=10))
    summary = Engine(store, load_pack()).run_once(now=now, since="now-1h")
    assert not summary.errors, summary.errors
    return {"fired": alerts_by_rule(store), "failures": failures}


def test_real_brute_force_against_sshd(store, sshd):
    attempt, log = sshd
    for _ in range(4):
        attempt(3)  # 12 wrong passwords over four connections
    got = _alerts_after(store, log)
    assert len(got["failures"]) >= 12
    assert {ecs.get_field(d, "source.ip") for d in got["failures"]} == {"127.0.0.1"}
    assert got["fired"][BRUTE] == 1
    assert got["fired"][INVALID] >= 1  # sshd's own "Invalid user" line, found by full text


def test_one_mistyped_password_is_not_a_brute_force(store, sshd):
    attempt, log = sshd
    attempt(1)
    got = _alerts_after(store, log)
    assert 1 <= len(got["failures"]) <= 2
    assert got["fired"][BRUTE] == 0
