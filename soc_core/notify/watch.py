"""What is worth telling people, read from the store: new alerts at or above a level,
playbook runs waiting for approval, and finished playbook runs. Detection only writes
alerts; this reads them afterwards, so a notification can never slow or stop detection.

Each pass reads the last `notify.lookback` (default 24h) of alerts and run status documents
and queues a message for each one not queued before (the outbox remembers message ids:
the alert id; the run id with its state). Runs come from the API's run requests (waiting for
approval, then their result) and from run status documents (the result of a run started
anywhere). The very first pass on an empty outbox only
records what is already there, so installing notifications does not page everyone about
last night's alerts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from soc_core import ecs
from soc_core.notify.channels import LEVELS, Channel, Message, level_at_least
from soc_core.notify.outbox import Outbox
from soc_core.store import EventStore, Selection, parse_duration

__all__ = ["APPROVAL_STATES", "REQUEST_DATASET", "RESULT_STATES", "Watcher", "alert_message",
           "run_message"]

log = logging.getLogger("govsoc.notify")

# run requests (`govsoc.state.run_request`, written by the API's approval flow) waiting for
# a secadmin, and the final states of a request or of a run's status document
# (`playbook_runs`, also written for runs started from the CLI)
REQUEST_DATASET = "govsoc.state.run_request"
APPROVAL_STATES = ("pending",)
RESULT_STATES = ("successful", "failed", "canceled", "rejected")
_BASELINE = "baseline"


def alert_message(doc: dict[str, Any], departments: Any = None) -> Message:
    al = (doc.get("govsoc") or {}).get("alert") or {}
    rule = (doc.get("rule") or {}).get("name") or doc.get("message") or "alert"
    lines = [f"- 级别 level: {al.get('level', 'medium')}",
             f"- 次数 count: {al.get('count', 1)}",
             f"- 首次 first seen: {al.get('first_seen') or doc.get('@timestamp')}"]
    for label, f in (("主机 host", "host.name"), ("源 source", "source.ip"),
                     ("目标 destination", "destination.ip"), ("用户 user", "user.name")):
        v = ecs.get_field(doc, f)
        if v:
            lines.append(f"- {label}: {v}")
    tactics = ecs.get_field(doc, "threat.tactic.name")
    if tactics:
        lines.append(f"- ATT&CK: {', '.join(map(str, tactics))}")
    depts = _departments(doc)
    if depts:
        names = [departments.name_of(d) if departments else d for d in depts]
        lines.append(f"- 部门 department: {', '.join(names)}")
    lines.append(f"- alert id: {doc['event']['id']}")
    return Message(id=f"alert:{doc['event']['id']}", kind="alert", title=str(rule)[:200],
                   text="\n".join(lines), level=str(al.get("level", "medium")),
                   departments=tuple(depts))


def run_message(doc: dict[str, Any]) -> Message | None:
    """The news in a run request or a run status document, if any: approval waiting, or
    the result. The id is the run id with its state, so a run reported by both documents
    is one message."""
    gov = doc.get("govsoc") or {}
    request = "run_request" in gov
    run = gov.get("run_request") or gov.get("playbook") or {}
    status, run_id = run.get("status"), run.get("run_id")
    approval = request and status in APPROVAL_STATES and run.get("needs_approval", True)
    if not run_id or not (approval or status in RESULT_STATES):
        return None
    playbook = run.get("playbook") or run.get("name") or "?"
    lines = [f"- playbook: {playbook}", f"- run: {run_id}", f"- status: {status}"]
    if run.get("check"):
        lines.append("- check mode")
    if run.get("hosts"):
        lines.append(f"- hosts: {', '.join(map(str, run['hosts'][:20]))}")
    for key, label in (("requester", "requested by"), ("approver", "decided by"),
                       ("reason", "reason")):
        if run.get(key):
            lines.append(f"- {label}: {run[key]}")
    summary = run.get("summary") or {}
    if isinstance(summary, dict) and summary:
        by: dict[str, int] = {}
        for s in summary.values():
            st = str((s or {}).get("status", "?"))
            by[st] = by.get(st, 0) + 1
        lines.append("- results: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
    if approval:
        return Message(id=f"run:{run_id}:approval", kind="approval",
                       title=f"playbook {playbook} waits for approval", text="\n".join(lines),
                       departments=tuple(_departments(doc)))
    return Message(id=f"run:{run_id}:{status}", kind="playbook",
                   title=f"playbook {playbook} {status}", text="\n".join(lines),
                   departments=tuple(_departments(doc)))


def _departments(doc: dict[str, Any]) -> list[str]:
    org = (doc.get("organization") or {}).get("id")
    extra = (doc.get("govsoc") or {}).get("departments") or []
    out = [org] if isinstance(org, str) else []
    out += [d for d in (extra if isinstance(extra, list) else [extra])
            if isinstance(d, str) and d not in out]
    return out


class Watcher:
    def __init__(self, store: EventStore, outbox: Outbox, channels: list[Channel],
                 lookback: str = "24h") -> None:
        self.store, self.outbox, self.channels = store, outbox, channels
        self.lookback_ms = int(parse_duration(lookback).total_seconds() * 1000)

    def pass_once(self, now_ms: int | None = None) -> int:
        """Queue what is new; returns how many messages were queued."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        start = ecs.format_time(ecs.parse_time((now - self.lookback_ms) / 1000))
        baseline = self.outbox.mark(_BASELINE) is None
        targets = [] if baseline else self.channels
        queued = 0
        for msg in self._messages(start):
            if self.outbox.enqueue(msg, targets) and targets and \
                    any(c.wants(msg) for c in targets):
                queued += 1
        if baseline:
            self.outbox.mark(_BASELINE, "done")
        return queued

    def _messages(self, start: str) -> Any:
        kinds = {k for c in self.channels for k in c.kinds}
        if "alert" in kinds:
            lowest = min((c.min_level for c in self.channels if "alert" in c.kinds),
                         key=LEVELS.index)
            levels = [lv for lv in LEVELS if level_at_least(lv, lowest)]
            sel = Selection(family="alerts", start=start,
                            filters={"govsoc.alert.status": "open",
                                     "govsoc.alert.level": levels})
            for doc in self.store.scan(sel, page_size=500):
                yield alert_message(doc, self.store.departments)
        if kinds & {"approval", "playbook"}:
            sels = [Selection(family="state", dataset=REQUEST_DATASET, start=start)]
            if "playbook" in kinds:
                sels.append(Selection(family="playbook_runs", start=start,
                                      filters={"event.kind": "state"}))
            for sel in sels:
                for doc in self.store.scan(sel, page_size=500):
                    msg = run_message(doc)
                    if msg is not None:
                        yield msg
