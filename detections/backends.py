"""pySigma backends tuned to the two govsoc stores, so one rule means the same on both.

- SQLite: pySigma's SQL backend, but a field is `json_extract(doc, '$."a"."b"')` (or its
  indexed column) over the `docs` table, the output is the bare WHERE expression
  `EventStore.native` expects, and keyword (full-text) rules go through FTS5 on `message`.
- Elasticsearch: pySigma's Lucene backend; keywords become a phrase on `message`.

Sigma's matching semantics, the same on both stores (and what any other evaluator of these
rules must do to agree with them):

- Strings (plain, `|contains`, `|startswith`, `|endswith`, `*`/`?` wildcards, `|all`,
  `|windash`, `|base64*` expansions) match case-insensitively: both sides lowercased code
  point by code point (`soc_core.textcase.fold_case`, as Elasticsearch's `lowercase`
  normalizer). The whole value must match (wildcards aside). SQLite: `LIKE ... ESCAPE`
  (or `= ... COLLATE NOCASE` without wildcards), which fold ASCII; a pattern with
  non-ASCII letters compares `FOLD_CASE(field) LIKE fold(pattern)`. Elasticsearch: the
  field's `.caseless` twin (a keyword with the lowercase normalizer, see
  `soc_core.store.caseless_field`), which normalizes the query's terms and wildcards too.
  Known edge: SQLite's ASCII fold does not fold a non-ASCII value character onto an ASCII
  pattern letter (the Kelvin sign, U+0130), which Elasticsearch does.
- `|cased`: exact case (SQLite GLOB with literal backslashes; Elasticsearch the keyword).
- `|re`: case-sensitive, unanchored (a search anywhere in the value), RE2 syntax; `|re|i`
  (or a leading `(?i)`) ignores case, `|re|m`/`|re|s` as in RE2. SQLite runs RE2; on
  Elasticsearch the pattern is translated to a Lucene regex (see `lucene_regex`).
- Numbers match the number or its decimal text (Winlogbeat keeps ids as strings).
- `null` matches a field that is absent or null; `''` only the empty string.
- Keywords (values without a field) are case-insensitive token phrases on `message`
  (FTS5 and Elasticsearch's standard analyzer both lowercase and split on non-word
  characters; CJK one token per character).
- A field holding an array matches when any element does.
"""

from __future__ import annotations

import re
from typing import Any

from sigma.backends.elasticsearch import LuceneBackend
from sigma.backends.sqlite import sqliteBackend
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionOR
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.types import (
    SigmaCasedString,
    SigmaNumber,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from soc_core.store import field_expr, json_path, keyword_field
from soc_core.textcase import fold_case, has_cased_non_ascii

# ECS fields that hold arrays (Auditbeat's FIM writes event.action as one too). Elasticsearch
# matches a term against any element; SQLite needs json_each for the same meaning.
ARRAY_FIELDS = frozenset({
    "event.category", "event.type", "event.action", "tags", "related.ip", "related.user",
    "related.hosts", "related.hash", "process.args", "host.ip", "host.mac", "dns.resolved_ip",
    "dns.answers.data", "dns.header_flags", "file.attributes", "user.roles",
    "threat.technique.id", "threat.tactic.name", "winlog.keywords", "observer.ip",
})
_FIELD_OK = re.compile(r"^@?[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_TOKEN = re.compile(r"\w+")
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])")


# Windows event data: Winlogbeat keeps a record's EventData under winlog.event_data and its
# UserData (WMI-Activity, Security 1102, AppLocker, TerminalServices...) under
# winlog.user_data. A record has one or the other (the EVTX schema's choice), so a Sigma field
# name, which the Windows pipeline maps to winlog.event_data.<Name>, means whichever is there.
EVENT_DATA = "winlog.event_data."
USER_DATA = "winlog.user_data."


def ecs_field(field: str) -> str:
    # Winlogbeat's templates add `.caseless` multi-fields; our stores index the field itself.
    return field[:-len(".caseless")] if field.endswith(".caseless") else field


