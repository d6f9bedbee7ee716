"""Selections and analyst queries compiled to SQLite SQL over the `docs` table.

Documents are nested JSON in `docs.doc`; a dotted ECS path `a.b.c` is read with
`json_extract(doc, '$."a"."b"."c"')`. A few hot fields have their own indexed columns.
Free text goes through the FTS5 table `docs_fts`, whose text is segmented the way
Elasticsearch's standard analyzer splits Chinese (one token per ideograph), so a phrase
query for 登录失败 means the same on both backends.
"""

from __future__ import annotations

import re
from typing import Any

from soc_core import ecs
from soc_core import query as q
from soc_core.store.base import Selection

# ECS field -> indexed column
HOT_COLUMNS = {
    "event.id": "id",
    "event.dataset": "dataset",
    "event.kind": "kind",
    "host.name": "host_name",
    "source.ip": "source_ip",
    "destination.ip": "destination_ip",
    # the analysts' alert lists (indexed for alerts only); each holds its value exactly as
    # json_extract reads it from the document, for every family: a term compares it as a
    # scalar (the field never holds an array)
    "govsoc.alert.status": "alert_status",
    "govsoc.alert.changed": "alert_changed",
}
# ECS field -> column holding its value exactly as json_extract reads it from the document
# (not indexed): the flow fields that groupings read for every flow of a window (passive
# discovery, exposure, idle hosts), where parsing each document's JSON was the whole cost.
# Only `EventStore.groups` reads them: a term query must still match inside arrays.
VALUE_COLUMNS = {
    "destination.port": "destination_port",
    "network.transport": "transport",
    "network.protocol": "protocol",
    "zeek.connection.state": "conn_state",
}
# fields that never hold an array (ECS single keywords govsoc writes itself), compared with
# json_extract (cheaper) instead of walked with json_each: the department every scoped
# query checks (the alert status has a column: HOT_COLUMNS)
SCALAR_FIELDS = frozenset({"organization.id"})
_FIELD_OK = re.compile(r"^@?[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])")


def segment(text: str) -> str:
    """Text as indexed in FTS5: every CJK character stands alone, like ES's standard
    analyzer, so both backends agree on what a Chinese phrase matches: each one with a
    space either side. (Split on the characters and joined with spaces: the same text as
    `sub(" \\1 ")`, whose template Python 3.11 expands in Python for every match.)"""
    return " ".join(_CJK.split(text)) if text and not text.isascii() else text


def json_path(field: str) -> str:
    if not _FIELD_OK.match(field):
        raise q.QueryError(f"bad field name {field!r}")
    return "$." + ".".join(f'"{part}"' for part in field.split("."))


def field_expr(field: str) -> str:
    """SQL expression for a field's (scalar) value."""
    col = HOT_COLUMNS.get(field)
    if col:
        return col
    return f"json_extract(doc, '{json_path(field)}')"


def fts_phrase(text: str) -> str:
    """A phrase for FTS5 MATCH: tokens quoted, so user input is never FTS syntax."""
    tokens = re.findall(r"\w+", segment(text))
    if not tokens:
        raise q.QueryError(f"nothing searchable in {text!r}")
    return '"' + " ".join(tokens) + '"'


def _as_number(value: str) -> int | float | None:
    try:
        return int(value)
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            return None
        return f if f == f and f not in (float("inf"), float("-inf")) else None


