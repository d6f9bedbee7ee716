"""Where the API's authentication + audit overhead goes, served: the real app (its audit
drain in the supervisor; `full_inline`: a drain thread in each worker), the bare
reference, and the real app with one part swapped (`bench/api_bare.py`: `gate_only`,
`audit_only`, `spool_only`, `null_drain`; the floors `write_floor` and `hash_floor`: one
plain append a request, and a hashed record appended without the chain), each served as
`bench/api.py` serves them (2 uvicorn workers, HTTPS) and loaded by wrk in turn (2
threads, 16 connections), SQLite. Printed for each: requests/s and the workers' CPU a
request, split into the event loop's thread and all others (the request handlers' pool,
the audit drain, SQLite's checkpointer), user and system time, from `/proc/<pid>/task`.
Not a target: it names the parts. `full` goes first in `--variants`: it makes the TLS
certificate the others are served with.

    python bench/api_attrib.py [--seconds 6] [--rounds 2] [--variants full,bare,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import api  # noqa: E402
from ports import free_port  # noqa: E402

VARIANTS = ("full", "full_inline", "bare", "gate_only", "audit_only", "spool_only",
            "null_drain", "write_floor", "hash_floor")
HZ = os.sysconf("SC_CLK_TCK")


def thread_cpu(pids: list[int]) -> Counter:
    """CPU seconds of the processes' threads: the event loop's (the process's main thread)
    and the others, user and system apart."""
    out: Counter = Counter()
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = "loop" if task.name == str(pid) else "others"
            out[f"{kind} user"] += int(fields[11]) / HZ
            out[f"{kind} system"] += int(fields[12]) / HZ
    return out


def load(url: str, seconds: int, token: str, pids: list[int]) -> tuple[float, Counter]:
    """Requests/s and each thread kind's CPU µs a request, wrk as `bench/api.py` runs it."""
    _, n, before, after = api.run_wrk(url, seconds, token=token,
                                      probe=lambda: thread_cpu(pids))
    if not n:
        sys.exit(f"wrk completed no request on {url}")
    return n / seconds, Counter({k: (after[k] - before[k]) * 1e6 / n for k in after})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown variants: {', '.join(sorted(unknown))} (of {', '.join(VARIANTS)})")
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (Debian package wrk)")
    folder = Path(tempfile.mkdtemp(prefix="govsoc-bench-attrib-"))
    servers: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        env = api.setup(folder, f"sqlite:///{folder}/govsoc.db")
        cert = folder / "data" / "api"
        for name in names:
            port = free_port()
            # full: the audit drain in the supervisor (the default); full_inline: a drain
            # thread in each worker (audit.drain = "inline")
            os.environ.pop("GOVSOC_AUDIT_DRAIN", None)
            if name == "full_inline":
                os.environ["GOVSOC_AUDIT_DRAIN"] = "inline"
            cmd = ([str(api.VENV_BIN / "govsoc"), "api", "serve", "--port", str(port),
                    "--workers", "2"] if name.startswith("full") else
                   [sys.executable, str(BENCH / "api_bare.py"), "--factory", name,
                    "--workers", "2", "--port", str(port), "--cert",
                    str(cert / "tls-cert.pem"), "--key", str(cert / "tls-key.pem")])
            servers[name] = (port, api.start(cmd, port))
        os.environ.pop("GOVSOC_AUDIT_DRAIN", None)
        rates: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[Counter]] = {n: [] for n in names}
        path = "/events/bench-event-1"
        for rnd in range(args.rounds):
            for name in (names if rnd % 2 == 0 else names[::-1]):
                port, proc = servers[name]
                url = f"https://127.0.0.1:{port}{path}"
                load(url, 1, env["reader"], api._tree(proc.pid))  # warm-up
                rate, per = load(url, args.seconds, env["reader"], api._tree(proc.pid))
                rates[name].append(rate)
                cpu[name].append(per)
        print(f"GET {path}, SQLite, 2 workers, {args.rounds} rounds of {args.seconds} s "
              "(medians; CPU in us a request)")
        keys = ("loop user", "loop system", "others user", "others system")
        print(f"  {'variant':<11} {'req/s':>7} {'vs bare':>8} " + " ".join(f"{k:>13}" for k in keys)
              + f" {'total':>7}")
        bare = statistics.median(rates["bare"]) if "bare" in rates else None
        for name in names:
            rate = statistics.median(rates[name])
            parts = [statistics.median(c[k] for c in cpu[name]) for k in keys]
            vs = f"{rate / bare - 1:+.1%}" if bare else "-"
            print(f"  {name:<11} {rate:7.0f} {vs:>8} " + " ".join(f"{p:13.0f}" for p in parts)
                  + f" {sum(parts):7.0f}")
    finally:
        for _, proc in servers.values():
            api.stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
