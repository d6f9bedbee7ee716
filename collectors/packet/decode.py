"""The fast decoder: one struct walk from the link layer to TCP/UDP/ICMP.

`decode(buf, off, end, linktype)` reads a frame in place and returns either a Packet
tuple or a reason string. Reasons in SKIP are valid frames without an IP flow (ARP,
other ethertypes, later IP fragments); every other string names why the frame is bad.
It never raises on any input: every read is bounds-checked first.

Packet = (proto, src, sport, dst, dport, vlan, ip_len, tcp_flags, payload_len,
          payload_start, payload_end)
  src/dst are the raw 4- or 16-byte addresses; ip_len is the IP length the header
  declares (bytes on the wire even when the capture was cut by a snaplen);
  payload_len is the declared L4 payload size; payload_start/end bound the captured
  part of it in `buf`. For ICMP the ports carry (type, paired type or code) so that
  an echo request and its reply fall into one flow, as in Zeek.
"""

from __future__ import annotations

import struct

Packet = tuple[int, bytes, int, bytes, int, int, int, int, int, int, int]

TCP, UDP, ICMP, ICMP6, SCTP = 6, 17, 1, 58, 132
ARP = "arp"
NON_IP = "non-ip ethertype"
FRAGMENT = "ip fragment"
SKIP = frozenset({ARP, NON_IP, FRAGMENT})

# link types we decode (others are counted as bad with their number)
DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_LOOP = 0, 1, 101, 108
DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_IPV4, DLT_IPV6 = 113, 276, 228, 229
_RAW_ALIASES = (12, 14)  # DLT_RAW on some BSDs

# ICMP request/reply types that share a flow (both engines key ICMP flows this way)
ICMP_PAIR = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
ICMP6_PAIR = {128: 129, 129: 128}
_IP6_EXT = frozenset({0, 43, 60, 135, 139, 140})

_HH = struct.Struct(">HH").unpack_from
_H = struct.Struct(">H").unpack_from
# version/ihl, total length, flags+fragment offset, protocol, source, destination
_IP4 = struct.Struct(">BxH2xHxB2x4s4s").unpack_from
_ETH_IP4 = struct.Struct(">12xHBxH2xHxB2x4s4s").unpack_from
# ports, data offset, flags
_TCP = struct.Struct(">HH8xBB").unpack_from


