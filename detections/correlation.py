"""Sigma correlation rules (`event_count`, `value_count`, `temporal`, `temporal_ordered`)
evaluated over the base rules' matches.

The base rules run as compiled queries on the store; grouping and the sliding `timespan`
window are evaluated here, in one place, so a correlation means exactly the same on SQLite
and on Elasticsearch (neither store's own aggregation semantics leak in).

This is the engine's hot path (every base-rule match of a pass goes through it), so the
work per match is kept small: group keys come from field getters compiled once per rule,
and only groups large enough to ever satisfy the condition are timed, sorted and windowed.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sigma.correlations import SigmaCorrelationConditionOperator as Op
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType

from soc_core import ecs

_OPS: dict[Op, Callable[[int, int], bool]] = {
    Op.LT: operator.lt, Op.LTE: operator.le, Op.GT: operator.gt, Op.GTE: operator.ge,
    Op.EQ: operator.eq, Op.NEQ: operator.ne,
}


class Match(NamedTuple):
    """One base-rule match: its time in ms and event id (the order of matches), which base
    rule matched, and the event."""

    ts: int
    event_id: str
    rule_id: str
    doc: dict[str, Any]


class Base(NamedTuple):
    """One base rule's matches in a pass, in store order (oldest first)."""

    rule_id: str
    rule_name: str | None
    docs: Sequence[dict[str, Any]]


# a field's value at a dotted path, the path split once (`ecs.field_getter`)
getter = ecs.field_getter


def key_getter(fields: Sequence[str]) -> Callable[[dict[str, Any]], tuple]:
    """A document's group key for `fields`: a tuple, lists turned into tuples (hashable).
    A field whose first part is not in the document (nor the field as one flat key) is
    None without asking its getter: most events lack most of the default group fields."""
    gets = [(f.split(".", 1)[0], f, getter(f)) for f in fields]
    if len(gets) == 1:  # the usual group-by: one field
        [(root, dotted, one)] = gets

        def key1(doc: dict[str, Any]) -> tuple:
            v = one(doc) if root in doc or dotted in doc else None
            return (tuple(v) if isinstance(v, list) else v,)

        return key1

    def key(doc: dict[str, Any]) -> tuple:
        out = []
        for root, dotted, g in gets:
            if root in doc or dotted in doc:
                v = g(doc)
                out.append(tuple(v) if isinstance(v, list) else v)
            else:
                out.append(None)
        return tuple(out)

    return key


def group_key(doc: dict[str, Any], fields: list[str]) -> tuple:
    return key_getter(fields)(doc)


def group_keys(docs: Sequence[dict[str, Any]], fields: Sequence[str]) -> list[tuple]:
    """`group_key` of every document. Correlations key every base-rule match of a pass,
    so the usual case (two-level ECS fields present in every match) is read column by
    column in comprehensions; anything else goes document by document."""
    cols = [_column(docs, f) for f in fields]
    if any(c is None for c in cols):
        key_of = key_getter(fields)
        return [key_of(d) for d in docs]
    return list(zip(*cols, strict=True)) if cols else [() for _ in docs]


def _column(docs: Sequence[dict[str, Any]], dotted: str) -> list[Any] | None:
    """The field in every document (lists as tuples), or None when some document needs
    `get_field`'s fallbacks (a missing key, a flat dotted key)."""
    parts = dotted.split(".")
    if len(parts) != 2:
        return None
    a, b = parts
    try:
        col = [d[a][b] for d in docs]
    except (KeyError, TypeError, IndexError):
        return None
    if list in set(map(type, col)):  # keys must be hashable
        col = [tuple(v) if isinstance(v, list) else v for v in col]
    return col


def _field_for(corr: SigmaCorrelationRule, rule_id: str, rule_name: str | None,
               name: str) -> str:
    """The event field a group-by name stands for in this base rule (Sigma `aliases`)."""
    alias = corr.aliases.aliases.get(name) if corr.aliases else None
    if alias is None:
        return name
    for ref, fieldname in alias.mapping.items():
        target = ref.rule if hasattr(ref, "rule") else ref
        ids = {str(getattr(target, "id", "")), str(getattr(target, "name", "")), str(ref)}
        if rule_id in ids or (rule_name and rule_name in ids):
            return fieldname
    return name


