"""A collector's health snapshot: a copy of the counters, and the status file rewritten
when they change (or the file went away), not every refresh of an idle shipper."""

from __future__ import annotations

import time

import orjson

from collectors import health
from collectors.health import Health, load_snapshots, save_snapshot


def test_a_snapshot_is_a_copy():
    h = Health(name="c", settings={"batch_size": 5})
    h.note("one")
    snap = h.snapshot()
    snap["reasons"].append("two")
    snap["settings"]["batch_size"] = 6
    assert h.reasons == ["one"] and h.settings == {"batch_size": 5}
    assert snap["updated"] and snap["name"] == "c" and "_lock" not in snap


def test_the_status_file_follows_changes_not_refreshes(tmp_path, monkeypatch):
    h = Health(name="c")
    path = save_snapshot(tmp_path, h.snapshot())
    first = orjson.loads(path.read_bytes())
    save_snapshot(tmp_path, h.snapshot())  # only `updated` differs: kept
    assert orjson.loads(path.read_bytes()) == first
    h.events_in += 3
    save_snapshot(tmp_path, h.snapshot())
    (got,) = load_snapshots(tmp_path)
    assert got["events_in"] == 3
    path.unlink()  # removed meanwhile: written again
    save_snapshot(tmp_path, h.snapshot())
    assert load_snapshots(tmp_path)[0]["events_in"] == 3
    kept = path.read_bytes()
    monkeypatch.setattr(health, "REWRITE_S", 0.0)  # and once the rewrite time has passed
    time.sleep(0.01)  # a later `updated`
    save_snapshot(tmp_path, h.snapshot())
    assert path.read_bytes() != kept and load_snapshots(tmp_path)[0]["events_in"] == 3
