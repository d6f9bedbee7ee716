"""The process tracker's contract on this real machine, both ways it tells a process ended
(a pidfd poll, or the start time re-read when no pidfd can be had): a process started
between two cycles is reported started, one that ended is reported stopped (a zombie too:
it ended, whatever its parent does), a pid reused between two cycles is a stop and a new
start, and past the open-files budget processes are still tracked. The /proc reader gives
what psutil gives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import orjson
import psutil
import pytest

from collectors.host import HashCache, procfs
from collectors.host.processes import ProcessTracker
from soc_core import ecs

MODES = [pytest.param(True, id="pidfd"), pytest.param(False, id="start-time")]


def _mine(docs: list[dict], pid: int) -> list[tuple[str, str]]:
    return [(d["event"]["action"], d["process"]["entity_id"]) for d in docs
            if d["process"]["pid"] == pid]


@pytest.mark.parametrize("pidfds", MODES)
def test_started_stopped_and_a_zombie_is_stopped(pidfds):
    pt = ProcessTracker("h", HashCache(), pidfds=pidfds)
    try:
        assert _mine(pt.collect(time.time()), os.getpid())[0][0] == "existing_process"
        child = subprocess.Popen(["sleep", "60"])
        try:
            started = pt.collect(time.time())
            ((action, entity),) = _mine(started, child.pid)
            assert action == "process_started" and child.pid in pt.started
            assert (child.pid in pt.known and pt.known[child.pid].fd >= 0) == pidfds
            assert _mine(pt.collect(time.time()), child.pid) == []  # running: no news
            child.kill()
            time.sleep(0.2)  # not reaped: a zombie, still listed in /proc
            assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
            assert _mine(pt.collect(time.time()), child.pid) == [("process_stopped", entity)]
            assert _mine(pt.collect(time.time()), child.pid) == []  # the zombie is no news
        finally:
            child.kill()
            child.wait()
        assert _mine(pt.collect(time.time()), child.pid) == []
        for d in started:  # events the store takes
            ecs.normalize(d)
    finally:
        pt.close()
    assert not pt._by_fd  # every pidfd given back


# Runs as pid 1 of a new pid namespace (its own /proc), where the next pid can be chosen.
_REUSE = """
import json, os, subprocess, sys, time
from collectors.host import HashCache
from collectors.host.processes import ProcessTracker
pt = ProcessTracker("h", HashCache(), pidfds=sys.argv[1] == "pidfd")
pt.collect(time.time())
def exec_done(p):  # Popen returns after the fork: wait until the child runs sleep
    while b"sleep" not in open(f"/proc/{p.pid}/cmdline", "rb").read():
        time.sleep(0.001)
a = subprocess.Popen(["sleep", "60"])
exec_done(a)
first = pt.collect(time.time())
a.kill()
a.wait()
time.sleep(0.05)  # another clock tick: (pid, start time) is a process's identity
with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
    fh.write(str(a.pid - 1))
b = subprocess.Popen(["sleep", "61"])
exec_done(b)
second = pt.collect(time.time())
b.kill()
b.wait()
rows = lambda docs: [[d["process"]["pid"], d["event"]["action"], d["process"]["entity_id"],
                      d["process"].get("args"), d["event"]["id"]] for d in docs]
print(json.dumps({"a": a.pid, "b": b.pid, "first": rows(first), "second": rows(second)}))
"""


@pytest.mark.parametrize("pidfds", MODES)
def test_a_pid_reused_between_two_cycles_is_a_stop_and_a_start(pidfds):
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                        _REUSE, "pidfd" if pidfds else "stat"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["a"] == got["b"]  # the same pid, two processes
    ((pid, action, entity, args, _),) = got["first"]
    assert (pid, action, args) == (got["a"], "process_started", ["sleep", "60"])
    stopped, started = got["second"]
    assert stopped[1:4] == ["process_stopped", entity, ["sleep", "60"]]
    assert started[1] == "process_started" and started[3] == ["sleep", "61"]
    assert started[2] != entity and len({stopped[4], started[4], got["first"][0][4]}) == 3


# Runs with an open-files limit that leaves pidfds for only some of its processes (as pid 1
# of a new pid namespace, so only its own processes come and go).
_BUDGET = """
import json, os, resource, subprocess, time
from collectors.host import HashCache
from collectors.host.processes import RESERVED_FDS, ProcessTracker
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (RESERVED_FDS + 30, hard))
kids = [subprocess.Popen(["sleep", "60"]) for _ in range(60)]
pt = ProcessTracker("h", HashCache())
pt.collect(time.time())
pinned = sum(1 for i in pt.known.values() if i.fd >= 0)
by_start_time = len(pt.known) - pinned
room = [open(os.devnull) for _ in range(RESERVED_FDS - 40)]  # the rest of the process
for f in room:
    f.close()
for p in kids:
    p.kill()
    p.wait()
late = subprocess.Popen(["sleep", "60"])
while b"sleep" not in open(f"/proc/{late.pid}/cmdline", "rb").read():  # exec done
    time.sleep(0.001)
docs = pt.collect(time.time())
late.kill()
late.wait()
stopped = {d["process"]["pid"] for d in docs if d["event"]["action"] == "process_stopped"}
started = [d["process"]["pid"] for d in docs if d["event"]["action"] == "process_started"]
print(json.dumps({"pinned": pinned, "by_start_time": by_start_time, "started": started,
                  "all_stopped": stopped >= {p.pid for p in kids}, "late": late.pid}))
"""


def test_past_the_open_files_budget_processes_are_tracked_by_start_time():
    # in a pid namespace of its own: processes other tests start meanwhile are not "started"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                        _BUDGET], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert 0 < got["pinned"] <= 30 and got["by_start_time"] >= 30  # the rest by start time
    assert got["all_stopped"] and got["started"] == [got["late"]]


def test_the_proc_reader_gives_what_psutil_gives(tmp_path):
    long_name = tmp_path / "a-process-name-past-fifteen"
    shutil.copy(shutil.which("sleep"), long_name)
    kids = [subprocess.Popen([str(long_name), "60"], cwd=tmp_path),
            subprocess.Popen(["sh", "-c", "sleep 60", b"arg-\xff-not-utf8"])]
    try:
        time.sleep(0.1)  # each has exec'd
        users: dict[int, str] = {}
        compared = 0
        for pid in sorted(procfs.pids()):
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    want = p.as_dict(["ppid", "name", "exe", "cmdline", "username", "uids",
                                      "cwd"])
            except psutil.Error:
                continue
            got = procfs.read_process(pid, users)
            if got is None:  # ended meanwhile
                continue
            if pid == kids[1].pid:  # not UTF-8: escaped, where psutil gives surrogates
                assert got["cmdline"] == ["sh", "-c", "sleep 60", "arg-\\xff-not-utf8"]
                orjson.dumps(got)
                continue
            for key in ("ppid", "name", "exe", "cmdline", "username", "cwd"):
                assert (got.get(key) or None) == (want[key] or None), (pid, key)
            assert got["uid"] == want["uids"].real
            compared += 1
        assert compared >= 3
        mine = procfs.read_process(kids[0].pid, users)
        assert mine["name"] == long_name.name and mine["cwd"] == str(tmp_path)
    finally:
        for k in kids:
            k.kill()
            k.wait()
    assert procfs.read_process(kids[0].pid, {}) is None  # gone
