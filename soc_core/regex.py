"""Regular expressions from outside (Sigma `|re` rules, the SQLite store's REGEXP) run on
RE2: an automaton, like Elasticsearch's regexes, so matching time is linear in the text and
a pattern such as `(a+)+$` cannot stall detection. What RE2 cannot express (backreferences,
lookaround) is refused with RE2's reason instead of being run by a backtracking engine."""

from __future__ import annotations

import functools
from collections.abc import Callable

import re2

__all__ = ["RegexError", "compile_regex", "regex_problem", "regex_test"]


class RegexError(ValueError):
    """A pattern RE2 refuses; the message says why."""


def _options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # the reason goes into the error, not to stderr
    return opts


_OPTIONS = _options()


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> re2._Regexp:
    """The RE2 program for `pattern` (cached); RegexError if RE2 cannot express it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"regex {pattern[:80]!r} is not supported by RE2: {reason}") from None
    except (TypeError, ValueError) as exc:  # e.g. a NUL or a surrogate in the pattern
        raise RegexError(f"regex {pattern[:80]!r} is not a usable pattern: {exc}") from None


def regex_problem(pattern: str) -> str | None:
    """Why RE2 cannot run `pattern`, or None when it can."""
    try:
        compile_regex(pattern)
    except RegexError as exc:
        return str(exc)
    return None


_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


@functools.lru_cache(maxsize=4096)
def regex_test(pattern: str) -> Callable[[str], bool]:
    """Whether `pattern` occurs anywhere in a text: `compile_regex(pattern).search(text) is
    not None`, without the wrapper's match object. google-re2's `search` is a Python
    generator that maps byte offsets back to characters (~10x the search itself); a yes/no
    needs none of that, so the compiled program is asked directly when the installed
    google-re2 exposes it (else the plain search)."""
    rx = compile_regex(pattern)
    program = getattr(rx, "_regexp", None)
    match = getattr(program, "Match", None)
    if match is None or _UNANCHORED is None:  # another google-re2 layout: the safe way
        return lambda text: rx.search(text) is not None
    anchor = _UNANCHORED

    def test(text: str) -> bool:
        data = text.encode("utf-8")
        return match(anchor, data, 0, len(data))[0][0] >= 0
    return test
