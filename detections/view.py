"""The live terminal view for `govsoc up`: security index, open alerts by severity, newest
alerts. `render(store)` returns a rich renderable (registered under `govsoc.views`)."""

from __future__ import annotations

import time
from datetime import UTC, tzinfo
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from detections.alerts import list_alerts
from detections.posture import LEVEL_ORDER, posture
from soc_core import ecs
from soc_core.config import ConfigError, viewer_zone
from soc_core.store import EventStore

_COLOURS = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan",
            "informational": "dim", "good": "green", "attention": "yellow",
            "at_risk": "dark_orange", "severe": "bold red"}


def _local(stamp: str) -> str:
    """UTC in storage, the viewer's zone here (UTC if the configured one is unknown: the
    live view keeps running)."""
    try:
        zone: tzinfo = viewer_zone()
    except ConfigError:
        zone = UTC
    return ecs.parse_time(stamp).astimezone(zone).strftime("%m-%d %H:%M:%S")


_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}
POSTURE_EVERY_S = 15.0  # the view refreshes every 2 s; the posture scans a day of events


def render(store: EventStore, *, newest: int = 8) -> Any:
    key = f"{store.url}|{getattr(store, 'namespace', '')}"
    hit = _CACHE.get(key)
    if hit and time.monotonic() - hit[0] < POSTURE_EVERY_S:
        p = hit[1]
    else:
        p = posture(store)
        _CACHE[key] = (time.monotonic(), p)
    idx = p["security_index"]
    head = Text.assemble(
        ("security index ", "bold"),
        (f"{idx['value']:.0f}/100 ", _COLOURS.get(idx["band"], "")),
        (f"{idx['band_zh']} ({idx['band']})  ", _COLOURS.get(idx["band"], "")),
        (f"alerts -{idx['alerts']:.0f}  exposure -{idx['exposure']:.0f}  "
         f"patch lag -{idx['patch_lag']:.0f}", "dim"))
    sev = Table(title="open alerts by severity", show_header=False, box=None)
    for lvl in LEVEL_ORDER:
        sev.add_row(Text(lvl, _COLOURS[lvl]), str(p["by_severity"][lvl]))
    recent = Table(title="newest alerts")
    for col in ("last seen", "level", "rule", "source", "target", "count", "status"):
        recent.add_column(col)
    for doc in list_alerts(store, limit=newest):
        al = doc["govsoc"]["alert"]
        recent.add_row(
            _local(al["last_seen"]), Text(al["level"], _COLOURS[al["level"]]),
            doc["rule"]["name"][:48], str(ecs.get_field(doc, "source.ip") or ""),
            str(ecs.get_field(doc, "destination.ip") or ecs.get_field(doc, "host.name") or ""),
            str(al["count"]), al["status"])
    return Group(head, sev, recent)
