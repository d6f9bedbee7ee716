"""Scale on a small machine: cost and correctness rather than speed (issue 17's benchmark).

1. Ingest: the same events, through the same client (`open_store(...).write` in batches),
   into a 1-node and a 3-node Elasticsearch cluster started by this run (scripts/es-local
   cluster, private ports and homes, stopped afterwards), both running, each batch written
   to one and then the other (the order alternating); events/s of each and the ratio
   3-node / 1-node. On one 2-core box the 3 nodes share the cores and each
   write is also replicated (replicas 1), so the ratio shows the cost of redundancy, not
   the gain of more machines.
2. Leader failover: two `govsoc detect run` on one store (SQLite, and the 3-node cluster);
   SIGKILL the leader; the time until the other says it leads, and until it has finished
   a pass (lease `--lease` s).
3. Agent CPU per host: bench/scale_agent.py's run(): the agent's CPU over `--agent-span`
   seconds (default 120, 12 cycles) without and then with 1,000 extra processes, 10 s
   intervals, as a % of a core and CPU ms a cycle (target <= 2 % of a core); as root on a
   host of its own (pid and network namespaces), away from the machine's other churn.
4. Live capture with 1 and then 2 workers (PACKET_FANOUT) at the same offered rate on a veth
   pair (root): received, kernel drops, the workers' CPU time and CPU per packet.

Prints every figure and the load average; asserts nothing.

    .venv/bin/python bench/scale.py [--events 200000] [--lease 3] [--agent-span 120]
                                    [--live-rate 20000] [--skip ingest,failover,agent,live]
                                    [--urls-1 URL] [--urls-3 URL,URL,URL]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
# the tests' engine processes (`govsoc detect run` with what each prints, as it comes)
sys.path.append(str(ROOT / "tests" / "detections"))
ES_LOCAL = str(ROOT / "scripts" / "es-local")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- 1. ingest into 1 and 3 nodes -------------------------------------------------------
class LocalCluster:
    """scripts/es-local cluster N on its own ports and home; stopped on exit. With `urls`
    (a cluster already running), that one is used and left running."""

    def __init__(self, nodes: int, base: int, heap: str, urls: str = "") -> None:
        self.urls = urls
        self.home = tempfile.mkdtemp(prefix=f"govsoc-bench-es{nodes}-", dir="/var/tmp")
        self.env = {**os.environ, "ES_CLUSTER_PORT": str(base), "ES_CLUSTER_HOME": self.home,
                    "ES_HEAP": heap, "ES_FRESH": "1"}
        self.nodes = nodes

    def __enter__(self) -> str:
        if self.urls:
            return self.urls
        t0 = time.monotonic()
        out = subprocess.run([ES_LOCAL, "cluster", str(self.nodes)], env=self.env,
                             capture_output=True, text=True)
        if out.returncode:
            self.__exit__()
            sys.exit(f"{self.nodes}-node cluster did not start: {out.stderr[-2000:]}")
        print(f"  {self.nodes}-node cluster up in {time.monotonic() - t0:.0f} s")
        return out.stdout.strip().splitlines()[-1]

    def __exit__(self, *_: Any) -> None:
        if self.urls:
            return
        subprocess.run([ES_LOCAL, "cluster", "stop"], env=self.env, capture_output=True)
        subprocess.run(["rm", "-rf", self.home])


def make_events(n: int) -> list[dict[str, Any]]:
    from soc_core import ecs

    t0 = time.time() - 3600
    return [ecs.make_event("bench.scale", t0 + i / 100, ("scale", i), {
        "message": f"Failed password for root from 10.{i % 250}.{i // 250 % 250}.7 "
                   f"port {40000 + i % 20000} ssh2",
        "source": {"ip": f"10.{i % 250}.{i // 250 % 250}.7"}, "user": {"name": "root"},
        "host": {"name": f"gov-web-{i % 300:03d}"}, "event": {"outcome": "failure"}})
        for i in range(n)]


def ingest(urls: dict[int, str], events: list[dict[str, Any]], batch: int
           ) -> dict[int, dict[str, float]]:
    """The same batches into each cluster, interleaved (1-node, 3-node; then 3-node, 1-node;
    ...), so a change of load on this shared machine hits both sides alike."""
    from contextlib import ExitStack

    from soc_core.store import Selection, open_store

    with ExitStack() as stack:
        stores = {n: stack.enter_context(open_store(u, namespace="benchscale" + str(os.getpid())))
                  for n, u in urls.items()}
        for store in stores.values():  # templates and the data stream made before the clock
            store.write(events[:batch])
        wall = {n: 0.0 for n in stores}
        cpu = {n: 0.0 for n in stores}
        order = sorted(stores)
        for k, i in enumerate(range(batch, len(events), batch)):
            for n in (order if k % 2 == 0 else order[::-1]):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                res = stores[n].write(events[i:i + batch])
                wall[n] += time.perf_counter() - wall0
                cpu[n] += time.process_time() - cpu0
                assert not res.rejected, res.rejected[:1]
        figures = {}
        for n, store in stores.items():
            store.refresh()
            figures[n] = {"events_per_s": (len(events) - batch) / wall[n], "wall_s": wall[n],
                          "client_cpu_s": cpu[n], "replicas": store.replicas,
                          "stored": store.count(Selection(dataset="bench.scale"))}
            store.drop_all()  # a running cluster given with --urls-* keeps nothing of ours
    return figures


def bench_ingest(n: int, batch: int, heap: str, given: dict[int, str]) -> None:
    events = make_events(n)
    print(f"1. ingest: {n:,} events, batches of {batch:,}, one client, the two clusters "
          f"written in turn ({load()})")
    with LocalCluster(1, 9471, heap, given.get(1, "")) as url1, \
            LocalCluster(3, 9481, heap, given.get(3, "")) as url3:
        figures = ingest({1: url1, 3: url3}, events, batch)
    for nodes, f in figures.items():
        print(f"  {nodes} node(s): {f['events_per_s']:,.0f} events/s ({f['wall_s']:.1f} s, "
              f"client CPU {f['client_cpu_s']:.1f} s, replicas {f['replicas']}, "
              f"stored {f['stored']:,})")
    print(f"  ratio 3-node / 1-node: {figures[3]['events_per_s'] / figures[1]['events_per_s']:.2f}"
          f" (same machine: more nodes share the same 2 cores and each event is written twice)"
          f" ({load()})")


# -- 2. leader failover ---------------------------------------------------------------------
def _until(cond: Any, timeout: float) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    return None


def _one_failover(store: Any, lease: float) -> tuple[float, float] | None:
    """(SIGKILL -> the other leads, SIGKILL -> its first pass finished), seconds."""
    from engine_procs import EngineProc

    a, b = (EngineProc(store, interval=1.0, lease_s=lease) for _ in range(2))
    try:
        leader = _until(lambda: next((e for e in (a, b) if e.leading_since()), None), 300)
        if leader is None:
            return None
        other = b if leader is a else a
        _until(lambda: leader.first_pass_after(0), 120)
        leader.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.proc.wait()
        took = _until(lambda: other.leading_since(), 120)
        done = _until(lambda: other.first_pass_after(took), 120) if took else None
        return (took - killed, done - killed) if took and done else None
    finally:
        a.stop()
        b.stop()


def failover(label: str, store: Any, lease: float, rounds: int) -> None:
    got = [_one_failover(store, lease) for _ in range(rounds)]
    if None in got:
        print(f"  {label}: a round had no leader or no takeover within the bounds")
    got = [g for g in got if g]
    print(f"  {label}: lease {lease:g} s; SIGKILL -> the other leads "
          f"{', '.join(f'{x:.1f}' for x, _ in got)} s; -> its first pass finished "
          f"{', '.join(f'{y:.1f}' for _, y in got)} s ({load()})")


def bench_failover(lease: float, rounds: int, heap: str, three: str) -> None:
    from soc_core.store import open_store

    print(f"2. leader failover: two `govsoc detect run`, interval 1 s ({load()})")
    with tempfile.TemporaryDirectory() as tmp, \
            open_store(f"sqlite:///{tmp}/failover.db") as store:
        failover("SQLite", store, lease, rounds)
    with LocalCluster(3, 9481, heap, three) as url, \
            open_store(url, namespace=f"benchfail{os.getpid()}") as store:
        failover("3-node ES cluster", store, lease, rounds)
        store.drop_all()


# -- 3. agent CPU per host ------------------------------------------------------------------
def bench_agent(span: float) -> None:
    import scale_agent

    print(f"3. agent CPU per host, 10 s intervals, {span:g} s measured without and then with "
          f"1,000 extra processes ({load()})")
    r = scale_agent.run(procs=1000, span=span, warmup=15.0, reference=True)
    print("\n".join(scale_agent.report(r, indent="  ")))


# -- 4. live capture, 1 vs 2 workers ---------------------------------------------------------
def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def live_once(pcap: Path, workers: int, rate: float) -> dict[str, Any]:
    from veth_replay import send

    from collectors.packet.vethpair import veth_pair
    from collectors.packet.workers import capture_workers

    def make_sink(_i: int):
        n = [0]

        def sink(_e: dict) -> None:
            n[0] += 1
        return sink, lambda: n[0]

    with veth_pair("gs") as (ns_a, ns_b, va, vb):
        stop, ready, result = threading.Event(), threading.Event(), {}

        def run() -> None:
            result["out"] = capture_workers(vb, None, workers, stop, make_sink, netns=ns_b,
                                            ready=ready)
        cap = threading.Thread(target=run)
        cpu0 = _children_cpu()
        cap.start()
        ready.wait(60)
        sent = send(ns_a, va, pcap, rate)
        cpu1 = _children_cpu()  # the sender, reaped; the workers still run
        time.sleep(3)  # let the workers drain their sockets
        stop.set()
        cap.join()
        workers_cpu = _children_cpu() - cpu1
    stats = [s for s, _ in result["out"]]
    received = sum(s.packets for s in stats)
    return {"sent": sent[0], "offered_pps": sent[0] / sent[1],
            "received": received, "per_worker": [s.packets for s in stats],
            "drops": [s.kernel_drops for s in stats], "events": sum(e for _, e in result["out"]),
            "cpu_s": workers_cpu, "sender_cpu_s": cpu1 - cpu0,
            "us_per_packet": 1e6 * workers_cpu / max(received, 1)}


def bench_live(packets: int, rate: float) -> None:
    from packet import make_capture

    print(f"4. live capture on a veth pair, {packets:,} packets offered at {rate:,.0f}/s "
          f"({load()})")
    if os.geteuid() != 0:
        print("  skipped: needs root (network namespaces)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "scale.pcap"
        make_capture(pcap, packets)
        for workers in (1, 2):
            r = live_once(pcap, workers, rate)
            print(f"  {workers} worker(s): sent {r['sent']:,} at {r['offered_pps']:,.0f}/s; "
                  f"received {r['received']:,} (per worker {r['per_worker']}), kernel drops "
                  f"{r['drops']} (total {sum(r['drops']):,}); {r['events']:,} events; "
                  f"workers' CPU {r['cpu_s']:.2f} s = {r['us_per_packet']:.1f} µs/packet "
                  f"({load()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--heap", default="512m", help="heap of each Elasticsearch node")
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2, help="failovers measured per store")
    ap.add_argument("--agent-span", type=float, default=120.0,
                    help="seconds the agent is measured, without and with the extra processes")
    ap.add_argument("--live-packets", type=int, default=200_000)
    ap.add_argument("--live-rate", type=float, default=20_000)
    ap.add_argument("--urls-1", default="", help="a running 1-node cluster to use (default: "
                    "start one)")
    ap.add_argument("--urls-3", default="", help="a running 3-node cluster (comma-separated "
                    "node URLs) to use (default: start one)")
    ap.add_argument("--skip", default="", help="comma list of: ingest,failover,agent,live")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    t0 = time.monotonic()
    print(f"bench/scale.py on {os.cpu_count()} cores ({load()})")
    if "ingest" not in skip:
        bench_ingest(a.events, a.batch, a.heap, {1: a.urls_1, 3: a.urls_3})
    if "failover" not in skip:
        bench_failover(a.lease, a.rounds, a.heap, a.urls_3)
    if "agent" not in skip:
        bench_agent(a.agent_span)
    if "live" not in skip:
        bench_live(a.live_packets, a.live_rate)
    print(f"done in {time.monotonic() - t0:.0f} s ({load()})")


if __name__ == "__main__":
    main()