def decode(buf, off: int, end: int, linktype: int) -> Packet | str:  # noqa: C901 - one walk
    vlan = 0
    if linktype == DLT_EN10MB and end - off >= 54:
        # the common frame, Ethernet + IPv4 without options, read in one unpack
        etype, vihl, ip_len, frag, proto, src, dst = _ETH_IP4(buf, off)
        if etype == 0x0800 and vihl == 0x45 and ip_len >= 20 and not frag & 0x1FFF:
            l4 = off + 34
            l4end = off + 14 + ip_len
            if l4end > end:
                l4end = end
            # well-formed TCP and UDP finish here; everything else (and every error)
            # takes the general path below
            if proto == TCP:
                if l4end - l4 >= 20:
                    sport, dport, doff, flags = _TCP(buf, l4)
                    doff = (doff >> 4) << 2
                    if 20 <= doff <= ip_len - 20:
                        pstart = l4 + doff
                        return (TCP, src, sport, dst, dport, 0, ip_len, flags,
                                ip_len - 20 - doff, pstart if pstart < l4end else l4end, l4end)
            elif proto == UDP and l4end - l4 >= 8 and ip_len >= 28:
                sport, dport = _HH(buf, l4)
                return (UDP, src, sport, dst, dport, 0, ip_len, 0, ip_len - 28, l4 + 8, l4end)
            return _l4(buf, l4, ip_len - 20, end, proto, src, dst, vlan, ip_len)
    if linktype == DLT_EN10MB:
        if end - off < 14:
            return "truncated ethernet header"
        etype = (buf[off + 12] << 8) | buf[off + 13]
        off += 14
        while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
            if end - off < 4:
                return "truncated vlan tag"
            if not vlan:  # the outer tag names the segment
                vlan = ((buf[off] & 0x0F) << 8) | buf[off + 1]
            etype = (buf[off + 2] << 8) | buf[off + 3]
            off += 4
        if etype == 0x8864:  # PPPoE session (RFC 2516): 6-byte header, then PPP's protocol
            if end - off < 8:
                return "truncated pppoe header"
            ppp = (buf[off + 6] << 8) | buf[off + 7]
            off += 8
            etype = 0x0800 if ppp == 0x0021 else 0x86DD if ppp == 0x0057 else 0
        if etype == 0x0800:
            version = 4
        elif etype == 0x86DD:
            version = 6
        elif etype == 0x0806:
            return ARP
        else:
            return NON_IP
    elif linktype in (DLT_RAW, DLT_IPV4, DLT_IPV6) or linktype in _RAW_ALIASES:
        if end - off < 1:
            return "empty frame"
        version = buf[off] >> 4
    elif linktype == DLT_LINUX_SLL:
        if end - off < 16:
            return "truncated sll header"
        etype = (buf[off + 14] << 8) | buf[off + 15]
        off += 16
        version = 4 if etype == 0x0800 else 6 if etype == 0x86DD else 0
        if not version:
            return ARP if etype == 0x0806 else NON_IP
    elif linktype == DLT_LINUX_SLL2:
        if end - off < 20:
            return "truncated sll2 header"
        etype = (buf[off] << 8) | buf[off + 1]
        off += 20
        version = 4 if etype == 0x0800 else 6 if etype == 0x86DD else 0
        if not version:
            return ARP if etype == 0x0806 else NON_IP
    elif linktype in (DLT_NULL, DLT_LOOP):
        if end - off < 4:
            return "truncated loopback header"
        fam = buf[off] | buf[off + 3]  # host byte order either way; families are < 256
        off += 4
        version = 4 if fam == 2 else 6 if fam in (10, 24, 28, 30) else 0
        if not version:
            return NON_IP
    else:
        return f"unsupported link type {linktype}"

    if version == 4:
        if end - off < 20:
            return "truncated ipv4 header"
        vihl, ip_len, frag, proto, src, dst = _IP4(buf, off)
        if vihl >> 4 != 4:
            return "bad ip version"
        ihl = (vihl & 15) << 2
        if ihl < 20:
            return "bad ipv4 header length"
        if ip_len < ihl:
            return "bad ipv4 total length"
        if off + ihl > end:
            return "truncated ipv4 header"
        if frag & 0x1FFF:
            return FRAGMENT  # not the first fragment: no L4 header to key a flow on
        l4 = off + ihl
        l4len = ip_len - ihl
    elif version == 6:
        if end - off < 40:
            return "truncated ipv6 header"
        if buf[off] >> 4 != 6:
            return "bad ip version"
        plen = (buf[off + 4] << 8) | buf[off + 5]
        ip_len = plen + 40
        proto = buf[off + 6]
        src = buf[off + 8:off + 24]
        dst = buf[off + 24:off + 40]
        l4 = off + 40
        l4len = plen
        while proto in _IP6_EXT or proto == 44 or proto == 51:
            if end - l4 < 8:
                return "truncated ipv6 extension header"
            if proto == 44:
                if _H(buf, l4 + 2)[0] & 0xFFF8:
                    return FRAGMENT
                hlen = 8
            elif proto == 51:
                hlen = (buf[l4 + 1] + 2) << 2
            else:
                hlen = (buf[l4 + 1] + 1) << 3
            proto = buf[l4]
            l4 += hlen
            l4len -= hlen
            if l4len < 0:
                return "bad ipv6 extension header length"
    else:
        return "bad ip version"

    return _l4(buf, l4, l4len, end, proto, src, dst, vlan, ip_len)


def _l4(buf, l4: int, l4len: int, end: int, proto: int, src: bytes, dst: bytes, vlan: int,
        ip_len: int) -> Packet | str:
    l4end = l4 + l4len
    if l4end > end:
        l4end = end  # cut by the snaplen: count the wire length, read what was captured
    if proto == TCP:
        if l4end - l4 < 20:
            return "truncated tcp header"
        sport, dport, doff, flags = _TCP(buf, l4)
        doff = (doff >> 4) << 2
        if doff < 20 or doff > l4len:
            return "bad tcp header length"
        pstart = l4 + doff
        return (TCP, src, sport, dst, dport, vlan, ip_len, flags, l4len - doff,
                pstart if pstart < l4end else l4end, l4end)
    if proto == UDP:
        if l4end - l4 < 8:
            return "truncated udp header"
        sport, dport = _HH(buf, l4)
        if l4len < 8:
            return "bad udp length"
        return (UDP, src, sport, dst, dport, vlan, ip_len, 0, l4len - 8, l4 + 8, l4end)
    if proto == SCTP:
        if l4end - l4 < 12:
            return "truncated sctp header"
        sport, dport = _HH(buf, l4)
        return (SCTP, src, sport, dst, dport, vlan, ip_len, 0, l4len - 12, l4 + 12, l4end)
    if proto in (ICMP, ICMP6):
        if l4end - l4 < 4:
            return "truncated icmp header"
        itype = buf[l4]
        pair = (ICMP_PAIR if proto == ICMP else ICMP6_PAIR).get(itype)
        return (proto, src, itype, dst, buf[l4 + 1] if pair is None else pair, vlan,
                ip_len, 0, l4len - 4, l4 + 4, l4end)
    return (proto, src, 0, dst, 0, vlan, ip_len, 0, l4len, l4, l4end)
