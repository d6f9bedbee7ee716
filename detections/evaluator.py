"""Every rule against each event once, in memory: the evaluator `govsoc hunt` uses.

The store-backed engine runs one query per rule, so a hunt over a few thousand events
with SigmaHQ's 2,500 Windows rules pays 2,500 fixed query costs. Here each event is read
once: its group (dataset, channel/event id/provider, and which fields a record holds) names
the rules that can match it at all, a prefilter (one RE2 literal set over the lowercased
JSON text of the fields those rules read) keeps those whose necessary literals occur in
it, and only those are evaluated, as Python predicates compiled from the same pySigma
condition tree (after the same govsoc pipeline) the store backends convert. The
semantics are the SQLite store's, case for case:

- strings match case-insensitively unless `|cased` (Sigma's standard), wildcards `*`/`?`;
- a field the event lacks never matches, and NOT of it is true (two-valued logic, as the
  backend's `COALESCE(expr, 0)` makes it);
- numbers match a JSON number or its exact string form (`field IN (n, 'n')`);
- array fields (`ARRAY_FIELDS`) match when any element does;
- `|re` is an RE2 search (unanchored), `|cidr` the prefix expansion pySigma makes;
- keywords are token phrases over `message`, as FTS5 reads them.

`tests/detections/test_evaluator.py` holds this evaluator and the store-backed engine to the
same matches over the shared EVTX corpus with SigmaHQ's Windows rules and the own pack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
import re2
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from detections.backends import ARRAY_FIELDS, EVENT_DATA, USER_DATA, ecs_field, keyword_tokens
from soc_core.records import SourceRecord
from soc_core.regex import regex_problem, regex_test
from soc_core.textcase import fold_case

MIN_LITERAL = 3
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.max_mem = 256 << 20  # the DFA of ~16,000 literals needs more than the default 8 MiB
_SET_OPTIONS.log_errors = False  # shorter literals (a "1", an "x") say too little to prefilter on


class Unsupported(ValueError):
    """A condition this evaluator cannot express (the rule is reported, never guessed)."""


# -- the intermediate form: plain tuples, picklable (the compiled-rule cache keeps it) ----
# ("and", [..]) ("or", [..]) ("not", x) ("str", field, kind, values, cased)
# ("num", field, n) ("bool", field, b) ("re", field, pattern) ("null", field)
# ("exists", field, b) ("cmp", field, op, n) ("ref", field, other, kind) ("kw", tokens)
# kind: "eq" | "pre" | "suf" | "sub" | "glob" (values are regex sources for "glob")


def rule_ir(doc: dict[str, Any], pipeline: ProcessingPipeline) -> tuple:
    """The condition of one Sigma rule (its YAML mapping) after the govsoc pipeline."""
    rule = SigmaRule.from_dict(doc)
    (ProcessingPipeline() + pipeline).apply(rule)
    conds = [_ir(c.parsed) for c in rule.detection.parsed_condition]
    if len(conds) != 1:
        raise Unsupported(f"rule has {len(conds)} conditions")
    return conds[0]


def _ir(c: Any) -> tuple:
    if isinstance(c, ConditionAND):
        return ("and", [_ir(a) for a in c.args])
    if isinstance(c, ConditionOR):
        return ("or", [_ir(a) for a in c.args])
    if isinstance(c, ConditionNOT):
        return ("not", _ir(c.args[0]))
    if isinstance(c, ConditionValueExpression):
        if isinstance(c.value, SigmaString | SigmaNumber):
            return ("kw", [t.lower() for t in keyword_tokens(c.value)])
        raise Unsupported(f"keyword of type {type(c.value).__name__}")
    if isinstance(c, ConditionFieldEqualsValueExpression):
        return _field_ir(ecs_field(c.field), c.value)
    raise Unsupported(f"condition {type(c).__name__}")


def _field_ir(f: str, v: Any) -> tuple:
    if isinstance(v, SigmaString):
        kind, val = _string(v, isinstance(v, SigmaCasedString))
        return ("str", f, kind, [val], isinstance(v, SigmaCasedString))
    if isinstance(v, SigmaNumber):
        return ("num", f, v.number)
    if isinstance(v, SigmaBool):
        return ("bool", f, v.boolean)
    if isinstance(v, SigmaRegularExpression):
        # as the SQLite backend writes it: the (?flags) prefix, the pattern unescaped
        return ("re", f, v.escape([], "", True, True))
    if isinstance(v, SigmaCIDRExpression):
        return ("or", [_field_ir(f, SigmaString(n)) for n in v.expand()])
    if isinstance(v, SigmaNull):
        return ("null", f)
    if isinstance(v, SigmaExists):
        return ("exists", f, v.exists)
    if isinstance(v, SigmaCompareExpression):
        return ("cmp", f, v.op.name, v.number.number)
    if isinstance(v, SigmaExpansion):
        return ("or", [_field_ir(f, x) for x in v.values])
    if isinstance(v, SigmaFieldReference):
        kind = ("sub" if v.starts_with and v.ends_with else "suf" if v.starts_with
                else "pre" if v.ends_with else "eq")
        return ("ref", f, ecs_field(v.field), kind)
    raise Unsupported(f"value of type {type(v).__name__}")


def _string(s: SigmaString, cased: bool) -> tuple[str, str]:
    """(kind, value): plain comparisons where the wildcards allow, else a regex."""
    parts = list(s.s)
    lit = [p if isinstance(p, str) else None for p in parts]
    star, one = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
    for p in parts:
        if not isinstance(p, str) and p not in (star, one):
            raise Unsupported(f"placeholder in {s}")

    def norm(x: str) -> str:
        return x if cased else fold_case(x)

    inner = parts[1:-1] if len(parts) >= 2 else parts
    if all(x is not None for x in lit):
        return "eq", norm("".join(parts))
    if len(parts) == 2 and parts[0] is star and lit[1] is not None:
        return "suf", norm(parts[1])
    if len(parts) == 2 and parts[1] is star and lit[0] is not None:
        return "pre", norm(parts[0])
    if len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(inner[0], str):
        return "sub", norm(parts[1])
    rx = "".join(".*" if p is star else "." if p is one else re.escape(norm(p)) for p in parts)
    return "glob", rx


def literals(node: tuple) -> list[frozenset[str]]:
    """Sets of lowercased strings such that, for each set, one of its strings occurs in the
    JSON text of every event the condition matches: a conjunction of disjunctions, the most
    selective first (empty: nothing known; the rule is evaluated on every event of its
    datasets). A value's literal is the longest plain run of it; any test that needs the
    field present also needs its JSON key (`"name":`), a weaker literal."""
    op = node[0]
    out: list[frozenset[str]] = []
    if op in ("str", "num", "bool", "re", "cmp", "ref") or (op == "exists" and node[2]):
        out.append(frozenset([_key(node[1])]))
    if op == "str":
        vals = set()
        for kind, val in ((node[2], v) for v in node[3]):
            best = _anchored(kind, val) or _longest(kind, val)
            if best is None:
                vals = set()
                break
            vals.add(best)
        if vals:
            out.insert(0, frozenset(vals))
    elif op == "re":
        lit = regex_literal(node[2])
        if lit is not None:
            out.insert(0, frozenset([lit]))
    elif op == "num" and len(f"{node[2]}") >= MIN_LITERAL:
        out.insert(0, frozenset([f"{node[2]}"]))  # as a JSON number or string: the digits
    elif op == "kw":
        # a keyword is a phrase in `message`, which is then there
        word = max((w for t in node[1] for w in _WORD.findall(t)), key=len, default="")
        return ([frozenset([word])] if len(word) >= MIN_LITERAL else []) + [
            frozenset([_key("message")])]
    elif op == "and":
        found = {s for child in node[1] for s in literals(child)}
        return sorted(found, key=_score, reverse=True)
    elif op == "or":
        acc: set[str] = set()
        common: set[frozenset[str]] | None = None
        for child in node[1]:
            got = literals(child)
            if not got:
                return []
            acc |= got[0]
            common = set(got) if common is None else common & set(got)
        # a set every branch needs is needed by the OR too (a keyword list: `message`)
        rest = sorted((common or set()) - {frozenset(acc)}, key=_score, reverse=True)
        return [frozenset(acc), *rest]
    return out


_NUMBER_TEXT = frozenset("0123456789+-.einfa")  # a number's or boolean's text, folded


def _anchored(kind: str, val: str) -> str | None:
    """For a test only a string value can pass, the value as a literal with its JSON
    string's quote on the anchored side(s): `\\cmd.exe"` is at the end of some value,
    not anywhere in a command line. None when a number, boolean, list or object could
    pass the test as its text (`_text`), which the JSON holds without quotes."""
    if kind not in ("eq", "pre", "suf") or not val:
        return None
    v = fold_case(val)
    if set(v) <= _NUMBER_TEXT or any(ord(ch) < 0x20 for ch in v):
        return None
    if (kind != "suf" and v[0] in "[{") or (kind != "pre" and v[-1] in "]}"):
        return None  # a list's or an object's text starts or ends so
    text = orjson.dumps(v).decode()
    lit = text if kind == "eq" else text[:-1] if kind == "pre" else text[1:]
    return lit if len(lit.encode()) >= MIN_LITERAL else None


def _key(path: str) -> str:
    return orjson.dumps(path.rsplit(".", 1)[-1].lower()).decode() + ":"


def _score(lits: frozenset[str]) -> tuple[bool, int, int]:
    keys = all(x.endswith('":') and x.startswith('"') for x in lits)
    return (not keys, min(len(x) for x in lits), -len(lits))


_CASELESS = re.compile(r"\(\?[A-Za-z-]*i")  # a flag group that sets (or clears) i
_RE_ESCAPE_ARG = {"x": 2, "p": 1, "P": 1}  # escapes followed by an argument


def regex_literal(pattern: str) -> str | None:
    """A string every match of an RE2 pattern contains (its longest run of
    plain characters outside groups, classes and alternatives; case-insensitive: of ASCII
    letters but k and s), as `_longest` writes a literal; None when there is none or the
    pattern is not plain enough to be sure (an alternative at the top, `\\Q`...)."""
    if "\\Q" in pattern:
        return None
    # case-insensitive: a match holds the run in some case, whose fold is the run's fold
    # as long as every letter's RE2 case orbit is just its two ASCII cases; k and s also
    # match the Kelvin sign and the long s, so they (and any non-ASCII) break a run there
    caseless = _CASELESS.search(pattern) is not None
    runs: list[str] = []
    run: list[str] = []
    i, n = 0, len(pattern)

    def end() -> None:
        if run:
            runs.append("".join(run))
            run.clear()

    while i < n:
        c = pattern[i]
        lit = None
        if c == "\\":
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            if nxt.isalnum():  # a class (\\d \\s \\w), an anchor or a coded character
                end()
                i += 2
                if nxt in _RE_ESCAPE_ARG:
                    if i < n and pattern[i] == "{":
                        close = pattern.find("}", i)
                        if close < 0:
                            return None
                        i = close + 1
                    else:
                        i += _RE_ESCAPE_ARG[nxt]
                elif nxt.isdigit():
                    while i < n and pattern[i].isdigit():
                        i += 1
                i = _past_quantifier(pattern, i)
                if i < 0:
                    return None
                continue
            lit, i = nxt, i + 2
        elif c == "|":
            return None  # alternatives at the top: no one string is needed
        elif c == "(":
            end()
            depth, i = 1, i + 1
            while i < n and depth:  # past the group (its own alternatives included)
                ch = pattern[i]
                if ch == "\\":
                    i += 2
                    continue
                if ch == "[":
                    i = _class_end(pattern, i)
                    if i < 0:
                        return None
                    continue
                depth += {"(": 1, ")": -1}.get(ch, 0)
                i += 1
            if depth:
                return None
            i = _past_quantifier(pattern, i)
            if i < 0:
                return None
            continue
        elif c == "[":
            end()
            i = _past_quantifier(pattern, _class_end(pattern, i))
            if i < 0:
                return None
            continue
        elif c in ".^$)":
            end()
            i = _past_quantifier(pattern, i + 1)
            if i < 0:
                return None
            continue
        elif c in "?*+{":
            return None  # a quantifier on a group or class is handled above; here: odd
        else:
            lit, i = c, i + 1
        # a quantifier makes the character optional (?, *, {0,...}) or repeatable (+)
        q = pattern[i] if i < n else ""
        if q in ("?", "*", "{"):
            end()
            if q == "{":
                close = pattern.find("}", i)
                if close < 0:
                    return None
                i = close + 1
            else:
                i += 1
            if i < n and pattern[i] in "?+":  # a lazy or possessive mark
                i += 1
            continue
        if caseless and (lit in "kKsS" or not lit.isascii()):
            end()
        else:
            run.append(lit)
        if q == "+":
            end()
            i += 1
            if i < n and pattern[i] in "?+":
                i += 1
    end()
    best = max(runs, key=len, default="")
    return _longest("eq", best)


def _past_quantifier(pattern: str, i: int) -> int:
    """The index after a quantifier at `i` (none: `i`), or -1 for an unclosed `{`."""
    if i < 0 or i >= len(pattern):
        return i
    q = pattern[i]
    if q in "?*+":
        i += 1
    elif q == "{":
        close = pattern.find("}", i)
        if close < 0:
            return -1
        i = close + 1
    else:
        return i
    if i < len(pattern) and pattern[i] in "?+":
        i += 1
    return i


def _class_end(pattern: str, i: int) -> int:
    """The index after the character class opening at `i`, or -1."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":  # a leading ] is a member
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "[" and pattern[j + 1:j + 2] == ":":  # [:alpha:]
            close = pattern.find(":]", j + 2)
            if close < 0:
                return -1
            j = close + 2
            continue
        if pattern[j] == "]":
            return j + 1
        j += 1
    return -1


