"""`govsoc collect logs|status` as a user runs them, and the `govsoc up` service."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collectors import service
from collectors.health import load_snapshots
from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")


def _env(tmp_path) -> dict:
    return {**os.environ, "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/data/g.db",
            "GOVSOC_DATA_DIR": str(tmp_path / "data")}


def _run(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([GOVSOC, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_logs_import_summary_and_bad_input(tmp_path):
    env = _env(tmp_path)
    log = tmp_path / "secure"
    log.write_text("Nov 23 10:00:01 h sshd[1]: Failed password for root from 192.0.2.7 port 22"
                   " ssh2\nnot syslog at all\nNov 23 10:00:02 h sshd[1]: Accepted password for"
                   " root from 192.0.2.7 port 22 ssh2\n")
    r = _run(["collect", "logs", str(log), "--format", "auth"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 lines, 2 events" in r.stdout and "written 2 new" in r.stdout
    assert "skipped 1 records:" in r.stdout and "not a syslog line" in r.stdout
    assert f"{log}:2: not a syslog line" in r.stdout
    with open_store(env["GOVSOC_STORE_URL"]) as store:
        outcomes = sorted(d["event"]["outcome"] for d in store.scan(
            Selection(dataset="system.auth")))
    assert outcomes == ["failure", "success"]
    # a second run resumes at the saved position: nothing read twice
    again = _run(["collect", "logs", str(log), "--format", "auth"], env, tmp_path)
    assert "resumed at byte" in again.stdout and "0 lines" in again.stdout
    # --from-start re-reads; the same ids are not stored twice
    full = _run(["collect", "logs", str(log), "--format", "auth", "--from-start"], env,
                tmp_path)
    assert "written 0 new, 2 already present" in full.stdout


def test_missing_file_is_one_error_line(tmp_path):
    env = _env(tmp_path)
    r = _run(["collect", "logs", str(tmp_path / "nope.log"), "--format", "syslog"], env,
             tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: no such file: {tmp_path / 'nope.log'}"
    assert not (tmp_path / "data" / "g.db").exists()  # nothing was started


def test_status_reports_every_collector(tmp_path):
    env = _env(tmp_path)
    r = _run(["collect", "status"], env, tmp_path)
    assert r.returncode == 0 and "no collector has run" in r.stdout
    log = tmp_path / "syslog"
    log.write_text("Nov 23 10:00:01 h app: hello\n")
    _run(["collect", "logs", str(log), "--format", "syslog"], env, tmp_path)
    r = _run(["collect", "status", "--json"], env, tmp_path)
    import orjson

    (snap,) = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert snap["name"] == "logs-syslog" and snap["events_in"] == 1
    assert snap["events_out"] == 1 and snap["spool_on_disk"] == 0 and snap["store_up"]


def test_up_service_runs_host_and_tailers(tmp_path, monkeypatch, caplog):
    auth = tmp_path / "auth.log"
    auth.write_text("Nov 23 10:00:01 h sshd[1]: Invalid user x from 192.0.2.9 port 1\n")
    cfg = tmp_path / "govsoc.toml"
    cfg.write_text(f"""
