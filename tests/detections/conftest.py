"""Detection state (checkpoints, health, exceptions) of Elasticsearch-backed tests goes to
the data directory: keep it in the test's own temporary folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _detection_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path / "state"))
