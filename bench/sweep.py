"""Benchmark: `asset_sweep` (driver, ansible-runner, store writes) over 10 fleet hosts
with forks=10, against a plain `ansible -m setup` over the same hosts in the same run.

Prints both wall times and the ratio (target: <= 2x). Brings its own fleet up and down
(root needed). Both sides use the same SSH settings and warm connections; each is run
three times, alternating, and the median is reported.
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

from playbooks.driver import Driver, _ansible_env  # noqa: E402
from playbooks.fleet import Fleet  # noqa: E402
from soc_core.store import open_store  # noqa: E402

HOSTS = 10
FORKS = 10
ROUNDS = 3
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
            env = {**os.environ, **_ansible_env(work)}
            ansible = str(Path(sys.executable).with_name("ansible"))

            def plain_setup() -> float:
                t = time.perf_counter()
                out = subprocess.run([ansible, "-i", str(inv_file), "all", "-m", "setup",
                                      "-f", str(FORKS), "-o"], env=env, capture_output=True,
                                     text=True)
                took = time.perf_counter() - t
                if out.returncode != 0:
                    raise SystemExit(f"ansible -m setup failed:\n{out.stdout[-2000:]}"
                                     f"{out.stderr[-2000:]}")
                return took

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
            setup_times, sweep_times = [], []
            for _ in range(ROUNDS):
                setup_times.append(plain_setup())
                sweep_times.append(sweep())
            store.close()
        finally:
            fleet.down()
    ref = statistics.median(setup_times)
    ours = statistics.median(sweep_times)
    print(f"ansible -m setup  ({HOSTS} hosts, forks={FORKS}): {ref:.2f}s  "
          f"(runs: {', '.join(f'{t:.2f}' for t in setup_times)})")
    print(f"asset_sweep       ({HOSTS} hosts, forks={FORKS}): {ours:.2f}s  "
          f"(runs: {', '.join(f'{t:.2f}' for t in sweep_times)})")
    ratio = ours / ref
    print(f"ratio asset_sweep / setup: {ratio:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
