"""What every log parser shares: the read statistics and where a line came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from collectors.readstats import ReadStats


@dataclass
class LogStats(ReadStats):
    """Counts for one import/tail run of log files (or EVTX files: a record is a line)."""

    lines: int = 0

    def merge(self, other: LogStats) -> None:
        super().merge(other)
        self.lines += other.lines

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "lines": self.lines}


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

    def feed(self, line: str, src: Source, stats: LogStats) -> list[dict[str, Any]]: ...

    def flush(self, stats: LogStats) -> list[dict[str, Any]]: ...

    @property
    def held_offset(self) -> int | None: ...