def keyword_tokens(value: Any) -> list[str]:
    """The tokens of a Sigma keyword as both stores index `message` (CJK one per char)."""
    tokens = _TOKEN.findall(_CJK.sub(r" \1 ", str(value)))
    if not tokens:
        raise SigmaFeatureNotSupportedByBackendError(
            f"keyword {str(value)!r} has no searchable word")
    return tokens


class SqliteStoreBackend(sqliteBackend):
    """Sigma -> a SQL boolean expression over `docs`, for `SqliteStore.native`."""

    name = "govsoc SQLite"
    # pySigma refuses a pipeline restricted to other backends; ours names none.
    backend_processing_pipeline = ProcessingPipeline()
    collate_nocase = True  # equality without wildcards: `= 'v' COLLATE NOCASE`

    def __init__(self, processing_pipeline: ProcessingPipeline | None = None) -> None:
        super().__init__(processing_pipeline, collect_errors=False)
        self.fields_seen: set[str] = set()
        self._element = False  # inside a json_each over an array field

    def escape_and_quote_field(self, field: str) -> str:
        field = ecs_field(field)
        if not _FIELD_OK.match(field):
            raise SigmaFeatureNotSupportedByBackendError(f"field name {field!r} is a pattern")
        self.fields_seen.add(field)
        if self._element:
            return "je.value"
        if field.startswith(EVENT_DATA):  # the value wherever the record keeps it
            return (f"coalesce({field_expr(field)}, "
                    f"{field_expr(USER_DATA + field[len(EVENT_DATA):])})")
        return field_expr(field)

    def convert_condition_field_eq_val(self, cond, state):
        field = ecs_field(cond.field) if cond.field else None
        if field not in ARRAY_FIELDS or self._element:
            return super().convert_condition_field_eq_val(cond, state)
        self._element = True
        try:
            expr = super().convert_condition_field_eq_val(cond, state)
        finally:
            self._element = False
        return (f"EXISTS (SELECT 1 FROM json_each(docs.doc, '{json_path(field)}') AS je "
                f"WHERE {expr})")

    def convert_condition_field_eq_val_str(self, cond, state):
        # pySigma's SQLite conversion is case-insensitive for ASCII (LIKE; equality with
        # collate_nocase); a pattern with non-ASCII letters needs the Unicode fold, and one
        # without letters (an address, a number as text) is compared exactly, which an
        # index on the column can serve
        text = str(cond.value)
        if not any(c.lower() != c.upper() for c in text):
            return self.convert_condition_field_eq_val_str_case_sensitive(cond, state)
        if not has_cased_non_ascii(text):
            return super().convert_condition_field_eq_val_str(cond, state)
        field = self.escape_and_quote_field(cond.field)
        pattern = fold_case(self.convert_value_str(cond.value, state, no_quote=True))
        return f"FOLD_CASE({field}) LIKE '{pattern}' ESCAPE '\\'"

    def convert_condition_field_eq_val_num(self, cond, state):
        # Collectors write numbers as JSON numbers, Winlogbeat keeps ids as strings:
        # match either, like a keyword/long field does in Elasticsearch.
        field = self.escape_and_quote_field(cond.field)
        n = cond.value.number if isinstance(cond.value, SigmaNumber) else cond.value
        return f"{field} IN ({n}, '{n}')"

    def _fts(self, value: Any) -> str:
        phrase = '"' + " ".join(keyword_tokens(value)) + '"'
        self.fields_seen.add("message")
        return f"docs.rowid IN (SELECT rowid FROM docs_fts WHERE docs_fts MATCH '{phrase}')"

    def convert_condition_val_str(self, cond, state):
        return self._fts(cond.value)

    def convert_condition_val_num(self, cond, state):
        return self._fts(cond.value)

    def finalize_query_default(self, rule, query, index, state):
        return query


