"""The detection scheduler as a `govsoc up` service, and the bundled demo scenario.

`run(store_url, stop, demo)` loads the rule packs (our own plus the folders listed in the
config key `detections.rules`), then runs a pass every `detections.interval` seconds until
`stop` is set, while it leads the rule set among the engines over the store (lease of
`detections.lease_s` seconds, detections.leader). With `demo`, it first writes the attack
scenario: a port scan, an SSH brute force, a DNS tunnel and suspicious processes, timed a
few minutes ago, so the first pass raises alerts within seconds."""

from __future__ import annotations

import logging
import threading
from typing import Any

from detections.engine import Engine, Settings, now_ms
from detections.leader import run_scheduled
from detections.packtests import events_for
from detections.rules import OWN_PACK, RulePack, load_pack
from soc_core import ecs
from soc_core.config import load_config
from soc_core.store import EventStore, open_store

log = logging.getLogger(__name__)

# rules whose positive test events make up the demo story, in order
DEMO_RULES = (
    "5e0c1a10-0104-4000-8000-000000000104",  # vertical port scan
    "5e0c1a10-0103-4000-8000-000000000103",  # horizontal port scan
    "5e0c1a10-0003-4000-8000-000000000003",  # SSH brute force
    "5e0c1a10-0005-4000-8000-000000000005",  # login success after failures
    "5e0c1a10-0202-4000-8000-000000000202",  # DNS tunnelling
    "5e0c1a10-0501-4000-8000-000000000501",  # reverse shell
    "5e0c1a10-0502-4000-8000-000000000502",  # crypto miner
    "5e0c1a10-0503-4000-8000-000000000503",  # web server spawned a shell
)


def demo_events(pack: RulePack, start_s: float) -> list[dict[str, Any]]:
    """The scenario, starting at `start_s` (epoch seconds); fresh ids for each replay."""
    by_id = pack.by_id()
    out = []
    for k, rid in enumerate(DEMO_RULES):
        for doc in events_for(pack, by_id[rid], "positive", start_s + k * 20):
            doc["event"]["id"] = ecs.stable_id("demo", start_s, doc["event"]["id"])
            doc.setdefault("tags", []).append("govsoc-demo")
            out.append(doc)
    return out


def replay_demo(store: EventStore, pack: RulePack | None = None) -> int:
    pack = pack or load_pack([OWN_PACK], backends=[])
    start = now_ms() / 1000 - 600
    res = store.write(demo_events(pack, start), refresh=True)
    return res.written


def configured_packs(cfg: Any = None) -> list[str]:
    extra = (cfg or load_config()).get("detections.rules", []) or []
    return [str(OWN_PACK)] + ([extra] if isinstance(extra, str) else list(extra))


def run(store_url: str, stop: threading.Event, demo: bool) -> None:
    cfg = load_config()
    interval = float(cfg.get("detections.interval", 30))
    store = open_store(store_url)
    try:
        pack = load_pack(configured_packs(), backends=[Engine.backend_of(store)])
        if demo:
            replay_demo(store, pack)
        engine = Engine(store, pack, settings=Settings(interval_s=interval))
        threading.Thread(target=watch_agents, args=(store_url, stop, max(1.0, interval)),
                         name="agent-watch", daemon=True).start()
        # any number of `govsoc up` over one store: one of them runs the rule set
        run_scheduled(engine, stop, max(1.0, interval),
                      ttl_s=float(cfg.get("detections.lease_s", 10.0)))
    finally:
        store.close()


def watch_agents(store_url: str, stop: threading.Event, interval: float) -> None:
    """Every `interval` seconds: an alert for each agent that went silent (posture check,
    detections.agents). Its alert id is per silence, so engines running it side by side
    raise each silence once."""
    from detections import agents

    intervals = agents.silent_intervals()
    store = open_store(store_url)
    try:
        while not stop.wait(interval):
            try:
                for aid in agents.raise_silent_alerts(store, intervals=intervals):
                    log.warning("agent silent: alert %s", aid)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("agent watch failed")
    finally:
        store.close()
