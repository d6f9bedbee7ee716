"""pySigma backends tuned to the two govsoc stores, so one rule means the same on both.

- SQLite: pySigma's SQL backend, but a field is `json_extract(doc, '$."a"."b"')` (or its
  indexed column) over the `docs` table, the output is the bare WHERE expression
  `EventStore.native` expects, and keyword (full-text) rules go through FTS5 on `message`.
- Elasticsearch: pySigma's Lucene backend; keywords become a phrase on `message`.

Matching is case-sensitive on both: Elasticsearch `keyword` fields are exact, so the SQLite
side uses GLOB (case-sensitive, backslashes literal) instead of LIKE; otherwise the same
event could raise an alert on one store and not on the other. Keywords are matched as
token phrases on both (FTS5 and Elasticsearch's standard analyzer both lowercase), which is
also the only way a multi-word keyword can match an analyzed `message` on Elasticsearch.
"""

from __future__ import annotations

import re
from typing import Any

from sigma.backends.elasticsearch import LuceneBackend
from sigma.backends.sqlite import sqliteBackend
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.types import SigmaNumber

from soc_core.store import field_expr, json_path

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

    def __init__(self, processing_pipeline: ProcessingPipeline | None = None) -> None:
        super().__init__(processing_pipeline, collect_errors=False)
        self.fields_seen: set[str] = set()
        self._element = False  # inside a json_each over an array field

    def escape_and_quote_field(self, field: str) -> str:
        field = ecs_field(field)
        if not _FIELD_OK.match(field):
            raise SigmaFeatureNotSupportedByBackendError(f"field name {field!r} is a pattern")
        self.fields_seen.add(field)
        return "je.value" if self._element else field_expr(field)

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
        return self.convert_condition_field_eq_val_str_case_sensitive(cond, state)

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

    def __init__(self, processing_pipeline: ProcessingPipeline | None = None) -> None:
        super().__init__(processing_pipeline, collect_errors=False)
        self.fields_seen: set[str] = set()

    def escape_and_quote_field(self, field: str) -> str:
        field = ecs_field(field)
        self.fields_seen.add(field)
        return super().escape_and_quote_field(field)

    def convert_condition_val_str(self, cond, state):
        self.fields_seen.add("message")
        return 'message:"' + " ".join(keyword_tokens(cond.value)) + '"'

    def convert_condition_val_num(self, cond, state):
        return self.convert_condition_val_str(cond, state)
