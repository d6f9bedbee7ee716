"""The scriptable CLI contract: `govsoc store|ingest|search`, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

GOVSOC = str(Path(sys.executable).with_name("govsoc"))


def govsoc(*args: str, env: dict | None = None, stdin: bytes | None = None):
    return subprocess.run([GOVSOC, *args], capture_output=True, input=stdin, timeout=120,
                          env={**os.environ, "GOVSOC_ES_RETRIES": "0", **(env or {})})


def line(i: int, days_ago: float = 1, **extra) -> bytes:
    ts = datetime.now(UTC) - timedelta(days=days_ago, minutes=i)
    doc = {"@timestamp": ts.isoformat(), "event.dataset": "system.auth",
           "source.ip": f"10.0.0.{i}", "user": {"name": "root" if i % 2 else "张三"},
           "message": f"Failed password for root from 10.0.0.{i}", **extra}
    return orjson.dumps(doc)


@pytest.fixture(params=["sqlite", pytest.param("es", marks=pytest.mark.es)])
def store_env(request, tmp_path):
    if request.param == "sqlite":
        return {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/cli.db"}
    url = request.getfixturevalue("es_url")
    return {"GOVSOC_STORE_URL": url,
            "GOVSOC_ES_NAMESPACE": request.getfixturevalue("es_namespace")}


def test_ingest_search_info_prune(store_env, tmp_path):
    nd = tmp_path / "events.ndjson"
    nd.write_bytes(b"\n".join([
        line(1), line(2), b'{"@timestamp": "2026-01-01T00:00:00Z", "event": {', line(3),
        b'{"@timestamp": "not a time", "event": {"dataset": "system.auth"}}',
        line(4, days_ago=300), b"",
    ]) + b"\n")
    out = govsoc("ingest", str(nd), env=store_env)
    assert out.returncode == 0, out.stderr
    assert b"ingested 4 new, 0 already present, 2 skipped" in out.stdout
    assert b"line 3: not JSON" in out.stderr
    assert b"line 5: @timestamp 'not a time' is not ISO-8601" in out.stderr

    again = govsoc("ingest", str(nd), env=store_env)
    assert b"ingested 0 new, 4 already present, 2 skipped" in again.stdout

    found = govsoc("search", "user.name:root AND NOT source.ip:10.0.0.3", "--json",
                   env={**store_env})
    assert found.returncode == 0, found.stderr
    docs = [orjson.loads(x) for x in found.stdout.splitlines()]
    assert sorted(d["source"]["ip"] for d in docs) == ["10.0.0.1"]
    assert all(d["event"]["dataset"] == "system.auth" for d in docs)

    chinese = govsoc("search", 'user.name:"张三"', "--json", "--dataset", "system.auth",
                     env=store_env)
    assert sorted(orjson.loads(x)["source"]["ip"] for x in chinese.stdout.splitlines()) == [
        "10.0.0.2", "10.0.0.4"]

    recent = govsoc("search", "--from", "now-30d", "--json", "--limit", "10", env=store_env)
    assert len(recent.stdout.splitlines()) == 3

    info = govsoc("store", "info", "--json", env=store_env)
    assert orjson.loads(info.stdout)["families"]["events"] == {"system.auth": 4}

    pruned = govsoc("store", "prune", "--older-than", "180d", env=store_env)
    assert pruned.returncode == 0, pruned.stderr
    assert b"deleted 1 documents older than 180 days" in pruned.stdout
    info = govsoc("store", "info", "--json", env=store_env)
    assert orjson.loads(info.stdout)["families"]["events"] == {"system.auth": 3}


def test_bad_query_is_one_line_exit_2(tmp_path):
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/cli.db"}
    out = govsoc("search", "source.ip:(10.0.0.1", env=env)
    assert out.returncode == 2
    assert out.stderr.decode().strip().splitlines() == [
        "error: bad query: missing ')' for '(' at position 11"]
    bad_time = govsoc("search", "--from", "yesterday-ish", env=env)
    assert bad_time.returncode == 2 and b"bad time" in bad_time.stderr
    assert govsoc("store", "prune", "--older-than", "soon", env=env).returncode == 2
    assert govsoc("ingest", str(tmp_path / "missing.ndjson"), env=env).returncode == 2


def test_store_down_is_one_line_exit_2():
    out = govsoc("store", "info", "--store", "http://127.0.0.1:9")
    assert out.returncode == 2
    err = out.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "unreachable" in err[0]


def test_ingest_from_stdin_with_dataset(tmp_path):
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/cli.db"}
    body = b'{"@timestamp": "2026-05-01T00:00:00Z", "message": "hello"}\n'
    out = govsoc("ingest", "-", "--dataset", "custom.app", env=env, stdin=body)
    assert out.returncode == 0 and b"ingested 1 new" in out.stdout
    info = orjson.loads(govsoc("store", "info", "--json", env=env).stdout)
    assert info["families"]["events"] == {"custom.app": 1}


def test_subcommands_come_from_entry_points():
    out = govsoc("--help")
    assert out.returncode == 0
    for name in (b"store", b"ingest", b"search", b"up"):
        assert name in out.stdout


def test_up_once_starts_and_stops(tmp_path):
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/up.db"}
    out = govsoc("up", "--once", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "up.db").exists()


def test_search_shows_times_in_viewer_zone(tmp_path):
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/tz.db"}
    body = b'{"@timestamp": "2026-05-01T00:00:00Z", "event.dataset": "a", "message": "m"}\n'
    assert govsoc("ingest", "-", env=env, stdin=body).returncode == 0
    shown = govsoc("search", env=env).stdout.decode()
    assert shown.startswith("2026-05-01T08:00:00.000+08:00 a")
    utc = govsoc("search", env={**env, "GOVSOC_TIMEZONE": "UTC"}).stdout.decode()
    assert utc.startswith("2026-05-01T00:00:00.000+00:00 a")
    bad = govsoc("search", env={**env, "GOVSOC_TIMEZONE": "Mars/Olympus"})
    assert bad.returncode == 2
    assert bad.stderr.decode().strip().splitlines() == [
        "error: timezone 'Mars/Olympus' is not a known time zone (e.g. Asia/Shanghai, UTC)"]


@pytest.mark.es
def test_store_url_may_list_nodes_and_fails_over(es_url, es_namespace):
    """GOVSOC_STORE_URL as a comma-separated node list whose first node is down: every
    request the command makes goes on to the live node (the client's failover, with
    the store's own retries off)."""
    env = {"GOVSOC_STORE_URL": f"http://127.0.0.1:9,{es_url}",
           "GOVSOC_ES_NAMESPACE": es_namespace}
    ingest = govsoc("ingest", "-", "--dataset", "system.auth", env=env,
                    stdin=b"\n".join(line(i) for i in range(3)))
    assert ingest.returncode == 0, ingest.stderr
    info = govsoc("store", "info", "--json", env=env)
    assert info.returncode == 0, info.stderr
    assert orjson.loads(info.stdout)["families"]["events"] == {"system.auth": 3}
    bad = govsoc("store", "info", "--store", f"{es_url},ftp://elsewhere")
    err = bad.stderr.decode().strip().splitlines()
    assert bad.returncode == 2 and len(err) == 1 and "bad Elasticsearch URL" in err[0]
