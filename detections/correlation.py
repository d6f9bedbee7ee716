"""Sigma correlation rules (`event_count`, `value_count`, `temporal`, `temporal_ordered`)
evaluated over the base rules' matches.

The base rules run as compiled queries on the store; grouping and the sliding `timespan`
window are evaluated here, in one place, so a correlation means exactly the same on SQLite
and on Elasticsearch (neither store's own aggregation semantics leak in).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigma.correlations import SigmaCorrelationConditionOperator as Op
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType

from soc_core import ecs

_OPS: dict[Op, Callable[[int, int], bool]] = {
    Op.LT: operator.lt, Op.LTE: operator.le, Op.GT: operator.gt, Op.GTE: operator.ge,
    Op.EQ: operator.eq, Op.NEQ: operator.ne,
}


@dataclass
class Match:
    """One base-rule match: the event, which base rule matched it, its time in ms."""

    rule_id: str
    rule_name: str | None
    ts: int
    doc: dict[str, Any]


def group_key(doc: dict[str, Any], fields: list[str]) -> tuple:
    out = []
    for f in fields:
        v = ecs.get_field(doc, f)
        out.append(tuple(v) if isinstance(v, list) else v)
    return tuple(out)


def _field_for(corr: SigmaCorrelationRule, match: Match, name: str) -> str:
    """The event field a group-by name stands for in this base rule (Sigma `aliases`)."""
    alias = corr.aliases.aliases.get(name) if corr.aliases else None
    if alias is None:
        return name
    for ref, fieldname in alias.mapping.items():
        target = ref.rule if hasattr(ref, "rule") else ref
        ids = {str(getattr(target, "id", "")), str(getattr(target, "name", "")), str(ref)}
        if match.rule_id in ids or (match.rule_name and match.rule_name in ids):
            return fieldname
    return name


def evaluate(corr: SigmaCorrelationRule, matches: list[Match], bucket_ms: int,
             field_map: Callable[[str], str] = lambda f: f,
             min_counts: dict[str, int] | None = None
             ) -> dict[tuple[tuple, int], list[Match]]:
    """Qualifying groups: (group key, bucket) -> the matches of every sliding window that
    satisfied the condition and ended in that bucket. `field_map` maps a Sigma field name
    (a value_count field) to the ECS field the pipeline maps it to. `min_counts` (base rule
    id -> n, our `govsoc.min_count` extension) makes a temporal rule need n matches of that
    base rule, e.g. a login success after at least three failures."""
    span = int(corr.timespan.seconds * 1000)
    cond = corr.condition
    check = _OPS[cond.op]
    groups: dict[tuple, list[Match]] = {}
    by_rule: dict[str, list[str]] = {}  # base rule -> its group-by fields (aliases resolved)
    for m in matches:
        fields = by_rule.get(m.rule_id)
        if fields is None:
            fields = by_rule[m.rule_id] = [field_map(_field_for(corr, m, g))
                                           for g in corr.group_by or []]
        key = group_key(m.doc, fields)
        if any(v is None for v in key):
            continue  # an event without the grouping field does not belong to any group
        groups.setdefault(key, []).append(m)
    ctype = corr.type
    value_field = field_map(cond.fieldref) if cond.fieldref else None
    need = [str(r.rule.id) for r in corr.rules]
    mins = min_counts or {}
    out: dict[tuple[tuple, int], list[Match]] = {}
    floor = _minimum(ctype, cond)
    for key, items in groups.items():
        if len(items) < floor:
            continue  # too few events in the whole group to ever reach the threshold
        items.sort(key=lambda m: (m.ts, m.doc["event"]["id"]))
        measures = [_measure(ctype, m, value_field) for m in items]
        start = 0
        added: dict[int, int] = {}  # bucket -> index up to which items were added
        seen: Counter = Counter()
        total = 0.0
        for end, m in enumerate(items):
            seen[measures[end]] += 1
            if ctype in (SigmaCorrelationType.VALUE_SUM, SigmaCorrelationType.VALUE_AVG):
                total += _number(measures[end])
            while m.ts - items[start].ts > span:
                old = measures[start]
                seen[old] -= 1
                if not seen[old]:
                    del seen[old]
                if ctype in (SigmaCorrelationType.VALUE_SUM, SigmaCorrelationType.VALUE_AVG):
                    total -= _number(old)
                start += 1
            size = end + 1 - start
            if ctype == SigmaCorrelationType.EVENT_COUNT:
                ok = check(size, cond.count)
            elif ctype == SigmaCorrelationType.VALUE_COUNT:
                ok = check(len(seen) - (None in seen), cond.count)
            elif ctype == SigmaCorrelationType.VALUE_SUM:
                ok = check(total, cond.count)
            elif ctype == SigmaCorrelationType.VALUE_AVG:
                ok = check(total / size, cond.count)
            elif ctype in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
                ok = all(seen[r] >= mins.get(r, 1) for r in need)
                if ok and ctype == SigmaCorrelationType.TEMPORAL_ORDERED:
                    ok = _ordered(items[start:end + 1], need, mins)
            else:
                raise ValueError(f"correlation type {ctype.name.lower()} is not supported")
            if ok:
                # windows only slide forward: add the part of this one not added yet
                bucket = m.ts // bucket_ms
                got = out.setdefault((key, bucket), [])
                first = max(start, added.get(bucket, 0))
                got.extend(items[first:end + 1])
                added[bucket] = end + 1
    return out


def _measure(ctype: SigmaCorrelationType, m: Match, value_field: str | None) -> Any:
    if ctype in (SigmaCorrelationType.VALUE_COUNT, SigmaCorrelationType.VALUE_SUM,
                 SigmaCorrelationType.VALUE_AVG):
        v = ecs.get_field(m.doc, value_field) if value_field else None
        return tuple(v) if isinstance(v, list) else v
    if ctype == SigmaCorrelationType.EVENT_COUNT:
        return m.doc["event"]["id"]
    return m.rule_id


def _minimum(ctype: SigmaCorrelationType, cond: Any) -> int:
    """Fewest events a group needs before the condition can hold (counts only grow)."""
    if ctype in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
        if cond.op == Op.GTE:
            return int(cond.count)
        if cond.op == Op.GT:
            return int(cond.count) + 1
    return 1


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _ordered(window: list[Match], need: list[str], mins: dict[str, int]) -> bool:
    """The base rules matched in their listed order (each its minimum number of times)."""
    pos = count = 0
    for m in window:
        if pos < len(need) and m.rule_id == need[pos]:
            count += 1
            if count >= mins.get(need[pos], 1):
                pos, count = pos + 1, 0
    return pos == len(need)