[collectors.logs]
auth_paths = ["{auth}", "{tmp_path}/missing.log"]
syslog_paths = []
auditd_paths = []
[collectors]
spool_max_mb = 64
batch_size = 500
[collectors.host]
interval = 1
""")
    monkeypatch.setenv("GOVSOC_CONFIG", str(cfg))
    # the shipper settings `govsoc up` must honour, from the file and from the environment
    monkeypatch.setenv("GOVSOC_COLLECTORS_QUEUE_SIZE", "5000")
    monkeypatch.setenv("GOVSOC_COLLECTORS_FLUSH_INTERVAL", "0.25")
    monkeypatch.setenv("GOVSOC_COLLECTORS_SPOOL_FSYNC", "always")
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path}/g.db"
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="govsoc.agent")
    t = threading.Thread(target=service.run, args=(url, stop, False))
    t.start()
    try:
        with open_store(url) as store:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if store.count(Selection(dataset="system.auth")) and store.count(
                        Selection(dataset="system.process")):
                    break
                time.sleep(0.2)
            with open(auth, "a") as fh:  # tailing: a line written now arrives too
                fh.write("Nov 23 10:00:02 h sshd[1]: Invalid user y from 192.0.2.9 port 1\n")
            while time.monotonic() < deadline:
                if store.count(Selection(dataset="system.auth")) == 2:
                    break
                time.sleep(0.2)
            users = sorted(d["user"]["name"] for d in store.scan(Selection(
                dataset="system.auth")))
            assert users == ["x", "y"]
            assert store.count(Selection(dataset="system.process")) > 5
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    assert [r.getMessage() for r in caplog.records if "missing.log" in r.getMessage()] == [
        f"not tailing {tmp_path}/missing.log: no such file"]
    (snap,) = load_snapshots(tmp_path / "data")
    assert snap["name"] == "agent" and snap["settings"] == {
        "batch_size": 500, "max_batch_size": 20_000, "queue_size": 5000,
        "flush_interval": 0.25, "spool_fsync": "always", "spool_max_bytes": 64 * 1024 * 1024}


def test_unusable_shipper_setting_is_one_error_line(tmp_path):
    env = {**_env(tmp_path), "GOVSOC_COLLECTORS_QUEUE_SIZE": "0"}
    log = tmp_path / "syslog"
    log.write_text("Nov 23 10:00:01 h app: hello\n")
    r = _run(["collect", "logs", str(log), "--format", "syslog"], env, tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: collectors.queue_size: must be above 0, got 0"
    env["GOVSOC_COLLECTORS_QUEUE_SIZE"] = "many"
    r = _run(["collect", "logs", str(log), "--format", "syslog"], env, tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: collectors.queue_size: expected an integer, got 'many'"


def test_pcap_command_wires_the_packet_collector(tmp_path):
    from scapy.all import DNS, DNSQR, IP, UDP, Ether, wrpcap

    env = _env(tmp_path)
    wrpcap(str(tmp_path / "q.pcap"), [Ether() / IP(src="10.0.0.1", dst="10.0.0.53") /
                                      UDP(sport=40000, dport=53) /
                                      DNS(id=7, rd=1, qd=DNSQR(qname="www.gov.cn"))])
    (tmp_path / "junk.pcap").write_bytes(b"garbage!" * 4)
    bad = _run(["collect", "pcap", str(tmp_path / "q.pcap"), str(tmp_path / "junk.pcap")], env,
               tmp_path)
    assert bad.returncode == 2 and "not a pcap" in bad.stderr
    assert not (tmp_path / "data" / "g.db").exists()  # checked before anything is written
    r = _run(["collect", "pcap", str(tmp_path / "q.pcap")], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "network.dns 1" in r.stdout and "written 2 new" in r.stdout
    with open_store(env["GOVSOC_STORE_URL"]) as store:
        (dns,) = list(store.scan(Selection(dataset="network.dns")))
    assert dns["dns"]["question"]["name"] == "www.gov.cn"


@pytest.mark.live
def test_live_command_captures_loopback_traffic(tmp_path):
    import socket

    env = _env(tmp_path)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    proc = subprocess.Popen([GOVSOC, "collect", "live", "--iface", "lo", "--bpf",
                             f"tcp port {port}", "--duration", "4"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().strip() == "capturing on lo"  # filter in place
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = srv.accept()
        c.sendall(b"hello")
        s.recv(5)
        c.close()
        s.close()
    out, err = proc.communicate(timeout=60)
    srv.close()
    assert proc.returncode == 0, err
    assert "kernel:" in out and "0 dropped" in out
    with open_store(env["GOVSOC_STORE_URL"]) as store:
        flows = list(store.scan(Selection(dataset="network.flow")))
    assert len(flows) == 3 and {f["destination"]["port"] for f in flows} == {port}
