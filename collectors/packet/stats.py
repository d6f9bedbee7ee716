"""Counters a capture run reports: what was read, what was bad and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class CaptureError(ValueError):
    """A capture that cannot be read at all (missing file, not a capture, no permission);
    the message is one line naming the file or interface."""


@dataclass
class ReadStats:
    files: int = 0
    packets: int = 0
    bytes: int = 0
    bad_packets: int = 0
    # reason -> count; a bad packet is skipped, the rest of the capture is processed
    bad_reasons: Counter = field(default_factory=Counter)
    # frames that are valid but carry no IP flow (ARP, LLDP, IP fragments...)
    skipped: Counter = field(default_factory=Counter)
    # application payloads that looked like DNS/HTTP/TLS but did not parse
    app_errors: Counter = field(default_factory=Counter)
    resync_bytes: int = 0  # pcapng bytes skipped to reach the next valid block
    flows: int = 0
    events: Counter = field(default_factory=Counter)
    elapsed: float = 0.0

    def bad(self, reason: str) -> None:
        self.bad_packets += 1
        self.bad_reasons[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "packets": self.packets, "bytes": self.bytes,
            "bad_packets": self.bad_packets, "bad_reasons": dict(self.bad_reasons),
            "resync_bytes": self.resync_bytes,
            "skipped": dict(self.skipped), "app_errors": dict(self.app_errors),
            "flows": self.flows, "events": dict(self.events),
            "elapsed": round(self.elapsed, 3),
        }

    def summary(self) -> str:
        events = sum(self.events.values())
        text = (f"{self.packets} packets, {self.flows} flows, {events} events "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.events.items())) or 'none'})")
        if self.bad_packets:
            reasons = ", ".join(f"{r}: {n}" for r, n in self.bad_reasons.most_common())
            text += f"; {self.bad_packets} bad packets ({reasons})"
        if self.resync_bytes:
            text += f"; {self.resync_bytes} bytes skipped to resynchronise"
        return text
