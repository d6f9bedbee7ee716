"""The alert section of `bench/api.py` (issue 12 targets: `GET /alerts`, the 50 newest open
alerts of one department, p95 <= 100 ms with 10,000 alerts over 1,000,000 events; an alert
transition p95 <= 50 ms; both stores).

The API is served as `govsoc api serve` serves it (uvicorn, 2 workers, HTTPS); requests are
sent one at a time over a kept-alive connection by an analyst of one department (so the
department scope is in every query). The reference, measured in the same run, is the same
store work done directly through EventStore without HTTP, auth, audit or JSON: the same
selection's page and count for the list; `read_versioned_many` + `write_many_if` of an alert for a
transition. Transitions alternate acknowledge / reopen, so the data set is unchanged.

On Elasticsearch `--alert-refresh` (the store's `es_alert_refresh`, and its default, search)
says when an alert change becomes searchable: "write" refreshes the alerts index with each change,
"search" leaves it to the next alert search. So that the moved cost shows, a last line
times `GET /alerts` right after each of a few transitions (and stops the run if that list
does not show the change), and the node's own account of the transition phase (refreshes
and refresh time a write, merges and young GCs) is printed.

The data set (1,000,000 events, 10,000 alerts, 10 departments) is written in bulk once
and kept: a SQLite file and an Elasticsearch node home under /var/tmp, reused while their
marker document says they hold this data set (`--rebuild` writes them again). A smaller
set for a short run (`--alert-events`, `--alert-count`, `--samples`) is kept apart (its
own SQLite file and ES namespace), so it never replaces the full one.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ports import free_port

EVENTS = 1_000_000
ALERTS = 10_000
DEPARTMENTS = [f"d{i}" for i in range(10)]
MARKER = "bench-alerts-dataset"
CACHE = Path(os.environ.get("GOVSOC_BENCH_CACHE", "/var/tmp/govsoc-bench-alerts"))
BASE = 1_790_000_000  # 2026-09-21, fixed: the same data set every run
SAMPLES = 200


def _docs(start: int, n: int):
    from soc_core import ecs

    for i in range(start, start + n):
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        yield {"@timestamp": ecs.format_time(ecs.parse_time(BASE + i * 0.6)),
               "event": {"dataset": "system.auth", "kind": "event", "id": f"e{i}",
                         "outcome": "failure" if i % 7 else "success"},
               "source": {"ip": f"10.{i % 10}.{i // 250 % 250}.{i % 250 + 1}"},
               "host": {"name": f"h{i % 500}"}, "user": {"name": f"u{i % 97}"},
               "organization": {"id": dept},
               "message": f"Failed password for u{i % 97} port {i % 60000}"}


def _alerts(events: int = EVENTS, alerts: int = ALERTS):
    from soc_core import ecs

    step = events // alerts
    statuses = ["open", "open", "open", "acknowledged", "closed", "closed", "closed",
                "closed", "closed", "closed"]  # 30 % open
    for a in range(alerts):
        i = a * step
        dept = DEPARTMENTS[a % len(DEPARTMENTS)]
        t = ecs.format_time(ecs.parse_time(BASE + i * 0.6))
        status = statuses[(a // len(DEPARTMENTS)) % len(statuses)]
        yield {"@timestamp": t, "message": f"SSH brute force {a}",
               "event": {"kind": "alert", "id": f"alert-{a}", "dataset": "govsoc.alert",
                         "module": "govsoc", "severity": 70},
               "rule": {"id": f"r{a % 40}", "name": f"rule {a % 40}", "uuid": f"r{a % 40}"},
               "threat": {"framework": "MITRE ATT&CK",
                          "tactic": {"id": ["TA0006"], "name": ["Credential Access"]}},
               "host": {"name": f"h{i % 500}"}, "organization": {"id": dept},
               "govsoc": {"departments": [dept], "alert": {
                   "status": status, "level": ["low", "medium", "high", "critical"][a % 4],
                   "count": step, "first_seen": t, "last_seen": t,
                   "event_ids": [f"e{i + k}" for k in range(0, step, len(DEPARTMENTS))][:20],
                   "assignee": None, "close_reason": "resolved" if status == "closed" else None,
                   "notes": [], "history": [], "created": t}}}


def ensure_dataset(store, rebuild: bool, events: int = EVENTS, alerts: int = ALERTS) -> str:
    """Write the data set unless the store already holds it; returns what was done."""
    from soc_core import ecs
    from soc_core.store import Selection

    version = f"v1-{events}-{alerts}"
    mark = store.get("state", MARKER)
    if mark and mark.get("govsoc", {}).get("bench") == version and not rebuild:
        return "reused"
    t0 = time.perf_counter()
    batch = 10_000
    for start in range(0, events, batch):
        res = store.write(_docs(start, min(batch, events - start)))
        if res.rejected:
            sys.exit(f"bench data rejected: {res.rejected[0].reason}")
        if start % 200_000 == 0:
            print(f"    events {start:>9,} / {events:,}  {time.perf_counter() - t0:5.0f} s",
                  flush=True)
    store.write(_alerts(events, alerts))
    store.refresh()
    store.optimize()
    n = store.count(Selection(family="alerts"))
    if n != alerts:
        sys.exit(f"bench data set: {n} alerts stored, {alerts} expected")
    store.write([{"@timestamp": ecs.format_time(ecs.parse_time(BASE)),
                  "event": {"kind": "state", "id": MARKER, "dataset": "govsoc.state.bench"},
                  "govsoc": {"bench": version}}], refresh=True)
    return f"written in {time.perf_counter() - t0:.0f} s"


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def node_counters(store) -> dict[str, float] | None:
    """Elasticsearch's own account of the work (None on SQLite): the alerts index's
    refreshes and merges, and the node's young-generation collections."""
    es = getattr(store, "es", None)
    if es is None:
        return None
    index = store.index_for("alerts", "")
    p = es.indices.stats(index=index, metric="refresh,merge")["indices"][index]["primaries"]
    jvm = next(iter(es.nodes.stats(metric="jvm")["nodes"].values()))["jvm"]
    young = jvm["gc"]["collectors"].get("young", {})
    return {"refreshes": p["refresh"]["total"], "refresh_ms": p["refresh"]["total_time_in_millis"],
            "merges": p["merges"]["total"], "merge_ms": p["merges"]["total_time_in_millis"],
            "gcs": young.get("collection_count", 0),
            "gc_ms": young.get("collection_time_in_millis", 0)}


