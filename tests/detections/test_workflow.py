"""The alert workflow against the detection engine on both stores: an engine pass that
rebuilds an alert while an analyst changes it never overwrites the analyst's change."""

from __future__ import annotations

import pytest
from detect_helpers import BASE, alert_map

from detections import Engine, Settings, load_pack, workflow
from soc_core import ecs

ROOT_LOGIN = "5e0c1a10-0006-4000-8000-000000000006"


def _root_login(t: float, n: int) -> dict:
    return ecs.make_event("system.auth", t, ("root", t, n), {
        "event.action": "ssh_login", "event.outcome": "success", "user.name": "root",
        "source.ip": "203.0.113.20", "host.name": "gov-web-01"})


class Interleaved:
    """The real store, with an analyst's change made between the engine's read of the
    alerts and its write of them: the race, made to happen every time."""

    def __init__(self, store, act) -> None:
        self._store, self._act, self.fired = store, act, False

    def __getattr__(self, name):
        return getattr(self._store, name)

    def read_versioned_many(self, family, ids):
        got = self._store.read_versioned_many(family, ids)
        if got and not self.fired:
            self.fired = True
            self._act()
        return got


def test_engine_pass_never_overwrites_a_concurrent_transition(store):
    pack = load_pack()

    def engine(s):
        return Engine(s, pack, settings=Settings(interval_s=30, delay_ms=0,
                                                 lookback_ms=60_000, initial_ms=86_400_000))

    store.write([_root_login(BASE, 0)], refresh=True)
    engine(store).run_once(now=BASE + 600)
    (aid,) = alert_map(store)
    # a second login in the same bucket: the next pass rebuilds that alert (count 2)
    store.write([_root_login(BASE + 60, 1)], refresh=True)
    racing = Interleaved(store, lambda: workflow.apply(
        store, aid, workflow.Change(status="acknowledged", note="on it"), by="zhao"))
    summary = engine(racing).run_once(now=BASE + 900)
    assert racing.fired and summary.updated_alerts == 1
    a = store.get("alerts", aid)["govsoc"]["alert"]
    assert (a["status"], a["count"]) == ("acknowledged", 2)  # both changes kept
    assert [(e["by"], e["to"], e["note"]) for e in a["history"]] == [
        ("zhao", "acknowledged", "on it")]
    with pytest.raises(workflow.TransitionRefused):
        workflow.apply(store, aid, workflow.Change(status="acknowledged"), by="li")
    with pytest.raises(workflow.AlertNotFound):
        workflow.apply(store, aid, workflow.Change(note="x"), by="li", visible=lambda d: False)
