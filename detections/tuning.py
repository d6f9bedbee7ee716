"""Tuning without editing rules: exceptions (field values that exclude known-benign
matches, with who added them and why), snoozing a rule until a time, and switching a rule
off and on. All of it is detection state in the store (detections.state): every engine
and API worker sees a change at once."""

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


def set_enabled(store: EventStore, rule_id: str, enabled: bool, *, by: str,
                reason: str = "") -> bool:
    """Switch a rule on or off; returns whether that changed anything. A rule switched off
    does not run: its windows pass unexamined (like a snooze without an end)."""
    entry = {"by": by, "reason": reason, "at": iso(now_ms())}

    def apply(data: dict[str, Any]) -> bool:
        was_off = rule_id in data["disabled"]
        if enabled:
            data["disabled"].pop(rule_id, None)
        elif not was_off:
            data["disabled"][rule_id] = entry
        return was_off == enabled

    return DetectionState.for_store(store).update(apply)


def tuning_of(store: EventStore, rule_id: str) -> dict[str, Any]:
    """A rule's exceptions, snooze and on/off switch as stored now."""
    data = DetectionState.for_store(store).load()
    return {"exceptions": data["exceptions"].get(rule_id, []),
            "snooze": data["snoozes"].get(rule_id), "disabled": data["disabled"].get(rule_id)}


def health(store: EventStore) -> dict[str, Any]:
    """Per rule: last run, duration, matches, errors, gaps, checkpoint, snooze."""
    return health_of(DetectionState.for_store(store).load())


def health_of(data: dict[str, Any]) -> dict[str, Any]:
    """`health` from a loaded state (one read for callers that need more of it)."""
    out = {}
    for rid, h in data["health"].items():
        out[rid] = {**h, "exceptions": len(data["exceptions"].get(rid, [])),
                    "snooze": data["snoozes"].get(rid),
                    "disabled": data["disabled"].get(rid) is not None}
    return out
