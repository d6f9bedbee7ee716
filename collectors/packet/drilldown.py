"""From a flow or an alert to a capture file the dissector and the carver can read: the
packet ring's retrieval (`write_flow_pcap`) writes exactly those flows' packets into a
temporary pcap, removed when the caller is done. One place for the CLI and the API."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FlowCapture:
    path: Path
    packets: int = 0
    flows: int = 0
    notes: list[str] = field(default_factory=list)


class NoPackets(LookupError):
    """No packet of the flows asked for is in the ring (aged out, never kept, unknown id)."""


@contextmanager
def flow_capture(store: Any, config: Any, *, flows: tuple[str, ...] = (),
                 alert: str | None = None, visible: Any = None) -> Iterator[FlowCapture]:
    """A temporary pcap holding the packets of `flows` (event ids) or of the flows of
    `alert`, those `visible(doc)` allows; NoPackets when the ring has none of them (the
    reason in its text)."""
    from collectors.packet.retrieve import PcapError, write_flow_pcap

    base = Path(config.data_dir) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drill-", dir=base) as tmp:
        out = Path(tmp) / "flow.pcap"
        try:
            got = write_flow_pcap(store, config, out, flows=tuple(flows), alert=alert,
                                  visible=visible)
        except PcapError as exc:
            raise NoPackets(str(exc).splitlines()[0]) from None
        if not got.packets or not out.exists():
            what = f"alert {alert}" if alert else "flow " + ", ".join(flows)
            raise NoPackets(f"no packets of {what} in the packet ring"
                            + (f" ({'; '.join(got.notes[:3])})" if got.notes else ""))
        yield FlowCapture(path=out, packets=got.packets, flows=got.flows,
                          notes=list(got.notes))


__all__ = ["FlowCapture", "NoPackets", "flow_capture"]
