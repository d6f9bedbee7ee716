"""`govsoc agent` on the namespace fleet: deploy_agent installs it (a wheel built from this
checkout, offline from its wheelhouse, supervised: the fleet has no systemd), each host's
processes, sessions and auth log reach the central Elasticsearch store; SIGKILL while the
log grows and rotates loses and doubles nothing; a silent agent shows in the posture with
one alert; undeploy_agent leaves the hosts as they were.

The central store is the test Elasticsearch node, reached by the agents over the fleet's
bridge: a TCP relay listens on the controller's bridge address and forwards to the node
(which listens on loopback only). The agents speak HTTP to it across the network
namespaces as they would to a node on the management network, without a second node.
"""

from __future__ import annotations

import collections
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tcp_relay import TcpRelay

from detections import agents as agent_health
from detections.posture import posture
from soc_core.store import Selection, open_store

pytestmark = [pytest.mark.fleet, pytest.mark.es, pytest.mark.xdist_group("fleet")]

ROOT = Path(__file__).resolve().parents[2]
RUN = "/run/govsoc-agent"
INSTALLED = ("/opt/govsoc-agent", "/etc/govsoc-agent", "/var/lib/govsoc-agent", RUN,
             "/var/log/govsoc-agent.log")
# what a host looks like, by file name: compared before deploy and after undeploy. A host's
# `/` is an overlay over the machine's, so the machine's own changes show through: /var/tmp
# (the test Elasticsearch node's data), /var/cache and /root/.cache (the controller's pip
# and wheelhouse caches), and what other tests and tools on the machine make in root's home
# meanwhile (Chromium's profile and NSS store, Maven's repository) are left out; the agent
# writes none of them (pip runs without a cache there).
SNAPSHOT = ("{ find /opt /etc /var /run /srv /usr/local /usr/lib/python3.11 -xdev; "
            "find /root -maxdepth 2; } 2>/dev/null | grep -v -e '^/var/log/auth.log' "
            "-e '^/var/tmp' -e '^/var/cache' -e '^/root/.cache' -e '^/root/.ansible' "
            "-e '^/root/.config/chromium' -e '^/root/.pki' -e '^/root/.m2' "
            "-e '^/run/utmp' | sort")
FIRST_LINES = 50


def _line(host: str, n: int, tag: str) -> str:
    return (f"Nov 30 19:00:00 {host} sshd[4242]: Failed password for invalid user "
            f"{tag}{n} from 10.213.0.1 port {1000 + n} ssh2")


def _wait(what: str, fn, timeout: float = 120.0, every: float = 1.0, why=None):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:.0f} s: {what}"
                                 + (f"\n{why()}" if why else ""))
        time.sleep(every)


@pytest.fixture(scope="module")
def central(fleet, es_url):
    u = urlsplit(es_url.split(",")[0])
    relay = TcpRelay(fleet.state().controller, (u.hostname, u.port or 9200))
    ns = "t" + uuid.uuid4().hex[:10]
    store = open_store(es_url, namespace=ns)
    try:
        yield {"store": store, "ns": ns,
               "url": f"http://{fleet.state().controller}:{relay.port}"}
    finally:
        store.drop_all()
        store.close()
        relay.stop()


