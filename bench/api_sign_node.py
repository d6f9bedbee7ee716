"""Single signatures through the API on a throw-away Elasticsearch node, and what the node
does meanwhile: two or more servers (variants) on one node, measured in alternating rounds
of wrk (like `bench/api.py`'s sign run), each round with the node's CPU a signature, its CPU
in 100 ms windows (mean, p95, standard deviation: how bursty the audit indexing is) and the
audit index's indexing, refresh, flush and merge counts from `_stats`.

    python bench/api_sign_node.py [--rounds 4] [--seconds 8] [--path sign|get]
                                  NAME[=PYTHONPATH] | NAME=ns:NAMESPACE[:SETTINGS_JSON] ...

`main=/tmp/main-src new`: the same node and load against the code at /tmp/main-src
(e.g. `git archive main | tar -x -C /tmp/main-src`) and this tree. `idle=ns:nsidle
ref=ns:nsref:{"index":{"refresh_interval":"1s"}}`: this tree on two namespaces, the second
audit index with those settings. Direction only on a shared machine (wall-clock p99).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import api  # noqa: E402
from eslocal import throwaway_node  # noqa: E402
from ports import free_port  # noqa: E402


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def audit_stats(url: str, namespace: str) -> dict[str, int]:
    p = _get(f"{url}/govsoc-audit-{namespace}/_stats/indexing,refresh,flush,merge")
    p = p["_all"]["primaries"]
    return {"docs": p["indexing"]["index_total"], "refresh": p["refresh"]["total"],
            "flush": p["flush"]["total"], "merges": p["merges"]["total"]}


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _sample(pid: int, stop: threading.Event, out: list[float]) -> None:
    """The node's CPU (cores) in each 100 ms window."""
    hz = os.sysconf("SC_CLK_TCK")
    last, t = _ticks(pid), time.monotonic()
    while not stop.wait(0.1):
        now, cur = time.monotonic(), _ticks(pid)
        out.append((cur - last) / hz / (now - t))
        last, t = cur, now


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--path", choices=["sign", "get"], default="sign")
    ap.add_argument("--warmup", type=int, default=30, help="seconds of load per server first")
    ap.add_argument("variants", nargs="+")
    args = ap.parse_args()
    msg = base64.b64encode(b"invoice 2026-0001 total 1280.00 CNY").decode()
    with throwaway_node(free_port()) as url:
        folder = Path(tempfile.mkdtemp(prefix="govsoc-bench-signnode-"))
        servers: dict[str, tuple] = {}
        try:
            node = api.node_pid(url)
            for spec in args.variants:
                name, _, how = spec.partition("=")
                namespace = "benchapi"
                settings = ""
                if how.startswith("ns:"):
                    namespace, _, settings = how[3:].partition(":")
                real = api.write_config
                api.write_config = lambda f, u, _n, ns=namespace, w=real: w(f, u, ns)
                try:
                    env = api.setup(folder, url)  # (sets the master key's variable)
                finally:
                    api.write_config = real
                env_vars = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                if how and not how.startswith("ns:"):
                    env_vars["PYTHONPATH"] = how
                cfg = folder / f"{name}.toml"
                cfg.write_text((folder / "govsoc.toml").read_text())
                env_vars.update(GOVSOC_CONFIG=str(cfg), PYTHONDONTWRITEBYTECODE="1")
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(env_vars)
                try:
                    port = free_port()
                    proc = api.start([str(api.VENV_BIN / "govsoc"), "api", "serve", "--port",
                                      str(port), "--workers", "2"], port)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                if args.path == "sign":
                    target = (f"https://127.0.0.1:{port}/crypto/sign", env["signer"],
                              {"key_id": env["key"], "data": msg})
                else:
                    target = (f"https://127.0.0.1:{port}/events/bench-event-1", env["reader"],
                              None)
                servers[name] = (proc, target, namespace)
                api.wrk(target[0], 2, token=target[1], body=target[2])  # the index exists
                if settings:
                    req = urllib.request.Request(
                        f"{url}/govsoc-audit-{namespace}/_settings", data=settings.encode(),
                        method="PUT", headers={"Content-Type": "application/json"})
                    urllib.request.urlopen(req, timeout=30).read()
            for _proc, (u, token, body), _ in servers.values():
                api.wrk(u, args.warmup, token=token, body=body)
            got: dict[str, list[tuple]] = {n: [] for n in servers}
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(servers)[::-1]
                for name in order:
                    proc, (u, token, body), namespace = servers[name]
                    s0 = audit_stats(url, namespace)
                    stop, windows = threading.Event(), []
                    sampler = threading.Thread(target=_sample, args=(node, stop, windows))
                    sampler.start()
                    rate, p99, per, per_node = api.wrk(u, args.seconds, token=token, body=body,
                                                       server=proc, node=node)
                    stop.set()
                    sampler.join()
                    s1 = audit_stats(url, namespace)
                    d = {k: s1[k] - s0[k] for k in s1}
                    p95 = statistics.quantiles(windows, n=20)[-1]
                    sd = statistics.pstdev(windows)
                    got[name].append((rate, p99, per, per_node, p95, sd))
                    print(f"{name:8s} round {r}: {rate:6.0f}/s p99 {p99:6.1f} ms, server "
                          f"{per:4.0f} us, node {per_node:4.0f} us a request; node cores "
                          f"a 100 ms window: mean {statistics.mean(windows):.2f} p95 "
                          f"{p95:.2f} sd {sd:.2f}; audit index {d}; load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
            for name, rows in got.items():
                def med(i: int, rows: list[tuple] = rows) -> float:
                    return statistics.median(x[i] for x in rows)
                print(f"{name:8s} median: {med(0):.0f}/s p99 {med(1):.1f} ms, server "
                      f"{med(2):.0f} us, node {med(3):.0f} us; node window p95 {med(4):.2f} "
                      f"sd {med(5):.2f}")
        finally:
            for proc, _, _ in servers.values():
                api.stop(proc)
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
