"""The posture and its 0-100 security index (formula in detections/posture.py and README),
the live view for `govsoc up`, and the scheduler service with the demo scenario."""

from __future__ import annotations

import threading
import time

from detect_helpers import BASE, auth_failure
from rich.console import Console

from detections.engine import Engine, Settings, now_ms
from detections.posture import posture, security_index
from detections.rules import load_pack
from detections.service import replay_demo, run
from detections.view import render
from soc_core import ecs
from soc_core.store import Selection

H = 3_600_000


def _alert(level: str, first_ms: int, status: str = "open", tactic: str = "Execution",
           target: str | None = None) -> dict:
    doc = {"@timestamp": ecs.format_time(ecs.parse_time(first_ms / 1000)),
           "threat": {"tactic": {"name": [tactic]}},
           "govsoc": {"alert": {"level": level, "status": status,
                                "first_seen": ecs.format_time(ecs.parse_time(first_ms / 1000))}}}
    if target:
        doc["destination"] = {"ip": target}
    return doc


def test_security_index_formula():
    now = BASE * 1000
    assert security_index([], now)["value"] == 100.0
    alerts = [_alert("critical", now - H),  # 10 * 1
              _alert("high", now - 48 * H),  # 5 * 1.5
              _alert("medium", now - 100 * H, status="acknowledged"),  # 2 * 2 * 0.5
              _alert("low", now - H),  # 0.5
              _alert("high", now - H, tactic="Initial Access", target="10.20.3.5")]  # 5, E=5
    def swept(days: float | None, name: str = "h") -> dict:
        last = None if days is None else ecs.format_time(ecs.parse_time(now / 1000 - days * 86400))
        return {"host": {"name": name}, "govsoc": {"asset": {"last_patch": last}}}

    assets = [swept(45), swept(3)]
    idx = security_index(alerts, now, assets)
    assert idx["alerts"] == 10 + 7.5 + 2 + 0.5 + 5
    assert idx["exposure"] == 5 and idx["exposed"] == ["10.20.3.5"]
    assert idx["patch_lag"] == 7.5
    assert idx["value"] == 100 - 25 - 5 - 7.5
    assert idx["band"] == "at_risk"  # 62.5
    flood = [_alert("critical", now - 200 * H, tactic="Initial Access", target=f"10.0.0.{i}")
             for i in range(30)]
    worst = security_index(flood, now, [swept(90)])
    assert (worst["alerts"], worst["exposure"], worst["patch_lag"]) == (60, 25, 15)
    assert worst["value"] == 0 and worst["band"] == "severe"
    # a patch run that left the host current counts as its last patch; no record at all lags
    fleet = [swept(45, "a"), swept(45, "b"), swept(None, "c"), swept(3, "d")]
    idx = security_index([], now, fleet, patched={"a": now - 2 * 24 * H})
    assert idx["lagging_assets"] == 2 and idx["patch_lag"] == 7.5
    # a discovered, unregistered host (shadow IT) and a host gone are not in the patch share
    shadow, gone = swept(None, "x"), swept(None, "y")
    shadow["govsoc"]["asset"]["registered"] = False
    gone["govsoc"]["asset"]["state"] = "gone"
    idx = security_index([], now, [*fleet, shadow, gone], patched={"a": now - 2 * 24 * H})
    assert (idx["assets"], idx["lagging_assets"], idx["patch_lag"]) == (4, 2, 7.5)


def test_posture_on_the_store(store):
    pack = load_pack()
    now = now_ms() / 1000
    store.write([auth_failure(i, t=now - 900 + i) for i in range(12)]
                + [auth_failure(i, ip="198.51.100.3", t=now - 800 + i, host="gov-db-09")
                   for i in range(3)], refresh=True)
    Engine(store, pack).run_once()
    p = posture(store)
    assert p["open_alerts"] == 1 and p["by_severity"]["high"] == 1
    assert p["by_tactic"] == {"Credential Access": 1}
    assert p["by_host"] == {"gov-web-01": 1}
    assert p["by_department"] == {"(unassigned)": 1}
    assert p["security_index"]["value"] == 95.0  # one fresh high alert: 100 - 5
    assert dict(p["top_sources"]) == {"203.0.113.7": 12, "198.51.100.3": 3}
    assert set(p["new_assets"]) == {"gov-web-01", "gov-db-09"}
    assert sum(n for _, n in p["trend_hourly"]) == 1
    text = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    text.print(render(store))
    out = text.export_text()
    assert "security index 95/100" in out and "SSH brute force" in out


def test_service_replays_the_demo_and_raises_alerts(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/up.db"
    monkeypatch.setenv("GOVSOC_DETECTIONS_INTERVAL", "1")
    stop = threading.Event()
    t = threading.Thread(target=run, args=(url, stop, True), daemon=True)
    t.start()
    from soc_core.store import open_store

    with open_store(url) as store:
        deadline = time.monotonic() + 120
        names: set[str] = set()
        while time.monotonic() < deadline and not {"SSH brute force from one source",
                                                   "Vertical port scan", "DNS tunnelling",
                                                   "Reverse shell command line"} <= names:
            time.sleep(1)
            names = {a["rule"]["name"] for a in store.scan(Selection(family="alerts"))}
        stop.set()
        t.join(30)
        assert not t.is_alive()
        assert {"SSH brute force from one source", "Vertical port scan", "Horizontal port scan",
                "DNS tunnelling", "Reverse shell command line",
                "Crypto-miner process"} <= names
        # a second replay is a new scenario (fresh ids), not a rewrite of the first
        assert replay_demo(store) > 0


def test_scheduler_settings_default():
    assert Settings().delay_ms > 0 and Settings().lookback_ms > 0


def test_silent_agents_in_the_posture_and_one_alert_per_silence(store):
    from detections import agents

    now = now_ms()

    def beat(aid: str, host: str, at_ms: int) -> dict:
        return ecs.make_event(agents.HEARTBEAT_DATASET, at_ms / 1000, (aid, at_ms), {
            "agent": {"id": aid, "name": host}, "host": {"name": host},
            "govsoc": {"agent": {"interval_s": 10.0, "events_per_s": 1.0}}}, kind="metric")

    store.write([beat("a1", "web-01", now - 50_000), beat("a1", "web-01", now - 5_000),
                 beat("a2", "db-01", now - 120_000), beat("a2", "db-01", now - 45_000)],
                refresh=True)
    rows = {r["host"]: r for r in agents.agents(store, now, intervals=3)}
    assert rows["web-01"]["status"] == "up" and rows["db-01"]["status"] == "silent"
    assert rows["db-01"]["last_heartbeat"] == ecs.format_time(ecs.parse_time((now - 45_000)
                                                                             / 1000))
    assert {r["host"]: r["status"] for r in agents.agents(store, now, intervals=5)} == \
        {"web-01": "up", "db-01": "up"}  # 45 s < 5 intervals of 10 s
    assert posture(store)["agents"]["counts"] == {"up": 1, "silent": 1}
    first = agents.raise_silent_alerts(store, now, intervals=3)
    assert len(first) == 1 and agents.raise_silent_alerts(store, now, intervals=3) == []
    alert = store.get("alerts", first[0])
    assert alert["host"]["name"] == "db-01" and alert["govsoc"]["alert"]["status"] == "open"
    store.write([beat("a2", "db-01", now - 1_000)], refresh=True)  # back, then silent again
    later = now + 60_000
    again = agents.raise_silent_alerts(store, later, intervals=3)
    assert len(again) == 2 and first[0] not in again  # web-01 now too; db-01's new silence
