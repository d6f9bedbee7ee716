"""Alerts: ECS documents (`event.kind: alert`) with the rule, ATT&CK `threat.*`, the matched
events' ids, first/last seen, a count, and a workflow (open -> acknowledged -> closed).

The alert id derives from (rule id, group key, suppression bucket), so the same matches
always land on the same alert: a restart, a re-scan of an overlapping window, or another
backend with the same events produce the same id and the same count, never a second alert.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from soc_core import ecs
from soc_core.store import EventStore, Selection

DATASET = "govsoc.alert"
STATUSES = ("open", "acknowledged", "closed")
CLOSE_REASONS = ("resolved", "false_positive", "true_positive", "duplicate", "benign")
EVIDENCE_IDS = 100  # matched event ids kept on the alert (the count stays exact)
# ECS fields copied from the first matched event, for list views and posture
CONTEXT_FIELDS = ("host.name", "source.ip", "destination.ip", "destination.port", "user.name",
                  "process.executable", "dns.question.name")
# (field, its first part, the rest, its getter): a field whose first part an event lacks
# (nor the field as one flat key) is not there, found without calling the getter; each is
# set in the alert as {first part: {rest: value}}
_CONTEXT_GETTERS = tuple((f, *f.split(".", 1), ecs.field_getter(f)) for f in CONTEXT_FIELDS)


class AlertError(ValueError):
    """A workflow change the user asked for is not possible (unknown id, bad status)."""


_SECONDS: dict[int, str] = {}  # epoch second -> "YYYY-MM-DDTHH:MM:SS"
_SECONDS_CAP = 100_000


def iso(ms: int) -> str:
    """Epoch milliseconds in the stored form (`ecs.format_time`). An alert writes five
    such times, most of them shared with other alerts (its window's bounds): each second
    is formatted once (a hunt raising 48,884 alerts formatted 250,000 times)."""
    sec, milli = divmod(int(ms), 1000)
    head = _SECONDS.get(sec)
    if head is None:
        head = ecs.format_time(datetime.fromtimestamp(sec, UTC))[:19]
        if len(_SECONDS) < _SECONDS_CAP:
            _SECONDS[sec] = head
    return f"{head}.{milli:03d}Z"


def alert_id(rule_id: str, key: tuple, bucket: int) -> str:
    return ecs.stable_id("alert", rule_id, repr(key), bucket)


def rule_part(rule: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parts of an alert that come from its rule alone (`rule.*`, `threat.*`): made once
    for all the alerts of one write (`build`'s `part`) and shared by them, read-only."""
    return ({"id": rule.id, "uuid": rule.id, "name": rule.title,
             "description": (rule.sigma.description or "")[:1000],
             "ruleset": rule.path.split("/rules/")[-1] if "/rules/" in rule.path
             else rule.path}, rule.threat())


def build(rule: Any, group: dict[str, Any], bucket: int, bucket_ms: int,
          events: list[dict[str, Any]], existing: dict[str, Any] | None, *,
          aid: str | None = None,
          part: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The alert for these matched events (sorted oldest first), keeping an existing
    alert's workflow state (status, assignee, notes). `aid` (its `alert_id`) and `part`
    (`rule_part(rule)`) when the caller has them already."""
    if aid is None:
        aid = alert_id(rule.id, tuple(group.items()), bucket)
    to_millis = ecs.to_millis
    times = [to_millis(e["@timestamp"]) for e in events]
    first, last = min(times), max(times)
    ids = list(dict.fromkeys([e["event"]["id"] for e in events]))
    count = len(ids)
    prev = ((existing or {}).get("govsoc") or {}).get("alert") or _NO_ALERT
    if prev:
        first = min(first, to_millis(prev.get("first_seen", iso(first))))
        last = max(last, to_millis(prev.get("last_seen", iso(last))))
        # a pass recomputes the whole bucket, or adds a window that ran on past its end:
        # the evidence is the union, and a count already reported is never lowered
        known = list(prev.get("event_ids") or [])
        seen = set(known)
        ids = known + [i for i in ids if i not in seen]
        whole = int(prev.get("count", 0)) <= len(known)  # the stored ids were all of them
        count = max(count, len(ids) if whole else int(prev.get("count", 0)))
    rule_doc, threat = part or rule_part(rule)
    first_seen, last_seen = iso(first), iso(last)
    doc: dict[str, Any] = {
        "@timestamp": last_seen,
        "message": f"{rule.title} ({count} event{'s' if count != 1 else ''})",
        "event": {"kind": "alert", "id": aid, "dataset": DATASET, "module": "govsoc",
                  "severity": rule.severity, "risk_score": float(rule.severity),
                  "start": first_seen, "end": last_seen},
        "rule": rule_doc,
        "threat": threat,
    }
    for f, root, leaf, get in _CONTEXT_GETTERS:
        v = group.get(f)
        if v is None:
            for e in events:  # the first event that has it
                if root in e or f in e:
                    v = get(e)
                    if v is not None:
                        break
        if v is not None:
            if isinstance(v, tuple):
                v = list(v)
            if "." in leaf:  # dns.question.name
                ecs.set_field(doc, f, v)
            elif (node := doc.get(root)) is not None:
                node[leaf] = v
            else:
                doc[root] = {leaf: v}
    organization, departments = _departments(events, existing)
    if organization:
        doc["organization"] = organization
    doc["govsoc"] = {"alert": {
        "status": prev.get("status", "open"),
        "level": rule.level,
        "count": count,
        "first_seen": first_seen,
        "last_seen": last_seen,
        "window": {"start": iso(bucket * bucket_ms), "end": iso((bucket + 1) * bucket_ms)},
        # nested as the store keeps it (its fields are dotted names): the store's
        # validation then finds no dotted key to expand in the whole document
        "group": ecs.expand_dotted({k: list(v) if isinstance(v, tuple) else v
                                    for k, v in group.items()}),
        "event_ids": ids[:EVIDENCE_IDS],
        "correlation": bool(rule.is_correlation),
        "assignee": prev.get("assignee"),
        "close_reason": prev.get("close_reason"),
        "notes": prev.get("notes", []),
        "history": prev.get("history", []),  # the workflow's (detections.workflow)
        # formatted once a second (`iso`): a pass writing thousands of alerts formatted
        # the same second for each
        "created": prev.get("created") or iso(now_ms()),
    }}
    if departments:
        doc["govsoc"]["departments"] = departments
    return doc


_NO_ALERT: dict[str, Any] = {}  # a new alert's (read only) previous state


def _departments(events: list[dict[str, Any]], existing: dict[str, Any] | None
                 ) -> tuple[dict[str, Any] | None, list[str]]:
    """The alert's department: the organization of its oldest matched event that has
    one; and every department id its events (and the alert so far) involve, so each of
    them sees the alert."""
    organization = None
    ids: list[str] = []
    for d in events if existing is None else [*events, existing]:
        org = d.get("organization")
        if isinstance(org, dict) and isinstance(org.get("id"), str):
            if organization is None:
                organization = {k: org[k] for k in ("id", "name") if k in org}
            if org["id"] not in ids:
                ids.append(org["id"])
        gov = d.get("govsoc")
        more = gov.get("departments") if type(gov) is dict else None
        for i in more if isinstance(more, list) else ():
            if isinstance(i, str) and i not in ids:
                ids.append(i)
    return organization, ids


def changed(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return True
    a, b = new["govsoc"]["alert"], (old.get("govsoc") or {}).get("alert") or {}
    return (a["count"], a["last_seen"], a["first_seen"]) != (
        b.get("count"), b.get("last_seen"), b.get("first_seen"))


def now_ms() -> int:
    """The wall clock in epoch milliseconds (as `ecs.to_millis(datetime.now(UTC))`)."""
    return time.time_ns() // 1_000_000


def set_status(store: EventStore, aid: str, *, status: str | None = None,
               note: str | None = None, assignee: str | None = None,
               close_reason: str | None = None, by: str = "analyst") -> dict[str, Any]:
    """Move an alert through its workflow (`detections.workflow`, the same code as the
    API); a note is appended with who and when."""
    from detections import workflow

    change = workflow.Change(status=status, reason=close_reason, note=note or None,
                             assignee=workflow.UNSET if assignee is None else assignee)
    return workflow.apply(store, aid, change, by=by)


def list_alerts(store: EventStore, *, status: str | None = None, limit: int = 1000,
                start: Any = None) -> list[dict[str, Any]]:
    """Newest first."""
    filters = {"govsoc.alert.status": status} if status else None
    out = []
    for doc in store.scan(Selection(family="alerts", filters=filters, start=start),
                          page_size=min(limit, 1000), descending=True):
        out.append(doc)
        if len(out) >= limit:
            break
    return out
