"""Retrieval from the packet ring: the packets of chosen flows, both directions, in time
order, written as a classic pcap. A flow event says where its packets are (stream, first
and last file, block offsets: collectors.packet.ring), so only that range of the ring is
read, never the whole ring.

Flows are chosen by event ids (a flow event, or any network event: its flow is looked up
by its endpoints and time), by an alert (its matched events) or by a query over a time
span. What cannot be delivered is said in `PcapResult.notes`, never raised: a flow
captured without the ring, a file that has rotated out, a damaged file (its packets up to
the damage are delivered), a flow whose packets were only partly kept.
"""

from __future__ import annotations

import heapq
import mmap
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from collectors.packet import ringfile as rf
from collectors.packet.decode import decode
from soc_core import ecs
from soc_core.store import Selection

MAX_FLOWS = 10_000  # flows one retrieval gathers (a query can select many more)
FLOW_LOOKBACK_S = 86_400  # how far before a DNS/HTTP/... event its flow may have begun
_PCAP_HEAD = struct.Struct("<IHHiIII").pack
_REC = struct.Struct("<IIII").pack


class PcapError(ValueError):
    """A retrieval request that cannot be answered (nothing chosen, unknown alert, bad
    query or time); one line."""


@dataclass
class PcapResult:
    packets: int = 0  # packets written to the output
    flows: int = 0  # flows found (with or without packets in the ring)
    notes: list[str] = field(default_factory=list)  # what is missing or partial, and why
    flow_ids: list[str] = field(default_factory=list)  # the flow events used, in order
    linktype: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"packets": self.packets, "flows": self.flows, "notes": list(self.notes),
                "flow_ids": list(self.flow_ids)}


def write_flow_pcap(store: Any, config: Any, out: str | os.PathLike[str] | IO[bytes], *,
                    flows: Any = (), alert: str | None = None, query: Any = None,
                    start: Any = None, end: Any = None, visible: Any = None) -> PcapResult:
    """Write to `out` (a path or a binary file) a pcap of exactly the packets of the chosen
    flows: each flow's in capture order, the flows merged by time. (Capture order can step
    back a microsecond where the two directions reached their taps in the other order.)
    Choose with `flows` (event ids), `alert` (an alert id) or `query`
    (the analyst query syntax, or a parsed soc_core.query node) with `start`/`end`.
    `config`: the govsoc Config (its `[collectors.ring]` names the ring directory) or a
    collectors.packet.ring.RingConfig. `visible(doc) -> bool`, if given, leaves out events
    the caller may not see (the API's department scope). Raises PcapError for a request
    that cannot be answered; everything else missing is in the result's notes."""
    result = PcapResult()
    ring_dir = _ring_dir(config)
    ids = [flows] if isinstance(flows, str) else list(flows or ())
    chosen = sum(bool(x) for x in (ids, alert, query))
    if chosen != 1:
        raise PcapError("choose the packets by exactly one of: flow event ids, an alert, "
                        "a query with a time span")
    docs: list[dict[str, Any]] = []
    if alert:
        doc = store.get("alerts", alert)
        if doc is None or (visible is not None and not visible(doc)):
            raise PcapError(f"no such alert: {alert}")
        ids = list(((doc.get("govsoc") or {}).get("alert") or {}).get("event_ids") or [])
        if not ids:
            result.notes.append(f"alert {alert} lists no matched events")
    if ids:
        for eid in ids:
            doc = store.get("events", eid)
            if doc is None or (visible is not None and not visible(doc)):
                result.notes.append(f"event {eid}: not found")
                continue
            docs.append(doc)
    else:
        if query and (start is None or end is None):
            raise PcapError("a query needs a time span: give its start and end")
        try:
            sel = Selection(family="events", query=query, start=start, end=end)
        except ValueError as exc:  # soc_core.query.QueryError is one too
            raise PcapError(str(exc).splitlines()[0]) from None
        for doc in store.scan(sel):
            if visible is not None and not visible(doc):
                continue
            docs.append(doc)
            if len(docs) > MAX_FLOWS:
                break
    seen: dict[str, dict[str, Any]] = {}
    known: dict[tuple, list[dict[str, Any]]] = {}  # flows at hand, by endpoints
    # flows first: a DNS/HTTP/... event of a flow already chosen needs no store lookup
    docs.sort(key=lambda d: _dataset(d) != "network.flow")
    for doc in docs:
        if _dataset(doc) == "network.flow":
            flow = doc
        else:
            flow = _known_flow(known, doc) or _flow_of(store, doc, result)
        if flow is None or flow["event"]["id"] in seen:
            continue
        known.setdefault(_endpoints(flow), []).append(flow)
        if visible is not None and not visible(flow):
            continue
        if len(seen) >= MAX_FLOWS:
            result.notes.append(f"more than {MAX_FLOWS} flows chosen: only the first "
                                f"{MAX_FLOWS} are written; narrow the choice")
            break
        seen[flow["event"]["id"]] = flow
    result.flows = len(seen)
    result.flow_ids = list(seen)
    per_flow: list[list[tuple[int, bytes]]] = []
    for flow in seen.values():
        mine = []
        for us, data, linktype in _flow_packets(ring_dir, flow, result):
            if result.linktype is None:
                result.linktype = linktype
            elif linktype != result.linktype:
                result.notes.append(f"flow {flow['event']['id']}: a packet of link type "
                                    f"{linktype} left out (the file holds {result.linktype})")
                continue
            mine.append((us, data))
        per_flow.append(mine)
    # each flow's packets stay in capture order (as the original capture and tshark have
    # them); flows are merged by time
    found = list(heapq.merge(*per_flow, key=lambda p: p[0]))
    _write_pcap(out, result.linktype or 1, found)
    result.packets = len(found)
    if not seen and not result.notes:
        result.notes.append("no flow matched the choice")
    return result


def _ring_dir(config: Any) -> Path:
    if hasattr(config, "file_bytes"):  # a RingConfig
        return Path(config.dir)
    from collectors.packet.ring import ring_config

    return ring_config(config).dir


def _dataset(doc: dict[str, Any]) -> str:
    return (doc.get("event") or {}).get("dataset") or ""


def _endpoints(doc: dict[str, Any]) -> tuple:
    src, dst = doc.get("source") or {}, doc.get("destination") or {}
    return (src.get("ip"), src.get("port"), dst.get("ip"), dst.get("port"),
            (doc.get("network") or {}).get("transport"),
            ((doc.get("govsoc") or {}).get("capture") or {}).get("source"))


def _known_flow(known: dict[tuple, list[dict[str, Any]]], doc: dict[str, Any]
                ) -> dict[str, Any] | None:
    """A flow already chosen that the event belongs to (same endpoints, its time within)."""
    ts = ecs.to_millis(doc["@timestamp"])
    for flow in known.get(_endpoints(doc), ()):
        ev = flow.get("event") or {}
        if ev.get("start") and ev.get("end") and \
                ecs.to_millis(ev["start"]) <= ts <= ecs.to_millis(ev["end"]):
            return flow
    return None


def _flow_of(store: Any, doc: dict[str, Any], result: PcapResult) -> dict[str, Any] | None:
    """The flow event an event of a connection (DNS, HTTP, TLS, a login...) belongs to:
    same endpoints and capture, begun before and ended after the event."""
    eid = doc["event"]["id"]
    src, dst = doc.get("source") or {}, doc.get("destination") or {}
    if not src.get("ip") or not dst.get("ip"):
        result.notes.append(f"event {eid}: not a network event, it has no packets")
        return None
    filters: dict[str, Any] = {"source.ip": src["ip"], "destination.ip": dst["ip"]}
    for side, obj in (("source", src), ("destination", dst)):
        if obj.get("port") is not None:
            filters[f"{side}.port"] = obj["port"]
    transport = (doc.get("network") or {}).get("transport")
    if transport:
        filters["network.transport"] = transport
    capture = ((doc.get("govsoc") or {}).get("capture") or {}).get("source")
    if capture:
        filters["govsoc.capture.source"] = capture
    ts = ecs.to_millis(doc["@timestamp"])
    sel = Selection(family="events", dataset="network.flow", filters=filters,
                    start=_iso(ts - FLOW_LOOKBACK_S * 1000), end=_iso(ts + 1))
    for flow in store.scan(sel, descending=True):
        ev = flow.get("event") or {}
        if ev.get("end") is None or ecs.to_millis(ev["end"]) >= ts:
            return flow
        break  # the latest flow of these endpoints ended before the event
    result.notes.append(f"event {eid}: its flow is not in the store (still open, or "
                        "captured elsewhere)")
    return None


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return ecs.format_time(datetime.fromtimestamp(ms / 1000, UTC))


def _flow_key(flow: dict[str, Any]) -> tuple | None:
    src, dst, net = flow.get("source") or {}, flow.get("destination") or {}, \
        flow.get("network") or {}
    try:
        proto = int(net.get("iana_number"))
        a, b = src["ip"], dst["ip"]
        fam = socket.AF_INET6 if ":" in a else socket.AF_INET
        vlan = int((net.get("vlan") or {}).get("id") or 0)
        return (proto, socket.inet_pton(fam, a), int(src.get("port") or 0),
                socket.inet_pton(fam, b), int(dst.get("port") or 0), vlan)
    except (KeyError, TypeError, ValueError, OSError):
        return None


def _flow_packets(ring_dir: Path, flow: dict[str, Any], result: PcapResult):
    """(ts in microseconds, frame, link type) of one flow, read from its range of the ring."""
    fid = flow["event"]["id"]
    loc = (flow.get("govsoc") or {}).get("pcap")
    if not isinstance(loc, dict):
        result.notes.append(f"flow {fid}: no packets in the ring (captured without the "
                            "ring, or none kept by its filter)")
        return
    key = _flow_key(flow)
    first, last = loc.get("first") or {}, loc.get("last") or {}
    a, b = rf.parse_name(str(first.get("file"))), rf.parse_name(str(last.get("file")))
    if key is None or a is None or b is None or a[0] != b[0] or a[1] > b[1]:
        result.notes.append(f"flow {fid}: its ring location is not readable")
        return
    stream, seq_a, seq_b = a[0], a[1], b[1]
    ours = key[:6]
    back = (key[0], key[3], key[4], key[1], key[2], key[5])
    got = 0
    for seq in range(seq_a, seq_b + 1):
        name = rf.file_name(stream, seq)
        path = ring_dir / name
        try:
            linktype = rf.read_header(path)
        except FileNotFoundError:
            result.notes.append(f"flow {fid}: ring file {name} has rotated out of the ring "
                                "(removed by its size or age budget)")
            continue
        except (rf.RingReadError, OSError) as exc:
            result.notes.append(f"flow {fid}: {exc}")
            continue
        begin = int(first.get("offset", rf.HEADER_LEN)) if seq == seq_a else rf.HEADER_LEN
        number = int(first.get("packet", 1)) if seq == seq_a else 1
        stop = int(last.get("offset", 0)) if seq == seq_b else None
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= begin:
                result.notes.append(f"flow {fid}: ring file {name} is truncated before "
                                    "this flow's packets")
                continue
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                try:
                    for _n, _off, us, ds, de in rf.packets(buf, begin, stop, number):
                        p = decode(buf, ds, de, linktype)
                        if type(p) is str:
                            continue
                        k = p[:6]
                        if k in (ours, back):
                            got += 1
                            yield us, buf[ds:de], linktype
                except rf.TornBlock as torn:
                    result.notes.append(f"flow {fid}: ring file {name} is damaged at byte "
                                        f"{torn.offset}; packets after it are missing")
    expected = int(loc.get("packets") or 0)
    total = int((flow.get("network") or {}).get("packets") or 0)
    if got < expected:
        result.notes.append(f"flow {fid}: {got} of its {expected} packets written to the "
                            "ring were found")
    if expected < total:
        result.notes.append(f"flow {fid}: the ring kept {expected} of its {total} packets "
                            "(the ring's filter, or writing paused)")


def _write_pcap(out: Any, linktype: int, packets: list[tuple[int, bytes]]) -> None:
    if isinstance(out, str | os.PathLike):
        with open(out, "wb") as fh:
            _write_pcap(fh, linktype, packets)
        return
    out.write(_PCAP_HEAD(0xA1B2C3D4, 2, 4, 0, 0, rf.MAX_SNAP, linktype))
    for us, data in packets:
        sec, frac = divmod(us, 1_000_000)
        out.write(_REC(sec, frac, len(data), len(data)))
        out.write(data)