def _longest(kind: str, val: str) -> str | None:
    if kind == "glob":
        # the longest run of plain characters of the regex source
        runs = re.split(r"\.\*|(?<!\\)\.", val)
        best = max((re.sub(r"\\(.)", r"\1", r) for r in runs), key=len, default="")
    else:
        best = val
    best = fold_case(best)
    # as it appears in JSON text: backslashes and quotes escaped; control characters are
    # escaped in ways a literal cannot predict. Long enough is counted in UTF-8 bytes, as
    # the scan reads it: one emoji (4 bytes) says as much as three letters
    # (non-ASCII: two bytes, one Cyrillic or Greek letter, already say enough)
    if len(best.encode()) < (MIN_LITERAL if best.isascii() else 2) or any(
            ord(ch) < 0x20 for ch in best):
        return None
    return orjson.dumps(best).decode()[1:-1]


# -- one event's field values, read once and cached ------------------------------------
class _Raw(dict):
    """path -> raw value, looked up by `fetch` on first use and kept: after that a plain
    dict lookup, for the interpreted predicates and the generated ones alike."""

    __slots__ = ("fetch",)

    def __missing__(self, path: str) -> Any:
        v = self[path] = self.fetch(path)
        return v


class _Filled(dict):
    """path -> raw value for a record that filled in every covered path it holds: a
    covered path missing is absent (an EventData one falls back to UserData), any other
    is asked of the record. One Python call per absent path, none per present one."""

    __slots__ = ("record",)

    def __missing__(self, path: str) -> Any:
        record = self.record
        if record.covers(path):
            v = self.get(USER_DATA + path[_ED:]) if path.startswith(EVENT_DATA) else None
        else:
            v = record.get(path)
            if v is None and path.startswith(EVENT_DATA):
                v = record.get(USER_DATA + path[_ED:])
        self[path] = v
        return v


