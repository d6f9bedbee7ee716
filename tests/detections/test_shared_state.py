"""Detection state lives in the store: concurrent changes from two processes lose nothing,
and a state file of an earlier version is moved in at first open."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import orjson

from detections import DetectionState, add_exception
from detections.state import legacy_path

RULE = "5e0c1a10-0003-4000-8000-000000000003"
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from detections import add_exception, set_enabled
    from soc_core.store import open_store
    url, ns, tag, go, rule = sys.argv[1:]
    store = open_store(url, **({"namespace": ns} if ns else {}))
    while not Path(go).exists():  # start together: the updates contend
        time.sleep(0.01)
    for i in range(8):
        add_exception(store, rule, "source.ip", [f"10.{tag}.0.{i}"], by=tag, reason="lab")
        set_enabled(store, "rule-" + tag, i % 2 == 0, by=tag, reason="flip")
    store.close()
""")


def test_two_processes_update_state_concurrently(store, tmp_path):
    go = tmp_path / "go"
    ns = getattr(store, "namespace", "") if store.backend != "sqlite" else ""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, store.url, ns, tag, str(go), RULE],
                              stderr=subprocess.PIPE, text=True, env=os.environ)
             for tag in ("1", "2")]
    go.touch()
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    state = DetectionState.for_store(store).load()
    values = sorted(x["values"][0] for x in state["exceptions"][RULE])
    assert values == sorted(f"10.{t}.0.{i}" for t in "12" for i in range(8))
    # the last change of each process stands: rule off (i = 7 is odd)
    assert set(state["disabled"]) == {"rule-1", "rule-2"}


def test_legacy_state_file_moves_into_the_store(store):
    path = legacy_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({
        "checkpoints": {RULE: 1_767_225_600_000}, "health": {RULE: {"runs": 3}},
        "exceptions": {RULE: [{"id": "abc", "field": "user.name", "values": ["scanner"]}]},
        "snoozes": {}, "examined": {}, "coverage": {"system.auth": {"to": 1, "days": {}}}}))
    state = DetectionState.for_store(store)
    data = state.load()
    assert data["checkpoints"][RULE] == 1_767_225_600_000
    assert data["coverage"]["system.auth"]["to"] == 1  # a dotted key kept as it was
    assert data["exceptions"][RULE][0]["values"] == ["scanner"]
    assert not path.exists() and path.with_name(path.name + ".migrated").exists()
    # later changes go to the store; the old file is never read again
    add_exception(store, RULE, "source.ip", ["10.0.0.1"], by="t", reason="lab")
    assert len(DetectionState.for_store(store).load()["exceptions"][RULE]) == 2
