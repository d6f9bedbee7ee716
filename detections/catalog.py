"""Whether a rule can really match: a rule that converts but names a field no collector
writes (per dataset, `logsources.DATASET_FIELDS`) never matches, and `rules check` says so."""

from __future__ import annotations

from detections.logsources import COMMON, DATASET_FIELDS
from detections.rules import Rule


def carried(field: str, datasets: list[str]) -> bool:
    patterns = list(COMMON)
    for ds in datasets:
        patterns.extend(DATASET_FIELDS.get(ds, ()))
    for pat in patterns:
        if pat.endswith(".*"):
            if field.startswith(pat[:-1]):
                return True
        elif field == pat:
            return True
    return False


def missing_fields(rule: Rule) -> list[str]:
    """Fields of a compiled rule that no event of its datasets carries."""
    if not rule.datasets:
        return sorted(rule.fields)
    return sorted(f for f in rule.fields if not carried(f, rule.datasets))


def usable(rule: Rule, backend: str) -> bool:
    """Converted for `backend`, reads a log source govsoc collects, and names only fields
    our events carry: a rule that can really match."""
    return bool(backend in rule.queries and rule.datasets and not missing_fields(rule))