_ED = len(EVENT_DATA)


class _Text(dict):
    """path -> the raw value as text (as SQLite reads it), on first use."""

    __slots__ = ("r",)

    def __missing__(self, path: str) -> str | None:
        v = self.r[path]
        t = self[path] = v if type(v) is str else _text(v)
        return t


class _Folded(dict):
    """path -> that text case-folded, on first use: each field folded once per event."""

    __slots__ = ("r",)

    def __missing__(self, path: str) -> str | None:
        v = self.r[path]
        if v is not None:
            v = fold_case(v if type(v) is str else _text(v))
        self[path] = v
        return v


class Event:
    """Field access with the store's value semantics, cached for the rules of one event:
    over an ECS document, or over a `SourceRecord` (its `get`, the event built only for
    the paths the record cannot answer itself). `r[path]` is the raw value (None: absent;
    EventData paths fall back to UserData, where Winlogbeat keeps some channels' data),
    `x[path]` its text as the SQLite store reads it, `l[path]` that text case-folded."""

    __slots__ = ("doc", "_get", "r", "x", "l")

    def __init__(self, doc: dict[str, Any] | None,
                 get: Callable[[str], Any] | None = None,
                 record: SourceRecord | None = None) -> None:
        self.doc = doc
        self._get = get
        if record is not None:
            self._get = record.get
            filled = _Filled()
            if record.fill(filled):
                # every covered path the record holds, at once; a covered path not
                # among them is absent
                filled.record = record
                self.r = r = filled
            else:
                self.r = r = _Raw()
                r.fetch = self._raw_get
        else:
            self.r = r = _Raw()
            r.fetch = self._raw if get is None else self._raw_get
        self.x = x = _Text()
        x.r = r
        self.l = low = _Folded()
        low.r = r

    def _raw(self, path: str) -> Any:
        v = _walk(self.doc, path)
        if v is None and path.startswith(EVENT_DATA):  # or wherever the record keeps it
            v = _walk(self.doc, USER_DATA + path[len(EVENT_DATA):])
        return v

    def _raw_get(self, path: str) -> Any:
        v = self._get(path)
        if v is None and path.startswith(EVENT_DATA):
            v = self._get(USER_DATA + path[len(EVENT_DATA):])
        return v

    def raw(self, path: str) -> Any:
        return self.r[path]

    def text(self, path: str, lower: bool) -> str | None:
        return self.l[path] if lower else self.x[path]


