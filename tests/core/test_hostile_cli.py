"""Hostile and careless input at the core CLI, on both stores: one bad value is one
rejected line (the rest stored, whatever the batch size), and a query or time a user
mistyped is one error line with exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

GOVSOC = str(Path(sys.executable).with_name("govsoc"))


def govsoc(*args: str, env: dict, stdin: bytes | None = None):
    return subprocess.run([GOVSOC, *args], capture_output=True, input=stdin, timeout=300,
                          env={**os.environ, "GOVSOC_ES_RETRIES": "0", **env})


@pytest.fixture(params=["sqlite", pytest.param("es", marks=pytest.mark.es)])
def store_env(request, tmp_path):
    if request.param == "sqlite":
        return {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/cli.db"}
    return {"GOVSOC_STORE_URL": request.getfixturevalue("es_url"),
            "GOVSOC_ES_NAMESPACE": request.getfixturevalue("es_namespace")}


def _good(i: int) -> bytes:
    ts = datetime.now(UTC) - timedelta(hours=1, seconds=i)
    return orjson.dumps({"@timestamp": ts.isoformat(), "event": {"dataset": "system.auth"},
                         "message": f"line {i}"})


BAD = [b'{"@timestamp": 1e20, "event": {"dataset": "system.auth"}}',
       b'{"@timestamp": -1e20, "event": {"dataset": "system.auth"}}',
       b'{"@timestamp": "0001-01-01T00:00:00+05:00", "event": {"dataset": "system.auth"}}',
       b'{"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "system.auth"}, '
       b'"source": {"port": 1e20}}']


@pytest.mark.parametrize("bad, reason, batch", [
    (BAD[0], b"@timestamp 1e+20 is out of range", None),
    (BAD[0], b"@timestamp 1e+20 is out of range", "100"),
    (BAD[1], b"@timestamp -1e+20 is out of range", "100"),
    (BAD[2], b"is out of range", None),
    (BAD[3], b"source.port must be an integer", "7"),
], ids=["ts 1e20", "ts 1e20 batch 100", "ts -1e20", "before year 1", "port 1e20 batch 7"])
def test_one_out_of_range_value_is_one_rejected_line(store_env, tmp_path, bad, reason, batch):
    nd = tmp_path / "in.ndjson"
    # the 500 + 1 + 500 in miniature: batches of 100 and 7 straddle the bad line
    nd.write_bytes(b"\n".join([_good(i) for i in range(250)] + [bad]
                              + [_good(i) for i in range(250, 500)]) + b"\n")
    out = govsoc("ingest", str(nd), *(["--batch", batch] if batch else []), env=store_env)
    assert out.returncode == 0, out.stderr
    assert b"ingested 500 new, 0 already present, 1 skipped" in out.stdout
    assert out.stderr.decode().strip().splitlines() == [out.stderr.decode().strip()]
    assert out.stderr.startswith(b"skipped line 251: ") and reason in out.stderr
    count = govsoc("search", "--limit", "5000", "--json", env=store_env)
    assert len(count.stdout.splitlines()) == 500


@pytest.mark.parametrize("args", [
    ("search", "' OR 1=1 --"),
    ("search", "*:*"),
    ("search", "message:/go+d.*/"),
    ("search", "(" * 300 + "a" + ")" * 300),
    ("search", "NOT " * 2000 + "a"),
    ("search", "--from", "now-99999999999d"),
    ("search", "--from", "now-9999999999999999999999999d"),
    ("search", "--to", "99999-01-01"),
], ids=["sql-ish", "star field", "regex", "300 parens", "2000 NOTs", "from overflow",
        "from huge", "year 99999"])
def test_a_mistyped_search_is_one_line_exit_2(store_env, args):
    govsoc("ingest", "-", env=store_env, stdin=_good(1) + b"\n")
    out = govsoc(*args, env=store_env)
    err = out.stderr.decode()
    if out.returncode == 0:  # a store may take the query as text that matches nothing
        assert "Traceback" not in err and "-- 0 shown" in err
        return
    assert out.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