def evaluate(corr: SigmaCorrelationRule, bases: Sequence[Base], bucket_ms: int,
             field_map: Callable[[str], str] = lambda f: f,
             min_counts: dict[str, int] | None = None,
             alerted: Callable[[tuple, int], bool] = lambda key, bucket: False
             ) -> dict[tuple[tuple, int], list[Match]]:
    """Qualifying groups: (group key, bucket) -> the matches of every sliding window that
    satisfied the condition and ended in that bucket. `field_map` maps a Sigma field name
    (a value_count field) to the ECS field the pipeline maps it to. `min_counts` (base rule
    id -> n, our `govsoc.min_count` extension) makes a temporal rule need n matches of that
    base rule, e.g. a login success after at least three failures.

    A window that begins in an earlier bucket in which the group already qualified (here,
    or `alerted(key, bucket)`: an alert stored by an earlier pass) belongs to that bucket:
    one scan across a bucket boundary is one alert, not two."""
    span = int(corr.timespan.seconds * 1000)
    cond = corr.condition
    check = _OPS[cond.op]
    ctype = corr.type
    need = [str(r.rule.id) for r in corr.rules]
    mins = min_counts or {}
    floor = _minimum(ctype, cond, need, mins)
    # count the keys first: most groups (one source address...) are far below the
    # threshold, and their matches never need a time, a Match or a sort
    keys = [group_keys(base.docs, [field_map(_field_for(corr, base.rule_id, base.rule_name, g))
                                   for g in corr.group_by or []]) for base in bases]
    sizes: Counter = Counter()
    for ks in keys:
        sizes.update(ks)
    # an event without a grouping field does not belong to any group
    wanted = {k for k, n in sizes.items() if n >= floor and None not in k}
    groups: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
    for i, (base, ks) in enumerate(zip(bases, keys, strict=True)):
        for j in [j for j, k in enumerate(ks) if k in wanted]:
            groups.setdefault(ks[j], []).append((i, base.docs[j]))
    value_of = getter(field_map(cond.fieldref)) if cond.fieldref else None
    out: dict[tuple[tuple, int], list[Match]] = {}
    counting = ctype == SigmaCorrelationType.EVENT_COUNT  # the window size is the measure
    summing = ctype in (SigmaCorrelationType.VALUE_SUM, SigmaCorrelationType.VALUE_AVG)
    for key, members in groups.items():
        items = [Match(ecs.to_millis(d["@timestamp"]), d["event"]["id"], bases[i].rule_id, d)
                 for i, d in members]
        # stable: an event matched by two base rules keeps the base rules' order
        items.sort(key=_order)
        measures = [] if counting else [_measure(ctype, m, value_of) for m in items]
        start = 0
        added: dict[int, int] = {}  # bucket -> index up to which items were added
        seen: Counter = Counter()
        total = 0.0
        for end, m in enumerate(items):
            if not counting:
                seen[measures[end]] += 1
                if summing:
                    total += _number(measures[end])
            while m.ts - items[start].ts > span:
                if not counting:
                    old = measures[start]
                    seen[old] -= 1
                    if not seen[old]:
                        del seen[old]
                    if summing:
                        total -= _number(old)
                start += 1
            size = end + 1 - start
            if counting:
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
                began = items[start].ts // bucket_ms
                if began < bucket and ((key, began) in out or alerted(key, began)):
                    bucket = began
                got = out.setdefault((key, bucket), [])
                first = max(start, added.get(bucket, 0))
                got.extend(items[first:end + 1])
                added[bucket] = end + 1
    return out


def _order(m: Match) -> tuple[int, str]:
    return m.ts, m.event_id


def _measure(ctype: SigmaCorrelationType, m: Match,
             value_of: Callable[[dict[str, Any]], Any] | None) -> Any:
    if ctype in (SigmaCorrelationType.VALUE_COUNT, SigmaCorrelationType.VALUE_SUM,
                 SigmaCorrelationType.VALUE_AVG):
        v = value_of(m.doc) if value_of else None
        return tuple(v) if isinstance(v, list) else v
    if ctype == SigmaCorrelationType.EVENT_COUNT:
        return m.event_id
    return m.rule_id


def _minimum(ctype: SigmaCorrelationType, cond: Any, need: list[str],
             mins: dict[str, int]) -> int:
    """Fewest matches a group needs before the condition can hold (counts only grow)."""
    if ctype in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
        if cond.op == Op.GTE:
            return int(cond.count)
        if cond.op == Op.GT:
            return int(cond.count) + 1
    if ctype in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
        # every base rule its minimum number of times (one event matching two base rules
        # is two matches, so the sum holds)
        return sum(mins.get(r, 1) for r in set(need))
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
