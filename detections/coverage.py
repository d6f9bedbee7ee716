"""What the engine has examined, counted per day, so that events stored later into time it
had already examined (last week's logs imported while `govsoc up` ran) are found.

Per dataset group (the datasets a rule reads), the state keeps `to` — the time below which
no window reads again (the next windows start at `checkpoint − lookback`) — and, per UTC
day below it, how many events of the group were there when the engine read them. Each pass
counts the span it closes, before its rules read it: an event stored after the count was
either read (then it is counted later, harmlessly, as unexamined and read again) or not,
and then the day's stored count exceeds the recorded one. A backfilling pass compares the
two and examines the days that grew; alerts are idempotent, so reading again is harmless.
"""

from __future__ import annotations

from typing import Any

from soc_core import ecs
from soc_core.store import EventStore, Selection

DAY_MS = 86_400_000


def group_key(datasets: tuple[str, ...] | None) -> str:
    return ",".join(datasets) if datasets else "*"


def day_counts(store: EventStore, datasets: tuple[str, ...] | None, start: int | None,
               end: int) -> dict[str, int]:
    """Events of `datasets` in [start, end) per UTC day (day start in ms, as a string key)."""
    sel = Selection(family="events", dataset=list(datasets) if datasets else None,
                    start=None if start is None else ecs.format_time(ecs.parse_time(start / 1000)),
                    end=ecs.format_time(ecs.parse_time(end / 1000)))
    return {str(ecs.to_millis(day)): n for day, n in store.histogram("1d", sel)}


def closing(store: EventStore, coverage: dict[str, Any], groups: dict[str, Any],
            starts: dict[str, int], closed_to: int) -> dict[str, tuple[int, dict[str, int]]]:
    """At the start of a pass: per group, the day counts of the span the pass closes
    ([recorded `to` or the group's earliest window start, closed_to))."""
    out = {}
    for key, datasets in groups.items():
        rec = coverage.get(key)
        start = rec["to"] if rec else starts[key]
        if closed_to > start:
            out[key] = (closed_to, day_counts(store, datasets, start, closed_to))
    return out


def grown(store: EventStore, coverage: dict[str, Any], groups: dict[str, Any]
          ) -> dict[str, dict[str, int]]:
    """Per group, the days below its `to` holding more events than were examined there:
    {day: stored count}."""
    out = {}
    for key, datasets in groups.items():
        rec = coverage.get(key)
        if not rec:
            continue
        days = rec["days"]
        more = {d: n for d, n in day_counts(store, datasets, None, rec["to"]).items()
                if n > days.get(d, 0)}
        if more:
            out[key] = more
    return out


def spans(days: dict[str, int], after: int, to: int) -> list[tuple[int, int]]:
    """The days (from `after` on, below `to`) as merged [start, end) spans."""
    out: list[tuple[int, int]] = []
    for d in sorted(int(k) for k in days):
        lo, hi = max(d, after), min(d + DAY_MS, to)
        if lo >= hi:
            continue
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def record(coverage: dict[str, Any], closed: dict[str, tuple[int, dict[str, int]]],
           examined: dict[str, dict[str, int]], failed: set[str]) -> None:
    """After a pass: add what it closed, set the days it examined again to their counts;
    a group with a failed rule keeps its record (its windows are read again)."""
    for key, (to, counts) in closed.items():
        if key in failed:
            continue
        rec = coverage.setdefault(key, {"to": to, "days": {}})
        for day, n in counts.items():
            rec["days"][day] = rec["days"].get(day, 0) + n
        rec["to"] = to
    for key, days in examined.items():
        if key not in failed and key in coverage:
            coverage[key]["days"].update(days)
