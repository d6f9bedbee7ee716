"""Helpers of the alert API tests: alert documents in the engine's shape, per department."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from soc_core import ecs

NOW = datetime.now(UTC).replace(microsecond=0)


def event(i: int, dept: str) -> dict[str, Any]:
    net = {"wjw": "10.1", "gaj": "10.2"}[dept]
    return {"@timestamp": ecs.format_time(NOW - timedelta(minutes=i)),
            "event": {"dataset": "system.auth", "kind": "event", "id": f"ev-{dept}-{i}",
                      "outcome": "failure"},
            "source": {"ip": f"{net}.0.{i % 250 + 1}"}, "host": {"name": f"h-{dept}-{i % 3}"},
            "user": {"name": "root"}, "organization": {"id": dept},
            "message": f"Failed password for root {dept} {i}"}


def alert(i: int, dept: str, *, level: str = "high", rule: str = "r-brute",
          status: str = "open") -> dict[str, Any]:
    t = ecs.format_time(NOW - timedelta(minutes=i))
    return {"@timestamp": t, "message": f"brute force ({dept} {i})",
            "event": {"kind": "alert", "id": f"al-{dept}-{i}", "dataset": "govsoc.alert",
                      "module": "govsoc", "severity": 70},
            "rule": {"id": rule, "name": "SSH brute force", "uuid": rule},
            "threat": {"framework": "MITRE ATT&CK",
                       "tactic": {"id": ["TA0006"], "name": ["Credential Access"]}},
            "host": {"name": f"h-{dept}-{i % 3}"},
            "organization": {"id": dept},
            "govsoc": {"departments": [dept],
                       "alert": {"status": status, "level": level, "count": 1,
                                 "first_seen": t, "last_seen": t,
                                 "event_ids": [f"ev-{dept}-{i}"], "assignee": None,
                                 "close_reason": None, "notes": [], "created": t}}}


def seed(store, n: int = 4) -> None:
    """n alerts (and their events) in each of wjw and gaj; wjw's alert 0 is critical."""
    docs = []
    for dept in ("wjw", "gaj"):
        for i in range(n):
            docs.append(event(i, dept))
            docs.append(alert(i, dept, level="critical" if (dept, i) == ("wjw", 0) else "high"))
    res = store.write(docs, refresh=True)
    assert not res.rejected, res.rejected[:2]
