"""What stamping departments costs at ingest: `EventStore.write` (SQLite) of the same
documents with 40 configured departments against none, in the same run, alternating
rounds, best of N; and the stamp alone per event, cold (every address new) and warm.

    python bench/departments.py [--events 200000] [--rounds 3]

The documents are bench/ingest.py's mix (flows, DNS, auth, processes; 200 host names,
~100,000 distinct internal addresses). Target (issue 10): the stamped store keeps >= 0.95
of the plain one's throughput.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import frozen, make_events  # noqa: E402

from soc_core import ecs  # noqa: E402
from soc_core.cli import INGEST_BATCH  # noqa: E402
from soc_core.config import Config  # noqa: E402
from soc_core.departments import Departments  # noqa: E402
from soc_core.store import open_store  # noqa: E402


def departments() -> Departments:
    """40 departments: a /16 each in 10.0.0.0/8, one /24 nested, host-name patterns."""
    tables = [{"id": f"d{n:02d}", "name": f"部门{n}", "cidrs": [f"10.{n}.0.0/16"],
               "hosts": [f"gov-app-{n % 20:02d}*"]} for n in range(1, 40)]
    tables.append({"id": "dc", "name": "数据中心", "cidrs": ["172.20.0.0/16", "10.5.7.0/24"]})
    return Departments.from_config(Config(values={"departments": tables}))


def write_all(docs: list[dict], depts: Departments, batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/d.db", departments=depts)
        fresh = copy.deepcopy(docs)
        with frozen():
            t = time.perf_counter()
            for i in range(0, len(fresh), batch):
                store.write(fresh[i:i + batch])
            took = time.perf_counter() - t
        store.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=INGEST_BATCH)
    args = ap.parse_args()
    docs = make_events(args.events)
    n = len(docs)
    best = {"none": float("inf"), "40": float("inf")}
    for r in range(args.rounds):
        order = ("none", "40") if r % 2 == 0 else ("40", "none")
        for which in order:
            depts = departments() if which == "40" else Departments()
            best[which] = min(best[which], write_all(docs, depts, args.batch))
    plain, stamped = n / best["none"], n / best["40"]
    print(f"{n} events, batches of {args.batch}, best of {args.rounds}")
    print(f"sqlite EventStore.write  no departments {plain:10,.0f} ev/s   40 departments "
          f"{stamped:10,.0f} ev/s   ratio {stamped / plain:.3f}  (target >= 0.95)")

    prepared = [ecs.prepare(d) for d in copy.deepcopy(docs)]
    d = departments()
    stamp = d.stamp_prepared
    with frozen():  # as for the writes: the input's objects stay out of the collector
        t = time.perf_counter()
        for p in prepared:
            stamp(p)
        cold = time.perf_counter() - t
    for p in prepared:  # stamped documents are skipped: time fresh ones, cache warm
        p.doc.pop("organization", None)
        p.doc.pop("govsoc", None)  # the mix carries no govsoc object of its own
    with frozen():
        t = time.perf_counter()
        for p in prepared:
            stamp(p)
        warm = time.perf_counter() - t
    print(f"stamp alone: {cold / n * 1e9:,.0f} ns/event with an empty cache, "
          f"{warm / n * 1e9:,.0f} ns/event warm; write {best['none'] / n * 1e9:,.0f} ns/event")


if __name__ == "__main__":
    main()