@pytest.fixture(scope="module")
def deployed(fleet, hosts, driver, central, tmp_path_factory):
    """The agents deployed on every host, with an auth log of FIRST_LINES lines and one
    terminal session each; undeployed at the end if a test did not."""
    sessions = []
    for h in hosts:
        lines = "\n".join(_line(h, i, "a") for i in range(1, FIRST_LINES + 1))
        fleet.ssh(h, f"{SNAPSHOT} > /tmp/pre-agent.list; touch /run/utmp; "
                     f"printf '%s\\n' '{lines}' > /var/log/auth.log")
    for h in hosts:  # a login session with a terminal (sshd records it in utmp)
        addr = fleet.host(h).address
        sessions.append(subprocess.Popen(
            ["ssh", *fleet.ssh_args(), "-i", str(fleet.key), "-tt", f"root@{addr}",
             "sleep 600"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
    for h in hosts:
        _wait(f"a session on {h}", lambda h=h: "root" in fleet.ssh(h, "who").stdout, 30, 0.2)
    ev = {"agent_store_url": central["url"], "agent_es_namespace": central["ns"],
          "agent_source": str(ROOT), "agent_host_interval": 2, "agent_health_interval": 2,
          "agent_restart_delay": 2, "agent_auth_paths": ["/var/log/auth.log"],
          "agent_syslog_paths": []}
    run = driver.run("deploy_agent", fleet.inventory(), extravars=ev)
    state = {"run": run, "undeployed": False}
    try:
        yield state
    finally:
        for p in sessions:
            p.kill()
            p.wait()
        if not state["undeployed"]:
            driver.run("undeploy_agent", fleet.inventory())


def _count(store, host: str, dataset: str, family: str = "events") -> int:
    store.refresh()
    return store.count(Selection(family=family, dataset=dataset,
                                 filters={"host.name": host}))


def test_deploy_ships_each_hosts_processes_sessions_and_auth_log(fleet, hosts, central,
                                                                 deployed):
    run = deployed["run"]
    assert run.ok, (run.reason, {h: s.error for h, s in run.hosts.items()})
    for h in hosts:
        res = run.hosts[h].result
        assert res["mode"] == "supervised" and res["wheel"].startswith("govsoc-")
        assert fleet.ssh(h, "/opt/govsoc-agent/venv/bin/govsoc --version").returncode == 0
        assert "store_url" in fleet.ssh(h, "cat /etc/govsoc-agent/agent.toml").stdout
    store = central["store"]
    for h in hosts:
        _wait(f"{h}'s auth log", lambda h=h: _count(store, h, "system.auth") == FIRST_LINES)
        _wait(f"{h}'s processes", lambda h=h: _count(store, h, "system.process") > 0)
        _wait(f"{h}'s session", lambda h=h: store.count(Selection(
            family="events", dataset="system.login",
            filters={"host.name": h, "user.name": "root"})))
        _wait(f"{h}'s heartbeat", lambda h=h: _count(store, h, "govsoc.agent", "metrics"))
    docs = list(store.scan(Selection(family="events", dataset="system.auth")))
    by_host = collections.defaultdict(set)
    for d in docs:
        assert d["agent"]["name"] == d["host"]["name"]
        by_host[d["host"]["name"]].add(d["agent"]["id"])
    assert set(by_host) == set(hosts)
    assert all(len(ids) == 1 for ids in by_host.values())  # one agent a host
    assert len({next(iter(ids)) for ids in by_host.values()}) == len(hosts)
    ids = {fleet.ssh(h, "cat /etc/machine-id").stdout.strip() for h in hosts}
    assert {d["host"]["id"] for d in docs} == ids


def test_sigkill_while_the_log_grows_and_rotates_loses_and_doubles_nothing(fleet, hosts,
                                                                          central, deployed):
    h = hosts[0]
    store = central["store"]
    agent_id = fleet.ssh(h, "cat /var/lib/govsoc-agent/agent/id").stdout.strip()
    pid = fleet.ssh(h, f"cat {RUN}/agent.pid").stdout.strip()
    # 400 lines: SIGKILL after 150, rotate after 200 (while the agent is down: the
    # supervisor restarts it 2 s later), slower writes across the restart, and a second
    # rotation at 300 while it runs (logrotate style: .1 -> .2, live -> .1)
    log = "/var/log/auth.log"
    script = (
        f"for i in $(seq 1 400); do "
        f"echo \"Nov 30 19:00:00 {h} sshd[4242]: Failed password for invalid user b$i "
        f"from 10.213.0.1 port $((1000 + i)) ssh2\" >> {log}; "
        f"if [ $i = 150 ]; then kill -9 {pid}; fi; "
        f"if [ $i = 200 ]; then mv {log} {log}.1; : > {log}; fi; "
        f"if [ $i = 300 ]; then mv {log}.1 {log}.2; mv {log} {log}.1; : > {log}; fi; "
        f"if [ $i -gt 200 ]; then sleep 0.02; fi; done")
    fleet.ssh(h, script, timeout=120)
    total = FIRST_LINES + 400
    expected = collections.Counter([f"a{i}" for i in range(1, FIRST_LINES + 1)]
                                   + [f"b{i}" for i in range(1, 401)])

    def users() -> collections.Counter:
        store.refresh()
        return collections.Counter(d["user"]["name"] for d in store.scan(Selection(
            family="events", dataset="system.auth", filters={"host.name": h})))

    def why() -> str:
        got = users()
        state = fleet.ssh(h, "tail -30 /var/log/govsoc-agent.log; ls -l /var/log; cat "
                             "/var/lib/govsoc-agent/collectors/positions-agent.json",
                          check=False).stdout
        return (f"missing {sorted(expected - got)[:50]}, doubled {sorted(got - expected)[:50]}"
                f"\n{state}")

    _wait("every line in the store", lambda: _count(store, h, "system.auth") >= total, why=why)
    time.sleep(3)  # a doubled line would show up late
    assert _count(store, h, "system.auth") == total
    assert users() == expected
    new_pid = fleet.ssh(h, f"cat {RUN}/agent.pid").stdout.strip()
    assert new_pid != pid  # restarted by its supervisor
    assert fleet.ssh(h, "cat /var/lib/govsoc-agent/agent/id").stdout.strip() == agent_id
    hb = list(store.scan(Selection(family="metrics", dataset="govsoc.agent",
                                   filters={"host.name": h}), descending=True))
    assert {d["agent"]["id"] for d in hb} == {agent_id}  # the same agent after the restart


def test_a_silent_agent_shows_in_the_posture_with_one_alert(fleet, hosts, central, deployed,
                                                            monkeypatch):
    monkeypatch.setenv("GOVSOC_POSTURE_AGENT_SILENT_INTERVALS", "2")  # the config key
    intervals = agent_health.silent_intervals()
    assert intervals == 2
    store = central["store"]
    quiet = hosts[1]
    pid = fleet.ssh(quiet, f"cat {RUN}/agent.pid").stdout.strip()
    fleet.ssh(quiet, f"kill -TERM $(cat {RUN}/supervisor.pid)")  # stops its agent too
    # its last heartbeats may still be on their way while it exits: judge only once it is gone
    _wait("the agent's process gone",
          lambda: fleet.ssh(quiet, f"kill -0 {pid} 2>/dev/null || echo gone").stdout.strip())

    def rows():
        store.refresh()  # silence judged on every heartbeat stored, not on a stale view
        found = {r["host"]: r for r in agent_health.agents(store, intervals=intervals)}
        return found if set(found) == set(hosts) and found[quiet]["status"] == "silent" \
            else None

    found = _wait("the agent reported silent", rows, every=1.0)
    assert found[quiet]["status"] == "silent"
    # silent once older than 2 intervals; seconds_since is rounded to 0.1 s
    assert found[quiet]["seconds_since"] >= 2 * found[quiet]["interval_s"]
    assert found[hosts[0]]["interval_s"] == 2.0
    p = posture(store)["agents"]
    assert p["counts"]["silent"] >= 1
    assert any(a["host"] == quiet and a["status"] == "silent" for a in p["items"])
    first = agent_health.raise_silent_alerts(store, intervals=intervals)
    again = agent_health.raise_silent_alerts(store, intervals=intervals)
    alerts = list(store.scan(Selection(family="alerts",
                                       filters={"rule.id": agent_health.RULE_ID})))
    silent_hosts = [a["host"]["name"] for a in alerts]
    assert quiet in silent_hosts and silent_hosts.count(quiet) == 1
    assert again == [] and len(first) == len(alerts)
    alert = next(a for a in alerts if a["host"]["name"] == quiet)
    assert alert["govsoc"]["alert"]["status"] == "open"
    assert alert["agent"]["id"] == found[quiet]["id"]


def test_undeploy_leaves_every_host_clean(fleet, hosts, driver, deployed):
    run = driver.run("undeploy_agent", fleet.inventory())
    deployed["undeployed"] = True
    assert run.ok, (run.reason, {h: s.error for h, s in run.hosts.items()})
    for h in hosts:
        left = fleet.ssh(h, "ls -d " + " ".join(INSTALLED) + " 2>/dev/null; "
                            "ps -eo args | grep -e 'govsoc agent' -e supervise | grep -v grep",
                         check=False).stdout
        assert left == ""
        diff = fleet.ssh(h, f"{SNAPSHOT} | diff /tmp/pre-agent.list -", check=False)
        assert diff.returncode == 0, diff.stdout[:2000]
