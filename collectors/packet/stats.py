"""Counters a capture run reports: what was read, what was bad and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from collectors.readstats import ReadStats


class CaptureError(ValueError):
    """A capture that cannot be read at all (missing file, not a capture, no permission);
    the message is one line naming the file or interface."""


@dataclass
class CaptureStats(ReadStats):
    """A capture run's counts; `ignored` holds valid frames that carry no IP flow (ARP,
    LLDP, IP fragments...), `bad_reasons` the damaged ones."""

    packets: int = 0
    bytes: int = 0
    # application payloads that looked like DNS/HTTP/TLS but did not parse
    app_errors: Counter = field(default_factory=Counter)
    flows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "packets": self.packets, "bytes": self.bytes,
                "app_errors": dict(self.app_errors), "flows": self.flows}

    def summary(self) -> str:
        text = (f"{self.packets} packets, {self.flows} flows, {self.events_total} events "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.events.items())) or 'none'})")
        if self.bad_reasons:
            reasons = ", ".join(f"{r}: {n}" for r, n in self.bad_reasons.most_common())
            text += f"; {self.bad_total} bad packets ({reasons})"
        return text
