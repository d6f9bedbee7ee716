"""A private 3-node Elasticsearch cluster on loopback (scripts/es-local cluster), started
at most once per pytest worker by the session fixture `es_cluster` in tests/conftest.py;
every test that uses it is put on one worker, so a run starts one cluster."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODES = 3


@dataclass
class Cluster:
    urls: str  # comma-separated node URLs
    home: Path  # node-<port>/es.pid etc.
    env: dict  # the environment of `es-local cluster` for this cluster

    def es_local(self, *args: str) -> str:
        return es_local(self.env, *args)


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_base(preferred: int = 9341) -> int:
    """A base port whose NODES HTTP ports and transport ports (+100) are all free."""
    for base in range(preferred, preferred + 60, NODES):
        ports = [base + i for i in range(NODES)] + [base + 100 + i for i in range(NODES)]
        if all(_is_free(p) for p in ports):
            return base
    raise AssertionError("no free ports for a private Elasticsearch cluster")


def es_local(env: dict, *args: str) -> str:
    out = subprocess.run([ROOT / "scripts" / "es-local", "cluster", *args], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"es-local cluster {' '.join(args)} failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def running_cluster(base: int) -> Cluster:
    """A 3-node cluster already started with `scripts/es-local cluster 3` on `base`
    (its default home); the tests use it and leave it running."""
    home = Path(f"/var/tmp/govsoc-es-cluster-{base}")
    env = {**os.environ, "ES_CLUSTER_PORT": str(base), "ES_CLUSTER_HOME": str(home)}
    return Cluster(es_local(env, "url"), home, env)


def start_cluster(heap: str = "512m") -> Cluster:
    base = free_base()
    home = Path(f"/var/tmp/govsoc-es-cluster-{base}")
    env = {**os.environ, "ES_CLUSTER_PORT": str(base), "ES_CLUSTER_HOME": str(home),
           "ES_HEAP": heap, "ES_FRESH": "1"}
    urls = es_local(env, str(NODES))
    assert urls.count(",") == NODES - 1, urls
    # later starts (a node restarted by a test) keep the data
    return Cluster(urls, home, {k: v for k, v in env.items() if k != "ES_FRESH"})
