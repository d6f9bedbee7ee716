"""Benchmark of the API (issue targets: authenticated small reads ≥ 1,000/s on 2 workers;
authentication + audit overhead ≤ 15 % against the same handler without them; signing
with a service token ≥ 1,500/s single with p99 ≤ 20 ms, ≥ 5,000 signatures/s batched).

Both apps are served the way `govsoc api serve` serves: uvicorn, 2 worker processes,
HTTPS with the self-signed certificate. Load comes from `wrk` (2 threads, 16 connections)
on the same 2-core machine, so server and client share the CPUs: the figures are for this
machine as a whole. The small read is `GET /events/{id}` (one stored document, an audited
privileged read). The reference is `bench/api_bare.py`'s `bare`: the same app (`create_app`:
the same routers, handler, serializer and ASGI guard), served with the same uvicorn
options, with the gate replaced by a fixed principal and an audit trail that keeps
nothing (`--reference router`: the older, smaller reference app with the data router
alone). Rounds alternate between the two apps; both are measured by the same clocks.

    python bench/api.py [--store sqlite|es|both] [--seconds 8] [--rounds 3]
                        [--reference app|router]
                        [--alerts yes|no|only] [--es-url URL] [--rebuild]
                        [--alert-events N] [--alert-count N] [--samples N]
                        [--alert-refresh write|search] [--es-warmup 180]

The alert figures (GET /alerts and transitions over 1,000,000 events, 10,000 alerts) are
the section in `bench/api_alerts.py`, run after these (`--alerts only`: just that section;
`--es-url`: an existing node for it instead of its own cached one; `--alert-events`,
`--alert-count`, `--samples`: a smaller data set and fewer requests, for a short run).

On Elasticsearch the benchmark's node is started for the run, and a fresh JVM compiles
(JIT) for minutes under load: several seconds of CPU a minute, on the two cores the
servers and wrk share with it. Before the measured rounds the node is therefore loaded
with the measured requests (authenticated GETs and signatures, which also write the audit
trail) until its compiler threads use less than a tenth of a core, as on a node that has
served for a while (`--es-warmup`: at most this many seconds; 0: no warm-up). The
compiler's CPU during the measured rounds is printed with the figures.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from eslocal import compiler_seconds  # noqa: E402
from ports import free_port, wait_port  # noqa: E402

ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent


def write_config(folder: Path, store_url: str, namespace: str) -> None:
    """The config every API benchmark runs with (this process and the servers it starts):
    a fast KDF and no token rate limit, so neither is what is measured."""
    (folder / "govsoc.toml").write_text(
        f'store_url = "{store_url}"\ndata_dir = "{folder}/data"\n'
        f'es_namespace = "{namespace}"\n[crypto]\nkdf_iterations = 1000\n'
        f'[api]\ntoken_rate = 1000000\n', encoding="utf-8")
    # a random master key kept beside the data it seals (0600), so a cached data set
    # (bench/api_alerts.py) opens again on the next run
    key = folder / "master.key"
    if not key.exists():
        key.touch(mode=0o600)
        key.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    os.environ.pop("GOVSOC_MASTER_KEY", None)
    os.environ.update(GOVSOC_CONFIG=str(folder / "govsoc.toml"), GOVSOC_MASTER_KEY_FILE=str(key))


def setup(folder: Path, store_url: str) -> dict:
    """Config, a key, tokens and one event to read; returns what the load needs."""
    write_config(folder, store_url, "benchapi")
    from crypto_svc import CryptoService
    from soc_api.identity import Identity
    from soc_core import ecs
    from soc_core.audit import AuditTrail
    from soc_core.config import load_config
    from soc_core.store import open_store

    cfg = load_config()
    store = open_store(cfg.store_url)
    trail = AuditTrail.from_config(cfg, name="benchsetup", store=store)
    svc = CryptoService.from_config(cfg, store, trail=trail)
    key = svc.create_key("sign").id
    svc.close()
    trail.close()
    ident = Identity.from_config(cfg, store)
    _, reader = ident.create_token("bench-reader", roles_=["analyst"], departments=["*"],
                                   created_by="bench")
    _, signer = ident.create_token("bench-signer", roles_=["service"], keys=[key],
                                   created_by="bench")
    doc = {"@timestamp": ecs.format_time(ecs.parse_time("2026-11-30T00:00:00Z")),
           "event": {"dataset": "network.flow", "id": "bench-event-1"},
           "source": {"ip": "10.0.0.1"}, "message": "bench"}
    store.write([doc], refresh=True)
    store.close()
    return {"key": key, "reader": reader, "signer": signer}


def start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    if not wait_port(port) or not _healthy(port, proc):
        stop(proc)
        sys.exit(f"server on port {port} did not start: {proc.stderr.read1()[-2000:]!r}")
    time.sleep(1.0)  # the other worker up too (each takes seconds to import on a busy machine)
    return proc


def _healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """True once /healthz answers at all (a worker has imported the app and serves; the
    reference app has no such route and answers 404)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the self-signed one
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
            conn.request("GET", "/healthz")
            conn.getresponse()
            return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def _tree(pid: int) -> list[int]:
    out = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += _tree(int(child))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server: its process and all its children (the
    workers). The machine is shared, so CPU time a request is the steadier figure."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def node_pid(es_url: str) -> int | None:
    """The local Elasticsearch node's process id (its CPU is read from /proc), or None."""
    try:
        with urllib.request.urlopen(f"{es_url}/_nodes/_local/process?filter_path="
                                    f"nodes.*.process.id", timeout=10) as resp:
            pid = next(iter(json.load(resp)["nodes"].values()))["process"]["id"]
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    return pid if Path(f"/proc/{pid}/stat").exists() else None