class LuceneStoreBackend(LuceneBackend):
    """Sigma -> a Lucene query string for `ElasticStore.native`."""

    name = "govsoc Lucene"
    backend_processing_pipeline = ProcessingPipeline()
    # `|cased`: the keyword as stored (wildcards as Lucene wildcards)
    case_sensitive_match_expression = "{field}:{value}"

    def __init__(self, processing_pipeline: ProcessingPipeline | None = None) -> None:
        super().__init__(processing_pipeline, collect_errors=False)
        self.fields_seen: set[str] = set()

    def escape_and_quote_field(self, field: str) -> str:
        field = ecs_field(field)
        self.fields_seen.add(field)
        if field.startswith(EVENT_DATA):
            # a field-name pattern matching event_data.<Name> and user_data.<Name>: a query
            # matches either; `NOT _exists_:` of it means neither exists, Sigma's null
            field = "winlog.*_data." + field[len(EVENT_DATA):]
        return super().escape_and_quote_field(field)

    def convert_condition_field_eq_val_str(self, cond, state):
        # Case-insensitive: a regex with both cases of each letter on the keyword itself.
        # (A lowercase-normalized `.caseless` twin would be cheaper to query, but
        # Elasticsearch 8.19.0-8.19.2 index such a twin with JSON escapes left in, `\\`
        # for every backslash of a Windows path: elastic/elasticsearch#134023.) Values
        # without letters, and fields that are not keywords, keep the exact query.
        field = ecs_field(cond.field)
        regex = caseless_regex(cond.value) if keyword_field(field) else None
        if regex is None:
            return super().convert_condition_field_eq_val_str(cond, state)
        return f"{self.escape_and_quote_field(cond.field)}:{delimited(regex)}"

    def convert_condition_field_eq_val_cidr(self, cond, state):
        # a network in CIDR notation means something to an `ip` field only; a keyword
        # (Windows' IpAddress, any string field) gets the network's address patterns,
        # as pySigma's SQLite backend writes them
        if not keyword_field(ecs_field(cond.field)):
            return super().convert_condition_field_eq_val_cidr(cond, state)
        return self.convert_condition(ConditionOR(
            [ConditionFieldEqualsValueExpression(cond.field, SigmaString(net))
             for net in cond.value.expand()], cond.source), state)

    def convert_condition_field_eq_expansion(self, cond, state):
        # pySigma-backend-elasticsearch 2.1 passes the expansion itself, not its OR, when
        # the OR is not written as `field:(a OR b)`; its parent sees one field test and
        # adds no parentheses, so the OR is grouped here: `a AND x OR y` would make x
        # required and y optional (a `|windash` rule matched `-all` but not `/all`)
        or_cond = ConditionOR([ConditionFieldEqualsValueExpression(cond.field, v)
                               for v in cond.value.values], cond.source)
        if self.decide_convert_condition_as_in_expression(or_cond, state):
            return self.convert_condition_as_in_expression(or_cond, state)
        return self.group_expression.format(expr=self.convert_condition_or(or_cond, state))

    def convert_condition_not(self, cond, state):
        # pySigma writes `not <field is null>` as `_exists_:<field>` with the field name as
        # given: through escape_and_quote_field here, like every other reference to it
        inner = cond.args[0]
        if self._is_field_null_condition(inner):
            return f"_exists_:{self.escape_and_quote_field(inner.field)}"
        return super().convert_condition_not(cond, state)

    def decide_convert_condition_as_in_expression(self, cond, state):
        # `field:(a OR b)` only for values matched exactly (no letters to fold)
        if any(isinstance(getattr(a, "value", None), SigmaCasedString)
               or isinstance(getattr(a, "value", None), SigmaString)
               and any(c.lower() != c.upper() for c in str(a.value))
               for a in cond.args):
            return False
        return super().decide_convert_condition_as_in_expression(cond, state)

    def convert_condition_field_eq_val_re(self, cond, state):
        value = cond.value
        pattern = str(value.regexp)
        ignore_case = SigmaRegularExpressionFlag.IGNORECASE in value.flags
        if pattern.startswith("(?i)"):
            pattern, ignore_case = pattern[4:], True
        if value.flags - {SigmaRegularExpressionFlag.IGNORECASE}:
            raise SigmaFeatureNotSupportedByBackendError(
                "regex flags other than i are not supported on Elasticsearch")
        return (f"{self.escape_and_quote_field(cond.field)}:"
                f"{delimited(lucene_regex(pattern, ignore_case=ignore_case))}")

    def convert_condition_val_str(self, cond, state):
        self.fields_seen.add("message")
        return 'message:"' + " ".join(keyword_tokens(cond.value)) + '"'

    def convert_condition_val_num(self, cond, state):
        return self.convert_condition_val_str(cond, state)


