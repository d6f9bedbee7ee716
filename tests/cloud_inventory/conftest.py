"""One store per test module and backend: creating Elasticsearch data streams (events,
alerts, assets, metrics) costs seconds each, so the tests of a module share them."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="module", params=["sqlite", pytest.param("es", marks=pytest.mark.es)])
def inv_store(request, tmp_path_factory):
    from soc_core.store import open_store

    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path_factory.mktemp('inv')}/govsoc.db")
    else:
        store = open_store(request.getfixturevalue("es_url"),
                           namespace="inv" + uuid.uuid4().hex[:10])
    yield store
    if request.param == "es":
        store.drop_all()
    store.close()