def run_wrk(url: str, seconds: int, *, token: str, body: dict | None = None,
            probe: Callable[[], Any] | None = None) -> tuple[str, int, Any, Any]:
    """wrk's output, the requests it completed (2 threads, 16 connections, the token as a
    bearer) and what `probe` (CPU counters) read right before and right after it; exits
    on a failed run or any non-2xx answer."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        if body is not None:
            script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = '
                         '"application/json"\n')
            script.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
        script.flush()
        before = probe() if probe else None
        out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s",
                              script.name, url], capture_output=True, text=True)
        after = probe() if probe else None
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if not rate or errors:
        sys.exit(f"wrk failed or got errors on {url}:\n{out.stdout}{out.stderr}")
    done = re.search(r"(\d+) requests in", out.stdout)
    return out.stdout, int(done.group(1)) if done else 0, before, after


def wrk(url: str, seconds: int, *, token: str, body: dict | None = None,
        server: subprocess.Popen | None = None, node: int | None = None
        ) -> tuple[float, float, float, float]:
    """(requests/s, p99 ms, server CPU µs a request or nan, the Elasticsearch node's CPU µs
    a request or nan) of one wrk run."""
    def cpu() -> tuple[float, float]:
        return (cpu_seconds(server.pid) if server else 0.0, cpu_seconds(node) if node else 0.0)

    out, done, (cpu0, node0), (cpu1, node1) = run_wrk(url, seconds, token=token, body=body,
                                                      probe=cpu)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else float("nan")
    if server is not None and not done:  # (not the warm-up)
        sys.exit(f"wrk completed no request on {url}:\n{out}")
    per = (cpu1 - cpu0) / done * 1e6 if server and done else float("nan")
    per_node = (node1 - node0) / done * 1e6 if node and done else float("nan")
    return (float(rate.group(1)), float(p99.group(1)) * scale if p99 else float("nan"), per,
            per_node)


def drain_lag(folder: Path, timeout: float = 120.0) -> tuple[int, float]:
    """(bytes of audit records the API's spools hold and the store does not yet, seconds
    until there are none): the drain kept up with the load, or how far it fell behind."""
    from soc_core.spool import backlog_bytes

    def waiting() -> int:
        return sum(backlog_bytes(d) for d in (folder / "data" / "audit").glob("api-*")
                   if d.is_dir())

    first, start = waiting(), time.monotonic()
    while waiting() and time.monotonic() - start < timeout:
        time.sleep(0.05)
    return first, time.monotonic() - start


def warm_node(es_url: str, limit: float, urls: dict[str, tuple[str, str, dict | None]]
              ) -> None:
    """Load the node through the API in 5 s slices (each kind of request in `urls`: url,
    token, body) until its JIT compiler used < 10 % of a core in a slice, or `limit` s."""
    start, before = time.monotonic(), compiler_seconds(es_url)
    if before is None:
        print("  (the node's JIT compiler cannot be read: no warm-up)")
        return
    first, share = before, 1.0
    while time.monotonic() - start < limit and share >= 0.10:
        for url, token, body in urls.values():
            t0, c0 = time.monotonic(), compiler_seconds(es_url) or 0.0
            wrk(url, 5, token=token, body=body)
            share = ((compiler_seconds(es_url) or 0.0) - c0) / (time.monotonic() - t0)
    print(f"  node warm-up: {time.monotonic() - start:.0f} s of load, the JIT compiler "
          f"{(compiler_seconds(es_url) or 0.0) - first:.1f} s of CPU in it, "
          f"{share:.0%} of a core in the last slice")


def run_store(label: str, store_url: str, seconds: int, rounds: int,
              reference: str = "app", es_warmup: float = 0.0) -> None:
    folder = Path(tempfile.mkdtemp(prefix="govsoc-bench-api-"))
    try:
        env = setup(folder, store_url)
        full_port, bare_port = free_port(), free_port()
        full = start([str(VENV_BIN / "govsoc"), "api", "serve", "--port", str(full_port),
                      "--workers", "2"], full_port)
        cert = folder / "data" / "api"
        factory = "api_bare:bare" if reference == "app" else "api_bare:bare_router"
        # served the way `govsoc api serve` serves (soc_api/serve.py: the same uvicorn
        # options, a SO_REUSEPORT socket for each worker)
        bare = start([sys.executable, str(BENCH / "api_bare.py"), "--factory",
                      factory.split(":")[1], "--workers", "2", "--port", str(bare_port),
                      "--cert", str(cert / "tls-cert.pem"), "--key", str(cert / "tls-key.pem")],
                     bare_port)
        try:
            path = "/events/bench-event-1"
            wrk(f"https://127.0.0.1:{full_port}{path}", 2, token=env["reader"])  # warm-up
            wrk(f"https://127.0.0.1:{bare_port}{path}", 2, token=env["reader"])
            sign = f"https://127.0.0.1:{full_port}/crypto/sign"
            msg = base64.b64encode(b"invoice 2026-0001 total 1280.00 CNY").decode()
            es_url = store_url if store_url.startswith("http") else None
            if es_url and es_warmup > 0:
                warm_node(es_url, es_warmup, {
                    "get": (f"https://127.0.0.1:{full_port}{path}", env["reader"], None),
                    "sign": (sign, env["signer"], {"key_id": env["key"], "data": msg})})
            jit0 = compiler_seconds(es_url) if es_url and es_warmup > 0 else None
            node = node_pid(es_url) if es_url else None
            full_rates, bare_rates, full_cpu, bare_cpu = [], [], [], []
            full_node, bare_node = [], []
            backlog: list[tuple[int, float]] = []
            load0 = os.getloadavg()[0]
            for i in range(rounds):
                pair = [("full", full_port, full), ("bare", bare_port, bare)]
                for name, port, proc in (pair if i % 2 == 0 else pair[::-1]):
                    rate, _, per, per_node = wrk(f"https://127.0.0.1:{port}{path}", seconds,
                                                 token=env["reader"], server=proc, node=node)
                    (full_rates if name == "full" else bare_rates).append(rate)
                    (full_cpu if name == "full" else bare_cpu).append(per)
                    (full_node if name == "full" else bare_node).append(per_node)
                    if name == "full":
                        backlog.append(drain_lag(folder))
            f, b = statistics.median(full_rates), statistics.median(bare_rates)
            fc, bc = statistics.median(full_cpu), statistics.median(bare_cpu)
            overhead = 1 - f / b
            print(f"[{label}] GET {path}, 2 workers, median of {rounds} rounds "
                  f"(load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} now)")
            print(f"  authenticated + audited: {f:8.0f} req/s   (rounds: "
                  f"{', '.join(f'{r:.0f}' for r in full_rates)})  target >= 1000: "
                  f"{'met' if f >= 1000 else 'MISSED'}")
            print(f"  same {'app' if reference == 'app' else 'handler'}, no gate/audit: "
                  f"{b:8.0f} req/s   (rounds: "
                  f"{', '.join(f'{r:.0f}' for r in bare_rates)})")
            print(f"  auth + audit overhead: {overhead:6.1%}   ratio {f / b:.3f}  "
                  f"target <= 15%: {'met' if overhead <= 0.15 else 'MISSED'}")
            print(f"  server CPU a request (both workers, all threads; not a target): "
                  f"authenticated + audited {fc:.0f} us, bare {bc:.0f} us, "
                  f"ratio {fc / bc:.2f}")
            worst = max(backlog)
            print(f"  audit drain (not a target): at the end of a round at most {worst[0]:,} "
                  f"bytes of records not in the store yet, all stored "
                  f"{max(b[1] for b in backlog):.1f} s later at most")
            if node:
                fn, bn = statistics.median(full_node), statistics.median(bare_node)
                print(f"  the Elasticsearch node's CPU a request (not a target): authenticated "
                      f"+ audited {fn:.0f} us, bare {bn:.0f} us; server + node "
                      f"{fc + fn:.0f} against {bc + bn:.0f} us, ratio {(fc + fn) / (bc + bn):.2f}")
            rate, p99, per, per_node = wrk(sign, seconds, token=env["signer"],
                                           body={"key_id": env["key"], "data": msg},
                                           server=full, node=node)
            print(f"  sign single: {rate:8.0f} signatures/s  p99 {p99:.1f} ms  targets >= 1500/s: "
                  f"{'met' if rate >= 1500 else 'MISSED'}, p99 <= 20 ms: "
                  f"{'met' if p99 <= 20 else 'MISSED'}  (server CPU {per:.0f} us a signature"
                  + (f", node {per_node:.0f} us" if node else "") + ")")
            batch = 100
            rate, p99, per, _ = wrk(sign, seconds, token=env["signer"],
                                    body={"key_id": env["key"], "items": [msg] * batch},
                                    server=full)
            print(f"  sign batched ({batch} a request): {rate * batch:8.0f} signatures/s "
                  f"(p99 {p99:.1f} ms a request)  target >= 5000/s: "
                  f"{'met' if rate * batch >= 5000 else 'MISSED'}")
            if jit0 is not None:
                print(f"  the node's JIT compiler during the measured runs: "
                      f"{(compiler_seconds(es_url) or jit0) - jit0:.1f} s of CPU")
        finally:
            stop(full)
            stop(bare)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "es", "both"], default="both")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference", choices=["app", "router"], default="app",
                    help="app: the real app without gate and audit; router: the data "
                         "router alone (the reference before session 6)")
    ap.add_argument("--es-port", type=int, default=9271)
    ap.add_argument("--alerts", choices=["yes", "no", "only"], default="yes")
    ap.add_argument("--es-url", default=None, help="alert section: use this node")
    ap.add_argument("--rebuild", action="store_true", help="alert section: rewrite the data")
    ap.add_argument("--alert-events", type=int, default=1_000_000,
                    help="alert section: events in the data set (a short run: fewer)")
    ap.add_argument("--alert-count", type=int, default=10_000,
                    help="alert section: alerts in the data set")
    ap.add_argument("--samples", type=int, default=200,
                    help="alert section: requests of each kind")
    ap.add_argument("--es-warmup", type=float, default=180,
                    help="Elasticsearch: at most this many seconds of load before the "
                         "measured rounds, until the fresh node's JIT compiler is quiet "
                         "(0: none)")
    ap.add_argument("--alert-refresh", choices=["write", "search"], default="search",
                    help="alert section: es_alert_refresh (when an alert change becomes "
                         "searchable on Elasticsearch)")
    args = ap.parse_args()
    sizes = dict(events=args.alert_events, alerts=args.alert_count, samples=args.samples,
                 alert_refresh=args.alert_refresh)
    if args.alerts == "only":
        import api_alerts

        api_alerts.run(args.store, es_url=args.es_url, rebuild=args.rebuild, **sizes)
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (Debian package wrk; `make bench` installs it)")
    print(f"machine: {os.cpu_count()} CPUs shared by the servers and wrk")
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            run_store("sqlite", f"sqlite:///{d}/govsoc.db", args.seconds, args.rounds,
                      args.reference)
    if args.store in ("es", "both"):
        from eslocal import throwaway_node

        with throwaway_node(args.es_port) as url:
            run_store("elasticsearch", url, args.seconds, args.rounds, args.reference,
                      es_warmup=args.es_warmup)
    if args.alerts == "yes":
        import api_alerts

        api_alerts.run(args.store, es_url=args.es_url, rebuild=args.rebuild, **sizes)


if __name__ == "__main__":
    main()
