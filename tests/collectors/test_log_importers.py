# ruff: noqa: E501  (real log lines and event records are longer than code lines)
"""Linux log importers and the tailer: ECS fields as Filebeat writes them, bad lines
counted with reasons, stable ids, rotation and persisted read positions."""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime

from collectors.logs import LogReader, LogStats, Positions, parser_for
from collectors.logs.syslog import parse_header
from soc_core import ecs

AUTH = """\
Nov 23 10:00:01 web1 sshd[811]: Accepted publickey for alice from 10.0.0.5 port 50022 ssh2: RSA SHA256:abc
Nov 23 10:00:02 web1 sshd[812]: Failed password for invalid user bob from 203.0.113.9 port 4242 ssh2
Nov 23 10:00:03 web1 sshd[812]: Invalid user bob from 203.0.113.9 port 4242
Nov 23 10:00:04 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id -u
Nov 23 10:00:05 web1 su: (to root) alice on pts/0
Nov 23 10:00:06 web1 useradd[900]: new user: name=carol, UID=1002, GID=1002, home=/home/carol, shell=/bin/bash, from=/dev/pts/0
this line is not syslog
Nov 23 10:00:07 web1 sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh
Nov 23 10:00:08 web1 sshd[820]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)
"""


def _read(tmp_path, name: str, text: str, fmt: str):
    p = tmp_path / name
    p.write_text(text)
    out: list[dict] = []
    stats = LogReader(p, parser_for(fmt), out.append).import_once()
    return out, stats


def test_auth_log_fields(tmp_path):
    docs, stats = _read(tmp_path, "auth.log", AUTH, "auth")
    assert stats.lines == 9 and stats.events_total == 8
    assert dict(stats.bad_reasons) == {"not a syslog line": 1}
    assert stats.examples == [f"{tmp_path}/auth.log:7: not a syslog line"]
    ok, failed, invalid, sudo, su, useradd, sudo_fail, session = docs
    for d in docs:
        ecs.normalize(d)  # every event is a valid store document
        assert d["event"]["dataset"] == "system.auth" and d["host"]["hostname"] == "web1"
    assert ok["event"]["outcome"] == "success" and ok["event"]["action"] == "ssh_login"
    assert ok["event"]["category"] == ["authentication", "session"]
    assert ok["user"]["name"] == "alice" and ok["source"] == {"ip": "10.0.0.5", "port": 50022}
    assert ok["system"]["auth"]["ssh"] == {"event": "Accepted", "method": "publickey",
                                           "signature": "RSA SHA256:abc"}
    assert ok["process"] == {"name": "sshd", "pid": 811}
    assert failed["event"]["outcome"] == "failure" and failed["user"]["name"] == "bob"
    assert failed["source"]["ip"] == "203.0.113.9"
    assert invalid["system"]["auth"]["ssh"]["event"] == "Invalid"
    assert sudo["user"] == {"name": "alice", "effective": {"name": "root"}}
    assert sudo["system"]["auth"]["sudo"]["command"] == "/usr/bin/id -u"
    assert sudo_fail["event"]["outcome"] == "failure"
    assert sudo_fail["system"]["auth"]["sudo"]["error"] == "3 incorrect password attempts"
    assert su["event"]["action"] == "su" and su["user"]["effective"]["name"] == "root"
    assert useradd["event"]["type"] == ["user", "creation"] and useradd["user"]["id"] == "1002"
    assert useradd["system"]["auth"]["useradd"] == {"home": "/home/carol", "shell": "/bin/bash"}
    assert session["event"]["type"] == ["start"] and session["user"]["name"] == "alice"
    assert ok["log"]["offset"] == 0 and failed["log"]["offset"] == len(AUTH.splitlines()[0]) + 1


def test_syslog_header_forms():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    bsd = parse_header("Nov 23 10:00:01 h cron[5]: x", now=now, tz=UTC)
    assert bsd.timestamp == datetime(2026, 11, 23, 10, 0, 1, tzinfo=UTC)
    assert (bsd.host, bsd.program, bsd.pid, bsd.message) == ("h", "cron", 5, "x")
    # December seen in January belongs to the previous year
    dec = parse_header("Dec 31 23:59:59 h k: y", now=datetime(2027, 1, 1, 0, 5, tzinfo=UTC),
                       tz=UTC)
    assert dec.timestamp.year == 2026
    iso = parse_header("2026-11-23T18:00:01.123456789+08:00 h sshd[9]: z")
    assert iso.timestamp == datetime(2026, 11, 23, 10, 0, 1, 123456, tzinfo=UTC)
    rfc = parse_header("<38>1 2026-11-23T10:00:01Z h sshd 77 - - hello")
    assert (rfc.priority, rfc.program, rfc.pid, rfc.message) == (38, "sshd", 77, "hello")
    assert parse_header("no header") is None


