"""Tuning without editing rules: exceptions (field values that exclude known-benign
matches, with who added them and why) and snoozing a rule until a time."""

from __future__ import annotations

from typing import Any

from detections.alerts import iso
from detections.engine import now_ms, to_ms
from detections.state import DetectionState
from soc_core import ecs
from soc_core.store import EventStore


class TuningError(ValueError):
    """A tuning request that cannot be applied (unknown rule, bad time, missing reason)."""


def add_exception(store: EventStore, rule_id: str, field: str, values: list[Any], *,
                  by: str, reason: str) -> dict[str, Any]:
    if not field or not values:
        raise TuningError("an exception needs a field and at least one value")
    if not reason.strip():
        raise TuningError("say why: an exception needs a reason")
    exc = {"id": ecs.stable_id(rule_id, field, repr(values))[:12], "field": field,
           "values": list(values), "by": by, "reason": reason, "added": iso(now_ms())}

    def apply(data: dict[str, Any]) -> None:
        lst = data["exceptions"].setdefault(rule_id, [])
        lst[:] = [x for x in lst if x["id"] != exc["id"]] + [exc]

    DetectionState.for_store(store).update(apply)
    return exc


def remove_exception(store: EventStore, rule_id: str, exc_id: str) -> bool:
    def apply(data: dict[str, Any]) -> bool:
        lst = data["exceptions"].get(rule_id, [])
        keep = [x for x in lst if x["id"] != exc_id]
        data["exceptions"][rule_id] = keep
        return len(keep) != len(lst)

    return DetectionState.for_store(store).update(apply)


def snooze(store: EventStore, rule_id: str, until: Any, *, by: str, reason: str = ""
           ) -> dict[str, Any]:
    try:
        until_ms = to_ms(until)
    except ValueError as exc:
        raise TuningError(str(exc)) from exc
    if until_ms <= now_ms():
        raise TuningError("snooze until a time in the future")
    entry = {"until": iso(until_ms), "by": by, "reason": reason, "added": iso(now_ms())}
    DetectionState.for_store(store).update(lambda d: d["snoozes"].__setitem__(rule_id, entry))
    return entry


def unsnooze(store: EventStore, rule_id: str) -> bool:
    return DetectionState.for_store(store).update(
        lambda d: d["snoozes"].pop(rule_id, None) is not None)


def health(store: EventStore) -> dict[str, Any]:
    """Per rule: last run, duration, matches, errors, gaps, checkpoint, snooze."""
    data = DetectionState.for_store(store).load()
    out = {}
    for rid, h in data["health"].items():
        out[rid] = {**h, "exceptions": len(data["exceptions"].get(rid, [])),
                    "snooze": data["snoozes"].get(rid)}
    return out
