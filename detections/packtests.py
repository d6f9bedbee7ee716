"""The positive and negative test events every rule of our pack carries in its `govsoc.tests`
block, turned into stored-ready ECS events.

    tests:
      positive:
        - {repeat: 12, step: 3, offset: 0, jitter: [..], event: {source.ip: ..., ...}}
      negative: [...]

Event i of an entry is at `base + offset + i*step (+ jitter[i])` seconds; a `{i}` in a string
value is replaced by i (a result made of digits becomes a number, e.g. a port). The dataset
defaults to the rule's first dataset (for a correlation, its first base rule's).
"""

from __future__ import annotations

from typing import Any

from detections.rules import Rule, RulePack
from soc_core import ecs

SPACING_S = 7200  # each rule's test events get their own two hours: no cross-talk


def _subst(value: Any, i: int) -> Any:
    if isinstance(value, str) and "{i}" in value:
        out = value.replace("{i}", str(i))
        return int(out) if out.isdigit() else out
    return value


def default_dataset(pack: RulePack, rule: Rule) -> str:
    if rule.is_correlation:
        bases = pack.bases(rule)
        return bases[0].datasets[0] if bases and bases[0].datasets else "unknown"
    return rule.datasets[0] if rule.datasets else "unknown"


def events_for(pack: RulePack, rule: Rule, which: str, base_s: float) -> list[dict[str, Any]]:
    specs = ((rule.options.get("tests") or {}).get(which)) or []
    out = []
    for n, spec in enumerate(specs):
        jitter = spec.get("jitter") or [0]
        for i in range(int(spec.get("repeat", 1))):
            fields = {k: _subst(v, i) for k, v in spec["event"].items()}
            fields.setdefault("event.dataset", default_dataset(pack, rule))
            t = (base_s + spec.get("offset", 0) + i * spec.get("step", 1)
                 + jitter[i % len(jitter)])
            doc = ecs.expand_dotted(fields)
            doc["@timestamp"] = ecs.format_time(ecs.parse_time(float(t)))
            doc["event"]["id"] = ecs.stable_id("packtest", rule.id, which, n, i)
            out.append(doc)
    return out


def pack_events(pack: RulePack, which: str, base_s: float) -> dict[str, list[dict[str, Any]]]:
    """rule id -> its test events, each rule in its own time slot after `base_s`."""
    out = {}
    tested = [r for r in pack.rules if (r.options.get("tests") or {}).get(which)]
    for k, rule in enumerate(sorted(tested, key=lambda r: r.id)):
        out[rule.id] = events_for(pack, rule, which, base_s + k * SPACING_S)
    return out
