"""Helpers of the console tests: SOC data of two departments (events and alerts), and the
API served over real HTTP on loopback in a thread (what the browser talks to)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from api_helpers import STRONG

from soc_api.serve import Listen, serve_in_thread
from soc_core import ecs

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
AXE = Path(__file__).resolve().parent / "console_vendor" / "axe.min.js"
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


class Tab:
    """One page of a browser context, collecting its console errors."""

    def __init__(self, context, url: str) -> None:
        self.page = context.new_page()
        self.url = url
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"{m.text} ({m.location.get('url')}:{m.location.get('lineNumber')})"))
        self.page.on("pageerror", lambda e: self.errors.append(f"{e} {e.stack}"))

    def visit(self, path: str, shot: str | None = None, wait: str = "main"):
        self.page.goto(self.url + path)
        self.page.wait_for_selector(wait)
        self.page.wait_for_load_state("networkidle")
        self.check(shot)
        return self.page

    def check(self, shot: str | None) -> None:
        """No console error so far, no serious accessibility violation, a screenshot."""
        assert not self.errors, f"console errors on {self.page.url}: {self.errors}"
        # a transition under way (a toast fading in) is checked at its end: axe would
        # measure the contrast of its half-transparent middle
        self.page.evaluate("""() => Promise.race([
            Promise.all(document.getAnimations().map(a => a.finished.catch(() => null))),
            new Promise(done => setTimeout(done, 2000))])""")
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE.read_text())
        found = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))")
        assert not found, f"accessibility violations on {self.page.url}: {found}"
        if shot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)


def login(page, url: str, user: str, password: str = STRONG, code: str = "") -> None:
    if not page.url.startswith(url + "/login"):
        page.goto(url + "/login")
    page.fill("#username", user)
    page.fill("#password", password)
    if code:
        page.fill("#totp", code)
    with page.expect_response(url + "/auth/login"):
        page.click("#login-form button[type=submit]")
