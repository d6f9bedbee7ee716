"""`govsoc rules|detect|alerts|posture` through the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from detect_helpers import auth_failure

from soc_core.store import open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([GOVSOC, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/cli.db"


def _recent_attack(url: str) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).timestamp() - 600
    with open_store(url) as store:
        store.write([auth_failure(i, t=now + i) for i in range(15)], refresh=True)


def test_detect_alerts_workflow_and_posture(url):
    _recent_attack(url)
    out = run("detect", "run", "--once", "--store", url, "--since", "now-1h")
    assert out.returncode == 0, out.stderr
    assert "1 new alerts" in out.stdout or " new alerts" in out.stdout
    again = run("detect", "run", "--once", "--store", url)
    assert "0 new alerts" in again.stdout  # exactly once across runs
    lst = run("alerts", "list", "--json", "--store", url)
    rows = [json.loads(line) for line in lst.stdout.splitlines()]
    brute = [r for r in rows if r["rule.name"] == "SSH brute force from one source"]
    assert len(brute) == 1
    a = brute[0]
    assert a["threat.technique.id"] == "T1110" or "T1110" in a["threat.technique.id"]
    assert (a["source.ip"], a["host.name"], a["count"], a["status"]) == (
        "203.0.113.7", "gov-web-01", 15, "open")
    text = run("alerts", "list", "--store", url).stdout
    assert "rule.id=5e0c1a10-0003-4000-8000-000000000003" in text
    assert "source.ip=203.0.113.7" in text and "count=15" in text
    st = run("alerts", "set", a["id"], "--status", "closed", "--reason", "false_positive",
             "--note", "pen test by the provincial CERT", "--store", url)
    assert st.returncode == 0 and "closed (false_positive)" in st.stdout
    closed = run("alerts", "list", "--status", "closed", "--json", "--store", url).stdout
    assert a["id"] in closed
    assert a["id"] not in run("alerts", "list", "--status", "open", "--json",
                              "--store", url).stdout
    hist = [json.loads(line) for line in run("alerts", "history", a["id"], "--json",
                                             "--store", url).stdout.splitlines()]
    assert [(e["from"], e["to"], e["reason"], e["note"]) for e in hist] == [
        ("open", "closed", "false_positive", "pen test by the provincial CERT")]
    p = json.loads(run("posture", "--json", "--store", url).stdout)
    assert 0 <= p["security_index"]["value"] <= 100
    assert set(p["by_severity"]) == {"critical", "high", "medium", "low", "informational"}
    assert "203.0.113.7" in dict(map(tuple, p["top_sources"]))
    human = run("posture", "--store", url)
    assert human.returncode == 0 and "security index" in human.stdout
    health = run("rules", "health", "--json", "--store", url)
    h = json.loads(health.stdout)["5e0c1a10-0003-4000-8000-000000000003"]
    assert h["runs"] == 2 and h["errors"] == 0


def test_bad_input_is_one_line_and_exit_2(url, tmp_path):
    _recent_attack(url)
    run("detect", "run", "--once", "--store", url, "--since", "now-1h")
    before = run("alerts", "list", "--json", "--store", url).stdout
    cases = [
        ("alerts", "set", "nope", "--status", "closed", "--store", url),
        ("alerts", "set", json.loads(before.splitlines()[0])["id"], "--status", "done",
         "--store", url),
        ("alerts", "set", json.loads(before.splitlines()[0])["id"], "--store", url),
        ("detect", "run", "--once", "--since", "yesterday-ish", "--store", url),
        ("detect", "run", "--once", "--rules", str(tmp_path / "missing"), "--store", url),
        ("rules", "check", str(tmp_path / "missing")),
        ("rules", "snooze", "5e0c1a10-0003-4000-8000-000000000003", "--until",
         "2001-01-01T00:00:00Z", "--store", url),
        ("rules", "except", "no-such-rule", "--field", "source.ip", "--value", "1.2.3.4",
         "--reason", "x", "--store", url),
    ]
    for args in cases:
        out = run(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error:"), \
            (args, out.stderr)
    # nothing already accepted was lost or changed
    assert run("alerts", "list", "--json", "--store", url).stdout == before


def test_rules_check_prints_per_backend_table(tmp_path):
    (tmp_path / "ok.yml").write_text(
        "title: ok\nid: 0d0d0d0d-0000-4000-8000-000000000001\n"
        "logsource: {product: linux, category: process_creation}\n"
        "detection:\n  s: {Image|endswith: /nc}\n  condition: s\n")
    (tmp_path / "broken.yml").write_text("title: x\n  - : :\n")
    out = run("rules", "check", str(tmp_path))
    assert out.returncode == 1, out.stderr  # a file that does not parse fails the check
    assert "broken.yml" in out.stdout and "skipped" in out.stdout
    assert "sqlite" in out.stdout and "elasticsearch" in out.stdout
    js = json.loads(run("rules", "check", "--json", str(tmp_path)).stdout)
    assert js["rules"] == 2 and js["not_parsed"] == 1
    assert js["backends"]["sqlite"] == {"converted": 1, "failed": 0, "collected_logsource": 1,
                                        "usable": 1}


def test_exceptions_and_snooze_from_the_cli(url):
    _recent_attack(url)
    rid = "5e0c1a10-0003-4000-8000-000000000003"
    ex = run("rules", "except", rid, "--field", "source.ip", "--value", "203.0.113.7",
             "--reason", "scanner of the city SOC", "--by", "chen", "--store", url)
    assert ex.returncode == 0, ex.stderr
    sn = run("rules", "snooze", "5e0c1a10-0007-4000-8000-000000000007", "--until",
             "2999-01-01T00:00:00Z", "--store", url)
    assert sn.returncode == 0, sn.stderr
    run("detect", "run", "--once", "--store", url, "--since", "now-1h")
    rows = run("alerts", "list", "--json", "--store", url).stdout
    assert "SSH brute force" not in rows
    h = json.loads(run("rules", "health", "--json", "--store", url).stdout)
    assert h[rid]["exceptions"] == 1
    assert h["5e0c1a10-0007-4000-8000-000000000007"]["snooze"]["until"].startswith("2999")
