"""A throw-away Elasticsearch node for one benchmark run, so the benchmark's documents never
pile up in the node the tests or a developer use."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ES_LOCAL = str(Path(__file__).resolve().parent.parent / "scripts" / "es-local")


@contextlib.contextmanager
def throwaway_node(port: int) -> Iterator[str]:
    """Start a node on 127.0.0.1:`port` with its own empty home; yield its URL; stop it."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ES_PORT": str(port), "ES_HOME": home}
        out = subprocess.run([ES_LOCAL, "start"], capture_output=True, text=True, env=env)
        if out.returncode:
            sys.exit(f"Elasticsearch did not start: {out.stderr[-2000:]}")
        try:
            yield out.stdout.strip().splitlines()[-1]
        finally:
            subprocess.run([ES_LOCAL, "stop"], capture_output=True, env=env)


def compiler_seconds(url: str) -> float | None:
    """CPU seconds the node's JIT compiler threads (HotSpot's C1 and C2) have used so far,
    from /proc (the node is local); None when that cannot be read. A fresh node compiles
    for minutes under load, several seconds of CPU a minute on the cores a benchmark
    shares with it: a figure taken then measures the JIT, not the node's steady work."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/_nodes/_local/process?filter_path=nodes.*.process.id",
                                    timeout=10) as resp:
            pid = next(iter(json.load(resp)["nodes"].values()))["process"]["id"]
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            if (task / "comm").read_text().startswith(("C1 Compiler", "C2 Compiler")):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    return total / os.sysconf("SC_CLK_TCK")