def delimited(regex: str) -> str:
    """A Lucene regex as a query-string term, `/regex/`. A literal backslash at its end
    becomes a class holding it: the query parser reads an escaped backslash followed by
    the closing slash as a backslash and an escaped slash, and refuses the whole query
    (SigmaHQ's rules compare `Image` or `CurrentDirectory` with folders written with a
    trailing backslash)."""
    tail = len(regex) - len(regex.rstrip("\\"))
    if tail and tail % 2 == 0:
        regex = regex[:-2] + "[\\\\]"
    return f"/{regex}/"


def caseless_regex(value: SigmaString) -> str | None:
    """A Sigma string (whole-value match, `*`/`?` wildcards) as a Lucene regex matching it
    in any case, or None when it has no letter with another case."""
    if not any(c.lower() != c.upper() for c in str(value)):
        return None
    out = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            out.extend(_regex_char(c, True) for c in part)
    return "".join(out)


def _regex_char(c: str, ignore_case: bool) -> str:
    """One literal character in a Lucene regex: both cases as a class, operators escaped."""
    lo, up = c.lower(), c.upper()
    if ignore_case and lo != up and len(lo) == 1 and len(up) == 1:
        return "[" + "".join(_class_char(x) for x in dict.fromkeys((c, lo, up))) + "]"
    if c in _LUCENE_OPERATORS:
        return "\\" + c
    return c


# RE2 shorthand classes as Lucene class contents (Lucene reads `\d` as a literal "d")
_SHORTHAND = {"d": "0-9", "w": "0-9A-Za-z_", "s": " \t\n\r\f\v"}
# characters Lucene's RegExp (all syntax flags, as query_string parses it) treats as
# operators that RE2 reads literally, and the query string's own delimiter
_LUCENE_LITERAL = set('"#@&<>~/')
_LUCENE_OPERATORS = _LUCENE_LITERAL | set(".?+*|{}[]()\\^$")


class _Unsupported(SigmaFeatureNotSupportedByBackendError):
    def __init__(self, what: str, pattern: str) -> None:
        super().__init__(f"regex {pattern[:60]!r}: {what} has no Lucene equivalent")


