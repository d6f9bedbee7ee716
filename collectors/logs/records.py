"""What every log parser shares: the read statistics and the id of a line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

_MAX_EXAMPLES = 50


@dataclass
class ReadStats:
    """Counts for one import/tail run; bad records are counted with a reason, never fatal."""

    lines: int = 0
    events: int = 0
    ignored: int = 0  # lines that carry no record (journal banners, blank lines)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: list[str] = field(default_factory=list)  # "file:line: reason", the first few

    def bad(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: ReadStats) -> None:
        self.lines += other.lines
        self.events += other.events
        self.ignored += other.ignored
        self.skipped.update(other.skipped)
        room = _MAX_EXAMPLES - len(self.examples)
        self.examples.extend(other.examples[:max(room, 0)])

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "events": self.events, "ignored": self.ignored,
                "skipped": dict(self.skipped), "examples": list(self.examples)}


@dataclass(frozen=True)
class Source:
    """Where a line came from: the file's identity (stable across renames), its path
    at read time, and the line's byte offset and number."""

    identity: str
    path: str
    offset: int
    lineno: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"


class LineParser(Protocol):
    """Turns lines into ECS events. A parser may hold lines back (auditd joins records
    of one event); `held_offset` is then the offset of the first held line, so a saved
    read position never passes a line whose event was not emitted yet."""

    dataset: str

    def feed(self, line: str, src: Source, stats: ReadStats) -> list[dict[str, Any]]: ...

    def flush(self, stats: ReadStats) -> list[dict[str, Any]]: ...

    @property
    def held_offset(self) -> int | None: ...
