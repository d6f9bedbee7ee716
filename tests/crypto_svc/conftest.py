"""Fixtures for the crypto service: the shared vectors, a keystore and a service on a real
SQLite event store, and an environment (master secret, data dir, store URL) for the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crypto_helpers import FAST_KDF, MASTER

from crypto_svc.keystore import Keystore
from crypto_svc.service import CryptoService


@pytest.fixture(scope="session")
def vectors(shared_dir: Path) -> dict[str, dict]:
    folder = shared_dir / "vectors"
    return {name: json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
            for name in ("sm2", "sm3", "sm4")}


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keystore.json", MASTER, iterations=FAST_KDF)


@pytest.fixture
def service(keystore: Keystore, sqlite_store) -> CryptoService:
    svc = CryptoService(keystore, sqlite_store)
    yield svc
    svc.close()


@pytest.fixture
def crypto_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GOVSOC_* variables for a CLI run in `tmp_path`; returns the data dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVSOC_CONFIG", raising=False)
    monkeypatch.delenv("GOVSOC_MASTER_KEY_FILE", raising=False)
    monkeypatch.setenv("GOVSOC_STORE_URL", f"sqlite:///{tmp_path}/govsoc.db")
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GOVSOC_MASTER_KEY", MASTER.decode())
    monkeypatch.setenv("GOVSOC_CRYPTO_KDF_ITERATIONS", str(FAST_KDF))
    return tmp_path