def test_journal_export_banners_are_ignored(tmp_path):
    text = ("-- Logs begin at Mon 2026-11-23 10:00:00 CST, end at Mon 2026-11-23 11:00:00 CST. --\n"
            "2026-11-23T10:00:01+0800 web1 sshd[1]: Failed password for root from 198.51.100.7 "
            "port 22 ssh2\n-- Boot 1f2e3d --\n")
    docs, stats = _read(tmp_path, "journal.txt", text, "auth")
    assert len(docs) == 1 and stats.ignored_total == 2 and stats.bad_total == 0
    assert docs[0]["@timestamp"] == "2026-11-23T02:00:01.000Z"
    assert docs[0]["event"]["outcome"] == "failure"


def test_syslog_dataset_and_priority(tmp_path):
    docs, _ = _read(tmp_path, "syslog", "<13>Nov 23 10:00:01 h kernel: [ 1.0] eth0 up\n",
                    "syslog")
    (d,) = docs
    assert d["event"]["dataset"] == "system.syslog" and d["process"]["name"] == "kernel"
    assert d["log"]["syslog"]["severity"]["name"] == "notice"
    assert d["log"]["syslog"]["facility"]["code"] == 1


AUDIT = """\
type=SYSCALL msg=audit(1700000000.123:4242): arch=c000003e syscall=59 success=yes exit=0 a0=55d a1=55e a2=55f a3=0 items=2 ppid=900 pid=901 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="cat" exe="/usr/bin/cat" key="exec"\x1dARCH=x86_64 SYSCALL=execve AUID="alice" UID="root" GID="root"
type=EXECVE msg=audit(1700000000.123:4242): argc=3 a0="cat" a1="/etc/shadow" a2=2F746D702F6120622E747874
type=CWD msg=audit(1700000000.123:4242): cwd="/root"
type=PATH msg=audit(1700000000.123:4242): item=0 name="/usr/bin/cat" inode=1 nametype=NORMAL
type=PROCTITLE msg=audit(1700000000.123:4242): proctitle=636174002F6574632F736861646F77
type=EOE msg=audit(1700000000.123:4242):
type=USER_LOGIN msg=audit(1700000001.500:4243): pid=1200 uid=0 auid=1000 ses=4 msg='op=login id=1000 exe="/usr/sbin/sshd" hostname=198.51.100.7 addr=198.51.100.7 terminal=sshd res=failed'
garbage
type=ADD_USER msg=audit(1700000002.000:4244): pid=1300 uid=0 auid=1000 ses=4 msg='op=add-user acct="mallory" exe="/usr/sbin/useradd" hostname=? addr=? terminal=pts/0 res=success'
"""


def test_auditd_joins_records_by_serial(tmp_path):
    docs, stats = _read(tmp_path, "audit.log", AUDIT, "auditd")
    assert dict(stats.bad_reasons) == {"not an audit record (type=... msg=audit(...))": 1}
    assert len(docs) == 3
    exe, login, add = docs
    for d in docs:
        ecs.normalize(d)
        assert d["event"]["dataset"] == "auditd.log"
    assert exe["@timestamp"] == "2023-11-14T22:13:20.123Z"
    assert exe["auditd"]["log"]["sequence"] == 4242
    assert exe["auditd"]["log"]["records"] == ["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE"]
    assert exe["event"]["action"] == "syscall" and exe["event"]["outcome"] == "success"
    assert exe["event"]["category"] == ["process"] and exe["event"]["type"] == ["start"]
    p = exe["process"]
    assert p["args"] == ["cat", "/etc/shadow", "/tmp/a b.txt"]  # hex argument decoded
    assert p["command_line"] == "cat /etc/shadow /tmp/a b.txt"
    assert p["pid"] == 901 and p["parent"]["pid"] == 900 and p["executable"] == "/usr/bin/cat"
    assert p["working_directory"] == "/root" and p["title"] == "cat /etc/shadow"
    assert exe["user"]["id"] == "0" and exe["user"]["name"] == "root"
    assert exe["user"]["audit"] == {"id": "1000", "name": "alice"}
    assert exe["file"]["path"] == "/usr/bin/cat"
    assert login["event"]["category"] == ["authentication", "session"]
    assert login["event"]["outcome"] == "failure" and login["source"]["ip"] == "198.51.100.7"
    assert login["process"]["executable"] == "/usr/sbin/sshd"
    assert add["event"]["type"] == ["user", "creation"]
    assert add["user"]["target"]["name"] == "mallory"


