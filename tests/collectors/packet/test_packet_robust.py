"""Damaged, fuzzed and odd captures never crash the collector: bad packets are counted
with reasons and everything else is still processed."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packet_craft import standard_mix

from collectors.packet import read_pcaps
from collectors.packet.decode import SKIP, decode

LINKTYPES = [0, 1, 12, 101, 108, 113, 228, 229, 276, 147, 65535]


def pcap_bytes(frames, linktype=1):
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f)
    return b"".join(out)


def consume(path):
    events, stats = read_pcaps([path])
    return list(events), stats


def test_truncated_file_keeps_what_came_before(tmp_path):
    t = standard_mix()
    whole = t.write(tmp_path / "whole.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) - 30])  # the last record loses its tail
    events, stats = consume(cut)
    assert stats.packets == len(t.packets) - 1
    assert stats.bad_reasons == {"truncated record": 1}
    assert len([e for e in events if e["event"]["dataset"] == "network.flow"]) >= 10
    header_cut = tmp_path / "hcut.pcap"
    header_cut.write_bytes(whole[: 24 + 8])
    events, stats = consume(header_cut)
    assert (events, stats.packets, dict(stats.bad_reasons)) == (
        [], 0, {"truncated record header": 1})


def test_corrupt_record_length_stops_that_file_only(tmp_path):
    frames = [bytes(p) for p in standard_mix().packets]
    data = bytearray(pcap_bytes(frames))
    # corrupt the caplen of the 6th record
    off = 24
    for f in frames[:5]:
        off += 16 + len(f)
    struct.pack_into("<I", data, off + 8, 0x7FFFFFFF)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes(frames))
    events, stats = read_pcaps([bad, good])
    events = list(events)
    assert stats.bad_reasons == {"bad record length": 1}
    assert stats.packets == 5 + len(frames)  # the second file is read in full
    assert stats.files == 2


def test_garbage_frames_and_odd_link_types_are_counted(tmp_path):
    good = [bytes(p) for p in standard_mix().packets]
    garbage = [b"", b"\x00", b"\xff" * 13, b"\x02" * 14 + b"\x08\x00",
               bytes(14) + b"\x45" + bytes(5)]
    # an Ethernet frame claiming IPv4 with header length 2 words
    bad_ihl = bytearray(good[0])
    bad_ihl[14] = 0x42
    # a TCP header whose data offset is 1 word
    bad_tcp = bytearray(good[0])
    bad_tcp[14 + 20 + 12] = 0x10
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_bytes(good + garbage + [bytes(bad_ihl), bytes(bad_tcp)]))
    events, stats = consume(path)
    assert stats.packets == len(good) + len(garbage) + 2
    assert stats.bad_total + stats.ignored_total == len(garbage) + 2 + 1  # + ARP
    assert stats.bad_reasons["bad ipv4 header length"] == 1
    assert stats.bad_reasons["bad tcp header length"] == 1
    assert stats.bad_reasons["truncated ethernet header"] == 3
    assert any(e["event"]["dataset"] == "network.http" for e in events)
    odd = tmp_path / "odd.pcap"
    odd.write_bytes(pcap_bytes(good[:3], linktype=147))
    events, stats = consume(odd)
    assert events == [] and stats.bad_reasons == {"unsupported link type 147": 3}


def test_bad_pcapng_block_is_reported(tmp_path):
    from scapy.all import PcapNgWriter

    path = tmp_path / "x.pcapng"
    with PcapNgWriter(str(path)) as w:
        for p in standard_mix().packets[:8]:
            w.write(p)
    data = bytearray(path.read_bytes())
    data += struct.pack("<II", 6, 999_999) + b"\x00" * 20  # a block overrunning the file
    path.write_bytes(bytes(data))
    events, stats = consume(path)
    assert stats.packets == 8 and stats.bad_reasons == {"bad pcapng block length": 1}
    assert events


def test_malformed_application_payloads_are_counted(tmp_path):
    from packet_craft import ETH, Traffic
    from scapy.all import IP, UDP, Raw

    t = Traffic()
    key = ("10.0.0.1", 5000, "10.0.0.53", 53)
    # header claims one question whose name points at itself
    loop = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c"
    t.send(ETH / IP(src=key[0], dst=key[2]) / UDP(sport=5000, dport=53) / Raw(loop), True, key)
    t.send(ETH / IP(src=key[0], dst=key[2]) / UDP(sport=5000, dport=53) / Raw(b"\x01"),
           True, key)
    t.tcp_session("10.0.0.1", 5001, "10.0.0.43", 443, [b"\x16\x03\x01\x00\x10\x01\x00"], [])
    events, stats = consume(t.write(tmp_path / "app.pcap"))
    assert stats.app_errors["dns"] == 2
    assert stats.bad_total == 0
    assert sum(e["event"]["dataset"] == "network.flow" for e in events) == 2


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200), linktype=st.sampled_from(LINKTYPES))
def test_decode_never_raises(data, linktype):
    r = decode(data, 0, len(data), linktype)
    if type(r) is str:
        return
    proto, src, sport, dst, dport, vlan, ip_len, flags, plen, ps, pe = r
    assert len(src) == len(dst) in (4, 16)
    assert 0 <= ps <= pe <= len(data)
    assert 0 <= sport <= 65535 and 0 <= dport <= 65535 and 0 <= flags <= 255
    assert plen >= 0 and ip_len >= 0


_FRAMES = [bytes(p) for p in standard_mix().packets]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
       cut=st.integers(0, 10**6))
def test_fuzzed_capture_never_crashes(tmp_path_factory, flips, cut):
    data = bytearray(pcap_bytes(_FRAMES))
    for pos, value in flips:
        data[24 + pos % (len(data) - 24)] = value  # keep the file header: stay a pcap
    data = data[: max(24, len(data) - cut % 400)]
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(bytes(data))
    events, stats = consume(path)
    assert stats.packets + stats.bad_reasons["truncated record"] \
        + stats.bad_reasons["bad record length"] \
        + stats.bad_reasons["truncated record header"] >= 1
    for e in events:
        assert e["event"]["id"] and e["@timestamp"]


# a valid little-endian section header and an Ethernet interface: garbage after them
# reaches the block walker (garbage right after the block type mostly stops at the
# byte-order magic)
_SHB_IDB = (struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
            + struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20))


@settings(max_examples=150, deadline=None)
@given(head=st.sampled_from([struct.pack("<II", 0x0A0D0D0A, 28), _SHB_IDB]),
       body=st.binary(min_size=0, max_size=300))
def test_pure_garbage_pcapng_never_crashes(tmp_path_factory, head, body):
    path = tmp_path_factory.mktemp("ng") / "g.pcapng"
    path.write_bytes(head + body)
    events, stats = read_pcaps([path])
    events = list(events)
    # the smallest packet block (a simple packet block) takes 16 bytes of the file
    assert stats.packets <= len(body) // 16
    assert sum(e["network"]["packets"] for e in events
               if e["event"]["dataset"] == "network.flow") <= stats.packets
    for e in events:
        assert e["event"]["id"] and e["@timestamp"]


def test_skip_reasons_are_not_bad():
    assert {"arp", "non-ip ethertype", "ip fragment"} == SKIP


@settings(max_examples=500, deadline=None)
@given(ip=st.binary(min_size=0, max_size=80), vihl=st.sampled_from([0x45, 0x46, 0x44, 0x55]),
       proto=st.sampled_from([6, 17, 1, 47]), total=st.integers(0, 120),
       frag=st.sampled_from([0, 0x2000, 0x0001, 0x4000]))
def test_ethernet_ipv4_shortcut_equals_the_general_path(ip, vihl, proto, total, frag):
    """decode() reads Ethernet+IPv4 TCP/UDP in one shortcut; the same bytes decoded as
    raw IP (the general walk) must give the same answer."""
    hdr = struct.pack(">BBHHHBBH4s4s", vihl, 0, total, 1, frag, 64, proto, 0,
                      b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
    frame = b"\x02" * 12 + b"\x08\x00" + hdr + ip
    assert decode(frame, 0, len(frame), 1) == decode(frame, 14, len(frame), 101)


def _pcapng(order: str, blocks: list[tuple[int, bytes]]) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)

    shb = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return block(0x0A0D0D0A, shb) + b"".join(block(t, b) for t, b in blocks)


def test_pcapng_interfaces_resolutions_and_byte_orders(tmp_path):
    """Two interfaces (Ethernet with nanosecond stamps, raw IP with the default
    microseconds), in little- and big-endian sections: every packet lands in its flow
    at its own time."""
    from packet_craft import ETH
    from scapy.all import IP, UDP, Raw

    pkt = ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1111, dport=2222) / Raw(b"a")
    eth, raw = bytes(pkt), bytes(pkt[IP])
    for order in ("<", ">"):
        tsresol9 = struct.pack(order + "HH", 9, 1) + b"\x09\0\0\0" + b"\0" * 4
        idb_eth = struct.pack(order + "HHI", 1, 0, 65535) + tsresol9
        idb_raw = struct.pack(order + "HHI", 101, 0, 65535)
        ns = 1_700_000_000_123_456_789
        us = 1_700_000_000_223_456

        def epb(iface, ticks, data, order=order):
            return struct.pack(order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                               len(data), len(data)) + data

        path = tmp_path / f"two-{order == '<'}.pcapng"
        path.write_bytes(_pcapng(order, [(1, idb_eth), (1, idb_raw), (6, epb(0, ns, eth)),
                                         (6, epb(1, us, raw)), (6, epb(7, us, raw))]))
        events, stats = read_pcaps([path])
        [flow] = list(events)
        assert stats.packets == 2
        assert stats.bad_reasons == {"packet for undeclared pcapng interface": 1}
        assert flow["source"]["packets"] == 2
        assert flow["event"]["start"] == "2023-11-14T22:13:20.123Z"
        assert flow["event"]["end"] == "2023-11-14T22:13:20.223Z"
