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
