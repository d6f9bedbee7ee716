"""Benchmark of the live run stream (issue 12 target: a runner event reaches an SSE client
≤ 500 ms after it is written).

The API is served as `govsoc api serve` serves it (uvicorn, 2 workers, HTTPS). A run in
state `running` is put in the store; a client follows `GET /runs/{id}/events`, while this
process writes runner events the way the driver flushes them (`store.write(..., refresh=
True)`, one event a write, at random gaps). The figure is the time from the end of each
write to the client holding the event. The reference, measured in the same run with the
same writer, is the store itself: a loop in this process that reads the run's new events
from the store as fast as it can (the least any reader of the store can take).

    python bench/sse.py [--store sqlite|es|both] [--events 40] [--es-url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from api import start, stop, write_config  # noqa: E402
from ports import free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
TARGET_MS = 500.0


def setup(folder: Path, store_url: str, namespace: str) -> tuple:
    write_config(folder, store_url, namespace)
    from playbooks import RunRequests
    from soc_api.identity import Identity
    from soc_core.config import load_config
    from soc_core.ecs import now_iso
    from soc_core.store import open_store

    cfg = load_config()
    store = open_store(cfg.store_url)
    _, token = Identity.from_config(cfg, store).create_token(
        "bench-sse", roles_=["analyst"], departments=["*"], created_by="bench")
    svc = RunRequests(store, folder / "data" / "playbooks")
    run_id = uuid.uuid4().hex[:12]
    rec = {"run_id": run_id, "playbook": "block_ip", "check": True, "limit": "h1",
           "hosts": ["h1"], "vars_json": "{}", "var_names": [], "departments": [],
           "status": "running", "needs_approval": False, "requester": "bench",
           "created": now_iso(), "undo_of": None, "approver": None, "decided": None,
           "reason": None, "claimed_by": "bench", "started": now_iso(), "ended": None,
           "canceled_by": None}
    svc.save(rec)
    return store, svc, rec, token


def runner_event(counter: int) -> dict:
    return {"event": "runner_on_ok", "uuid": str(uuid.uuid4()), "counter": counter,
            "created": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            "event_data": {"host": "h1", "task": f"bench task {counter}", "play": "bench",
                           "res": {"changed": False, "msg": "ok"}}}


def write_events(store, run_id: str, first: int, count: int, written: dict) -> None:
    from playbooks.events import runner_event_doc

    for i in range(first, first + count):
        time.sleep(random.uniform(0.05, 0.3))  # noqa: S311 - spacing, not secrets
        doc = runner_event_doc(run_id, "block_ip", runner_event(i))
        store.write([doc], refresh=True)
        written[i] = time.monotonic()


def sse_client(url: str, cert: str, token: str, run_id: str, received: dict,
               ready: threading.Event) -> None:
    import httpx

    with httpx.Client(base_url=url, verify=cert, timeout=120) as c, c.stream(
            "GET", f"/runs/{run_id}/events",
            headers={"Authorization": f"Bearer {token}"}) as r:
        if r.status_code != 200:
            sys.exit(f"stream refused: {r.status_code} {r.read()[:300]!r}")
        for line in r.iter_lines():
            if line.startswith("retry:"):
                ready.set()
            elif line.startswith("id: "):
                received[int(line[4:])] = time.monotonic()
            elif line.startswith("event: result"):
                return


def direct_poller(svc, run_id: str, first: int, count: int, seen: dict) -> None:
    after = first - 1
    while after < first + count - 1:
        for doc in svc.events(run_id, after):
            seq = int(doc["event"]["sequence"])
            seen.setdefault(seq, time.monotonic())
            after = max(after, seq)


def figures(written: dict, got: dict) -> list[float]:
    return sorted((got[i] - written[i]) * 1000 for i in written if i in got)


def show(name: str, ms: list[float], total: int) -> None:
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)] if ms else float("nan")
    print(f"  {name}: {len(ms)}/{total} events, p50 {statistics.median(ms):6.1f} ms, "
          f"p95 {p95:6.1f} ms, max {ms[-1]:6.1f} ms")


def p95(ms: list[float]) -> float:
    return ms[max(0, int(len(ms) * 0.95) - 1)]


def run_store(label: str, store_url: str, events: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="govsoc-bench-sse-"))
    namespace = "benchsse" + uuid.uuid4().hex[:6]
    proc = None
    try:
        store, svc, rec, token = setup(folder, store_url, namespace)
        port = free_port()
        proc = start([str(VENV_BIN / "govsoc"), "api", "serve", "--port", str(port),
                      "--workers", "2"], port)
        cert = str(folder / "data" / "api" / "tls-cert.pem")
        run_id = rec["run_id"]
        print(f"[{label}] load average before: {os.getloadavg()[0]:.2f}")

        # the reference first: the store read directly, same writer
        ref_written: dict = {}
        ref_seen: dict = {}
        poller = threading.Thread(target=direct_poller, args=(svc, run_id, 1, events,
                                                              ref_seen))
        poller.start()
        write_events(store, run_id, 1, events, ref_written)
        poller.join(60)

        # then the API: events after the reference's, on the same run
        received: dict = {}
        ready = threading.Event()
        client = threading.Thread(target=sse_client, args=(
            f"https://127.0.0.1:{port}", cert, token, run_id, received, ready))
        client.start()
        ready.wait(30)
        time.sleep(0.5)  # the backlog (the reference's events) delivered first
        written: dict = {}
        write_events(store, run_id, events + 1, events, written)
        time.sleep(1.0)
        rec.update(status="successful", ended=rec["started"])
        svc.save(rec)
        client.join(60)

        sse_ms, ref_ms = figures(written, received), figures(ref_written, ref_seen)
        show("SSE client (write -> event received over HTTPS)", sse_ms, events)
        show("reference (write -> direct store read)       ", ref_ms, events)
        print(f"  SSE p95 / reference p95: {p95(sse_ms) / max(p95(ref_ms), 0.001):.1f}x   "
              f"target p95 <= {TARGET_MS:.0f} ms: "
              f"{'met' if p95(sse_ms) <= TARGET_MS and len(sse_ms) == events else 'MISSED'}"
              f"   (worst {sse_ms[-1]:.0f} ms)")
        print(f"[{label}] load average after: {os.getloadavg()[0]:.2f}")
        if hasattr(store, "drop_all"):
            store.drop_all()
        store.close()
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "es", "both"], default="both")
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--es-url", default=os.environ.get("GOVSOC_TEST_ES_URL"),
                    help="a running node (default: a throwaway node this run starts)")
    ap.add_argument("--es-port", type=int, default=9272)
    args = ap.parse_args()
    from soc_api.routes_runs import POLL_SECONDS

    print(f"machine: {os.cpu_count()} CPUs; the stream looks for new events every "
          f"{POLL_SECONDS * 1000:.0f} ms")
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            run_store("sqlite", f"sqlite:///{d}/govsoc.db", args.events)
    if args.store in ("es", "both"):
        if args.es_url:
            run_store("elasticsearch", args.es_url, args.events)
        else:
            from eslocal import throwaway_node

            with throwaway_node(args.es_port) as url:
                run_store("elasticsearch", url, args.events)


if __name__ == "__main__":
    main()