class Compiler:
    """Accumulates SQL and its parameters for one statement."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    # -- selection --------------------------------------------------------------
    def selection(self, sel: Selection) -> str:
        parts = [f"family = {self.p(sel.family)}"]
        if sel.dataset:
            datasets = [sel.dataset] if isinstance(sel.dataset, str) else list(sel.dataset)
            if len(datasets) == 1:
                parts.append(f"dataset = {self.p(datasets[0])}")
            else:
                parts.append(f"dataset IN ({', '.join(self.p(d) for d in datasets)})")
        if sel.start_ms is not None:
            parts.append(f"ts >= {self.p(sel.start_ms)}")
        if sel.end_ms is not None:
            parts.append(f"ts < {self.p(sel.end_ms)}")
        for field, value in (sel.filters or {}).items():
            values = value if isinstance(value, (list, tuple, set)) else [value]
            parts.append(self.terms(field, list(values)))
        if sel.query is not None:
            parts.append(self.node(sel.query))
        if sel.text:
            parts.append(self.node(q.parse(sel.text)))
        return " AND ".join(parts)

    def terms(self, field: str, values: list[Any]) -> str:
        if not values:
            return "0"
        if field in ("message", None):
            return "(" + " OR ".join(self.fts(str(v)) for v in values) + ")"
        binds: list[Any] = []
        for v in values:
            binds.append(v)
            if isinstance(v, str):
                num = _as_number(v)
                if num is not None:
                    binds.append(num)
                elif v in ("true", "false"):
                    binds.append(1 if v == "true" else 0)
            elif isinstance(v, bool):
                binds[-1] = int(v)
        marks = ", ".join(self.p(b) for b in binds)
        col = HOT_COLUMNS.get(field)
        if col:
            return f"{col} IN ({marks})"
        if field in SCALAR_FIELDS:
            return f"{field_expr(field)} IN ({marks})"
        # json_each also walks arrays, so a term matches one element like in ES
        return (f"EXISTS (SELECT 1 FROM json_each(docs.doc, '{json_path(field)}') AS je "
                f"WHERE je.value IN ({marks}))")

    def fts(self, text: str) -> str:
        phrase = self.p(fts_phrase(text))
        return f"docs.rowid IN (SELECT rowid FROM docs_fts WHERE docs_fts MATCH {phrase})"

    # -- query AST ----------------------------------------------------------------
    def node(self, n: Any) -> str:
        if isinstance(n, q.And):
            return "(" + " AND ".join(self.node(i) for i in n.items) + ")"
        if isinstance(n, q.Or):
            return "(" + " OR ".join(self.node(i) for i in n.items) + ")"
        if isinstance(n, q.Not):
            return f"NOT ({self.node(n.item)})"
        if isinstance(n, q.Term):
            return self.terms(n.field or "message", [n.value])
        if isinstance(n, q.Wildcard):
            return self.wildcard(n.field or "message", n.pattern)
        if isinstance(n, q.Range):
            return self.range(n)
        if isinstance(n, q.Exists):
            if n.field in HOT_COLUMNS:
                return f"{HOT_COLUMNS[n.field]} IS NOT NULL"
            return f"json_type(doc, '{json_path(n.field)}') IS NOT NULL"
        raise q.QueryError(f"unsupported query element {n!r}")

    def wildcard(self, field: str, pattern: str) -> str:
        if field == "message":
            # token prefix search, as a Lucene wildcard on an analyzed field
            m = re.fullmatch(r"(\w+)\*", pattern)
            if not m:
                raise q.QueryError("on message, use a word prefix like fail*")
            return (f"docs.rowid IN (SELECT rowid FROM docs_fts WHERE docs_fts MATCH "
                    f"{self.p(m.group(1) + '*')})")
        glob = _to_glob(pattern)
        col = HOT_COLUMNS.get(field)
        if col:
            return f"{col} GLOB {self.p(glob)}"
        return (f"EXISTS (SELECT 1 FROM json_each(docs.doc, '{json_path(field)}') AS je "
                f"WHERE je.value GLOB {self.p(glob)})")

    def range(self, n: q.Range) -> str:
        if n.field == "@timestamp":
            expr = "ts"
            lo = None if n.low is None else _millis(n.low)
            hi = None if n.high is None else _millis(n.high)
        else:
            expr = field_expr(n.field)
            lo, hi = n.low, n.high
            nums = [_as_number(v) for v in (lo, hi) if v is not None]
            if nums and all(x is not None for x in nums):
                lo = None if lo is None else _as_number(lo)
                hi = None if hi is None else _as_number(hi)
        parts = []
        if lo is not None:
            parts.append(f"{expr} {'>=' if n.include_low else '>'} {self.p(lo)}")
        if hi is not None:
            parts.append(f"{expr} {'<=' if n.include_high else '<'} {self.p(hi)}")
        return "(" + " AND ".join(parts) + ")" if parts else f"{expr} IS NOT NULL"


def _millis(value: str) -> int:
    try:
        return ecs.to_millis(value)
    except ecs.EventError as exc:
        raise q.QueryError(f"bad time {value!r} in range") from exc


def _to_glob(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(f"[{nxt}]" if nxt in "*?[" else nxt)
            i += 2
            continue
        out.append("[[]" if c == "[" else c)
        i += 1
    return "".join(out)

