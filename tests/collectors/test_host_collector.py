"""The host collector against this real machine: a child process we start and stop, a
listening socket and an outbound connection we open on 127.0.0.1, file integrity of
files we change, host metrics, and `govsoc collect host --once` into a store."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import gmalglib

from collectors.host import HashCache, HostCollector, sm3_file
from soc_core import ecs
from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")


def _cycle(hc: HostCollector) -> list[dict]:
    out: list[dict] = []
    hc.sink = out.append
    hc.collect()
    for d in out:
        ecs.normalize(d)  # everything the collector emits is a valid store document
    return out


def _of(docs: list[dict], dataset: str, **where) -> list[dict]:
    res = []
    for d in docs:
        if d["event"]["dataset"] != dataset:
            continue
        if all(ecs.get_field(d, k.replace("__", ".")) == v for k, v in where.items()):
            res.append(d)
    return res


def test_sm3_matches_the_reference(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    # GB/T 32905 test vector for "abc"
    assert sm3_file(str(p)) == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    big = os.urandom(3_000_000)
    p.write_bytes(big)
    assert sm3_file(str(p)) == gmalglib.sm3_digest(big).hex() == hashlib.new("sm3", big).hexdigest()
    cache = HashCache()
    first = cache.sm3(str(p))
    assert cache.sm3(str(p)) == first and cache.hashed == 1  # cached by path/mtime/size
    p.write_bytes(b"abcd")
    assert cache.sm3(str(p)) != first and cache.hashed == 2


def test_process_start_and_stop():
    hc = HostCollector(lambda d: None, metrics=False)
    first = _cycle(hc)
    assert _of(first, "system.process", process__pid=os.getpid(),
               event__action="existing_process")
    child = subprocess.Popen(["sleep", "60"])
    try:
        started = _of(_cycle(hc), "system.process", process__pid=child.pid)
    finally:
        child.kill()
        child.wait()
    (ev,) = started
    assert ev["event"]["action"] == "process_started" and ev["event"]["type"] == ["start"]
    assert ev["event"]["category"] == ["process"]
    p = ev["process"]
    assert p["parent"]["pid"] == os.getpid() and p["args"] == ["sleep", "60"]
    exe = os.path.realpath(p["executable"])
    assert os.path.basename(exe) == "sleep"
    assert p["hash"]["sm3"] == gmalglib.sm3_digest(Path(exe).read_bytes()).hex()
    assert ev["user"]["name"] == "root" and ev["user"]["id"] == "0"
    (stopped,) = _of(_cycle(hc), "system.process", process__pid=child.pid)
    assert stopped["event"]["action"] == "process_stopped"
    assert stopped["process"]["entity_id"] == p["entity_id"]
    assert stopped["event"]["id"] != ev["event"]["id"]


def test_listening_socket_and_outbound_connection():
    hc = HostCollector(lambda d: None, metrics=False)
    _cycle(hc)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    try:
        docs = _cycle(hc)
        (listen,) = _of(docs, "system.socket", destination__port=port,
                        network__direction="listening")
        assert listen["event"]["action"] == "socket_opened"
        assert listen["destination"]["ip"] == "127.0.0.1"
        assert listen["network"] == {"transport": "tcp", "type": "ipv4",
                                     "direction": "listening"}
        assert listen["process"]["pid"] == os.getpid()
        (out,) = _of(docs, "system.socket", network__direction="outbound",
                     destination__port=port)
        assert out["source"] == {"ip": "127.0.0.1", "port": cli.getsockname()[1]}
        assert out["process"]["pid"] == os.getpid()
        assert out["process"]["executable"] == os.path.realpath(sys.executable)
    finally:
        conn.close()
        cli.close()
        srv.close()
    closed = _of(_cycle(hc), "system.socket", event__action="socket_closed")
    assert {d["destination"]["port"] for d in closed} >= {port}


def test_file_integrity_changes_and_persisted_baseline(tmp_path):
    watched = tmp_path / "etc"
    watched.mkdir()
    (watched / "a.conf").write_text("one")
    (watched / "b.conf").write_text("two")
    state = tmp_path / "state"
    hc = HostCollector(lambda d: None, fim_paths=[str(watched)], state_dir=str(state),
                       metrics=False)
    assert _of(_cycle(hc), "file_integrity") == []  # the baseline itself is not news
    (watched / "a.conf").write_text("ONE")
    (watched / "c.conf").write_text("three")
    os.chmod(watched / "b.conf", 0o600)
    docs = _of(_cycle(hc), "file_integrity")
    actions = {d["file"]["name"]: d["event"]["action"] for d in docs}
    assert actions == {"a.conf": ["updated"], "c.conf": ["created"],
                       "b.conf": ["attributes_modified"]}
    upd = next(d for d in docs if d["file"]["name"] == "a.conf")
    assert upd["file"]["hash"]["sm3"] == gmalglib.sm3_digest(b"ONE").hex()
    assert upd["file"]["path"] == str(watched / "a.conf") and upd["file"]["owner"] == "root"
    assert upd["event"]["category"] == ["file"] and upd["event"]["type"] == ["change"]
    # changes made while no collector runs are found by the next one (saved baseline)
    (watched / "c.conf").unlink()
    again = HostCollector(lambda d: None, fim_paths=[str(watched)], state_dir=str(state),
                          metrics=False)
    (gone,) = _of(_cycle(again), "file_integrity")
    assert gone["event"]["action"] == ["deleted"] and gone["file"]["name"] == "c.conf"


def test_host_metrics_shape():
    hc = HostCollector(lambda d: None)
    docs = _cycle(hc)
    datasets = {d["event"]["dataset"] for d in docs if d["event"]["kind"] == "metric"}
    assert {"system.cpu", "system.memory", "system.load", "system.network",
            "system.filesystem"} <= datasets
    (mem,) = _of(docs, "system.memory")
    assert 0 < mem["system"]["memory"]["used"]["pct"] < 1
    assert mem["system"]["memory"]["total"] > 0
    lo = _of(docs, "system.network", system__network__name="lo")
    assert lo and lo[0]["system"]["network"]["in"]["bytes"] >= 0


def test_cli_once_writes_to_the_store(tmp_path):
    env = {**os.environ, "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db",
           "GOVSOC_DATA_DIR": str(tmp_path)}
    r = subprocess.run([GOVSOC, "collect", "host", "--once"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 cycle(s)" in r.stdout and "written" in r.stdout
    with open_store(env["GOVSOC_STORE_URL"]) as store:
        procs = store.count(Selection(dataset="system.process"))
        assert procs > 5
        assert store.count(Selection(family="metrics", dataset="system.cpu")) == 1
    st = subprocess.run([GOVSOC, "collect", "status"], env=env, capture_output=True, text=True)
    assert st.returncode == 0 and "host" in st.stdout and "store up" in st.stdout


UTMP = Path("/var/run/utmp")
_UTMP_RECORD = struct.Struct("<hxxi32s4s32s256shhi2i4i20x")  # glibc's struct utmp, 384 bytes


def test_login_session_from_utmp():
    """A real utmp record (as login/sshd write it) for the duration of the test."""
    before = UTMP.read_bytes() if UTMP.exists() else None
    hc = HostCollector(lambda d: None, metrics=False)
    _cycle(hc)
    rec = _UTMP_RECORD.pack(7, os.getpid(), b"pts/77", b"77", b"auditor", b"198.51.100.23",
                            0, 0, 0, int(time.time()), 0, 0, 0, 0, 0)  # 7: USER_PROCESS
    try:
        UTMP.write_bytes((before or b"") + rec)
        (login,) = _of(_cycle(hc), "system.login", user__name="auditor")
    finally:
        if before is None:
            UTMP.unlink()
        else:
            UTMP.write_bytes(before)
    assert login["event"]["action"] == "user_login" and login["event"]["type"] == ["start"]
    assert login["source"]["ip"] == "198.51.100.23" and login["process"]["pid"] == os.getpid()
    assert login["govsoc"]["session"]["terminal"] == "pts/77"
    (logout,) = _of(_cycle(hc), "system.login", user__name="auditor")
    assert logout["event"]["action"] == "user_logout" and logout["event"]["type"] == ["end"]
