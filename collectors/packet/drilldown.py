"""From a flow or an alert to a capture file the dissector and the carver can read: the
packet ring's retrieval (`write_flow_pcap`) writes exactly those flows' packets into a
temporary pcap, removed when the caller is done. One place for the CLI and the API."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
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


FTP_PORTS = frozenset({21})


def ftp_session(flow: dict[str, Any]) -> tuple[Any, str, str] | None:
    """For an FTP control connection: (query, start, end) choosing it and the connections
    between the same two hosts while it was open (FTP names a file on the control
    connection and sends it on a data connection: carving needs both). None otherwise."""
    from soc_core import query as q

    src, dst = flow.get("source") or {}, flow.get("destination") or {}
    ev = flow.get("event") or {}
    if dst.get("port") not in FTP_PORTS or not src.get("ip") or not dst.get("ip") \
            or ev.get("dataset") != "network.flow":
        return None
    start, end = ev.get("start") or flow.get("@timestamp"), ev.get("end")
    if not start or not end:
        return None
    pair = q.And((q.Term("event.dataset", "network.flow", True),
                  q.Term("source.ip", src["ip"], True),
                  q.Term("destination.ip", dst["ip"], True)))
    from soc_core import ecs

    # end is inclusive for the flow; the selection's end is exclusive: a millisecond on
    return pair, start, ecs.format_time(ecs.parse_time(end) + timedelta(milliseconds=1))


@contextmanager
def flow_capture(store: Any, config: Any, *, flows: tuple[str, ...] = (),
                 alert: str | None = None, visible: Any = None,
                 session: tuple[Any, str, str] | None = None) -> Iterator[FlowCapture]:
    """A temporary pcap holding the packets of `flows` (event ids), of the flows of
    `alert`, or of `session` (`ftp_session`'s query and span), those `visible(doc)` allows;
    NoPackets when the ring has none of them (the reason in its text)."""
    from collectors.packet.retrieve import PcapError, write_flow_pcap

    base = Path(config.data_dir) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drill-", dir=base) as tmp:
        out = Path(tmp) / "flow.pcap"
        try:
            if session is not None:
                got = write_flow_pcap(store, config, out, query=session[0], start=session[1],
                                      end=session[2], visible=visible)
            else:
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


__all__ = ["FlowCapture", "NoPackets", "flow_capture", "ftp_session"]
