"""Shared fixtures: a real Elasticsearch node (started once per test run, also when
pytest-xdist spreads the run over workers, unless GOVSOC_TEST_ES_URL names one) and a
fresh store on either backend."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# GOVSOC_TEST_ES_PORT: for two runs on one machine (each starts and stops its own node)
ES_TEST_PORT = os.environ.get("GOVSOC_TEST_ES_PORT", "9250")
# Files of this run's node, shared by the xdist workers: `lock` serializes the start,
# `url` says it is up, `started` that this run started it (so this run stops it).
ES_RUN_DIR_KEY = "govsoc_es_run_dir"


def pytest_report_header() -> str:
    import soc_core

    return f"govsoc imported from {Path(soc_core.__file__).resolve().parent.parent}"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The design and test data folder beside the project (rule packs, vectors)."""
    assert SHARED.is_dir(), f"shared test data not found beside the project: {SHARED}"
    return SHARED


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run on one xdist worker with "
                                       "the rest of its group (--dist loadgroup)")
    # the controller (or a run without xdist) owns the node's run dir; workers get its path
    if hasattr(config, "workerinput"):
        return
    config.stash[_ES_RUN_DIR] = Path(tempfile.mkdtemp(prefix="govsoc-test-es-"))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput[ES_RUN_DIR_KEY] = str(node.config.stash[_ES_RUN_DIR])


def pytest_unconfigure(config: pytest.Config) -> None:
    """After every worker is done: stop the node if this run started it."""
    run_dir = config.stash.get(_ES_RUN_DIR, None)
    if run_dir is None:
        return
    if (run_dir / "started").exists() and not os.environ.get("GOVSOC_TEST_ES_KEEP"):
        subprocess.run([ROOT / "scripts" / "es-local", "stop"], env=_es_env(),
                       capture_output=True)
    shutil.rmtree(run_dir, ignore_errors=True)


_ES_RUN_DIR = pytest.StashKey[Path]()


def _es_env() -> dict:
    # a node this run starts begins empty: test data streams cannot be deleted on this
    # distribution, so they would pile up from run to run
    return {**os.environ, "ES_PORT": ES_TEST_PORT, "ES_FRESH": "1"}


@pytest.fixture(scope="session")
def es_url(pytestconfig) -> str:
    """URL of a running Elasticsearch 8 node. Starting it is part of the test: if it
    cannot start, the tests that need it fail (they are never skipped). The first worker
    that needs it starts it; the others wait on the lock and reuse it."""
    given = os.environ.get("GOVSOC_TEST_ES_URL")
    if given:
        return given
    workerinput = getattr(pytestconfig, "workerinput", None)
    run_dir = Path(workerinput[ES_RUN_DIR_KEY]) if workerinput else pytestconfig.stash[_ES_RUN_DIR]
    with open(run_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url_file = run_dir / "url"
        if url_file.exists():
            return url_file.read_text()
        env = _es_env()
        status = subprocess.run([ROOT / "scripts" / "es-local", "status"], env=env,
                                capture_output=True, text=True)
        if status.returncode != 0:
            (run_dir / "started").touch()  # before start: a half-started node is stopped too
        out = subprocess.run([ROOT / "scripts" / "es-local", "start"], env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, f"Elasticsearch did not start:\n{out.stderr[-3000:]}"
        url = out.stdout.strip().splitlines()[-1]
        url_file.write_text(url)
        return url


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """xdist work units (--dist loadgroup): a module's tests stay on one worker, so its
    module-scoped fixtures (replayed captures, apps, stores) are built once, as in a serial
    run; and every test using the namespace fleet goes to one worker, so one fleet is
    brought up per run (a fleet per worker costs more than spreading its tests gains); the
    same for the tests on the private 3-node Elasticsearch cluster (`es_cluster`)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        # a test may reach the cluster through request.getfixturevalue: its es_cluster mark
        # says so, since two workers starting clusters at once collide on ports and data
        cluster = "es_cluster" in names or item.get_closest_marker("es_cluster") is not None
        group = "fleet" if "fleet" in names else "es_cluster" if cluster \
            else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def es_cluster():
    """A private 3-node Elasticsearch cluster (es_cluster_helpers.Cluster), started once
    for all the modules that use it and stopped at the end; GOVSOC_TEST_ES_CLUSTER_PORT
    names the base port of one already running (`scripts/es-local cluster 3`), which
    is then used and left running."""
    from es_cluster_helpers import running_cluster, start_cluster

    given = os.environ.get("GOVSOC_TEST_ES_CLUSTER_PORT")
    if given:
        yield running_cluster(int(given))
        return
    cluster = start_cluster()
    yield cluster
    cluster.es_local("stop")


def unique_namespace() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def es_namespace() -> str:
    """A data-stream namespace no other test uses (for CLI runs against Elasticsearch)."""
    return unique_namespace()


@pytest.fixture
def sqlite_store(tmp_path):
    from soc_core.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/govsoc.db")
    yield store
    store.close()


@pytest.fixture
def es_store(es_url):
    """A store on Elasticsearch in a data-stream namespace unique to this test, so tests
    never see each other's documents; its indices are removed afterwards."""
    from soc_core.store import open_store

    store = open_store(es_url, namespace=unique_namespace())
    yield store
    store.drop_all()
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("es", marks=pytest.mark.es)])
def store(request):
    """The same test against both backends."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's browser is Debian's chromium (`make test` installs it): Playwright
    cannot download its own browser here."""
    return {**browser_type_launch_args,
            "executable_path": shutil.which("chromium") or "/usr/bin/chromium",
            "args": ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]}
