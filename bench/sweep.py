"""Benchmark: `asset_sweep` (driver, ansible-runner, store writes) over 10 fleet hosts
with forks=10, against plain Ansible gathering the same facts over the same hosts in the
same run.

What each side collects, per host (one "fact set"):
  asset_sweep   one task, our module govsoc_asset_facts: hostname, machine id, addresses,
                MACs, interfaces, architecture, OS and kernel, installed packages, listening
                sockets with their process, running services, accounts and sudoers, sshd's
                effective settings, time-sync daemon, disks, last patch time, uptime; the
                record is stored (driver + ansible-runner + store writes).
  plain Ansible `ansible-playbook` of builtin modules for the same facts (PLAIN below):
                setup (platform, distribution, network, hardware subsets), package_facts,
                `ss -tulpn`, getent passwd/shadow/group, the sudoers files, sshd -T,
                running services, the time-sync daemon, the last dpkg install/upgrade;
                nothing stored.
Both use the same SSH settings (pipelining, ControlPersist) and warm connections; each is
run ROUNDS times, alternating which goes first; the median of each is reported with
every run, and the time per host's fact set. Target: asset_sweep <= 2x plain Ansible.
`ansible -m setup` (all facts, none of the inventory beyond them) is timed too, for
reference only. Brings its own fleet up and down (root needed).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playbooks import Driver, Fleet, ansible_env  # noqa: E402
from soc_core.store import open_store  # noqa: E402

HOSTS = 10
FORKS = 10
ROUNDS = 3

# The asset record's facts, gathered the way a plain Ansible user would (builtin modules).
PLAIN = """
- name: Asset facts with builtin modules
  hosts: all
  gather_facts: false
  tasks:
    - name: Identity, OS, kernel, interfaces, addresses, disks, uptime
      ansible.builtin.setup:
        gather_subset: ["!all", "!min", "platform", "distribution", "network", "hardware"]
    - name: Installed packages
      ansible.builtin.package_facts:
        manager: apt
    - name: Listening sockets with their process
      ansible.builtin.command: ss -H -tulpn
      changed_when: false
    - name: Accounts
      ansible.builtin.getent:
        database: passwd
    - name: Password state
      ansible.builtin.getent:
        database: shadow
    - name: Groups (sudo, wheel, admin)
      ansible.builtin.getent:
        database: group
    - name: Sudoers files
      ansible.builtin.shell: cat /etc/sudoers /etc/sudoers.d/* 2>/dev/null || true
      changed_when: false
    - name: Effective sshd settings
      ansible.builtin.command: /usr/sbin/sshd -T
      changed_when: false
    - name: Running services (systemd, else the children of PID 1)
      ansible.builtin.shell: >-
        systemctl list-units --type=service --state=running --no-legend --plain 2>/dev/null
        || ps -o pid=,comm= --ppid 1
      changed_when: false
    - name: Time-sync daemon
      ansible.builtin.shell: pgrep -l -x 'chronyd|ntpd|systemd-timesyncd|openntpd' || true
      changed_when: false
    - name: Last package install or upgrade
      ansible.builtin.shell: >-
        awk '$3 == "install" || $3 == "upgrade" {t = $1 "T" $2} END {print t}'
        /var/log/dpkg.log 2>/dev/null || true
      changed_when: false
"""
FLEET_INDEX = os.environ.get("GOVSOC_BENCH_FLEET_INDEX")  # default: a free index


def main() -> int:
    fleet = Fleet(int(FLEET_INDEX)) if FLEET_INDEX else Fleet.claim()
    with tempfile.TemporaryDirectory(prefix="govsoc-bench-sweep-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        fleet.up(HOSTS)
        print(f"fleet up: {HOSTS} hosts in {time.perf_counter() - t0:.2f}s")
        try:
            inventory = fleet.inventory()
            inv_file = work / "hosts.yml"
            inv_file.write_text(yaml.safe_dump(inventory))
            env = {**os.environ, **ansible_env(work)}
            ansible = str(Path(sys.executable).with_name("ansible"))

            def timed(args: list[str]) -> float:
                t = time.perf_counter()
                out = subprocess.run(args, env=env, capture_output=True, text=True)
                took = time.perf_counter() - t
                if out.returncode != 0:
                    raise SystemExit(f"{' '.join(args[:2])} failed:\n{out.stdout[-2000:]}"
                                     f"{out.stderr[-2000:]}")
                return took

            playbook = work / "plain_asset_facts.yml"
            playbook.write_text(PLAIN)
            plain_cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i",
                         str(inv_file), "-f", str(FORKS), str(playbook)]
            setup_cmd = [ansible, "-i", str(inv_file), "all", "-m", "setup", "-f", str(FORKS),
                         "-o"]

            store = open_store(f"sqlite:///{work}/bench.db")
            driver = Driver(store, work_dir=work / "playbooks", forks=FORKS)

            def sweep() -> float:
                t = time.perf_counter()
                result = driver.run("asset_sweep", inventory, forks=FORKS)
                took = time.perf_counter() - t
                if not result.ok:
                    raise SystemExit(f"asset_sweep failed: {result.reason}")
                return took

            subprocess.run([ansible, "-i", str(inv_file), "all", "-m", "ping", "-f",
                            str(FORKS)], env=env, capture_output=True, check=True)  # warm SSH
            plain_times, sweep_times, setup_times = [], [], []
            for r in range(ROUNDS):
                if r % 2:
                    sweep_times.append(sweep())
                    plain_times.append(timed(plain_cmd))
                else:
                    plain_times.append(timed(plain_cmd))
                    sweep_times.append(sweep())
                setup_times.append(timed(setup_cmd))
            store.close()
        finally:
            fleet.down()
    plain = statistics.median(plain_times)
    ours = statistics.median(sweep_times)
    setup = statistics.median(setup_times)
    print(f"{HOSTS} hosts, forks={FORKS}, median of {ROUNDS} rounds (alternating); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for name, med, runs in (("asset_sweep (stored)", ours, sweep_times),
                            ("plain Ansible, same facts", plain, plain_times),
                            ("ansible -m setup (reference)", setup, setup_times)):
        print(f"  {name:30} {med:6.2f} s = {med / HOSTS * 1000:5.0f} ms per host's fact set"
              f"  (runs: {', '.join(f'{t:.2f}' for t in runs)})")
    print(f"ratio asset_sweep / plain Ansible (same facts): {ours / plain:.2f}x "
          f"(target <= 2x: {'met' if ours <= 2 * plain else 'MISSED'}); "
          f"asset_sweep / ansible -m setup: {ours / setup:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
