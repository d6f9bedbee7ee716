"""Controls follow their evidence, on both stores: a host with telnet listening fails remote
administration (and only that host), an administrator holding two of the three roles fails
三权分立, retention below 180 days fails central audit; and the report schedule's cron."""

from __future__ import annotations

from datetime import datetime

import pytest

from cloud_inventory import check_compliance
from cloud_inventory.reports.schedule import Cron, ScheduleError, due, entries
from soc_core.config import Config


def asset(i: int, ports: list[int], **facts) -> dict:
    return {"@timestamp": "2026-11-30T02:00:00Z",
            "event": {"kind": "asset", "dataset": "assets", "id": f"asset-{i}"},
            "host": {"name": f"db-{i}", "ip": [f"10.2.0.{i + 10}"]},
            "govsoc": {"asset": {"run_id": "r1", "packages": [{"name": "clamav-daemon"}],
                                 "listening": [{"protocol": "tcp", "address": "10.2.0.1",
                                                "port": p, "process": "x"} for p in ports],
                                 **facts}}}


def user(name: str, *roles: str) -> dict:
    return {"@timestamp": "2026-11-30T02:00:00Z",
            "event": {"kind": "state", "dataset": "govsoc.state.user", "id": "user:" + name},
            "govsoc": {"identity": {"name": name, "roles": list(roles)}}}


def by_id(findings) -> dict:
    return {f.id: f for f in findings}


def test_controls_pass_and_fail_with_their_evidence(store, tmp_path):
    auth = {"minlen": 12, "minclass": 3, "pass_max_days": 90, "faillock_deny": 5}
    res = store.write([asset(0, [22], auth=auth), asset(1, [22, 23], auth=auth),
                       asset(2, [22, 3306], auth={"minlen": 6}),
                       user("sa", "sysadmin"), user("sec", "secadmin"),
                       user("aud", "auditor")], refresh=True)
    assert not res.rejected
    cfg = Config(values={"retention_days": 180, "data_dir": str(tmp_path)})
    found = by_id(check_compliance(store, cfg, standard="djcp-l3"))
    assert {f.standard for f in found.values()} == {"djcp-l3"}
    remote = found["djcp-3.4.1c"]
    assert remote.status == "fail" and remote.hosts == ["db-1"]
    assert "telnet" in remote.summary and remote.remediation
    assert any("db-1" in e.source for e in remote.evidence)
    assert found["djcp-3.4.4b"].hosts == ["db-1"]
    assert found["djcp-3.4.1a"].status == "fail" and found["djcp-3.4.1a"].hosts == ["db-2"]
    assert found["djcp-3.4.5"].status == "pass"  # clamav-daemon on every host
    assert found["djcp-3.5.1"].status == "pass"
    assert found["djcp-3.5.4d"].status == "not_evidenced"  # no audit records yet
    # the evidence changes, the verdict follows
    store.write([user("sec", "secadmin", "auditor"),
                 asset(1, [22], auth=auth)], refresh=True)
    again = by_id(check_compliance(store, Config(values={"retention_days": 90,
                                                         "data_dir": str(tmp_path)})))
    assert again["djcp-3.5.1"].status == "fail" and "sec" in again["djcp-3.5.1"].summary
    assert again["djcp-3.4.1c"].status == "pass"
    assert again["djcp-3.5.4d"].status == "fail"
    assert again["mp-8.2"].status == "not_evidenced"  # no TLS seen in traffic
    with pytest.raises(ValueError):
        check_compliance(store, cfg, standard="iso27001")


def test_cron_expressions():
    weekly = Cron.parse("0 8 * * 1")
    assert weekly.matches(datetime(2026, 11, 30, 8, 0))  # a Monday
    assert not weekly.matches(datetime(2026, 12, 1, 8, 0))
    every = Cron.parse("*/15 9-17 * * 1-5")
    assert every.matches(datetime(2026, 11, 30, 9, 45))
    assert not every.matches(datetime(2026, 11, 29, 9, 45))  # Sunday
    assert Cron.parse("0 0 * * 7").matches(datetime(2026, 11, 29, 0, 0))
    for bad in ("0 8 * *", "61 * * * *", "a * * * *", "0 0 0 * *"):
        with pytest.raises(ScheduleError):
            Cron.parse(bad)


def test_schedule_entries_run_once_in_their_minute():
    items = entries(Config(values={}))  # the defaults: weekly on Mondays, compliance monthly
    assert [e.kind for e in items] == ["weekly", "compliance"]
    done: set = set()
    monday = datetime(2026, 11, 30, 8, 0, 10)
    assert [e.kind for e in due(items, monday, done)] == ["weekly"]
    assert due(items, monday.replace(second=50), done) == []  # not twice in one minute
    assert [e.kind for e in due(items, datetime(2026, 12, 1, 3, 0), done)] == ["compliance"]
    custom = entries(Config(values={"reports": {"schedule": [
        {"kind": "exposure", "cron": "30 7 * * 1-5", "format": "html", "lang": "en"}]}}))
    assert custom[0].format == "html" and custom[0].lang == "en"
    for bad in ([{"kind": "nope", "cron": "* * * * *"}], [{"kind": "dr", "cron": "* *"}],
                [{"kind": "dr", "cron": "* * * * *", "format": "docx"}], "weekly"):
        with pytest.raises(ScheduleError):
            entries(Config(values={"reports": {"schedule": bad}}))
