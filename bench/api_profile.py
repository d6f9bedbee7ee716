"""Server-side cost of one API request, in process: the real ASGI app (`create_app`, the
same Guard, gate, routers and audit trail as `govsoc api serve`) and the bench's reference
(`api_bare`) called directly in a loop on one event loop, without HTTP, TLS or a client.
It prints the CPU time a request (this process, all threads: the audit drain included) of
each variant, measured in alternating rounds, and with `--profile` the top functions.

    python bench/api_profile.py [--store sqlite|es] [--requests 3000] [--rounds 3]
                                [--profile full|bare|sign|gate] [--top 30]

Variants: `full` (authenticated, audited GET /events/{id}), `bare` (the same handler
without gate and audit), `sign` (POST /crypto/sign with a service token). Direction only:
the numbers leave out uvicorn and TLS, which both apps pay alike.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


def make_scope(method: str, path: str, token: str, body: bytes = b"") -> dict:
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]
    if method == "POST":
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": method, "scheme": "https", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8443)}


async def call(app, method: str, path: str, token: str, body: bytes = b"") -> int:  # noqa: ANN001
    scope = make_scope(method, path, token, body)
    sent = False
    status = 0

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


DRAIN_TIDS: list[int] = []  # the audit drain thread(s): their share is printed apart
DRAIN_CPU: list[float] = []


def thread_cpu(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def loop_of(app, n: int, method: str, path: str, token: str, body: bytes = b"",  # noqa: ANN001
                  concurrency: int = 8) -> float:
    """CPU µs a request over `n` requests, `concurrency` at a time (like wrk's
    connections on one worker)."""
    left = n

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await call(app, method, path, token, body)
            if status != 200:
                raise SystemExit(f"{method} {path}: {status}")

    cpu0 = time.process_time()
    d0 = sum(thread_cpu(t) for t in DRAIN_TIDS)
    await asyncio.gather(*(client() for _ in range(concurrency)))
    DRAIN_CPU.append((sum(thread_cpu(t) for t in DRAIN_TIDS) - d0) / n * 1e6)
    return (time.process_time() - cpu0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "es"], default="sqlite")
    ap.add_argument("--es-url", default=os.environ.get("GOVSOC_TEST_ES_URL"))
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default=None,
                    help="full|bare|sign (with --attrib also noaudit|nogate|same)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--callgrind", default=None, help="count instructions of one variant")
    ap.add_argument("--gc", choices=["on", "freeze", "off"], default="on")
    ap.add_argument("--attrib", action="store_true",
                    help="also: the full app without audit, without the gate, without both")
    args = ap.parse_args()
    import uvloop

    folder = Path(tempfile.mkdtemp(prefix="govsoc-bench-prof-"))
    try:
        if args.store == "sqlite":
            url = f"sqlite:///{folder}/govsoc.db"
        else:
            url = args.es_url
        import api
        import api_bare

        env = api.setup(folder, url)
        if args.store == "es":  # a namespace of its own on a shared node
            api.write_config(folder, url, "benchprof" + os.urandom(3).hex())
            env = api.setup(folder, url)
        from soc_api.app import build_context, close_context, create_app
        from soc_core.config import load_config

        ctx = build_context(load_config())
        DRAIN_TIDS.append(ctx.trail._thread.native_id)
        full = create_app(context=ctx)
        bare = api_bare.bare()
        get = "/events/bench-event-1"
        msg = base64.b64encode(b"invoice 2026-0001 total 1280.00 CNY").decode()
        sign_body = json.dumps({"key_id": env["key"], "data": msg}).encode()
        variants = {
            "full": (full, "GET", get, env["reader"], b""),
            "bare": (bare, "GET", get, env["reader"], b""),
            "sign": (full, "POST", "/crypto/sign", env["signer"], sign_body),
        }
        if args.attrib:
            import dataclasses

            import soc_api.app as app_mod

            real_gate = app_mod.gate

            quiet = dataclasses.replace(ctx, trail=api_bare.NoTrail())
            variants["router"] = (api_bare.bare_router(), "GET", get, env["reader"], b"")
            variants["noaudit"] = (create_app(context=quiet), "GET", get, env["reader"], b"")
            app_mod.gate = api_bare.no_gate
            variants["nogate"] = (create_app(context=ctx), "GET", get, env["reader"], b"")
            variants["same"] = (create_app(context=quiet), "GET", get, env["reader"], b"")
            app_mod.gate = real_gate

        async def run() -> None:
            for v in variants.values():  # warm-up
                await loop_of(v[0], 200, *v[1:])
            if args.gc == "freeze":
                import gc

                gc.collect()
                gc.freeze()
            elif args.gc == "off":
                import gc

                gc.disable()
            if args.callgrind:  # under valgrind --tool=callgrind --instr-atstart=no
                import subprocess

                v = variants[args.callgrind]
                ctl = ["callgrind_control", str(os.getpid())]
                subprocess.run([*ctl, "-i", "on"], check=True, capture_output=True)
                await loop_of(v[0], args.requests, *v[1:])
                subprocess.run([*ctl, "-i", "off"], check=True, capture_output=True)
                return
            if args.profile:
                import yappi  # profiling only (pip install yappi): every thread, CPU clock

                v = variants[args.profile]
                yappi.set_clock_type("cpu")
                yappi.start(builtins=True, profile_threads=True)
                per = await loop_of(v[0], args.requests, *v[1:])
                yappi.stop()
                n = args.requests
                print(f"{args.profile}: {per:.0f} us CPU a request (profiled)")
                stats = yappi.get_func_stats()
                for key, title in (("tsub", "own time"), ("ttot", "inclusive")):
                    print(f"-- top {args.top} by {title}, us a request (calls a request)")
                    stats.sort(key, "desc")
                    for f in list(stats)[:args.top]:
                        t = f.tsub if key == "tsub" else f.ttot
                        where = f"{Path(f.module).name}:{f.lineno}"
                        print(f"{t / n * 1e6:8.1f}  {f.ncall / n:6.2f}  {f.name[:60]:60s} {where}")
                for t in yappi.get_thread_stats():
                    print(f"thread {t.name}: {t.ttot / n * 1e6:.1f} us a request")
                return
            got: dict[str, list[float]] = {k: [] for k in variants}
            drain: dict[str, list[float]] = {k: [] for k in variants}
            load0 = os.getloadavg()[0]
            for i in range(args.rounds):
                order = list(variants) if i % 2 == 0 else list(variants)[::-1]
                for name in order:
                    got[name].append(await loop_of(variants[name][0], args.requests,
                                                   *variants[name][1:]))
                    drain[name].append(DRAIN_CPU[-1])
            print(f"[{args.store}] in-process CPU us a request, median of {args.rounds} "
                  f"rounds of {args.requests} (load {load0:.1f} -> {os.getloadavg()[0]:.1f})")
            for name, vals in got.items():
                print(f"  {name:7s} {statistics.median(vals):7.0f}   "
                      f"({', '.join(f'{v:.0f}' for v in vals)})   of which the audit drain "
                      f"thread {statistics.median(drain[name]):.0f}")
            f, b = statistics.median(got["full"]), statistics.median(got["bare"])
            print(f"  full/bare CPU ratio {f / b:.2f}")

        uvloop.run(run())
        close_context(ctx)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