def _walk(doc: dict[str, Any], path: str) -> Any:
    v: Any = doc
    for part in path.split("."):
        if not isinstance(v, dict):
            return None
        v = v.get(part)
    return v


def _text(v: Any) -> str | None:
    """A value as SQLite reads json_extract's result as text (GLOB, REGEXP)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return str(v)
    return orjson.dumps(v).decode()


def _elements(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


# -- predicates ------------------------------------------------------------------------
Pred = Callable[[Event], bool]


def predicate(node: tuple) -> Pred:
    """A Python predicate over an `Event` for one intermediate condition."""
    op = node[0]
    if op == "and":
        preds = [predicate(c) for c in node[1]]
        if len(preds) == 2:
            a, b = preds
            return lambda e: a(e) and b(e)

        def every(e: Event) -> bool:
            for p in preds:  # noqa: SIM110 - a loop: no generator object per call
                if not p(e):
                    return False
            return True
        return every
    if op == "or":
        merged = _merge_or(node[1])
        preds = _field_groups(merged)
        if len(preds) == 1:
            return preds[0]
        if len(preds) == 2:
            a, b = preds
            return lambda e: a(e) or b(e)

        def some(e: Event) -> bool:
            for p in preds:  # noqa: SIM110
                if p(e):
                    return True
            return False
        return some
    if op == "not":
        inner = predicate(node[1])
        needed = _needed(node[1])
        if needed:  # the inner test is false without that field: no need to run it
            f = min(needed)
            return lambda e: e.raw(f) is None or not inner(e)
        return lambda e: not inner(e)
    if op == "str":
        return _str_pred(*node[1:])
    if op == "num":
        return _on_field(node[1], _num_test(node[2]))
    if op == "bool":
        b = node[2]
        num = 1 if b else 0
        word = "true" if b else "false"
        return _on_field(node[1], lambda v: v is b or v == word or (
            isinstance(v, int | float) and not isinstance(v, bool) and v == num))
    if op == "re":
        found = regex_test(node[2])
        return _on_field(node[1], lambda v: found(_text(v) or ""))
    if op == "null":
        f = node[1]
        return lambda e: e.raw(f) is None
    if op == "exists":
        f, want = node[1], node[2]
        return lambda e: (e.raw(f) is not None) is want
    if op == "cmp":
        return _on_field(node[1], _cmp_test(node[2], node[3]))
    if op == "ref":
        return _ref_pred(node[1], node[2], node[3])
    if op == "kw":
        return _keyword_pred(node[1])
    raise Unsupported(f"node {op}")


def _needed(node: tuple) -> set[str]:
    """Fields without any of which the condition is false (a test of a field is false
    when the event lacks it; NOT, `null` and `exists: false` are true then)."""
    op = node[0]
    if op in ("str", "num", "bool", "re", "cmp") or (op == "exists" and node[2]):
        return {node[1]}
    if op == "ref":
        return {node[1], node[2]}
    if op == "kw":
        return {"message"}
    if op == "and":
        return set().union(*(_needed(c) for c in node[1]))
    if op == "or":
        kids = [_needed(c) for c in node[1]]
        return set(kids[0]).intersection(*kids[1:]) if kids else set()
    return set()


def _merge_or(children: list[tuple]) -> list[tuple]:
    """`a|endswith: [x, y, z]` arrives as an OR of one test each: one test of all values
    (one C call over a tuple) instead of a Python call per value. Nested ORs are
    flattened first, and a field's `|re` alternatives become one RE2 program (each in
    its own group, so its inline flags stay its own): one search instead of one each."""
    flat: list[tuple] = []
    todo = list(reversed(children))
    while todo:
        c = todo.pop()
        if c[0] == "or":
            todo.extend(reversed(c[1]))
        else:
            flat.append(c)
    out: list[tuple] = []
    index: dict[tuple, int] = {}
    for c in flat:
        if c[0] == "str" and c[2] != "glob":
            key = (c[1], c[2], c[4])
            if key in index:
                prev = out[index[key]]
                out[index[key]] = ("str", prev[1], prev[2], prev[3] + c[3], prev[4])
                continue
            index[key] = len(out)
        elif c[0] == "re" and c[1] not in ARRAY_FIELDS:
            key = ("re", c[1])
            if key in index:
                out[index[key]][2].append(c[2])
                continue
            index[key] = len(out)
            c = ("re", c[1], [c[2]])
        out.append(c)
    final: list[tuple] = []
    for c in out:
        if c[0] == "re" and isinstance(c[2], list):
            joined = "|".join(f"(?:{p})" for p in c[2])
            if len(c[2]) == 1 or regex_problem(joined) is not None:
                final.extend(("re", c[1], p) for p in c[2])  # apart, as written
                continue
            c = ("re", c[1], joined)
        final.append(c)
    return final


def _field_groups(children: list[tuple]) -> list[Pred]:
    """The predicates of an OR's children, the string tests of one (non-array) field
    together: its text is read once for all of them."""
    tests: dict[tuple[str, bool], list[Callable[[str], bool]]] = {}
    order: list[Any] = []
    for c in children:
        if c[0] == "str" and c[1] not in ARRAY_FIELDS:
            key = (c[1], c[4])
            if key not in tests:
                tests[key] = []
                order.append(key)
            tests[key].append(_str_test(c[2], c[3]))
        else:
            order.append(predicate(c))
    out: list[Pred] = []
    for item in order:
        if not isinstance(item, tuple):
            out.append(item)
            continue
        f, cased = item
        group = tests[item]
        if len(group) == 1:
            test, lower = group[0], not cased
            out.append(lambda e, f=f, test=test, lower=lower: (
                (t := e.text(f, lower)) is not None and test(t)))
            continue

        def any_test(e: Event, f: str = f, lower: bool = not cased,
                     group: list = group) -> bool:
            t = e.text(f, lower)
            if t is None:
                return False
            for test in group:  # noqa: SIM110
                if test(t):
                    return True
            return False
        out.append(any_test)
    return out


def _str_test(kind: str, values: list[str]) -> Callable[[str], bool]:
    if kind == "eq":
        if len(values) == 1:
            one = values[0]
            return lambda t: t == one
        vals = frozenset(values)
        return lambda t: t in vals
    if kind == "pre":
        tup = tuple(values)
        return lambda t: t.startswith(tup)
    if kind == "suf":
        tup = tuple(values)
        return lambda t: t.endswith(tup)
    if kind == "sub":
        if len(values) == 1:
            one = values[0]
            return lambda t: one in t
        if len(values) <= 3:
            tup = tuple(values)
            return lambda t: any(x in t for x in tup)
        # one automaton pass instead of a scan per value
        return regex_test("|".join(re.escape(v) for v in values))
    rx = re.compile("|".join(f"(?:{v})" for v in values), re.DOTALL)
    return lambda t: rx.fullmatch(t) is not None


def _str_pred(f: str, kind: str, values: list[str], cased: bool) -> Pred:
    test = _str_test(kind, values)
    lower = not cased
    if f in ARRAY_FIELDS:
        def arr(e: Event) -> bool:
            for x in _elements(e.raw(f)):
                t = _text(x)
                if t is not None and test(t if cased else fold_case(t)):
                    return True
            return False
        return arr

    def one(e: Event) -> bool:
        t = e.text(f, lower)
        return t is not None and test(t)
    return one


def _on_field(f: str, test: Callable[[Any], bool]) -> Pred:
    if f in ARRAY_FIELDS:
        return lambda e: any(x is not None and test(x) for x in _elements(e.raw(f)))

    def one(e: Event) -> bool:
        v = e.raw(f)
        return v is not None and test(v)
    return one


def _num_test(n: Any) -> Callable[[Any], bool]:
    as_text = f"{n}"

    def test(v: Any) -> bool:
        if isinstance(v, str):
            return v == as_text
        if isinstance(v, bool):
            return int(v) == n
        return isinstance(v, int | float) and v == n
    return test


def _cmp_test(op: str, n: Any) -> Callable[[Any], bool]:
    # SQLite's ordering: any number sorts before any text
    fn = {"LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b,
          "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b}[op]
    text_wins = op in ("GT", "GTE")

    def test(v: Any) -> bool:
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int | float):
            return fn(v, n)
        return text_wins if isinstance(v, str) else False
    return test


def _ref_pred(f: str, other: str, kind: str) -> Pred:
    def test(e: Event) -> bool:
        a, b = e.raw(f), e.raw(other)
        if a is None or b is None:
            return False
        if kind == "eq":
            return a == b and type(a) is type(b)
        ta, tb = fold_case(_text(a) or ""), fold_case(_text(b) or "")
        return (ta.startswith(tb) if kind == "pre" else ta.endswith(tb) if kind == "suf"
                else tb in ta)
    return test


_WORD = re.compile(r"[^\W_]+")


def _keyword_pred(tokens: list[str]) -> Pred:
    phrase = [t for tok in tokens for t in _WORD.findall(tok)]
    n = len(phrase)

    def test(e: Event) -> bool:
        msg = e.text("message", True)
        if not msg:
            return False
        words = _WORD.findall(msg)  # folded by text()
        first = phrase[0]
        return any(w == first and words[i:i + n] == phrase for i, w in enumerate(words))
    return test


# -- the rule set ----------------------------------------------------------------------
@dataclass
class Compiled:
    """One rule ready for the evaluator."""

    id: str
    datasets: tuple[str, ...]
    ir: tuple
    need: list[frozenset[str]] = field(default_factory=list)


class _Firsts(dict):
    """Literal -> the group's prefiltered rules whose best necessary set holds it (a
    literal of none: kept as `()` on first use, so a miss is one Python call a group)."""

    __slots__ = ()

    def __missing__(self, n: int) -> tuple[int, ...]:
        self[n] = ()
        return ()


@dataclass
class _Scan:
    """A group's prefilter: the fields whose text the literal set reads (those its
    prefiltered rules read: a rule's literals lie in them), per literal those of its
    rules whose best necessary set holds it, and per such rule the sets it needs besides."""

    fields: frozenset[str]
    first: _Firsts
    rest: dict[int, tuple[frozenset[int], ...]]
    take: Callable[[dict[str, Any]], Any] | None  # a record's scanned values (None: its text)


def _no_values(_r: dict[str, Any]) -> tuple:
    return ()


_dumps = orjson.dumps


@dataclass
class _Group:
    """The rules an event of one group (dataset, record kind, guard field values, which
    fields the record holds) can match: those evaluated on every such event, and those
    `scan` decides on (None: every candidate is in `always`)."""

    always: list[int]
    scan: _Scan | None


_UNKNOWN = object()  # a guard value that cannot key a group (a list): no guard applies


def guards(node: tuple) -> dict[str, tuple]:
    """Field -> a condition on that field alone which every event the condition matches
    meets (an AND's children each add theirs; an OR keeps the fields all its branches
    test). Only plain (non-array) fields outside the event data: the values a hunt
    groups events by (channel, event id, provider)."""
    op = node[0]
    if op in ("str", "num", "re"):
        f = node[1]
        if f in ARRAY_FIELDS or f.startswith((EVENT_DATA, USER_DATA)):
            return {}
        return {f: node}
    if op == "and":
        out: dict[str, tuple] = {}
        for c in node[1]:
            for f, g in guards(c).items():
                out[f] = ("and", [out[f], g]) if f in out else g
        return out
    if op == "or":
        kids = [guards(c) for c in node[1]]
        common = set(kids[0]).intersection(*kids[1:]) if kids else set()
        return {f: ("or", [k[f] for k in kids]) for f in sorted(common)}
    return {}


def fields_of(node: tuple, out: set[str] | None = None) -> set[str]:
    """Every field a condition reads (keywords read `message`)."""
    out = set() if out is None else out
    op = node[0]
    if op in ("and", "or"):
        for c in node[1]:
            fields_of(c, out)
    elif op == "not":
        fields_of(node[1], out)
    elif op == "kw":
        out.add("message")
    else:
        out.add(node[1])
        if op == "ref":
            out.add(node[2])
    return out


def _absent_shortcut(pred: Pred, fields: list[str]) -> Pred:
    """`pred` answered at once for an event that has none of the fields it reads: its
    answer then is always the same. For rules without a literal to prefilter on (filters
    only, NOT of tests), which meet every event of their datasets."""
    if not fields:
        return pred
    const = pred(Event(None, lambda _path: None))

    def shortcut(e: Event) -> bool:
        for f in fields:
            if e.raw(f) is not None:
                return pred(e)
        return const
    return shortcut


# a condition's answer for the events of one layout, known only from which of its fields
# are certainly absent: false, unknown (it depends on values), true; NOT is 2 - x, AND
# the least of its children, OR the greatest
_NO, _MAYBE, _YES = 0, 1, 2


def presence(node: tuple, absent: Callable[[str], bool]) -> int:
    """`_NO` when the condition is false on every event lacking the fields `absent` names
    (whatever the others hold), `_YES` when true on every such event, else `_MAYBE`: as
    the predicates answer, a test of an absent field is false (array fields: no element
    matches), `null` of it true, `exists` of it its negation."""
    op = node[0]
    if op in ("str", "num", "bool", "re", "cmp"):
        return _NO if absent(node[1]) else _MAYBE
    if op == "ref":
        return _NO if absent(node[1]) or absent(node[2]) else _MAYBE
    if op == "kw":
        return _NO if absent("message") else _MAYBE
    if op == "null":
        return _YES if absent(node[1]) else _MAYBE
    if op == "exists":
        return (_NO if node[2] else _YES) if absent(node[1]) else _MAYBE
    if op == "not":
        return _YES - presence(node[1], absent)
    if op == "and":
        return min((presence(c, absent) for c in node[1]), default=_YES)
    if op == "or":
        return max((presence(c, absent) for c in node[1]), default=_NO)
    raise Unsupported(f"node {op}")


GUARD_FIELDS = 3  # the fields most rules constrain (Windows: channel, event id, provider)
DIRECT = 6  # a group with this few prefilterable rules evaluates them without a scan
MAX_GROUPS = 1024  # past this many groups, new ones are keyed without the record's layout


class Evaluator:
    """All rules, each event once. `match(doc)` -> indexes of the rules the event matches;
    `doc` an ECS document or a `SourceRecord`.

    The rules an event can meet are worked out once per group of events, a dict lookup
    per event: its dataset, the values of the few fields most rules constrain to fixed
    values (channel, event id, provider: each rule's own tests of those fields decide),
    and, for a record that fills in its fields at once (`SourceRecord.fill`), which fields
    it holds (its layout): a rule that is false whatever the values when the fields the
    record lacks are absent (`presence`) is no candidate. A Sysmon process-creation rule
    is thus never considered for a logon event. Of the candidates with necessary literals
    (`literals`), only those whose literals all occur in the text of the fields they read
    (one RE2 set of the group's literals over the case-folded scan text) are evaluated;
    a group with few of them evaluates them all without a scan. Predicates are built on
    first use."""

    def __init__(self, rules: Iterable[Compiled], *, generated: bool = True) -> None:
        self.rules = list(rules)
        # each rule's condition as one generated function (`matchgen`), or the tree of
        # interpreted closures it is held equal to
        self.generated = generated
        self._preds: list[Pred | None] = [None] * len(self.rules)
        self._groups: dict[tuple, _Group] = {}
        self._shaped: dict[tuple, _Group] = {}  # (record class, its shape()) -> group
        self._shaped_kinds: dict[type, bool] = {}
        self._by_dataset: dict[str, list[int]] = {}
        for i, r in enumerate(self.rules):
            for ds in r.datasets:
                self._by_dataset.setdefault(ds, []).append(i)
        # one literal numbering for every rule: a group's scan takes its rules' literals
        self._literals: dict[str, int] = {}
        self._sets: list[tuple[frozenset[int], ...]] = []
        for r in self.rules:
            sets = []
            for lits in r.need[:3]:  # the best three: a fourth seldom narrows further
                numbers = self._literals
                sets.append(frozenset([numbers.setdefault(lit, len(numbers))
                                       for lit in lits]))
            self._sets.append(tuple(sets))
        self._key_literals = {lit: n for lit, n in self._literals.items()
                              if lit.startswith('"') and lit.endswith('":')}
        # one RE2 set for every group: its DFA's states are built once and shared by all
        # events (a set per group measured slower: each one's states cold in the caches)
        self._set_match: Callable[[bytes], Any] | None = None
        if self._literals:
            rx = re2.Set.SearchSet(_SET_OPTIONS)
            for lit in self._literals:  # numbered in insertion order, as the set numbers them
                rx.Add(re.escape(lit))
            rx.Compile()
            # the compiled set asked directly when the installed google-re2 allows (the
            # wrapper's Match is one Python call more per event)
            self._set_match = getattr(getattr(rx, "_set", None), "Match", None) or rx.Match
        self._scan_fields: dict[frozenset[str], frozenset[str]] = {}  # one object each
        found = [guards(r.ir) for r in self.rules]
        counts: dict[str, int] = {}
        for g in found:
            for f in g:
                counts[f] = counts.get(f, 0) + 1
        self.guard_fields = tuple(sorted(counts, key=lambda f: (-counts[f], f))[:GUARD_FIELDS])
        self._guards: list[tuple | None] = [
            (("and", [g[f] for f in self.guard_fields if f in g])
             if any(f in g for f in self.guard_fields) else None) for g in found]
        self._guard_parts = found
        # (rule, the guard fields a record kind answers by itself) -> its guard's test
        self._guard_preds: dict[tuple[int, tuple[bool, ...]], Pred | None] = {}
        self._known: dict[type | None, tuple[bool, ...]] = {}
        self._covered: dict[tuple[int, type], bool] = {}
        self._bases: dict[tuple, tuple[list[int], list[int], list[int]]] = {}
        # each field a rule reads as one bit, so a rule's absent fields in a layout are
        # one AND of two ints (the presence answer kept per rule and absent set)
        self._fields = [frozenset(fields_of(r.ir)) for r in self.rules]
        self._bit = {f: 1 << n for n, f in enumerate(sorted(set().union(*self._fields)))}
        self._masks = [sum(self._bit[f] for f in fs) for fs in self._fields]
        # the fields without any of which a rule is false: such a field absent rules it
        # out at once, without walking its condition
        self._needs = [sum(self._bit[f] for f in _needed(r.ir)) for r in self.rules]
        self._possible: dict[tuple[int, int], bool] = {}

    def predicate(self, i: int) -> Pred:
        p = self._preds[i]
        if p is None:
            ir = self.rules[i].ir
            absent = None if self._sets[i] else sorted(fields_of(ir))
            p = None
            if self.generated:
                from detections.matchgen import rule_function  # it builds on this module

                try:
                    p = rule_function(ir, absent)
                except (SyntaxError, MemoryError, RecursionError):
                    # nested deeper than Python's parser takes (~200 levels; a crafted
                    # rule): the interpreted tree answers the same
                    p = None
            if p is None:
                p = predicate(ir)
                if absent:
                    p = _absent_shortcut(p, absent)
            self._preds[i] = p
        return p

    def _base(self, dataset: str, kind: type | None) -> tuple[list[int], list[int], list[int]]:
        """The dataset's rules for records of `kind` (None: ECS documents): those without
        a guard, split into always-evaluated and prefiltered, and those with a guard."""
        key = (dataset, kind)
        base = self._bases.get(key)
        if base is None:
            always, allowed, guarded = [], [], []
            for i in self._by_dataset.get(dataset, ()):
                if self._guards[i] is not None:
                    guarded.append(i)
                elif self._prefiltered(i, kind):
                    allowed.append(i)
                else:
                    always.append(i)
            base = self._bases[key] = (always, allowed, guarded)
        return base

    def _prefiltered(self, i: int, kind: type | None) -> bool:
        """Whether rule `i` has necessary literals and, for a record of `kind`, reads only
        fields the record answers itself (so its literals are in the record's scan text)."""
        if not self._sets[i]:
            return False
        if kind is None:
            return True
        key = (i, kind)  # asked once per group: kept
        found = self._covered.get(key)
        if found is None:
            found = self._covered[key] = all(map(kind.covers, self._fields[i]))
        return found

    def _absent_mask(self, kind: type, layout: tuple[str, ...]) -> int:
        """The bits of the fields rules read that a record of `kind` holding exactly the
        covered paths `layout` certainly lacks (an EventData path falls back to UserData,
        as `Event` reads it)."""
        held = set(layout)
        mask = 0
        for f, bit in self._bit.items():
            if not kind.covers(f) or f in held:
                continue
            if f.startswith(EVENT_DATA) and USER_DATA + f[_ED:] in held:
                continue
            mask |= bit
        return mask

    def _can_match(self, i: int, gone: int) -> bool:
        """Whether rule `i` can be true when the fields of the bits `gone` (some it
        reads) are absent; kept per rule and such set."""
        key = (i, gone)
        found = self._possible.get(key)
        if found is None:
            names = {f for f in self._fields[i] if self._bit[f] & gone}
            found = self._possible[key] = presence(self.rules[i].ir,
                                                   names.__contains__) != _NO
        return found

    def _known_guards(self, kind: type | None) -> tuple[bool, ...]:
        """Per guard field, whether records of `kind` answer it by themselves (an ECS
        document answers every field): a group is keyed by those values alone, a guard
        on any other field decides nothing (a record would be built to read it)."""
        known = self._known.get(kind)
        if known is None:
            known = self._known[kind] = tuple(
                kind is None or kind.covers(f) for f in self.guard_fields)
        return known

    def _guard_test(self, i: int, known: tuple[bool, ...]) -> Pred | None:
        key = (i, known)
        if key not in self._guard_preds:
            g = self._guard_parts[i]
            parts = [g[f] for f, k in zip(self.guard_fields, known, strict=True)
                     if k and f in g]
            self._guard_preds[key] = predicate(("and", parts)) if parts else None
        return self._guard_preds[key]

    def _group(self, dataset: str, kind: type | None, values: Any,
               layout: tuple[str, ...] | None) -> _Group:
        always, allowed, guarded = self._base(dataset, kind)
        always, allowed = list(always), list(allowed)
        key_event = None if values is _UNKNOWN else Event(
            None, dict(zip(self.guard_fields, values, strict=True)).get)
        known = self._known_guards(kind)
        for i in guarded:
            if key_event is not None:
                test = self._guard_test(i, known)
                if test is not None and not test(key_event):
                    continue
            (allowed if self._prefiltered(i, kind) else always).append(i)
        if layout is not None and kind is not None:
            absent = self._absent_mask(kind, layout)
            if absent:
                # per rule: no field it reads absent (values decide), a field it needs
                # absent (out), else its condition's answer without those fields (kept)
                masks, needs, can = self._masks, self._needs, self._can_match
                always = [i for i in always if not (gone := masks[i] & absent)
                          or (not needs[i] & gone and can(i, gone))]
                allowed = [i for i in allowed if not (gone := masks[i] & absent)
                           or (not needs[i] & gone and can(i, gone))]
        if len(allowed) <= DIRECT:
            return _Group(sorted(always + allowed), None)
        if layout is not None and kind is not None:
            # a field's JSON key is in the text of every record holding the field, so a
            # set holding the key of a held field is met: it opens nothing (each record
            # of the group would open the rule), the rule's other sets decide
            keys = self._key_literals
            certain = frozenset(keys[k] for k in map(_key, layout) if k in keys)
        else:
            certain = frozenset()
        sets = {}
        for i in allowed:
            left = tuple(s for s in self._sets[i] if certain.isdisjoint(s))
            if left:
                sets[i] = left
            else:
                always.append(i)
        if len(sets) <= DIRECT:
            return _Group(sorted(always + list(sets)), None)
        return _Group(sorted(always), self._scan(sets, layout))

    def _scan(self, sets: dict[int, tuple[frozenset[int], ...]],
              layout: tuple[str, ...] | None) -> _Scan:
        """The prefilter of the rules `sets` names (rule -> the literal sets it needs);
        with the `layout` of records (their held fields' keys taken as met), the text
        scanned is the JSON array of the scanned fields' values alone: each value's JSON
        as in the record's text, no key (none is needed), half the bytes to scan."""
        read = set().union(*(self._fields[i] for i in sets))
        # an EventData name is read from UserData where the record keeps it there (as
        # `Event` does): its literals are in that text then
        read.update([USER_DATA + f[_ED:] for f in read if f.startswith(EVENT_DATA)])
        fields = frozenset(read)
        fields = self._scan_fields.setdefault(fields, fields)
        first = _Firsts()
        for i, need in sets.items():
            for n in need[0]:
                first[n] = (*first.get(n, ()), i)
        take = None
        if layout is not None:
            names = [p for p in layout if p in fields]
            # itemgetter of one name gives the value itself: its JSON is just as good
            take = itemgetter(*names) if names else _no_values
        return _Scan(fields, first, {i: need[1:] for i, need in sets.items()}, take)

    def match(self, doc: dict[str, Any] | SourceRecord) -> list[int]:
        """Indexes (into `rules`) of the rules `doc` matches."""
        if isinstance(doc, SourceRecord):
            if doc.candidates is not None:  # a prefilter has read the record already
                if not doc.candidates:
                    return list(doc.matched)
                return [*doc.matched, *self.evaluate(doc.candidates, Event(None, record=doc))]
            kind: type | None = type(doc)
            shaped = self._shaped_kinds.get(kind)
            if shaped is None:
                shaped = self._shaped_kinds[kind] = self._shapes_key(kind)
            if shaped:
                # a record's group by its shape, before (or without) reading its fields:
                # a third of a hunt's records have no candidate rule at all
                shape = (kind, doc.shape())
                group = self._shaped.get(shape)
                if group is not None:
                    if not group.always and group.scan is None:
                        return []
                    return self._candidates(group, doc, kind, Event(None, record=doc))
            ev = Event(None, record=doc)
            group = self._group_of(doc.dataset, kind, ev.r)
            if shaped and shape[1] is not None and len(self._shaped) < MAX_GROUPS:
                self._shaped[shape] = group
            return self._candidates(group, doc, kind, ev)
        ev = Event(doc)
        return self._candidates(self._group_of(doc["event"]["dataset"], None, ev.r), doc,
                                None, ev)

    def _shapes_key(self, kind: type) -> bool:
        """Whether records of `kind` name their group by `shape()`: the fields groups are
        keyed by (the guards the kind answers by itself) are all among those their shape
        determines."""
        known = self._known_guards(kind)
        return all(f in kind.SHAPED
                   for f, k in zip(self.guard_fields, known, strict=True) if k)

    def _group_of(self, dataset: str, kind: type | None, r: dict[str, Any]) -> _Group:
        layout = None
        # the paths a filled record holds, taken before any lookup adds others
        if type(r) is _Filled and len(self._groups) < MAX_GROUPS:
            layout = tuple(r)
        known = self._known_guards(kind)
        try:
            key = (dataset, kind, tuple(r[f] if k else None for f, k in
                                        zip(self.guard_fields, known, strict=True)), layout)
            group = self._groups.get(key)
        except TypeError:  # a list among the values: the dataset's group, unguarded
            key = (dataset, kind, _UNKNOWN, layout)
            group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self._group(dataset, kind, key[2], layout)
        return group

    def _candidates(self, group: _Group, doc: dict[str, Any] | SourceRecord,
                    kind: type | None, ev: Event) -> list[int]:
        r = ev.r
        cands = group.always
        scan = group.scan
        if scan is not None:
            take = scan.take
            if take is not None:
                text = _dumps(take(r))
            else:
                text = doc.scan_json(scan.fields) if kind is not None else orjson.dumps(doc)
            hits = self._set_match(_folded_utf8(text))
            if hits:
                # the rules a hit literal opens (each once), then their other sets
                opened = set(chain.from_iterable(map(scan.first.__getitem__, hits)))
                if opened:
                    hits = set(hits)
                    rest = scan.rest
                    more = []
                    for i in opened:
                        for s in rest[i]:
                            if hits.isdisjoint(s):
                                break
                        else:
                            more.append(i)
                    if more:
                        cands = [*cands, *more]
        if not cands:
            return []
        return self.evaluate(cands, ev)

    def evaluate(self, cands: Iterable[int], ev: Event) -> list[int]:
        """Of the rules `cands`, those the event is true for."""
        preds = self._preds
        out = []
        for i in cands:
            p = preds[i] or self.predicate(i)
            if p(ev):
                out.append(i)
        return out

    def fields(self, i: int) -> frozenset[str]:
        """The fields rule `i`'s condition reads."""
        return self._fields[i]

    def literal_list(self) -> list[str]:
        """The prefilter's literals, each at its number."""
        return list(self._literals)

    def shaped_groups(self) -> list[tuple[type, Any, _Group]]:
        """(record class, shape, group) of every group found by a record's shape."""
        return [(kind, shape, g) for (kind, shape), g in self._shaped.items()]


def _folded_utf8(text: bytes) -> bytes:
    """UTF-8 JSON text case-folded as `fold_case` folds it (ASCII: bytes.lower, in C)."""
    if text.isascii():
        return text.lower()
    return fold_case(text.decode()).encode()


def compile_rules(rules: Iterable[Any]) -> tuple[list[Compiled], dict[str, str]]:
    """The query rules of a pack (`Rule`s with their YAML) for the evaluator, and the
    ones it cannot express (rule id -> why)."""
    from detections.pipelines import govsoc_pipeline

    pipeline = govsoc_pipeline()
    out, errors = [], {}
    for r in rules:
        if r.is_correlation or r.doc is None:
            continue
        try:
            ir = rule_ir(r.doc, pipeline)
        except Exception as exc:  # pySigma or this module refusing one rule: that rule's
            errors[r.id] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            continue
        out.append(Compiled(r.id, tuple(r.datasets or ()), ir, literals(ir)))
    return out, errors
