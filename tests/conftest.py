"""Shared fixtures: a real Elasticsearch node (started once per session unless
GOVSOC_TEST_ES_URL names one) and a fresh store on either backend."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ES_TEST_PORT = "9250"


def pytest_report_header() -> str:
    import soc_core

    return f"govsoc imported from {Path(soc_core.__file__).resolve().parent.parent}"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The design and test data folder beside the project (rule packs, vectors)."""
    assert SHARED.is_dir(), f"shared test data not found beside the project: {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def es_url() -> str:
    """URL of a running Elasticsearch 8 node. Starting it is part of the test: if it
    cannot start, the tests that need it fail (they are never skipped)."""
    given = os.environ.get("GOVSOC_TEST_ES_URL")
    if given:
        yield given
        return
    # a node this session starts begins empty: test data streams cannot be deleted on
    # this distribution, so they would pile up from run to run
    env = {**os.environ, "ES_PORT": ES_TEST_PORT, "ES_FRESH": "1"}
    status = subprocess.run([ROOT / "scripts" / "es-local", "status"], env=env,
                            capture_output=True, text=True)
    started_here = status.returncode != 0
    out = subprocess.run([ROOT / "scripts" / "es-local", "start"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, f"Elasticsearch did not start:\n{out.stderr[-3000:]}"
    yield out.stdout.strip().splitlines()[-1]
    if started_here and not os.environ.get("GOVSOC_TEST_ES_KEEP"):
        subprocess.run([ROOT / "scripts" / "es-local", "stop"], env=env, capture_output=True)


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
