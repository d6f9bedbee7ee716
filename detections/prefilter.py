"""The hunt's native EVTX prefilter (`detections._native`, built from `native/`): it
reads EVTX files itself and, for every record whose shape the evaluator has met, applies
the evaluator's own plan for that shape (the rules it always evaluates, and the literal
scan that opens the others) before the record becomes a Python object. Records no rule
can match reach the hunt as their dataset, ids and times (`UnmatchedRecords`, consecutive
ones together); one with candidates as an
`EvtxRecord` naming them (`SourceRecord.candidates`), whose predicates the evaluator
still decides. A record of a shape not yet planned, or one the native reader does not
call plain, reaches the evaluator whole, as without the prefilter.

The filter also evaluates the opened rules' conditions, in the form `native_condition`
writes from the evaluator's own condition tree and with its semantics for string values;
what has no such form stays the Python evaluator's. A test holds the hunt's findings equal
with and without the filter.
"""

from __future__ import annotations

import operator
from typing import Any

from detections.backends import ARRAY_FIELDS
from detections.evaluator import Evaluator, _no_values
from soc_core.textcase import fold_case

__all__ = ["EvtxPrefilter", "available"]


def native_condition(node: tuple) -> tuple | None:
    """A rule's condition (the evaluator's intermediate form) as the native filter
    evaluates it on a record whose fields are all strings, with the evaluator's semantics
    for such values (`detections.evaluator.predicate`); None where it has no such form
    (field references, keywords, array fields): the rule is then the Python evaluator's
    alone. A regular expression is run natively only on ASCII text without a vertical tab
    (there an ASCII program answers as RE2 does); on any other text the filter leaves the
    rule to the Python evaluator for that record."""
    op = node[0]
    if op in ("and", "or"):
        kids = [native_condition(c) for c in node[1]]
        return None if any(k is None for k in kids) else (op, kids)
    if op == "not":
        kid = native_condition(node[1])
        return None if kid is None else ("not", kid)
    if op in ("str", "num", "bool", "exists", "null", "cmp") and node[1] in ARRAY_FIELDS:
        return None
    if op == "str":
        _, f, kind, values, cased = node
        if kind == "glob":  # wildcards inside: the native filter matches them itself
            return ("glob", f, list(values), bool(cased))
        return ("str", f, kind, list(values), bool(cased))
    if op == "re":  # natively on ASCII text (where RE2 answers alike), else by Python
        return ("re", node[1], node[2])
    if op == "num":  # a string equals a number's text
        return ("equals", node[1], f"{node[2]}")
    if op == "bool":
        return ("equals", node[1], "true" if node[2] else "false")
    if op == "exists":
        return ("exists", node[1], bool(node[2]))
    if op == "null":
        return ("exists", node[1], False)
    if op == "cmp":  # any text sorts after any number: a string is greater, never less
        return ("exists", node[1], True) if node[2] in ("GT", "GTE") else ("const", False)
    return None


def available() -> bool:
    try:
        from detections import _native  # noqa: F401
    except ImportError:
        return False
    return True


class EvtxPrefilter:
    """What `read_evtx(..., prefilter=)` reads a file through (`open`, `batch`), kept in
    step with the evaluator's plans by `sync` (after each batch the evaluator matched)."""

    def __init__(self, evaluator: Evaluator) -> None:
        from detections import _native

        self.evaluator = evaluator
        self._filter = _native.EvtxFilter(evaluator.literal_list(), fold_case)
        self.open = self._filter.open
        self.batch = self._filter.batch
        self._synced = 0
        self.native_rules = 0

    def counts(self) -> dict[str, int]:
        """Records handed over whole, with candidates, and with no rule to evaluate."""
        whole, candidates, unmatched = self._filter.counts()
        return {"whole": whole, "candidates": candidates, "unmatched": unmatched}

    def sync(self) -> None:
        groups = self.evaluator.shaped_groups()
        if len(groups) == self._synced:
            return
        if not self._synced:
            self._conditions(groups[0][0])
        for kind, shape, group in groups[self._synced:]:
            self._plan(kind, shape, group)
        self._synced = len(groups)

    def _conditions(self, kind: type) -> None:
        """The rules evaluated natively: those with a native form reading only fields
        records of `kind` answer by themselves."""
        conds: list[tuple | None] = []
        for i, r in enumerate(self.evaluator.rules):
            c = native_condition(r.ir)
            if c is not None and not all(map(kind.covers, self.evaluator.fields(i))):
                c = None
            conds.append(c)
        self.native_rules = self._filter.conditions(conds)

    def _plan(self, kind: type, shape: Any, group: Any) -> None:
        layout = kind.shape_layout(shape)
        if layout is None:
            return
        (channel, code, provider), data, user, paths = layout
        scan = group.scan
        positions: list[int] | None = None
        first: list[tuple[int, list[int]]] = []
        rest: list[tuple[int, list[list[int]]]] = []
        if scan is not None:
            take = scan.take
            if take is None:
                return  # a scan over the record's own text: only the evaluator makes it
            if isinstance(take, operator.itemgetter):
                names = take.__reduce__()[1]
                positions = [paths.index(n) for n in names]
            elif take is _no_values:  # no value scanned: the text is an empty array
                positions = []
            else:
                return
            first = [(n, list(rules)) for n, rules in scan.first.items() if rules]
            rest = [(i, [sorted(s) for s in sets]) for i, sets in scan.rest.items()]
        try:
            self._filter.plan(channel, code, provider, list(data),
                              None if user is None else list(user), list(group.always),
                              positions, first, rest)
        except ValueError:
            pass  # a scan too large to build natively: such records reach Python whole
