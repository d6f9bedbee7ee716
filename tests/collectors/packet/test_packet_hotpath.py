"""The fast engine's hot loop (fast.run_file: records walked, the common frame decoded
and its flow accounted inline, ended flows' events built lazily) gives exactly what the
plain per-frame path gives (Inspector.frame over CaptureFile.frames, decode() and
FlowTable.packet for every frame, as live capture runs), and event ids stay those of
soc_core.ecs.stable_id over the documented source keys."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packet_craft import HTTP_REQ, HTTP_RESP, T0, Traffic, client_hello, server_hello, standard_mix
from scapy.all import DNSRR

from collectors.packet import CaptureStats, read_pcaps
from collectors.packet.events import EventBuilder, flow_key_text
from collectors.packet.fast import Inspector
from collectors.packet.flows import Flow
from collectors.packet.pcapfile import open_capture
from collectors.packet.proto import dns as dnsp
from collectors.packet.proto import http as httpp
from collectors.packet.proto import tls as tlsp
from collectors.packet.session import Session
from soc_core.ecs import stable_id

# tiny table limits: eviction, idle and sweep paths run all the time
SMALL = {"max_flows": 3, "sweep_every": 0.002, "idle": {6: 0.004, 17: 0.003}}


def per_frame(path, **opts):
    """Events and stats through Inspector.frame, one frame at a time."""
    cap = open_capture(path)
    stats = CaptureStats()
    session = Session(EventBuilder(cap.identity, cap.path.name), stats, **opts)
    insp = Inspector(session)
    events = []
    try:
        for ts, lt, start, end in cap.frames(stats):
            insp.frame(ts, lt, cap.buf, start, end)
            events.extend(session.drain())
        session.finish()
        events.extend(session.drain())
    finally:
        cap.close()
    return events, stats


def assert_same(path, **opts):
    fast_events, fast = read_pcaps([path], **opts)
    fast_events = list(fast_events)
    ref_events, ref = per_frame(path, **opts)
    assert fast_events == ref_events
    assert [e["event"]["id"] for e in fast_events] == [e["event"]["id"] for e in ref_events]
    assert (fast.packets, fast.flows, fast.bad_total) == (ref.packets, ref.flows,
                                                            ref.bad_total)
    assert (fast.bad_reasons, fast.ignored, fast.app_errors, fast.events) == (
        ref.bad_reasons, ref.ignored, ref.app_errors, ref.events)
    return fast_events


def _busy() -> Traffic:
    """Interleaved connections (so sweeps and evictions cut through live ones),
    keep-alive HTTP, split and unanswered TLS hellos, DNS over UDP, port reuse."""
    t = standard_mix()
    t.tcp_session("10.0.3.1", 43000, "10.0.3.80", 80, [HTTP_REQ, HTTP_REQ],
                  [HTTP_RESP, HTTP_RESP, b"x" * 900])
    hello = client_hello("split.example.gov.cn")
    t.tcp_session("10.0.3.1", 43001, "10.0.3.43", 443, [hello[:30], hello[30:]],
                  [server_hello()])
    t.tcp_session("10.0.3.1", 43002, "10.0.3.43", 443, [client_hello("lone.example")], [],
                  close="none")
    t.tcp_session("10.0.3.1", 43000, "10.0.3.80", 80, [HTTP_REQ], [])  # port reused
    for i in range(6):
        t.dns("10.0.3.1", 5500 + i, "10.0.3.53", f"h{i}.example.gov.cn", 0x100 + i,
              [DNSRR(rrname=f"h{i}.example.gov.cn", rdata="10.0.3.80")], answered=i % 3 > 0)
    return t


def test_hot_loop_equals_per_frame_path(tmp_path):
    path = _busy().write(tmp_path / "busy.pcap")
    events = assert_same(path)
    assert {e["event"]["dataset"] for e in events} == {"network.flow", "network.dns",
                                                      "network.http", "network.tls"}
    assert_same(path, **SMALL)


def _pcap(frames) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (t, f) in enumerate(frames):
        sec = int(t)
        out.append(struct.pack("<IIII", sec, int((t - sec) * 1e6) + i % 7, len(f), len(f)) + f)
    return b"".join(out)


def _padded(i: int, frame: bytes) -> bytes:
    """Ethernet pads frames to 60 bytes, and some links add trailers: bytes past the IP
    length that no payload parser may read."""
    frame = frame.ljust(60, b"\0")
    return frame + b"\xaa" * 6 if i % 5 == 0 else frame


_BUSY = [(float(p.time), _padded(i, bytes(p))) for i, p in enumerate(_busy().packets)]


def test_hot_loop_equals_per_frame_path_on_padded_frames(tmp_path):
    path = tmp_path / "padded.pcap"
    path.write_bytes(_pcap(_BUSY))
    assert_same(path)
    assert_same(path, **SMALL)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=30),
       cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 80)), max_size=4),
       small=st.booleans())
def test_hot_loop_equals_per_frame_path_on_damaged_frames(tmp_path_factory, flips, cuts,
                                                          small):
    """Byte flips land mostly in the headers the inline decoder reads (Ethernet type,
    IP version/length/fragment/protocol, TCP offset and flags, ports); cut frames are
    shorter than what it reads."""
    frames = [bytearray(f) for _, f in _BUSY]
    for pos, value in flips:
        frame = frames[pos % len(frames)]
        frame[(pos // len(frames)) % min(len(frame), 60)] = value
    for pos, keep in cuts:
        i = pos % len(frames)
        frames[i] = frames[i][:keep]
    path = tmp_path_factory.mktemp("hot") / "f.pcap"
    path.write_bytes(_pcap([(t, bytes(f)) for (t, _), f in zip(_BUSY, frames, strict=True)]))
    assert_same(path, **(SMALL if small else {}))


def test_pcapng_goes_through_the_same_loop(tmp_path):
    from scapy.all import PcapNgWriter

    path = tmp_path / "busy.pcapng"
    w = PcapNgWriter(str(path))
    for p in _busy().packets:
        w.write(p)
    w.close()
    assert_same(path)
    assert_same(path, **SMALL)


def test_event_ids_are_stable_ids_of_the_documented_keys():
    """Ids must not change between versions (a redelivered event overwrites itself):
    the builders hash inline, and must hash exactly what soc_core.ecs.stable_id does
    over these source keys."""
    ident = "cafe01"
    b = EventBuilder(ident, "x.pcap")
    t0 = T0 + 0.1234565
    for key in [(6, b"\x0a\0\0\x01", 41000, b"\x0a\0\0\x50", 80, 0),
                (17, b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x01", 5353,
                 b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x35", 53, 101),
                (47, b"\x0a\0\0\x01", 0, b"\x0a\0\0\x02", 0, 0)]:
        proto, src, sport, dst, dport, vlan = key
        f = Flow(key, t0)
        f.last = t0 + 1.5
        f.opkts = f.rpkts = 1
        kt = flow_key_text(key)
        us = round(t0 * 1_000_000)
        flow = b.flow(f, "end-of-input", None, None)
        s_ip, d_ip = kt.split("|")[1], kt.split("|")[3]
        assert flow["event"]["id"] == stable_id(
            "network.flow", f"{ident}|{proto}|{s_ip}|{sport}|{d_ip}|{dport}|{vlan}|{us}")
        q = dnsp.parse(struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
                       + b"\x03www\x03gov\x02cn\x00\x00\x01\x00\x01")
        dns = b.dns(f, t0, q, None, None)
        assert dns["event"]["id"] == stable_id("network.dns",
                                               f"{ident}|{kt}|{0x1234}|www.gov.cn|{us}")
        req = httpp.parse_request(HTTP_REQ)
        http = b.http(f, t0, 3, req, None)
        assert http["event"]["id"] == stable_id("network.http", f"{ident}|{kt}|3|{us}")
        hello = tlsp.parse_client_hello(client_hello("a.example"))
        tls = b.tls(f, t0, hello, None)
        assert tls["event"]["id"] == stable_id("network.tls", f"{ident}|{kt}|{us}")