def node_share(before: dict[str, float] | None, after: dict[str, float] | None,
               writes: int) -> str:
    """What the node did for the transitions and reference writes: refresh time a write
    (its median cost, in the node), merges and young collections per 100 writes."""
    if before is None or after is None or not writes:
        return ""
    d = {k: after[k] - before[k] for k in after}
    merge_each = f"{d['merge_ms'] / d['merges']:.0f} ms each" if d["merges"] else "-"
    gc_each = f"{d['gc_ms'] / d['gcs']:.0f} ms each" if d["gcs"] else "-"
    return (f"  in the node, {writes} writes: {d['refreshes'] / writes:.2f} refreshes of the "
            f"alerts index a write, {d['refresh_ms'] / writes:.1f} ms of refresh a write; "
            f"{100 * d['merges'] / writes:.1f} merges per 100 writes ({merge_each}); "
            f"{100 * d['gcs'] / writes:.1f} young GCs per 100 ({gc_each})")


def measure(label: str, store_url: str, folder: Path, *, rebuild: bool,
            es_namespace: str = "benchalerts", events: int = EVENTS, alerts: int = ALERTS,
            samples: int = SAMPLES, alert_refresh: str = "search") -> None:
    import httpx
    from api import start, stop, write_config

    from soc_api.identity import Identity
    from soc_core.config import load_config
    from soc_core.query import And, Or, Term
    from soc_core.store import Selection, open_store

    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, store_url, es_namespace)
    # this process's store and the servers' (they inherit it): see soc_core.store.elastic
    os.environ["GOVSOC_ES_ALERT_REFRESH"] = alert_refresh
    cfg = load_config()
    store = open_store(cfg.store_url, departments=[])
    print(f"[{label}] data set: {events:,} events, {alerts:,} alerts: "
          f"{ensure_dataset(store, rebuild, events, alerts)}", flush=True)
    dept = DEPARTMENTS[3]
    _, token = Identity.from_config(cfg, store).create_token(
        "bench-analyst", roles_=["analyst"], departments=[dept], created_by="bench")
    # the same selection the route builds: the status filter, then the department scope
    # (soc_api.routes_alerts, soc_api.tenancy)
    mine = Or(tuple(Term(f, dept, True) for f in ("organization.id", "govsoc.departments")))
    sel = Selection(family="alerts", query=And((
        Or((Term("govsoc.alert.status", "open", True),)), mine)))

    share = ""
    port = free_port()
    server = start([str(Path(sys.executable).parent / "govsoc"), "api", "serve", "--port",
                    str(port), "--workers", "2"], port)
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=base, verify=False,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            params = {"status": "open", "department": dept, "size": 50}
            first = http.get("/alerts", params=params)
            if first.status_code != 200 or len(first.json()["items"]) != 50:
                sys.exit(f"GET /alerts answered {first.status_code}: {first.text[:300]}")
            ids = [d["event"]["id"] for d in first.json()["items"]]
            api_list, ref_list = [], []
            for _ in range(samples):  # alternate, so both see the same machine state
                t0 = time.perf_counter()
                r = http.get("/alerts", params=params)
                t1 = time.perf_counter()
                store.search(sel, size=50, descending=True)
                store.count(sel)
                t2 = time.perf_counter()
                assert r.status_code == 200
                api_list.append((t1 - t0) * 1000)
                ref_list.append((t2 - t1) * 1000)
            api_tr, ref_tr = [], []
            counted = node_counters(store)
            for i in range(samples // 2):
                aid = ids[i % len(ids)]
                for status in ("acknowledged", "open"):
                    t0 = time.perf_counter()
                    r = http.post(f"/alerts/{aid}/transition", json={"status": status})
                    t1 = time.perf_counter()
                    if r.status_code != 200:
                        sys.exit(f"transition answered {r.status_code}: {r.text[:300]}")
                    api_tr.append((t1 - t0) * 1000)
                # the reference: the same compare-and-set write, straight to the store
                other = ids[(i + 25) % len(ids)]
                t0 = time.perf_counter()
                (doc, version), = store.read_versioned_many("alerts", [other]).values()
                doc["govsoc"]["alert"]["updated_by_bench"] = random.random()
                store.write_many_if([(doc, version)], refresh=True)
                ref_tr.append((time.perf_counter() - t0) * 1000)
            share = node_share(counted, node_counters(store), len(api_tr) + len(ref_tr))
            # the list right after a change: with es_alert_refresh = "search" it pays the
            # refresh the change left; it must show the change either way
            after_tr = []
            for i in range(2 * max(samples // 8, 1)):  # acknowledge, then reopen: unchanged
                aid = ids[i // 2 % len(ids)]
                status = ("acknowledged", "open")[i % 2]
                if http.post(f"/alerts/{aid}/transition",
                             json={"status": status}).status_code != 200:
                    sys.exit("transition refused in the list-after-change round")
                t0 = time.perf_counter()
                r = http.get("/alerts", params=params)
                after_tr.append((time.perf_counter() - t0) * 1000)
                listed = {d["event"]["id"] for d in r.json()["items"]}
                if (aid in listed) != (status == "open"):
                    sys.exit(f"GET /alerts right after {aid} -> {status} did not show it")
    finally:
        stop(server)
        store.close()
    for what, api, ref, target in (
            ("GET /alerts (50 newest open, one department)", api_list, ref_list, 100),
            ("POST /alerts/{id}/transition", api_tr, ref_tr, 50)):
        a, r = p95(api), p95(ref)
        print(f"  {what}: p95 {a:6.1f} ms (median {statistics.median(api):.1f})  "
              f"direct EventStore p95 {r:6.1f} ms  ratio {a / r:5.2f}  "
              f"target <= {target} ms: {'met' if a <= target else 'MISSED'}", flush=True)
    if share:
        print(share, flush=True)
    mode = f" (es_alert_refresh = {alert_refresh})" if share else ""
    print(f"  GET /alerts right after a transition{mode}: p95 {p95(after_tr):6.1f} ms "
          f"(median {statistics.median(after_tr):.1f})", flush=True)


def es_node(port: int) -> tuple[str, list[str]]:
    """A node whose home (and data) is kept under the cache folder between runs."""
    home = CACHE / "es"
    home.mkdir(parents=True, exist_ok=True)
    from eslocal import ES_LOCAL

    env = {**os.environ, "ES_PORT": str(port), "ES_HOME": str(home)}
    out = subprocess.run([ES_LOCAL, "start"], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"Elasticsearch did not start: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1], [ES_LOCAL, "stop"]


def run(stores: str, *, es_url: str | None = None, es_port: int = 9272,
        rebuild: bool = False, events: int = EVENTS, alerts: int = ALERTS,
        samples: int = SAMPLES, alert_refresh: str = "search") -> None:
    if alerts > events or events % alerts or alerts * 3 // 100 < 50:
        sys.exit("--alert-count must divide --alert-events and be at least 1,670 "
                 "(a department's 50 newest open alerts: 3 % of them)")
    print(f"alerts: load average {os.getloadavg()[0]:.1f} (1 min), "
          f"{os.cpu_count()} CPUs", flush=True)
    # a smaller data set lives apart from the full one (file, namespace), never over it
    full = (events, alerts) == (EVENTS, ALERTS)
    tag = "" if full else f"-{events}-{alerts}"
    size = dict(events=events, alerts=alerts, samples=samples, alert_refresh=alert_refresh,
                es_namespace="benchalerts" if full else f"benchalerts{events}x{alerts}")
    if stores in ("sqlite", "both"):
        CACHE.mkdir(parents=True, exist_ok=True)
        measure("sqlite", f"sqlite:///{CACHE}/alerts{tag}.db", CACHE / f"run-sqlite{tag}",
                rebuild=rebuild, **size)
    if stores in ("es", "both"):
        if es_url:
            measure("elasticsearch", es_url, CACHE / f"run-es{tag}", rebuild=rebuild, **size)
        else:
            url, stop_cmd = es_node(es_port)
            try:
                measure("elasticsearch", url, CACHE / f"run-es{tag}", rebuild=rebuild, **size)
            finally:
                subprocess.run(stop_cmd, capture_output=True,
                               env={**os.environ, "ES_PORT": str(es_port),
                                    "ES_HOME": str(CACHE / "es")})
    print(f"alerts: load average {os.getloadavg()[0]:.1f} (1 min) at the end", flush=True)
