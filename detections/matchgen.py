"""Rule conditions as generated Python functions: the evaluator's predicates without a
closure call per condition node.

`predicate()` in the evaluator builds a tree of closures, one call per node and per
value test. Here one rule's whole condition becomes one function, compiled once when the
rule is first needed: the comparisons are inline expressions over the event's cached
field dicts (`Event.r`, `.x`, `.l`: a dict lookup each), each field's text is fetched and
case-folded once per event, and `and`/`or` short-circuit as Python's do. The semantics are
the interpreted predicates', node for node (the same OR merging and field grouping, the
same NOT shortcut); the tests hold the two to the same answer on every rule and record of
the EVTX corpus. Nodes that are rare in the rule sets (array fields, field references,
keywords, comparisons, booleans) call the interpreted predicate.

Safety of the generated source: it is built only from our own compiled rule structures
(the evaluator's IR). Rule values and field paths (which come from rule files) enter the
source only through `repr()` of a `str` or of a tuple of `str`, which is always a plain
literal, or as objects in the function's namespace (compiled regexes, numbers, fallback
predicates) named by a counter; nothing from a rule is pasted into the source as code.
"""

from __future__ import annotations

import re
from typing import Any

from detections.backends import ARRAY_FIELDS
from detections.evaluator import (
    Event,
    Pred,
    _merge_or,
    _needed,
    _num_test,
    predicate,
)
from soc_core.regex import regex_test

INLINE_SUBSTRINGS = 6  # up to this many `in` tests inline; more: one RE2 alternation


class _Source:
    """One function's source under construction: its constants and temporaries."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {}
        self.temps = 0

    def const(self, value: Any) -> str:
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"


def _lit(value: str) -> str:
    if type(value) is not str:
        raise TypeError(f"not a string: {type(value).__name__}")
    return repr(value)


def _lits(values: list[str]) -> str:
    return "(" + "".join(_lit(v) + ", " for v in values) + ")"


def _str_expr(src: _Source, t: str, kind: str, values: list[str]) -> str:
    """The test of one text variable `t` (not None), as the evaluator's `_str_test`."""
    if kind == "eq":
        if len(values) == 1:
            return f"{t} == {_lit(values[0])}"
        return f"{t} in {src.const(frozenset(values))}"
    if kind == "pre":
        return f"{t}.startswith({_lits(values)})"
    if kind == "suf":
        return f"{t}.endswith({_lits(values)})"
    if kind == "sub":
        if len(values) <= INLINE_SUBSTRINGS:
            return "(" + " or ".join(f"{_lit(v)} in {t}" for v in values) + ")"
        found = src.const(regex_test("|".join(re.escape(v) for v in values)))
        if not any(v.isascii() for v in values):
            # none can occur in an ASCII text, which `isascii` tells without reading it
            return f"(not {t}.isascii() and {found}({t}))"
        return f"{found}({t})"
    rx = src.const(re.compile("|".join(f"(?:{v})" for v in values), re.DOTALL))
    return f"{rx}.fullmatch({t}) is not None"


def _field_text(src: _Source, f: str, cased: bool) -> tuple[str, str]:
    """(walrus binding the field's text to a temporary, the temporary)."""
    t = src.temp()
    return f"({t} := {'x' if cased else 'l'}[{_lit(f)}])", t


def _expr(src: _Source, node: tuple) -> str:
    op = node[0]
    if op == "and":
        return "(" + " and ".join(_expr(src, c) for c in node[1]) + ")"
    if op == "or":
        return _or_expr(src, node[1])
    if op == "not":
        inner = _expr(src, node[1])
        needed = _needed(node[1])
        if needed:  # the inner test is false without that field: no need to run it
            return f"(r[{_lit(min(needed))}] is None or not {inner})"
        return f"(not {inner})"
    if op == "str" and node[1] not in ARRAY_FIELDS:
        bind, t = _field_text(src, node[1], node[4])
        return f"({bind} is not None and {_str_expr(src, t, node[2], node[3])})"
    if op == "num" and node[1] not in ARRAY_FIELDS:
        v = src.temp()
        other = src.const(_num_test(node[2]))
        return (f"(({v} := r[{_lit(node[1])}]) is not None and ({v} == "
                f"{_lit(f'{node[2]}')} if type({v}) is str else {other}({v})))")
    if op == "re" and node[1] not in ARRAY_FIELDS:
        bind, t = _field_text(src, node[1], True)
        return f"({bind} is not None and {src.const(regex_test(node[2]))}({t}))"
    if op == "null":
        return f"(r[{_lit(node[1])}] is None)"
    if op == "exists":
        return f"(r[{_lit(node[1])}] is {'not ' if node[2] else ''}None)"
    # the rare rest (arrays, references, keywords, comparisons, booleans): interpreted
    return f"{src.const(predicate(node))}(e)"


def _or_expr(src: _Source, children: list[tuple]) -> str:
    """As the evaluator's `_field_groups`: the string tests of one (non-array) field
    together, its text read once for all of them."""
    merged = _merge_or(children)
    tests: dict[tuple[str, bool], list[tuple[str, list[str]]]] = {}
    order: list[tuple[bool, Any]] = []  # (a field's string tests?, its key or the node)
    for c in merged:
        if c[0] == "str" and c[1] not in ARRAY_FIELDS:
            key = (c[1], c[4])
            if key not in tests:
                tests[key] = []
                order.append((True, key))
            tests[key].append((c[2], c[3]))
        else:
            order.append((False, c))
    parts = []
    for grouped, item in order:
        if grouped:
            bind, t = _field_text(src, *item)
            alts = " or ".join(_str_expr(src, t, kind, vals) for kind, vals in tests[item])
            parts.append(f"({bind} is not None and ({alts}))")
        else:
            parts.append(_expr(src, item))
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def rule_function(node: tuple, absent: list[str] | None = None) -> Pred:
    """One rule's condition as a generated function of an `Event`. With `absent` (the
    fields the rule reads, for rules the prefilter cannot narrow), an event holding none
    of them is answered at once with the condition's constant answer for such events."""
    src = _Source()
    body = _expr(src, node)
    lines = ["def _rule(e):", "    r = e.r", "    x = e.x", "    l = e.l"]  # noqa: E741
    if absent:
        const = predicate(node)(Event(None, lambda _path: None))
        test = " and ".join(f"r[{_lit(f)}] is None" for f in absent)
        lines.append(f"    if {test}:")
        lines.append(f"        return {bool(const)!r}")
    lines.append(f"    return {body}")
    namespace: dict[str, Any] = dict(src.names)
    exec(compile("\n".join(lines), "<govsoc rule>", "exec"), namespace)  # noqa: S102
    return namespace["_rule"]