def test_ids_come_from_file_identity_and_offset(tmp_path):
    first, _ = _read(tmp_path, "auth.log", AUTH, "auth")
    again, _ = _read(tmp_path, "auth.log", AUTH, "auth")
    assert [d["event"]["id"] for d in first] == [d["event"]["id"] for d in again]
    shutil.copy(tmp_path / "auth.log", tmp_path / "copy.log")
    out: list[dict] = []
    LogReader(tmp_path / "copy.log", parser_for("auth"), out.append).import_once()
    assert [d["event"]["id"] for d in out] == [d["event"]["id"] for d in first]
    other, _ = _read(tmp_path, "other.log", "Nov 23 09:00:00 x y: z\n" + AUTH, "auth")
    assert not {d["event"]["id"] for d in other} & {d["event"]["id"] for d in first}


def test_saved_position_resumes_without_loss_or_duplication(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(AUTH)
    pos = Positions(tmp_path / "pos.json")
    first: list[dict] = []
    LogReader(log, parser_for("auth"), first.append, positions=pos).import_once()
    with open(log, "a") as fh:
        fh.write("Nov 23 11:00:00 web1 sshd[1]: Invalid user eve from 192.0.2.66 port 1\n")
        fh.write("junk\n")
    second: list[dict] = []
    reader = LogReader(log, parser_for("auth"), second.append,
                       positions=Positions(tmp_path / "pos.json"))
    reader.import_once()
    assert len(second) == 1 and second[0]["user"]["name"] == "eve"
    assert reader.stats.examples == [f"{log}:11: not a syslog line"]  # numbering goes on
    assert reader.resumed_at == {str(log): len(AUTH.encode())}


def test_follow_handles_rename_rotation_and_copytruncate(tmp_path):
    log = tmp_path / "syslog"
    log.write_text("".join(f"Nov 23 10:00:{i:02d} h app: line {i}\n" for i in range(10)))
    got: list[dict] = []
    stop = threading.Event()
    reader = LogReader(log, parser_for("syslog"), got.append,
                       positions=Positions(tmp_path / "pos.json"))
    t = threading.Thread(target=reader.follow, args=(stop, 0.05))
    t.start()

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(got) == n, [d["message"] for d in got]

    wait_for(10)
    with open(log, "a") as fh:
        fh.write("Nov 23 10:01:00 h app: partial")  # no newline yet: held back
    time.sleep(0.3)
    assert len(got) == 10
    with open(log, "a") as fh:
        fh.write(" line completed\n")
    wait_for(11)
    os.rename(log, tmp_path / "syslog.1")  # logrotate's default: rename, then recreate
    with open(tmp_path / "syslog.1", "a") as fh:
        fh.write("Nov 23 10:02:00 h app: late write to the old file\n")
    log.write_text("Nov 23 10:03:00 h app: first of the new file\n")
    wait_for(13)
    with open(log, "r+") as fh:  # copytruncate
        fh.truncate(0)
    time.sleep(0.3)
    log.write_text("Nov 23 10:04:00 h app: after truncate\n")
    wait_for(14)
    stop.set()
    t.join(10)
    msgs = [d["message"] for d in got]
    assert msgs[10:] == ["partial line completed", "late write to the old file",
                         "first of the new file", "after truncate"]
    assert len({d["event"]["id"] for d in got}) == 14


def test_restart_reads_files_rotated_twice_while_down_and_skips_old_history(tmp_path):
    """Down across two rotations: the file it knew (from its saved position), the file it
    never saw, then the live one; a rotated file older than what it knew is history from
    before the collector and is not imported."""
    log = tmp_path / "auth.log"
    (tmp_path / "auth.log.9").write_text("Nov 23 09:00:00 h app: before the agent\n")
    os.utime(tmp_path / "auth.log.9", (1, 1))
    log.write_text("".join(f"Nov 23 10:00:{i:02d} h app: a{i}\n" for i in range(5)))
    pos = Positions(tmp_path / "pos.json")
    LogReader(log, parser_for("syslog"), lambda d: None, positions=pos).import_once()
    with open(log, "a") as fh:  # written after the last saved position, then rotated away
        fh.write("Nov 23 10:01:00 h app: a5\n")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("Nov 23 10:02:00 h app: b0\n")
    os.rename(tmp_path / "auth.log.1", tmp_path / "auth.log.2")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("Nov 23 10:03:00 h app: c0\n")
    got: list[dict] = []
    stop = threading.Event()
    reader = LogReader(log, parser_for("syslog"), got.append,
                       positions=Positions(tmp_path / "pos.json"))
    t = threading.Thread(target=reader.follow, args=(stop, 0.05))
    t.start()
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    stop.set()
    t.join(10)
    assert [d["message"] for d in got] == ["a5", "b0", "c0"]


def test_bad_bytes_and_runaway_lines_do_not_stop_the_import(tmp_path):
    p = tmp_path / "auth.log"
    p.write_bytes(b"Nov 23 10:00:01 h sshd[1]: Invalid user \xff\xfe from 192.0.2.1 port 1\n"
                  + b"A" * (2 * 1024 * 1024) + b"\n"
                  + b"Nov 23 10:00:02 h sshd[1]: Invalid user ok from 192.0.2.1 port 1\n")
    out: list[dict] = []
    stats = LogReader(p, parser_for("auth"), out.append, stats=LogStats()).import_once()
    assert [d["user"]["name"] for d in out] == ["\ufffd\ufffd", "ok"]
    assert stats.bad_total == 1
    assert "longer than" in next(iter(stats.bad_reasons))


def test_journalctl_json_export(tmp_path):
    import orjson

    entries = [
        {"__REALTIME_TIMESTAMP": "1795404001123456", "_HOSTNAME": "db1", "PRIORITY": "5",
         "SYSLOG_FACILITY": "10", "SYSLOG_IDENTIFIER": "sshd", "_PID": "4321",
         "MESSAGE": "Accepted password for dba from 192.0.2.44 port 40022 ssh2"},
        {"__REALTIME_TIMESTAMP": "1795404002000000", "_HOSTNAME": "db1",
         "SYSLOG_IDENTIFIER": "sudo", "MESSAGE": list(b"bad \xff bytes")},
        {"no": "timestamp"},
    ]
    text = "\n".join(orjson.dumps(e).decode() for e in entries) + "\n"
    docs, stats = _read(tmp_path, "journal.json", text, "auth")
    assert dict(stats.bad_reasons) == {"not a journalctl -o json entry": 1}
    ok, raw = docs
    assert ok["@timestamp"] == "2026-11-23T03:20:01.123Z" and ok["host"]["hostname"] == "db1"
    assert ok["process"] == {"name": "sshd", "pid": 4321}
    assert ok["log"]["syslog"]["priority"] == 85 and ok["event"]["outcome"] == "success"
    assert ok["user"]["name"] == "dba" and ok["source"]["ip"] == "192.0.2.44"
    assert raw["message"] == "bad \ufffd bytes"


def test_evidence_folder_named_through_dot_dot_or_a_hidden_folder(tmp_path, monkeypatch):
    """Hidden means hidden below the folder given: `govsoc hunt ../case` and a case kept
    under ~/.cache/case are read whole (each file's own path holds ".." or ".cache"),
    while a dot-file or dot-folder inside the case is still left out."""
    from collectors.importers import expand

    case = tmp_path / ".cache" / "case"
    (case / "host1").mkdir(parents=True)
    (case / ".git").mkdir()
    for f in (case / "auth.log", case / "host1" / "secure", case / ".notes",
              case / ".git" / "config"):
        f.write_text("x\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for given in (case, os.path.join("..", ".cache", "case")):
        got = sorted(p.relative_to(given).as_posix() for p, named in expand([given]))
        assert got == ["auth.log", "host1/secure"], given
