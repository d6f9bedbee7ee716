"""What every reader counts — log files, EVTX files, captures, a live interface: events made
per dataset, records that carry nothing, and bad records with their reasons. A bad record is
counted and skipped, never fatal; the first few say where they were."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 50


@dataclass
class ReadStats:
    files: int = 0
    events: Counter = field(default_factory=Counter)  # event.dataset -> events made
    # kind -> records that carry no event (blank or banner lines, ARP and other non-IP frames)
    ignored: Counter = field(default_factory=Counter)
    bad_reasons: Counter = field(default_factory=Counter)  # reason -> bad records skipped
    examples: list[str] = field(default_factory=list)  # "where: reason", the first few
    elapsed: float = 0.0

    def bad(self, reason: str, where: str | None = None) -> None:
        self.bad_reasons[reason] += 1
        if where is not None and len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    @property
    def bad_total(self) -> int:
        return sum(self.bad_reasons.values())

    @property
    def events_total(self) -> int:
        return sum(self.events.values())

    @property
    def ignored_total(self) -> int:
        return sum(self.ignored.values())

    def merge(self, other: ReadStats) -> None:
        self.files += other.files
        self.events.update(other.events)
        self.ignored.update(other.ignored)
        self.bad_reasons.update(other.bad_reasons)
        self.examples.extend(other.examples[:max(MAX_EXAMPLES - len(self.examples), 0)])
        self.elapsed += other.elapsed

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "events": dict(self.events), "ignored": dict(self.ignored),
                "bad": self.bad_total, "bad_reasons": dict(self.bad_reasons),
                "examples": list(self.examples), "elapsed": round(self.elapsed, 3)}
