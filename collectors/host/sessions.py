"""Logged-in sessions (utmp, through psutil) as `system.login` events."""

from __future__ import annotations

import ipaddress
from typing import Any

import psutil

from soc_core.ecs import make_event

DATASET = "system.login"


class SessionTracker:
    def __init__(self, host: str) -> None:
        self.host = host
        self.known: dict[tuple, Any] = {}
        self.first = True

    def _event(self, u: Any, action: str, etype: str, ts: float) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "event": {"module": "system", "category": ["authentication", "session"],
                      "type": [etype], "action": action},
            "user": {"name": u.name},
            "host": {"name": self.host},
            "message": f"{u.name} on {u.terminal or '?'} from {u.host or 'local'} "
                       f"{action.replace('_', ' ')}",
            "govsoc": {"session": {"terminal": u.terminal or "", "started": u.started}},
        }
        if u.pid:
            fields["process"] = {"pid": u.pid}
        if u.host:
            try:
                fields["source"] = {"ip": str(ipaddress.ip_address(u.host))}
            except ValueError:
                fields["source"] = {"domain": u.host}
        return make_event(DATASET, ts, (self.host, u.name, u.terminal, u.started, u.pid,
                                        action), fields)

    def collect(self, ts: float) -> list[dict[str, Any]]:
        try:
            users = psutil.users()
        except OSError:
            return []
        now = {(u.name, u.terminal, u.started, u.pid): u for u in users}
        out = [self._event(u, "user_logout", "end", ts)
               for k, u in list(self.known.items()) if k not in now]
        for k in [k for k in self.known if k not in now]:
            del self.known[k]
        for k, u in now.items():
            if k not in self.known:
                self.known[k] = u
                out.append(self._event(u, "existing_session" if self.first else "user_login",
                                       "info" if self.first else "start", ts))
        self.first = False
        return out
