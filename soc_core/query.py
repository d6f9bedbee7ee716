"""The analyst query language: the field:value subset of Lucene that people type in Kibana.

    source.ip:10.0.0.5 AND NOT destination.port:22
    event.dataset:(network.dns OR network.http) dns.question.name:*.example.cn
    destination.port:[1 TO 1024]  user.name:"张 三"  失败  message:"Failed password"

Clauses next to each other are joined with AND (what analysts mean; stricter than
Lucene's default OR). A bare word or phrase searches `message` as free text. The parser
returns a small AST that each store backend compiles for itself, so both answer alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class QueryError(ValueError):
    """A query that does not parse; the message points at the position."""


@dataclass(frozen=True)
class Term:
    field: str | None  # None: free text over `message`
    value: str
    phrase: bool = False  # quoted


@dataclass(frozen=True)
class Wildcard:
    field: str | None
    pattern: str  # `*` and `?` wildcards


@dataclass(frozen=True)
class Range:
    field: str
    low: str | None  # None: unbounded (`*`)
    high: str | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: object


Node = Term | Wildcard | Range | Exists | And | Or | Not

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lparen>\() | (?P<rparen>\)) |
      (?P<range>[\[{]\s*(?P<lo>"[^"]*"|[^\s\]}]+)\s+TO\s+(?P<hi>"[^"]*"|[^\s\]}]+)\s*[\]}]) |
      (?P<phrase>"(?:[^"\\]|\\.)*") |
      (?P<cmp>(?:>=|<=|>|<)) |
      (?P<word>(?:[^\s()"\\:\[\]{}]|\\.)+) |
      (?P<colon>:) |
      (?P<bad>\S)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str, int, re.Match]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup if m.lastgroup not in ("lo", "hi") else "range"
        if kind == "bad":
            if m.group("bad") == '"':
                raise QueryError(f"unterminated quote at position {m.start('bad') + 1}")
            if m.group("bad") in "[{":
                raise QueryError(f"unclosed range at position {m.start('bad') + 1}: "
                                 "use [low TO high]")
            raise QueryError(f"unexpected {m.group('bad')!r} at position {m.start('bad') + 1}")
        out.append((kind, m.group(kind), m.start(kind), m))
    return out


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1]
    return re.sub(r"\\(.)", r"\1", s)


# Nesting (parentheses, NOT) deeper than any analyst writes: bounds the parser's and the
# backends' recursion, so a crafted query is an error, never a RecursionError.
MAX_DEPTH = 64
_FIELD = re.compile(r"@?[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"query nests deeper than {MAX_DEPTH} levels at position {pos + 1}")

    def peek(self, offset: int = 0):
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1] in words

    def parse(self) -> Node | None:
        if not self.toks:
            return None
        node = self.parse_or(None)
        if self.peek() is not None:
            tok = self.peek()
            raise QueryError(f"unexpected {tok[1]!r} at position {tok[2] + 1}")
        return node

    def parse_or(self, field: str | None) -> Node:
        items = [self.parse_and(field)]
        while self.at_word("OR") or (self.peek() and self.peek()[1] == "||"):
            self.take()
            items.append(self.parse_and(field))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self, field: str | None) -> Node:
        items = [self.parse_not(field)]
        while True:
            tok = self.peek()
            if tok is None or tok[0] == "rparen" or self.at_word("OR") or tok[1] == "||":
                break
            if self.at_word("AND") or tok[1] == "&&":
                self.take()
            items.append(self.parse_not(field))
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self, field: str | None) -> Node:
        if self.at_word("NOT") or (self.peek() and self.peek()[1] == "!"):
            self.nest(self.take()[2])
            node = Not(self.parse_not(field))
            self.depth -= 1
            return node
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].startswith("-") and len(tok[1]) > 1:
            # `-field:value` is Lucene's prohibit operator
            self.toks[self.i] = ("word", tok[1][1:], tok[2] + 1, tok[3])
            return Not(self.parse_primary(field))
        return self.parse_primary(field)

    def parse_primary(self, field: str | None) -> Node:
        tok = self.take()
        if tok is None:
            raise QueryError("query ends where a term was expected")
        kind, value, pos, m = tok
        if kind == "lparen":
            self.nest(pos)
            node = self.parse_or(field)
            close = self.take()
            if close is None or close[0] != "rparen":
                raise QueryError(f"missing ')' for '(' at position {pos + 1}")
            self.depth -= 1
            return node
        if kind == "word" and field is None and self.peek() and self.peek()[0] == "colon":
            self.take()
            name = _unquote(value)
            if not _FIELD.match(name):
                raise QueryError(f"bad field name {name!r} at position {pos + 1}: "
                                 "letters, digits, '_', '-' and '.'")
            return self.parse_value(name, pos)
        if kind in ("rparen", "colon", "cmp", "range"):
            raise QueryError(f"unexpected {value!r} at position {pos + 1}")
        if kind == "word" and value in ("AND", "OR", "&&", "||"):
            raise QueryError(f"{value} at position {pos + 1} has nothing before it")
        return _leaf(field, value, kind == "phrase")

    def parse_value(self, field: str, pos: int) -> Node:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"field {field!r} at position {pos + 1} has no value")
        kind, value, vpos, m = tok
        if kind == "lparen":
            return self.parse_primary(field)
        self.take()
        if kind == "range":
            lo, hi = _unquote(m.group("lo")), _unquote(m.group("hi"))
            return Range(field, None if lo == "*" else lo, None if hi == "*" else hi,
                         value.lstrip()[0] == "[", value.rstrip()[-1] == "]")
        if kind == "cmp":
            operand = self.take()
            if operand is None or operand[0] not in ("word", "phrase"):
                raise QueryError(f"comparison at position {vpos + 1} has no value")
            bound = _unquote(operand[1])
            return {
                ">": Range(field, bound, None, False, True),
                ">=": Range(field, bound, None, True, True),
                "<": Range(field, None, bound, True, False),
                "<=": Range(field, None, bound, True, True),
            }[value]
        if kind not in ("word", "phrase"):
            raise QueryError(f"field {field!r} at position {pos + 1} has no value")
        if kind == "word" and value == "*":
            return Exists(field)
        return _leaf(field, value, kind == "phrase")


def _leaf(field: str | None, raw: str, phrase: bool) -> Node:
    if phrase:
        return Term(field, _unquote(raw), True)
    if re.search(r"(?<!\\)[*?]", raw):
        return Wildcard(field, raw)
    return Term(field, _unquote(raw), False)


def parse(text: str | None) -> Node | None:
    """Parse an analyst query; None for an empty query. Raises QueryError."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


def wildcard_to_regex(pattern: str) -> str:
    """`*`/`?` pattern (backslash escapes) -> anchored regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"
