"""Helpers of the console tests: SOC data of two departments (events and alerts), and the
API served over real HTTP on loopback in a thread (what the browser talks to)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from soc_api.serve import Listen, serve_in_thread
from soc_core import ecs

DEPTS = {"wjw": ("市卫健委", "10.1"), "gaj": ("市公安局", "10.2")}
LEVELS = ("critical", "high", "medium", "low")
TACTICS = ("Initial Access", "Credential Access", "Discovery", "Lateral Movement")


def events(n: int, dept: str, *, now: datetime | None = None, tag: str = "ev",
           step_s: int = 60) -> list[dict[str, Any]]:
    """`n` flow events of a department's network, one every `step_s` seconds back from
    now (stamped by the store's departments at write)."""
    now = now or datetime.now(UTC)
    net = DEPTS[dept][1]
    return [{"@timestamp": ecs.format_time(now - timedelta(seconds=i * step_s)),
             "event": {"dataset": "network.flow", "kind": "event", "action": "flow",
                       "id": ecs.stable_id(tag, dept, i)},
             "host": {"name": f"{dept}-web-{i % 3}"},
             "source": {"ip": f"203.0.113.{i % 7 + 1}", "port": 40000 + i % 1000},
             "destination": {"ip": f"{net}.0.{i % 5 + 1}", "port": 443},
             "network": {"transport": "tcp"},
             "message": f"flow {dept} {i}"} for i in range(n)]


def alert(dept: str, i: int, *, when: datetime | None = None, status: str = "open",
          event_ids: list[str] | None = None, title: str | None = None) -> dict[str, Any]:
    """An alert as the detection engine writes it (detections.alerts.build's shape)."""
    when = when or datetime.now(UTC) - timedelta(minutes=5 * i)
    name, net = DEPTS[dept]
    t = ecs.format_time(when)
    level = LEVELS[i % len(LEVELS)]
    tactic = TACTICS[i % len(TACTICS)]
    return {
        "@timestamp": t,
        "message": f"{title or 'rule'} {dept} {i}",
        "event": {"kind": "alert", "id": f"al-{dept}-{i}", "dataset": "govsoc.alert",
                  "module": "govsoc", "severity": 50, "start": t, "end": t},
        "rule": {"id": f"rule-{i % 3}", "name": title or f"{name}可疑登录 {i}",
                 "description": "Repeated failed logins followed by a success"},
        "threat": {"framework": "MITRE ATT&CK", "tactic": {"name": [tactic]},
                   "technique": {"id": ["T1110"], "name": ["Brute Force"]}},
        "host": {"name": f"{dept}-web-{i % 3}"},
        "source": {"ip": f"203.0.113.{i % 7 + 1}"},
        "destination": {"ip": f"{net}.0.{i % 5 + 1}"},
        "organization": {"id": dept, "name": name},
        "govsoc": {"departments": [dept], "alert": {
            "status": status, "level": level, "count": len(event_ids or []) or 1,
            "first_seen": t, "last_seen": t, "event_ids": event_ids or [],
            "assignee": None, "close_reason": None, "notes": [], "created": t}},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The app served by uvicorn (one worker) on a loopback port in a thread."""

    def __init__(self, cfg: Any, app: Any) -> None:
        self.listen = Listen("127.0.0.1", free_port(), 1, insecure_http=True)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve_in_thread,
                                       args=(cfg, self.listen, self.stop, app), daemon=True)

    @property
    def url(self) -> str:
        return self.listen.url

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
