"""SigmaHQ's Windows Security rules over a real Security EVTX log, imported by the EVTX
collector in Winlogbeat's layout: the Windows pipeline maps the rules onto the fields the
import really carries, and both stores raise the same alert."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.logs import read_evtx
from detections.engine import Engine
from detections.rules import load_pack
from soc_core.store import Selection

# a real Security log (7 records, one 4625 from a public address): see its README
EVTX = Path(__file__).resolve().parent.parent / "collectors" / "data" / \
    "Security_short_selected.evtx"


@pytest.fixture(scope="module")
def security_rules(shared_dir):
    return load_pack([shared_dir / "sigma" / "rules" / "windows" / "builtin" / "security"])


def test_sigmahq_security_rules_on_a_real_evtx(store, security_rules):
    docs: list[dict] = []
    read_evtx(str(EVTX), docs.append)
    assert len(docs) == 7
    assert not store.write(docs, refresh=True).rejected
    summary = Engine(store, security_rules).run_once(now="2016-06-30T00:00:00Z",
                                                      since="2016-06-29T00:00:00Z")
    assert summary.rules >= 140 and not summary.errors, summary.errors
    alerts = list(store.scan(Selection(family="alerts")))
    assert [a["rule"]["name"] for a in alerts] == ["Failed Logon From Public IP"]
    (a,) = alerts
    assert a["govsoc"]["alert"]["count"] == 1
    assert a["govsoc"]["alert"]["event_ids"] == [
        d["event"]["id"] for d in docs if d["winlog"]["event_id"] == "4625"]
    assert a["rule"]["ruleset"].endswith("win_security_susp_failed_logon_source.yml")
    assert a["threat"]["tactic"]["name"]
