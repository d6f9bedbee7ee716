"""Case folding as Elasticsearch's `lowercase` normalizer does it, for the SQLite side of
Sigma's case-insensitive matching (and any other evaluator that must agree with both
stores): each code point to its simple lowercase (Java's Character.toLowerCase, which
Lucene's LowerCaseFilter applies). Python's str.lower uses the full mapping, which differs
only for U+0130 (İ -> "i" plus a combining dot); that one is mapped first."""

from __future__ import annotations

from typing import Any

__all__ = ["fold_case", "has_cased_non_ascii", "sql_fold"]


def fold_case(text: str) -> str:
    """`text` lowercased code point by code point (length preserved)."""
    if "\u0130" in text:
        text = text.replace("\u0130", "i")
    return text.lower()


def sql_fold(value: Any) -> Any:
    """`fold_case` as a SQL function: strings folded, anything else (NULL, numbers) as is."""
    return fold_case(value) if isinstance(value, str) else value


def has_cased_non_ascii(text: str) -> bool:
    """Whether `text` holds a non-ASCII letter that has another case: SQLite's LIKE and
    NOCASE fold ASCII only, so such a pattern needs the Unicode fold."""
    return not text.isascii() and any(
        not c.isascii() and c.lower() != c.upper() for c in text)
