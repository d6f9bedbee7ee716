"""Hostile rules and rule files: a catastrophic-backtracking `|re` runs in linear time on
both stores (RE2 on SQLite, Lucene automata on Elasticsearch), what RE2 cannot express is
refused at load with the reason, and a malformed file is reported with its line while the
other files of the folder still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detections.engine import Engine, Settings
from detections.rules import load_pack
from soc_core import ecs
from soc_core.store import Selection

GOVSOC = str(Path(sys.executable).parent / "govsoc")
BASE = 1_767_225_600  # 2026-01-01T00:00:00Z
REDOS_ID = "0d0d0d0d-0000-4000-8000-0000000000a1"
REDOS = f"""title: catastrophic backtracking
id: {REDOS_ID}
level: high
logsource: {{product: linux, service: auth}}
detection:
  s: {{user.name|re: '(a+)+c'}}
  condition: s
"""
LOOKBEHIND = """title: lookbehind
id: 0d0d0d0d-0000-4000-8000-0000000000a2
logsource: {product: linux, service: auth}
detection:
  s: {user.name|re: '(?<=a)b'}
  condition: s
"""
GOOD = """title: good
id: 0d0d0d0d-0000-4000-8000-0000000000a3
logsource: {product: linux, category: process_creation}
detection:
  s: {Image|endswith: /nc}
  condition: s
"""


def _login(user: str, n: int) -> dict:
    return ecs.make_event("system.auth", BASE + n, ("redos", n), {
        "event.action": "ssh_login", "event.outcome": "failure", "user.name": user,
        "source.ip": "203.0.113.9", "host.name": "gov-web-01"})


@pytest.mark.timeout(120)  # a backtracking engine would take hours on 40 characters
def test_redos_rule_runs_in_linear_time_on_both_stores(store, tmp_path, monkeypatch):
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path / "state"))
    (tmp_path / "redos.yml").write_text(REDOS)
    pack = load_pack([tmp_path])
    assert [r.id for r in pack.rules] == [REDOS_ID] and not pack.skipped
    store.write([_login("a" * 40 + "b", 1), _login("aaac", 2)], refresh=True)
    Engine(store, pack, settings=Settings(interval_s=30, delay_ms=0, lookback_ms=60_000,
                                          initial_ms=86_400_000)).run_once(now=BASE + 120)
    store.refresh()
    alerts = list(store.scan(Selection(family="alerts")))
    # the same meaning on both stores: only the user name the pattern matches alerts
    assert [a["rule"]["id"] for a in alerts] == [REDOS_ID]
    assert ecs.get_field(alerts[0], "user.name") == "aaac"


def test_what_re2_cannot_express_is_refused_at_load_with_the_reason(tmp_path):
    (tmp_path / "look.yml").write_text(GOOD + "---\n" + LOOKBEHIND)
    pack = load_pack([tmp_path])
    assert [r.title for r in pack.rules] == ["good"]
    [skip] = pack.skipped
    assert skip.where == f"{tmp_path / 'look.yml'}:8" and skip.line == 8
    assert "RE2" in skip.reason and "(?<=" in skip.reason


def test_the_sqlite_regexp_function_refuses_what_re2_cannot_run(sqlite_store):
    sqlite_store.write([_login("ab", 1)], refresh=True)
    from soc_core.store import StoreError
    with pytest.raises(StoreError, match="RE2"):
        sqlite_store.native("json_extract(doc, '$.user.name') REGEXP '(?<=a)b'",
                            Selection(family="events"))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a scalar\n", "42\n"])
def test_a_rule_file_that_is_not_a_mapping_is_one_skip_not_a_crash(tmp_path, text):
    (tmp_path / "a_bad.yml").write_text(text)
    (tmp_path / "b_good.yml").write_text(GOOD)
    pack = load_pack([tmp_path])
    assert [r.title for r in pack.rules] == ["good"]  # the folder's other rules still load
    [skip] = pack.skipped
    assert skip.where.endswith("a_bad.yml:1") and "not a rule" in skip.reason


def test_rules_check_gives_line_numbers_exit_1_and_rules_that_never_match(tmp_path):
    (tmp_path / "broken.yml").write_text("title: x\n  - : :\n")
    (tmp_path / "list.yml").write_text("- a\n")
    (tmp_path / "good.yml").write_text(GOOD + "---\n" + """title: nofield
id: 0d0d0d0d-0000-4000-8000-0000000000a4
logsource: {product: linux, service: auth}
detection:
  s: {no.such.field: x}
  condition: s
""")
    out = subprocess.run([GOVSOC, "rules", "check", str(tmp_path)], capture_output=True,
                         text=True, timeout=300, env=os.environ)
    assert out.returncode == 1, out.stderr
    assert "broken.yml:2: " in out.stdout and "list.yml:1: " in out.stdout
    assert "never matches" in out.stdout and "0d0d0d0d-0000-4000-8000-0000000000a4" in out.stdout
    assert "no.such.field" in out.stdout
    js = subprocess.run([GOVSOC, "rules", "check", "--json", str(tmp_path)],
                        capture_output=True, text=True, timeout=300)
    assert js.returncode == 1
    data = json.loads(js.stdout)
    assert [n["rule"] for n in data["never_match"]] == ["0d0d0d0d-0000-4000-8000-0000000000a4"]
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "good.yml").write_text(GOOD)
    assert subprocess.run([GOVSOC, "rules", "check", str(ok)], capture_output=True,
                          timeout=300).returncode == 0