def lucene_regex(pattern: str, *, ignore_case: bool = False) -> str:
    """An RE2 search pattern (unanchored, as Sigma's `|re`) as a Lucene regex, which must
    match the whole term: each top-level alternative is padded with `.*` on a side not
    anchored by `^`/`$`. Shorthand classes become explicit ones, `(?:` a plain group,
    lazy quantifiers greedy ones (same set of matches), and with `ignore_case` every letter
    a class of both cases. What Lucene cannot say (backreferences, \\b, inner anchors,
    flags inside, Unicode classes) raises SigmaFeatureNotSupportedByBackendError."""
    if _outer_group(pattern):  # `(^a|b$)`: its alternatives are the pattern's own
        pattern = pattern[3:-1] if pattern.startswith("(?:") else pattern[1:-1]
    alternatives: list[list[str]] = [[]]
    depth = 0
    i, n = 0, len(pattern)
    out = alternatives[0]

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise _Unsupported("a trailing backslash", pattern)
            e = pattern[i + 1]
            i += 2
            if e in "dws":
                out.append(f"[{_SHORTHAND[e]}]")
            elif e in "DWS":
                out.append(f"[^{_SHORTHAND[e.lower()]}]")
            elif e in "tnrfv":
                out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v"}[e])
            elif e.isalnum():
                raise _Unsupported(f"\\{e}", pattern)
            else:
                out.append("\\" + e)
            continue
        if c == "[":
            i = _char_class(pattern, i, out, ignore_case)
            continue
        if c == "(":
            if pattern.startswith("(?:", i):
                i += 3
            elif pattern.startswith("(?P<", i) or pattern.startswith("(?<", i):
                i = pattern.index(">", i) + 1
            elif pattern.startswith("(?", i):
                raise _Unsupported("an inline flag group", pattern)
            else:
                i += 1
            depth += 1
            out.append("(")
            continue
        if c == ")":
            depth -= 1
            out.append(")")
        elif c == "|" and depth == 0:
            out = []
            alternatives.append(out)
        elif c in "*+?" and i + 1 < n and pattern[i + 1] == "?":
            out.append(c)  # lazy: the same matches as greedy
            i += 1
        elif c == "^":
            if out:
                raise _Unsupported("^ inside the pattern", pattern)
            out.append("^")
        elif c == "$":
            if i + 1 < n and pattern[i + 1] not in "|)":
                raise _Unsupported("$ inside the pattern", pattern)
            out.append("$")
        elif c in "{}.*+?|":
            out.append(c)
        else:
            out.append(_regex_char(c, ignore_case))
        i += 1
    parts = []
    for alt in alternatives:
        start = bool(alt) and alt[0] == "^"
        end = bool(alt) and alt[-1] == "$"
        body = alt[start:len(alt) - end if end else None]
        if "^" in body or "$" in body:
            raise _Unsupported("an anchor inside a group", pattern)
        parts.append(("" if start else ".*") + "".join(body) + ("" if end else ".*"))
    return "|".join(parts)


def _outer_group(pattern: str) -> bool:
    """Whether one plain group spans the whole pattern (`(...)`, nothing after it)."""
    if not pattern.startswith("(") or pattern.startswith("(?") and not pattern.startswith(
            "(?:") or not pattern.endswith(")"):
        return False
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern.startswith("]", i + 1) or pattern.startswith("^]", i + 1):
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i == len(pattern) - 1
        i += 1
    return False


def _char_class(pattern: str, i: int, out: list[str], ignore_case: bool) -> int:
    """Copy the class starting at pattern[i] ('[') to `out` in Lucene syntax; the index
    after it."""
    j = i + 1
    items: list[str] = []
    negate = pattern.startswith("^", j)
    if negate:
        j += 1
    if pattern.startswith("[:", j):
        raise _Unsupported("a POSIX class", pattern)
    first = True
    while j < len(pattern) and (pattern[j] != "]" or first):
        first = False
        c = pattern[j]
        if c == "\\" and j + 1 < len(pattern):
            e = pattern[j + 1]
            j += 2
            if e in "dws":
                items.append(_SHORTHAND[e])
            elif e in "DWS" or e.isalnum() and e not in "tnrfv":
                raise _Unsupported(f"\\{e} in a class", pattern)
            elif e in "tnrfv":
                items.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v"}[e])
            else:
                items.append("\\" + e)
            continue
        if j + 2 < len(pattern) and pattern[j + 1] == "-" and pattern[j + 2] != "]":
            lo, hi = c, pattern[j + 2]
            items.append(f"{_class_char(lo)}-{_class_char(hi)}")
            if ignore_case and lo.isalpha() and hi.isalpha() and lo.isascii() and hi.isascii():
                if lo.islower() and hi.islower():
                    items.append(f"{lo.upper()}-{hi.upper()}")
                elif lo.isupper() and hi.isupper():
                    items.append(f"{lo.lower()}-{hi.lower()}")
            j += 3
            continue
        items.append(_class_char(c))
        if ignore_case and c.lower() != c.upper():
            items.append(_class_char(c.swapcase()))
        j += 1
    if j >= len(pattern):
        raise _Unsupported("an unclosed class", pattern)
    out.append("[" + ("^" if negate else "") + "".join(items) + "]")
    return j + 1


def _class_char(c: str) -> str:
    # inside a Lucene class, `\` makes any character literal (a `-`, `^`, `]`, `\`)
    return "\\" + c if c in "\\]^-[" or c in _LUCENE_LITERAL else c
