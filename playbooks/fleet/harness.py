"""The namespace test fleet: N Linux hosts on this machine, no containers.

Each host is a network namespace joined to a bridge by a veth pair, inside which a
PID 1 (`hostinit.py`) holds a mount + UTS + PID namespace with an overlay over `/`
(its own writes), its own hostname, machine-id and SSH host key, and an sshd listening
on its bridge address only. The controller (root, in the initial namespaces) holds the
bridge address `.1` of the fleet's subnet 10.213.<k>.0/24 and reaches hosts with a key.

State lives in /run/govsoc-fleet/<k>/state.json and is written before each step, so
`down()` from any process removes whatever exists, also after a half-done `up()`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path(os.environ.get("GOVSOC_FLEET_STATE", "/run/govsoc-fleet"))
SUBNET_PREFIX = "10.213"  # unusual on purpose: the harness owns 10.213.<k>.0/24 only
FIRST_HOST = 11  # .1 is the controller (SOC management address); .250-.254 are VIPs
MAX_HOSTS = 200
HOSTINIT = Path(__file__).with_name("hostinit.py")
# Mount point of each host's private tmpfs; mounted inside the host's mount namespace
# only, so in ours it is an empty directory that down() removes.
STAGE_ROOT = Path("/run/govsoc-fleet-stage")
HOST_PYTHON = "/usr/bin/python3"


class FleetError(RuntimeError):
    """The fleet could not be built, found or torn down; the message says what."""


@dataclass
class Host:
    name: str
    address: str
    netns: str
    veth: str
    pid: int | None = None  # the `unshare` process whose child is the host's PID 1
    machine_id: str = ""


@dataclass
class FleetState:
    index: int
    bridge: str
    controller: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return subnet_of(self.index)


def subnet_of(index: int) -> ipaddress.IPv4Network:
    if not 0 <= index <= 255:
        raise FleetError(f"fleet index must be 0-255, got {index}")
    return ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{index}.0/24")


def check_address(index: int, address: str) -> str:
    """Refuse any address outside the fleet's own subnet: the harness never touches
    another network."""
    try:
        ip = ipaddress.IPv4Address(address.split("/")[0])
    except ValueError as exc:
        raise FleetError(f"not an IPv4 address: {address!r}") from exc
    if ip not in subnet_of(index) or ip == subnet_of(index).network_address \
            or ip == subnet_of(index).broadcast_address:
        raise FleetError(f"address {address} is outside the fleet subnet {subnet_of(index)}")
    return address


def _run(*args: str, check: bool = True, ns: str | None = None) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise FleetError(f"{' '.join(cmd)}: {out.stderr.strip() or out.returncode}")
    return out


class Fleet:
    """One fleet, identified by its subnet index k (10.213.k.0/24)."""

    def __init__(self, index: int = 0, state_root: Path | None = None) -> None:
        subnet_of(index)
        self.index = index
        self.dir = (state_root or STATE_ROOT) / str(index)
        self.key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"

    @classmethod
    def claim(cls, first: int = 200, last: int = 254, state_root: Path | None = None) -> Fleet:
        """A fleet index no other fleet on this machine uses, reserved by creating its
        state dir (atomic), so concurrent test sessions never tear down each other."""
        for k in range(first, last + 1):
            f = cls(k, state_root)
            if _run("ip", "link", "show", f"gsfbr{k}", check=False).returncode == 0:
                continue
            try:
                f.dir.mkdir(parents=True)
            except FileExistsError:
                continue
            return f
        raise FleetError(f"no free fleet index in {first}-{last}")

    # -- state --------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def state(self) -> FleetState | None:
        if not self.state_file.exists():
            return None
        raw = json.loads(self.state_file.read_text())
        hosts = [Host(**h) for h in raw.pop("hosts")]
        return FleetState(hosts=hosts, **raw)

    def _save(self, st: FleetState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(st), indent=1))
        tmp.replace(self.state_file)

    def is_up(self) -> bool:
        st = self.state()
        return bool(st and st.hosts and all(_alive(h.pid) for h in st.hosts))

    # -- up -----------------------------------------------------------------------
    def up(self, count: int, *, timeout: float = 30.0) -> FleetState:
        if not 1 <= count <= MAX_HOSTS:
            raise FleetError(f"a fleet has 1-{MAX_HOSTS} hosts, got {count}")
        if os.geteuid() != 0:
            raise FleetError("the fleet needs root (namespaces, bridge, mounts)")
        for tool in ("ip", "unshare", "sshd", "ssh-keygen", "pivot_root"):
            if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
                raise FleetError(f"{tool} not found: run `make sysdeps`")
        if self.state() is not None:
            self.down()
        k = self.index
        bridge = f"gsfbr{k}"
        if _run("ip", "link", "show", bridge, check=False).returncode == 0:
            raise FleetError(f"bridge {bridge} exists but is not ours (no state); refusing")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        (self.dir / "cp").mkdir(exist_ok=True)
        controller = check_address(k, f"{SUBNET_PREFIX}.{k}.1")
        st = FleetState(index=k, bridge=bridge, controller=controller)
        self._save(st)
        try:
            if not self.key.exists():
                _keygen(self.key, f"govsoc-fleet-{k}")
            _run("ip", "link", "add", bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{controller}/24", "dev", bridge)
            _run("ip", "link", "set", bridge, "up")
            known: list[str] = []
            for i in range(1, count + 1):
                host = Host(name=f"f{k}-host{i}", netns=f"gsf{k}h{i}", veth=f"gsf{k}v{i}",
                            address=check_address(k, f"{SUBNET_PREFIX}.{k}.{FIRST_HOST + i - 1}"),
                            machine_id=uuid.uuid4().hex)
                st.hosts.append(host)
                self._save(st)  # before creating anything: down() must find it
                known.append(self._start_host(st, host))
                self._save(st)
            self.known_hosts.write_text("".join(known))
            self._wait_ready(st, timeout)
        except BaseException:
            self.down()
            raise
        return st

    def _start_host(self, st: FleetState, host: Host) -> str:
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.netns)
        _run("ip", "link", "set", host.veth, "master", st.bridge)
        _run("ip", "link", "set", host.veth, "up")
        _run("ip", "link", "set", "lo", "up", ns=host.netns)
        _run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0", ns=host.netns)
        _run("ip", "link", "set", "eth0", "up", ns=host.netns)
        hdir = self.dir / host.name
        hdir.mkdir(exist_ok=True)
        hostkey = hdir / "ssh_host_ed25519_key"
        if hostkey.exists():
            hostkey.unlink()
            hostkey.with_suffix(".pub").unlink(missing_ok=True)
        _keygen(hostkey, f"root@{host.name}")
        pub = Path(str(hostkey) + ".pub").read_text()
        spec = {
            "hostname": host.name,
            "address": host.address,
            "machine_id": host.machine_id,
            "stage": str(STAGE_ROOT / host.name),
            "host_keys": {"ssh_host_ed25519_key": hostkey.read_text(),
                          "ssh_host_ed25519_key.pub": pub},
            "sshd_config": _sshd_config(host.address),
            "authorized_key": Path(str(self.key) + ".pub").read_text().strip(),
        }
        spec_file = hdir / "spec.json"
        fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec, fh)
        log = open(hdir / "init.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--pid",
             "--fork", "--kill-child=SIGKILL", "--propagation", "private",
             HOST_PYTHON, str(HOSTINIT), str(spec_file)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        host.pid = proc.pid
        key_type, key_b64 = pub.split()[:2]
        return f"{host.address} {key_type} {key_b64}\n"

    def _wait_ready(self, st: FleetState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(st.hosts)
        while pending:
            for host in list(pending):
                if not _alive(host.pid):
                    log = (self.dir / host.name / "init.log").read_text()[-600:]
                    raise FleetError(f"host {host.name} did not start: {log.strip()}")
                try:
                    with socket.create_connection((host.address, 22), timeout=0.5) as s:
                        if s.recv(4).startswith(b"SSH-"):
                            pending.remove(host)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                raise FleetError("hosts not reachable by ssh in time: "
                                 + ", ".join(h.name for h in pending))
            if pending:
                time.sleep(0.1)

    # -- down ---------------------------------------------------------------------
    def down(self) -> int:
        """Remove every host, link, namespace and process of this fleet; returns how
        many hosts were removed. Safe to run twice and after a half-done up()."""
        st = self.state()
        if st is None:
            if self.dir.is_dir() and not any(self.dir.iterdir()):
                self.dir.rmdir()  # a claimed index never brought up
            return 0
        _stop_control_masters(self.dir)
        for host in st.hosts:
            if _alive(host.pid) and _is_ours(host.pid):
                os.kill(host.pid, signal.SIGKILL)  # --kill-child takes PID 1 with it
        for host in st.hosts:
            # Anything still inside the network namespace (a stray `ip netns exec`).
            out = _run("ip", "netns", "pids", host.netns, check=False)
            for pid in out.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for host in st.hosts:
            _wait_gone(host.pid)
            _run("ip", "link", "del", host.veth, check=False)
            _run("ip", "netns", "del", host.netns, check=False)
            try:
                (STAGE_ROOT / host.name).rmdir()  # empty here; never rmtree a mount point
            except OSError:
                pass
        _run("ip", "link", "del", st.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        return len(st.hosts)

    # -- use ----------------------------------------------------------------------
    def ssh_args(self) -> list[str]:
        return ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=auto",
                "-o", "ControlPersist=120s", "-o", f"ControlPath={self.dir}/cp/%C",
                "-o", "ServerAliveInterval=5", "-o", "ConnectTimeout=5",
                "-o", "BatchMode=yes"]

    def inventory(self) -> dict[str, Any]:
        """Ansible YAML inventory (as a dict) of the running fleet: group `fleet`."""
        st = self.state()
        if st is None:
            raise FleetError(f"fleet {self.index} is not up (run `govsoc fleet up N`)")
        return {"all": {"children": {"fleet": {
            "hosts": {h.name: {"ansible_host": h.address} for h in st.hosts},
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": " ".join(self.ssh_args()),
                "ansible_python_interpreter": HOST_PYTHON,
                "govsoc_mgmt_address": st.controller,
                "govsoc_fleet_subnet": str(st.subnet),
            }}}}}

    def ssh(self, host: str, command: str, *, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command on a host over SSH (as the controller would)."""
        h = self.host(host)
        out = subprocess.run(["ssh", *self.ssh_args(), "-i", str(self.key),
                              f"root@{h.address}", command],
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise FleetError(f"{host}: `{command}` exited {out.returncode}: {out.stderr.strip()}")
        return out

    def host(self, name: str) -> Host:
        st = self.state()
        for h in st.hosts if st else []:
            if h.name == name or h.address == name:
                return h
        raise FleetError(f"no fleet host {name!r}")


def _sshd_config(address: str) -> str:
    return "\n".join([
        f"ListenAddress {address}",
        "Port 22",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "UseDNS no",
        "PidFile /run/sshd.pid",
        "MaxStartups 100:30:200",
        "MaxSessions 64",
        "Subsystem sftp internal-sftp",
        "",
    ])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, capture_output=True)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_ours(pid: int) -> bool:
    """A pid from the state file may have been reused; only kill our own launcher."""
    try:
        return str(HOSTINIT).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_gone(pid: int | None, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid:
        try:  # reap it when this process started the fleet (else its parent or init does)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _stop_control_masters(state_dir: Path) -> None:
    """ssh ControlPersist masters of this fleet live in the controller namespace."""
    marker = f"ControlPath={state_dir}/cp/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmd and cmd.split(b"\0", 1)[0].endswith(b"ssh"):
            try:
                os.kill(int(entry.name), signal.SIGTERM)
            except ProcessLookupError:
                pass
