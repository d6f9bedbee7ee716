"""Fixtures for the playbook tests: one namespace fleet of 3 hosts for the whole session,
a store, a driver, and a local apt repository served to the fleet over HTTP."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest

from playbooks.driver import Driver
from playbooks.fleet import Fleet
from soc_core.store import open_store


@pytest.fixture(scope="session")
def fleet():
    given = os.environ.get("GOVSOC_TEST_FLEET_INDEX")
    f = Fleet(int(given)) if given else Fleet.claim()
    try:
        f.up(3)
        yield f
    finally:
        f.down()  # also after a failed test or a half-done up()


@pytest.fixture(scope="session")
def hosts(fleet) -> list[str]:
    return [h.name for h in fleet.state().hosts]


@pytest.fixture(scope="session")
def pb_store(tmp_path_factory):
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('pbstore')}/govsoc.db")
    yield store
    store.close()


@pytest.fixture(scope="session")
def driver(pb_store, tmp_path_factory) -> Driver:
    return Driver(pb_store, work_dir=tmp_path_factory.mktemp("pbwork"))


def build_deb(workdir: Path, version: str) -> Path:
    root = workdir / f"govsoc-demo-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/govsoc-demo").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: govsoc-demo\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: govsoc tests <tests@example.invalid>\nSection: misc\nPriority: optional\n"
        "Description: govsoc demo package\n a package the patch tests upgrade\n")
    (root / "usr/share/govsoc-demo/VERSION").write_text(version + "\n")
    deb = workdir / f"govsoc-demo_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture(scope="session")
def apt_repo(fleet, tmp_path_factory):
    """A flat apt repository whose Release names a *-security suite: govsoc-demo 1.0 is
    installed on every host from it, 1.1 is the security update it offers."""
    base = tmp_path_factory.mktemp("aptrepo")
    pool = base / "repo"
    pool.mkdir()
    debs = {v: build_deb(base, v) for v in ("1.0", "1.1")}
    (pool / debs["1.1"].name).write_bytes(debs["1.1"].read_bytes())
    packages = subprocess.run(["dpkg-scanpackages", "-m", "."], cwd=pool, check=True,
                              capture_output=True).stdout
    (pool / "Packages").write_bytes(packages)
    sha = hashlib.sha256(packages).hexdigest()
    (pool / "Release").write_text(
        "Origin: govsoc\nLabel: govsoc-security\nSuite: bookworm-security\n"
        "Codename: bookworm-security\nArchitectures: all amd64\n"
        f"SHA256:\n {sha} {len(packages)} Packages\n")
    (pool / debs["1.0"].name).write_bytes(debs["1.0"].read_bytes())  # not in the index
    handler = functools.partial(_QuietHandler, directory=str(pool))
    server = http.server.ThreadingHTTPServer((fleet.state().controller, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{fleet.state().controller}:{server.server_address[1]}"
    for h in fleet.state().hosts:
        fleet.ssh(h.name, f"curl -fsS -o /tmp/demo.deb {url}/{debs['1.0'].name} "
                          "&& dpkg -i /tmp/demo.deb >/dev/null")
    yield {"source": f"deb [trusted=yes] {url}/ ./", "url": url}
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass
