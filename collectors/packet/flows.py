"""A bidirectional flow table in the manner of Zeek's conn.log.

Flows are keyed by (proto, src, sport, dst, dport, vlan) in the originator's
orientation; a packet the other way finds its flow through the reversed key. Each
flow counts packets and IP bytes each way, keeps the TCP flag history as Zeek's
letters (upper case: originator, lower case: responder) and ends on an idle timeout
(per protocol), an active timeout, a closed TCP connection seen again with a fresh
SYN, eviction when the table is full (oldest first, so memory stays bounded) or at
the end of input (`flush`).
"""

from __future__ import annotations

import binascii
import hashlib
import struct
from collections.abc import Callable

TCP, UDP = 6, 17

# Zeek history letters as bits, in the order they are written within one packet.
S, H, A, D, F, R = 1, 2, 4, 8, 16, 32
_ORDER = ((S, "S"), (H, "H"), (A, "A"), (D, "D"), (F, "F"), (R, "R"))
UPPER = ["".join(c for b, c in _ORDER if bits & b) for bits in range(64)]
LOWER = [s.lower() for s in UPPER]


def _tcp_bits(index: int) -> int:
    """Letters for TCP flags FIN/SYN/RST/ACK (0x17) plus 0x08 = 'has payload'."""
    fin, syn, rst, ack, data = index & 1, index & 2, index & 4, index & 0x10, index & 8
    bits = 0
    if syn:
        bits |= H if ack else S
    if data:
        bits |= D
    if fin:
        bits |= F
    if rst:
        bits |= R
    if ack and not (syn or fin or rst or data):
        bits |= A
    return bits


TCP_BITS = [_tcp_bits(i) for i in range(32)]


class Flow:
    """State of one connection, with the engine's application-layer state in the same
    object (one object a flow, not two: the garbage collector walks every live one, and
    a full collection over a big table was 7 % of the fast path). About 425 bytes with
    its key, table entry and application state (bench/packet.py measures it), so
    1,000,000 flows stay under half a GiB."""

    __slots__ = ("key", "first", "last", "opkts", "obytes", "rpkts", "rbytes",
                 "obits", "rbits", "history", "app", "bursts", "ring",
                 # set by session.Session.app() when `app` becomes True, read only then
                 "service", "budget", "dns", "http", "http_seq", "hello", "tls_buf",
                 "tls_parts", "ssh", "extra")

    def __init__(self, key: tuple, ts: float) -> None:
        self.key = key
        self.first = ts
        self.last = ts
        self.opkts = self.obytes = self.rpkts = self.rbytes = 0
        self.obits = self.rbits = 0
        self.history = ""
        # start times of the flow's bursts (payload after BURST_GAP of silence), the
        # first MAX_BURSTS of them; None until a second burst begins
        self.bursts: list[float] | None = None
        # None until the engine looks at a payload of this flow; then True and the
        # application slots below hold its state (session.Session.app)
        self.app: bool | None = None
        # where the packet ring wrote this flow's packets (collectors.packet.ring), or None
        self.ring: list | None = None

    def closed(self) -> bool:
        both = self.obits | self.rbits
        return bool(both & R or (self.obits & self.rbits & F))


def conn_state(flow: Flow) -> tuple[str, str]:
    """(Zeek conn_state, govsoc state: attempted|established|rejected|reset|finished)."""
    o, r = flow.obits, flow.rbits
    if flow.key[0] != TCP:
        return ("SF", "established") if flow.rpkts else ("S0", "attempted")
    if o & S:
        if r & H:
            if o & R:
                return "RSTO", "reset"
            if r & R:
                return "RSTR", "reset"
            if o & F and r & F:
                return "SF", "finished"
            if o & F:
                return "S2", "established"
            if r & F:
                return "S3", "established"
            return "S1", "established"
        if r & R:
            return "REJ", "rejected"
        if o & R:
            return "RSTOS0", "reset"
        if o & F:
            return "SH", "attempted"
        if not flow.rpkts:
            return "S0", "attempted"
        return "OTH", "established"
    if r & H:
        if r & R:
            return "RSTRH", "reset"
        if r & F:
            return "SHR", "attempted"
    if (o | r) & R:
        return "OTH", "reset"
    if o & F and r & F:
        return "OTH", "finished"
    return "OTH", "established"


def community_id(key: tuple) -> str | None:
    """Community ID v1 (seed 0) of a TCP/UDP/SCTP flow, the cross-tool flow hash.
    (Built once per flow event: the endpoint order is compared without building
    tuples and base64 is called directly.)"""
    proto, src, sport, dst, dport = key[:5]
    if proto != TCP and proto != UDP and proto != 132:
        return None
    if src > dst or (src == dst and sport > dport):
        src, sport, dst, dport = dst, dport, src, sport
    digest = hashlib.sha1(b"\0\0" + src + dst + _CID_TAIL(proto, sport, dport)).digest()
    return "1:" + binascii.b2a_base64(digest, newline=False).decode()


_CID_TAIL = struct.Struct(">BxHH").pack


# A flow's activity comes in bursts when it carries payload after a second or more of
# silence: an implant's check-ins on a kept-open connection or a UDP (QUIC) session,
# which make one long flow instead of many short ones (events.burst_stats).
BURST_GAP = 1.0
MAX_BURSTS = 32  # burst times kept a flow: enough to judge regularity, bounded memory


def note_burst(f: Flow, ts: float) -> None:
    b = f.bursts
    if b is None:
        f.bursts = [f.first, ts]
    elif len(b) < MAX_BURSTS:
        b.append(ts)


# Seconds of silence after which a flow ends (Zeek: tcp 5 min, udp/icmp 1 min). A closed
# TCP connection lingers as long as its closer may sit in TIME_WAIT (Linux: 60 s), not
# Zeek's 5 s: a FIN or data retransmitted after the close (backoff doubles from 200 ms
# to tens of seconds) stays in its connection instead of opening a new "flow" of
# stray packets. A fresh SYN still ends it at once (port reuse).
IDLE = {TCP: 300.0, UDP: 60.0}
IDLE_OTHER = 60.0
IDLE_CLOSED = 60.0


class FlowTable:
    def __init__(self, on_end: Callable[[Flow, str], None], *, active_timeout: float = 1800.0,
                 idle: dict[int, float] | None = None, max_flows: int = 1_000_000,
                 sweep_every: float = 10.0) -> None:
        self.on_end = on_end
        self.flows: dict[tuple, Flow] = {}
        self.active_timeout = active_timeout
        self.idle = {**IDLE, **(idle or {})}
        self.max_flows = max_flows
        self.sweep_every = sweep_every
        self.next_sweep = 0.0
        self.ended = 0

    def packet(self, ts: float, proto: int, src: bytes, sport: int, dst: bytes, dport: int,
               vlan: int, ip_len: int, flags: int, plen: int) -> tuple[Flow, bool]:
        """Account one packet; returns its flow and whether it went originator->responder."""
        if ts >= self.next_sweep:
            # before the lookup, so a packet after a long silence opens a new flow
            self.sweep(ts)
        flows = self.flows
        key = (proto, src, sport, dst, dport, vlan)
        f = flows.get(key)
        fwd = True
        if f is None:
            f = flows.get((proto, dst, dport, src, sport, vlan))
            if f is None:
                if len(flows) >= self.max_flows:
                    self._end(next(iter(flows.values())), "evicted")
                if proto == TCP and flags & 0x12 == 0x12:
                    # first packet seen is a SYN-ACK: the receiver opened the connection
                    key = (proto, dst, dport, src, sport, vlan)
                    fwd = False
                f = flows[key] = Flow(key, ts)
            else:
                fwd = False
        if proto == TCP:
            if flags & 0x12 == 0x02 and f.opkts and f.closed():
                # a fresh SYN on a finished connection starts a new one (port reuse)
                self._end(f, "closed")
                f = flows[key] = Flow(key, ts)
                fwd = True
            bits = TCP_BITS[(flags & 0x17) | (8 if plen else 0)]
        else:
            bits = D if plen else 0
        if plen and ts - f.last >= BURST_GAP:
            note_burst(f, ts)
        f.last = ts
        if fwd:
            f.opkts += 1
            f.obytes += ip_len
            new = bits & ~f.obits
            if new:
                f.obits |= new
                f.history += UPPER[new]
        else:
            f.rpkts += 1
            f.rbytes += ip_len
            new = bits & ~f.rbits
            if new:
                f.rbits |= new
                f.history += LOWER[new]
        return f, fwd

    def sweep(self, now: float) -> None:
        """End flows that went idle or exceeded the active timeout."""
        if self.next_sweep == 0.0:
            self.next_sweep = now + self.sweep_every
            return
        self.next_sweep = now + self.sweep_every
        idle, other, active = self.idle, IDLE_OTHER, self.active_timeout
        expired = []
        for f in self.flows.values():
            # Flow.closed() inlined: the sweep visits every open flow (a million at most)
            o, r = f.obits, f.rbits
            if (o | r) & R or o & r & F:
                limit = IDLE_CLOSED
            else:
                limit = idle.get(f.key[0], other)
            if now - f.last > limit:
                expired.append((f, "idle-timeout"))
            elif now - f.first > active:
                expired.append((f, "active-timeout"))
        for f, reason in expired:
            self._end(f, reason)

    def flush(self) -> None:
        for f in list(self.flows.values()):
            self._end(f, "end-of-input")

    def _end(self, f: Flow, reason: str) -> None:
        if self.flows.get(f.key) is f:
            del self.flows[f.key]
        self.ended += 1
        self.on_end(f, reason)
