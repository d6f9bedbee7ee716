"""The asset registry over the namespace fleet: an Ansible sweep handed to cloud_inventory,
network discovery (run as `govsoc inventory discover --network` from a namespace of its own,
everything it sends captured), real traffic captured on the fleet's bridge, CPU measured
inside each host. One scenario, a few assertions each:

- host 3 is off the network for the first discovery and on it for the second: a new
  unregistered host (shadow IT) alert;
- between the two, a telnet service opens on host 2: a new service there and nowhere else;
- telnet listening is flagged plaintext management, with the probe and the flows as evidence;
- host 1 (no flows, quiet CPU) is a zombie; host 2 (sessions, CPU busy) is not;
- the prober sent nothing outside the configured CIDR (host 1 and the controller share its
  link but are outside it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from scapy.all import ARP, IP, CookedLinux, CookedLinuxV2, rdpcap

from cloud_inventory import exposure_surface, get_asset, list_assets
from cloud_inventory.idle import idle_systems
from collectors.packet import read_pcaps
from playbooks import inventory as inv
from playbooks.driver import Driver
from soc_core import ecs
from soc_core.config import Config
from soc_core.store import Selection, open_store

pytestmark = pytest.mark.fleet

# a fake telnetd: a login prompt on port 23, whatever the client says
TELNETD = ("import socketserver as s\n"
           "class H(s.BaseRequestHandler):\n"
           "    def handle(self):\n"
           "        self.request.sendall(b'\\xff\\xfd\\x18login: '); self.request.recv(64)\n"
           "s.ThreadingTCPServer.allow_reuse_address = True\n"
           "s.ThreadingTCPServer(('{addr}', 23), H).serve_forever()\n")
# the CPU time of every process of the host's PID namespace over one second, in cores
CPU = ("import os, time\n"
       "def t():\n"
       "    n = 0\n"
       "    for p in filter(str.isdigit, os.listdir('/proc')):\n"
       "        try:\n"
       "            f = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()\n"
       "        except OSError:\n"
       "            continue\n"
       "        n += int(f[11]) + int(f[12])\n"
       "    return n\n"
       "a = t(); time.sleep(1); print((t() - a) / os.sysconf('SC_CLK_TCK'))\n")


def _cli(env: dict[str, str], *args: str, ns: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-P", "-m", "soc_core.cli", *args]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


class _Capture:
    """dumpcap writing everything on an interface (in a namespace) to a file."""

    def __init__(self, path, iface: str, ns: str | None = None) -> None:
        self.path = path
        cmd = ["dumpcap", "-q", "-i", iface, "-w", str(path)]
        self.proc = subprocess.Popen((["ip", "netns", "exec", ns] if ns else []) + cmd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not (path.exists() and path.stat().st_size > 0):  # the file header: capturing
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            assert time.monotonic() < deadline, "dumpcap did not start"
            time.sleep(0.05)
        time.sleep(0.2)

    def stop(self):
        time.sleep(0.3)  # the last answers and the kernel's RSTs
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=20)
        return self.path


@pytest.fixture(scope="module")
def scenario(fleet, hosts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("invfleet")
    st = fleet.state()
    k = st.index
    h1, h2, h3 = (fleet.host(h) for h in hosts)
    cidr = f"10.213.{k}.12/31"  # hosts 2 and 3 only
    assert {h2.address, h3.address} == {str(a) for a in ipaddress.ip_network(cidr)}
    url = f"sqlite:///{tmp}/govsoc.db"
    env = {**os.environ, "GOVSOC_DATA_DIR": str(tmp / "data"), "GOVSOC_STORE_URL": url}
    store = open_store(url)
    ns, veth, probe_addr = f"gsi{k}p", f"gsi{k}pv", f"10.213.{k}.200"
    out: dict = {"store": store, "env": env, "hosts": (h1, h2, h3), "cidr": cidr,
                 "probe_addr": probe_addr, "ns": ns}
    try:
        # the prober's own namespace on the fleet's link, with a default route: only the
        # CIDR check keeps its packets in the CIDR
        for cmd in (["ip", "netns", "add", ns],
                    ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                     "netns", ns],
                    ["ip", "link", "set", veth, "master", st.bridge],
                    ["ip", "link", "set", veth, "up"],
                    ["ip", "netns", "exec", ns, "sysctl", "-qw",
                     "net.ipv6.conf.all.disable_ipv6=1"],
                    ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{probe_addr}/24", "dev",
                     "eth0"],
                    ["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"],
                    ["ip", "netns", "exec", ns, "ip", "route", "add", "default", "via",
                     st.controller]):
            subprocess.run(cmd, check=True, capture_output=True)

        # 1. Ansible sweep of hosts 1 and 2 (registered); host 3 is not on the network
        subprocess.run(["ip", "link", "set", h3.veth, "down"], check=True)
        sweep = Driver(store, work_dir=tmp / "work").run("asset_sweep", fleet.inventory(),
                                                         limit=f"{h1.name},{h2.name}")
        assert sweep.ok, sweep.reason
        ports = ["--port", "22", "--port", "23", "--port", "80"]
        # 2. discovery A: host 2 answers (already registered: nothing new)
        a = _cli(env, "inventory", "discover", "--network", "--cidr", cidr, *ports,
                 "--rate", "500", "--timeout", "1", "--json", ns=ns)
        assert a.returncode == 0, a.stderr
        out["a"] = json.loads(a.stdout)[0]

        # 3. host 3 joins the network; telnet opens on host 2
        subprocess.run(["ip", "link", "set", h3.veth, "up"], check=True)
        fleet.ssh(h2.name, f"nohup python3 -c \"{TELNETD.format(addr=h2.address)}\" "
                           ">/dev/null 2>&1 & echo $! > /run/telnetd.pid")
        fleet.ssh(h2.name, "for i in $(seq 50); do ss -ltn | grep -q ':23 ' && exit 0; "
                           "sleep 0.1; done; exit 1")
        fleet.ssh(h3.name, "true")  # reachable again
        # 4. discovery B, with everything the prober's namespace sends captured
        cap = _Capture(tmp / "probe.pcapng", "any", ns=ns)
        b = _cli(env, "inventory", "discover", "--network", "--cidr", cidr, *ports,
                 "--rate", "500", "--timeout", "1", "--json", ns=ns)
        out["probe_pcap"] = cap.stop()
        assert b.returncode == 0, b.stderr
        out["b"] = json.loads(b.stdout)[0]

        # 5. real sessions to host 2's telnet, captured on the bridge and collected. On a
        # loaded machine dumpcap, stopped, can drop the packets of a ring block it has not
        # handed over yet (seen: one of the three sessions captured): such a capture is
        # taken again, whole, and only a complete one is stored
        for attempt in range(3):
            cap = _Capture(tmp / f"bridge-{attempt}.pcapng", st.bridge)
            for _ in range(3):
                with socket.create_connection((h2.address, 23), timeout=5) as s:
                    s.recv(64)
                    s.sendall(b"root\r\n")
            events, _ = read_pcaps([str(cap.stop())])
            events = list(events)
            sessions = [e for e in events if e["event"]["dataset"] == "network.flow"
                        and (e.get("destination") or {}).get("port") == 23]
            if len(sessions) == 3:
                break
        assert len(sessions) == 3, f"3 telnet sessions, {len(sessions)} captured"
        assert not store.write(events, refresh=True).rejected

        # 6. CPU measured inside each host (its PID namespace), host 2 kept busy
        # long enough for a loaded machine's slow ssh round trips; stopped once measured
        fleet.ssh(h2.name, "nohup timeout 120 sh -c 'while :; do :; done' >/dev/null 2>&1 &")
        now = time.time()
        metrics = []
        for i in range(2):
            for h in (h1, h2):
                used = float(fleet.ssh(h.name, f"python3 -c \"{CPU}\"").stdout)
                metrics.append(ecs.make_event("system.cpu", now - 60 + i, (h.name, i), {
                    "host": {"name": h.name, "cpu": {"usage": round(used, 4)}}},
                    kind="metric"))
        fleet.ssh(h2.name, "pkill -f 'while [:]; do' || true")  # [:]: not this shell
        assert not store.write(metrics, refresh=True).rejected
        out["cpu"] = {m["host"]["name"]: m["host"]["cpu"]["usage"] for m in metrics}
        yield out
    finally:
        subprocess.run(["ip", "link", "set", h3.veth, "up"], capture_output=True)
        fleet.ssh(h2.name, "kill $(cat /run/telnetd.pid) 2>/dev/null; true", check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        store.close()


def test_a_host_joining_between_sweeps_is_shadow_it_and_a_new_service_shows_only_there(
        scenario):
    store = scenario["store"]
    h1, h2, h3 = scenario["hosts"]
    assert scenario["a"]["probe"]["answered"] == [h2.address]
    assert scenario["a"]["changes"] == []  # host 2 is the swept asset, by address and MAC
    changes = {(c["kind"], c["name"], c.get("port")) for c in scenario["b"]["changes"]}
    assert changes == {("asset_new", h3.address, None), ("shadow_it", h3.address, None),
                       ("service_new", h2.name, 23)}
    alerts = {ecs.get_field(a, "govsoc.inventory.change"): a
              for a in store.scan(Selection(family="alerts"))}
    assert set(alerts) == {"shadow_it", "service_new"}
    assert alerts["shadow_it"]["host"]["ip"] == [h3.address]
    assert alerts["service_new"]["destination"] == {"port": 23, "ip": h2.address}
    # one asset a host: the probe's view of host 2 merged into its swept asset
    listening = {ecs.get_field(d, "host.ip")[0]: {s["port"]: s["sources"] for s in
                                                  d["govsoc"]["asset"]["listening"]}
                 for d in list_assets(store)}
    assert set(listening) == {h1.address, h2.address, h3.address}
    assert listening[h2.address][23] == ["network"]
    assert listening[h2.address][22] == ["ansible", "network"]
    assert 23 not in listening[h1.address] and 23 not in listening[h3.address]
    mac3 = ecs.get_field(get_asset(store, h3.address), "host.mac")
    assert mac3 and get_asset(store, mac3[0])["host"]["ip"] == [h3.address]
    # playbooks run on the registry's managed hosts, never on a shadow-IT one
    managed = inv.from_assets(store)["all"]["children"]["assets"]["hosts"]
    assert set(managed) == {h1.name, h2.name}
    # the CLI shows the same run's changes
    diff = _cli(scenario["env"], "inventory", "diff", scenario["b"]["run_id"], "--json")
    assert diff.returncode == 0, diff.stderr
    assert sorted(r["change"] for r in json.loads(diff.stdout)) == [
        "asset_new", "service_new", "shadow_it"]
    bad = _cli(scenario["env"], "inventory", "show", "no-such-host")
    assert bad.returncode == 2 and bad.stderr == "error: no asset 'no-such-host'\n"


def test_telnet_listening_is_flagged_with_probe_and_flow_evidence(scenario):
    h2 = scenario["hosts"][1]
    conf = _conf(scenario)
    found = [f for f in exposure_surface(scenario["store"], since="now-1h", conf=conf)
             if f["kind"] == "plaintext_management"]
    assert [(f["host"], f["port"], f["service"]) for f in found] == [(h2.name, 23, "telnet")]
    ev = found[0]["evidence"]
    assert ev["probe"]["open"] is True and ev["listening"]["sources"] == ["network"]
    assert ev["flows"]["unknown"]["flows"] == 3  # the controller's sessions, in no zone


def test_a_quiet_host_is_a_zombie_and_a_busy_one_is_not(scenario):
    h1, h2, _ = scenario["hosts"]
    report = idle_systems(scenario["store"], days=1, cpu=0.05, conf=_conf(scenario))
    by = {s["host"]: s for s in report["systems"]}
    cpu = scenario["cpu"]
    assert by[h1.name]["verdict"] == "zombie", (by[h1.name], cpu)
    assert by[h1.name]["evidence"]["inbound_sessions"] == 0
    assert by[h2.name]["verdict"] == "busy", (by[h2.name], cpu)
    assert by[h2.name]["evidence"]["inbound_sessions"] >= 3
    listed = _cli(scenario["env"], "inventory", "idle", "--days", "1", "--cpu", "0.05",
                  "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["host"] for s in json.loads(listed.stdout)["systems"]] == [h1.name]


def _outgoing(p) -> bool:
    """A frame the capture saw leave (Linux cooked capture: packet type 4, outgoing)."""
    for layer in (CookedLinux, CookedLinuxV2):
        if p.haslayer(layer):
            return p[layer].pkttype == 4
    return True  # no direction recorded: count it as sent


def test_the_prober_sends_nothing_outside_the_configured_cidr(scenario):
    net = ipaddress.ip_network(scenario["cidr"])
    me = scenario["probe_addr"]
    b = scenario["b"]
    sent = []
    for p in rdpcap(str(scenario["probe_pcap"])):
        if p.haslayer(ARP):
            if p[ARP].psrc == me:
                sent.append(("arp", p[ARP].pdst, p))
        elif p.haslayer(IP):
            if p[IP].src == me:
                sent.append(("ip", p[IP].dst, p))
        elif _outgoing(p):  # the bridge may bring others' IPv6 chatter in: only sends count
            pytest.fail(f"the prober's namespace sent a non-IPv4 frame: {p.summary()}")
    assert sent
    outside = [p.summary() for _, dst, p in sent if ipaddress.ip_address(dst) not in net]
    assert outside == []
    # the probes themselves: tagged (TCP source port, ICMP id) and as many as reported; ARP
    # requests are the probe's two and any the kernel made for the same addresses
    tag = b["probe"]["tag"]
    icmp = [p for kind, _, p in sent if kind == "ip" and "ICMP" in p and p["ICMP"].id == tag]
    syn = [p for kind, _, p in sent if kind == "ip" and "TCP" in p and p["TCP"].sport == tag
           and p["TCP"].flags == "S"]
    arp = {dst for kind, dst, p in sent if kind == "arp" and p[ARP].op == 1}
    assert (len(icmp), len(syn), arp) == (2, 2 * 3, {str(a) for a in net})
    assert b["probe"]["sent"] == 2 + 2 + 2 * 3


def _conf(scenario):
    from cloud_inventory import inventory_config

    return inventory_config(Config(values={"inventory": {"cidrs": ["10.213.0.0/16"]}}))
