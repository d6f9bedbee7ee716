"""The fast engine: struct-walking decoder + flow table + DNS/HTTP/TLS/SSH parsing of
the payload bytes, a few microseconds a packet in pure Python. Live capture feeds
frames through `Inspector.frame`; files go through `run_file`."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from collectors.packet.decode import SKIP, decode
from collectors.packet.flows import BURST_GAP, LOWER, TCP_BITS, UPPER, note_burst
from collectors.packet.pcapfile import MAX_RECORD, CaptureFile, pcap_header
from collectors.packet.proto import dns as dnsp
from collectors.packet.proto import ftp as ftpp
from collectors.packet.proto import http as httpp
from collectors.packet.proto import kerberos as krbp
from collectors.packet.proto import ldap as ldapp
from collectors.packet.proto import mail as mailp
from collectors.packet.proto import rdp as rdpp
from collectors.packet.proto import smb as smbp
from collectors.packet.proto import ssh as sshp
from collectors.packet.proto import tls as tlsp
from collectors.packet.session import Session

TCP, UDP = 6, 17
DNS_PORTS = frozenset({53, 5353, 5355})
UDP_PORTS = DNS_PORTS | krbp.PORTS  # UDP payloads read: DNS, Kerberos
_REQ = httpp.REQUEST_PREFIXES
_HEADS = _REQ | {b"HTTP"}
_HEAD_BYTES = frozenset(h[0] for h in _HEADS)  # first bytes of those: a body rarely has one
_FTP, _RDP, _MAIL = ftpp.PORTS, rdpp.PORTS, mailp.PORTS
_MAIL_SVC = {p: p for p in set(mailp.PORTS.values())}
MAIL_SEGMENTS = 64
SMB_SEGMENTS = 16  # negotiate and a two- or three-leg session set-up fit well within
_SMB = smbp.PORTS
_KRB, _LDAP = krbp.PORTS, ldapp.PORTS
LDAP_SEGMENTS = 16  # a bind (simple, or a SASL exchange) comes first on a connection
_APP_ERRORS = (ValueError, IndexError, struct.error, UnicodeError)
MAX_HELLO = 16384
MAX_FLIGHT = 65536  # bytes of a server's first flight held for its certificate chain
MAX_HEAD = 16384  # bytes of an HTTP head held while it arrives in pieces
HEARTBEAT_WATCH = 6  # payload segments still read after a ServerHello
HEARTBEAT_FOLLOW = 32  # and after a malformed heartbeat request
# All partial ClientHellos held at once: past this, hellos are parsed from what came
# in their first segment, so crafted half-hellos cannot grow memory without bound.
MAX_BUFFERED = 32 << 20

# Ethernet + IPv4 header without options + the first 14 bytes of TCP (UDP: its header
# and 6 payload bytes, unused) in one unpack: ethertype, version/IHL, total length,
# flags/fragment offset, protocol, source, destination, ports, TCP data offset, TCP flags.
_ETH_IP4_L4 = struct.Struct(">12xHBxH2xHxB2x4s4sHH8xBB").unpack_from


class Inspector:
    """Feeds decoded packets into a Session and parses their payloads."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.stats = session.stats
        self.packet = session.table.packet

    def frame(self, ts: float, linktype: int, buf: Any, start: int, end: int) -> Any:
        """One captured frame (used by live capture; run_file inlines the same steps);
        returns the flow it was counted in, None for a frame without one."""
        stats = self.stats
        stats.packets += 1
        stats.bytes += end - start
        p = decode(buf, start, end, linktype)
        if type(p) is str:
            if p in SKIP:
                stats.ignored[p] += 1
            else:
                stats.bad(p)
            return None
        proto, src, sport, dst, dport, vlan, ip_len, flags, plen, ps, pe = p
        f, fwd = self.packet(ts, proto, src, sport, dst, dport, vlan, ip_len, flags, plen)
        if ps < pe:
            if proto == UDP:
                if sport in UDP_PORTS or dport in UDP_PORTS:
                    self.udp_dns(f, ts, buf, ps, pe)
            elif proto == TCP and (f.app is None or f.budget):
                self.tcp(f, fwd, ts, buf, ps, pe, sport, dport)
        return f

    def udp_dns(self, f, ts: float, buf, ps: int, pe: int) -> None:
        """A UDP payload on a DNS port, or on Kerberos' (its flow's key says which)."""
        key = f.key
        if key[2] in krbp.PORTS or key[4] in krbp.PORTS:
            try:
                msg = krbp.parse(buf[ps:pe])
            except _APP_ERRORS:
                self.stats.app_errors["krb"] += 1
                return
            if msg:
                self.session.kerberos(f, ts, msg)
            return
        try:
            msg = dnsp.parse(buf[ps:pe])
        except _APP_ERRORS:
            self.stats.app_errors["dns"] += 1
            return
        self.session.dns(f, ts, msg)

    def tcp(self, f, fwd: bool, ts: float, buf, ps: int, pe: int, sport: int,
            dport: int) -> None:
        sess = self.session
        app = f if f.app else sess.app(f)  # (the state is in the flow's slots)
        svc = app.service
        try:
            if svc == "http":
                self._http(f, app, fwd, ts, buf[ps:pe])
                return
            if svc == "tls" or app.tls_buf:
                self._tls(f, app, fwd, ts, buf[ps:pe])
                return
            data = buf[ps:pe]
            mproto = _MAIL_SVC.get(svc) if svc else (_MAIL.get(dport) or _MAIL.get(sport))
            if mproto:
                # a mail session: read until a login succeeded, or for MAIL_SEGMENTS
                # segments (a message body is not looked through line by line)
                if svc is None:
                    app.budget = MAIL_SEGMENTS
                if sport in _MAIL:
                    sess.mail(f, ts, mproto, [], mailp.replies(mproto, data))
                else:
                    sess.mail(f, ts, mproto, mailp.requests(mproto, data), [])
                app.budget -= 1
                return
            if svc == "ftp" or (svc is None and (sport in _FTP or dport in _FTP)):
                # a control connection: every segment is read (returning before the
                # budget count keeps it positive), it carries a few lines a login
                app.budget = 1
                if sport in _FTP:
                    sess.ftp(f, ts, [], ftpp.replies(data))
                else:
                    sess.ftp(f, ts, ftpp.commands(data), [])
                return
            if (data[:4] in _REQ or data[:5] == b"HTTP/" or httpp.partial_start(data)) \
                    and self._http(f, app, fwd, ts, data):
                app.budget = -1
                return
            if data[0] == 0x16 and tlsp.record_length(data):
                app.service = "tls"
                self._tls(f, app, fwd, ts, data)
                return
            elif fwd and data[0] & 0x80 and data[2:3] == b"\x01":
                hello = tlsp.parse_sslv2_client_hello(data)
                if hello:
                    app.service = "tls"
                    sess.tls_client(f, ts, hello)
                    return
            elif data[:4] == b"SSH-":
                banner = sshp.banner(data)
                if banner:
                    sess.ssh(f, fwd, banner)
                    if len(app.ssh or ()) == 2:
                        app.budget = 0
                    return
            elif data[0] == 0 and (sport in _SMB or dport in _SMB):
                msg = smbp.parse(data)
                if msg:
                    if app.service != "smb":
                        app.budget = SMB_SEGMENTS
                    if sess.smb(f, ts, msg):
                        app.budget = 0
                        return
            elif data[0] == 3 and (sport in _RDP or dport in _RDP):
                msg = rdpp.parse(data)
                if msg:
                    sess.rdp(f, ts, msg)
            elif sport in _KRB or dport in _KRB:
                msg = krbp.parse(data, tcp=True)
                if msg:
                    sess.kerberos(f, ts, msg)
            elif data[0] == 0x30 and (sport in _LDAP or dport in _LDAP):
                msg = ldapp.parse(data)
                if msg:
                    if app.service != "ldap":
                        app.budget = LDAP_SEGMENTS
                    if sess.ldap(f, ts, msg):
                        app.budget = 0
                        return
            elif sport == 53 or dport == 53:
                n = (data[0] << 8) | data[1]
                sess.dns(f, ts, dnsp.parse(data[2:2 + n]))
                return
        except _APP_ERRORS:
            self.stats.app_errors[app.service or "tcp"] += 1
            app.budget = 0
            return
        if app.budget > 0:
            app.budget -= 1

    def _http(self, f, app, fwd: bool, ts: float, data: bytes) -> bool:
        """A segment of an HTTP connection; True when it began (or completed) a request or
        response head. A head that does not end in its segment is held until it does (up
        to MAX_HEAD), as tshark's reassembly does: a header in the next segment (a
        User-Agent carrying a JNDI lookup...) is not an evasion."""
        sess = self.session
        held = app.extra
        if type(held) is dict and "body" in held:
            if not fwd:
                sess.http_body(f, len(data))
            return True
        if held is not None and type(held) is dict and "http" in held:
            app.extra = None
            sess.buffered -= len(held["http"])
            if held["fwd"] == fwd:
                data = held["http"] + data
            else:  # the other side speaks: what was held is all of that head
                self._http_head(f, held["ts"], held["http"])
        if not (data[:4] in _REQ or data[:5] == b"HTTP/" or httpp.partial_start(data)):
            return False
        if b"\r\n\r\n" not in data and len(data) < MAX_HEAD \
                and sess.buffered + len(data) <= MAX_BUFFERED:
            app.extra = {"http": data, "fwd": fwd, "ts": ts}
            app.service = "http"
            sess.buffered += len(data)
            return True
        return self._http_head(f, ts, data)

    def _http_head(self, f, ts: float, data: bytes) -> bool:
        sess = self.session
        if data[:5] == b"HTTP/":
            resp = httpp.parse_response(data)
            if resp:
                sess.http_response(f, ts, resp)
                return True
        else:
            req = httpp.parse_request(data)
            if req:
                sess.http_request(f, ts, req)
                return True
        return False

    def _tls(self, f, app, fwd: bool, ts: float, data: bytes) -> None:
        sess = self.session
        held = app.extra
        if type(held) is dict and "cert" in held:
            # the server's first flight, held until its Certificate message is complete
            # (a heartbeat from either side ends the wait: the flight is over)
            if fwd and data[:1] != b"\x18":
                return
            app.extra = None
            sess.buffered -= len(held["cert"])
            if not fwd:
                self._certificate(f, app, ts, held["cert"] + data)
            if data[:1] != b"\x18":
                if app.extra is None:  # the chain is read: the segment counts, as below
                    app.tls_parts += 1
                    if app.tls_parts > 8:
                        app.budget = 0
                return
        # a ClientHello held for its rest: this segment continues it, whatever its first
        # byte (a continuation starting 0x18 was taken for a heartbeat and the hello lost:
        # a split chosen so hid the SNI)
        if data[:1] == b"\x18" and not app.tls_buf:
            hb = tlsp.heartbeat(data)
            if hb:
                sess.tls_heartbeat(f, ts, *hb)
                if hb[0] == 1 and tlsp.heartbeat_verdict(hb[1], hb[2]) == "malformed":
                    # an over-read attempt: watch on for the answer, past the rest of the
                    # (up to 16 KB) request
                    app.tls_parts = -HEARTBEAT_FOLLOW
            return
        if app.tls_buf:
            sess.buffered -= len(app.tls_buf)
            data = app.tls_buf + data
            app.tls_buf = b""
        need = tlsp.record_length(data)
        if need is None:
            app.tls_parts += 1
            if app.tls_parts > 8:
                app.budget = 0
            return
        if data[5:6] == b"\x01":
            if len(data) < need and len(data) < MAX_HELLO and app.tls_parts < 8 \
                    and sess.buffered + len(data) <= MAX_BUFFERED:
                app.tls_buf = data  # ClientHello continues in the next segment
                sess.buffered += len(data)
                app.tls_parts += 1
                return
            hello = tlsp.parse_client_hello(data)
            if hello:
                sess.tls_client(f, ts, hello)
        elif data[5:6] == b"\x02":
            server = tlsp.parse_server_hello(data)
            if server:
                sess.tls_server(f, ts, server)
                # a few segments more: a heartbeat sent before the handshake completes
                # (Heartbleed's usual moment) starts one of them
                app.budget = HEARTBEAT_WATCH
                if app.hello is not None and len(app.hello) == 3:  # awaits a certificate
                    self._certificate(f, app, ts, data)
        app.tls_parts += 1
        if app.tls_parts > 8:
            app.budget = 0


    def _certificate(self, f, app, ts: float, data: bytes) -> None:
        """The server's flight from its ServerHello on: the certificate chain once it is
        complete (a chain spans a few segments), held up to MAX_FLIGHT bytes."""
        sess = self.session
        certs = tlsp.server_certificates(data)
        if certs is None:
            if len(data) < MAX_FLIGHT and sess.buffered + len(data) <= MAX_BUFFERED:
                app.extra = {"cert": data}
                sess.buffered += len(data)
            return
        sess.tls_certificate(f, ts, certs)


def run_file(cap: CaptureFile, session: Session,  # noqa: C901 - the hot loop, one body
             progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Events of one capture file (flows still open at its end stay in the session's
    table: the caller flushes after the last file).

    This loop is the engine's hot path, so it is written flat: pcap records walked
    inline (a generator resume per packet is a few percent of the budget), the common
    Ethernet + IPv4 + TCP|UDP frame decoded inline in one unpack (a `decode` call and
    its 11-tuple were a fifth of the budget), the flow table's accounting for a known
    flow inlined, names bound to locals. Every other frame goes through `decode`, and
    every case the inline code does not finish (new flow, SYN, sweep due) through
    `FlowTable.packet`, so the results are the same as feeding `Inspector.frame`
    (tests/collectors/packet/test_packet_hotpath.py holds the two equal)."""
    insp = Inspector(session)
    stats = session.stats
    out, flow_events = session.out, session.flow_events
    buf = cap.buf
    table = session.table
    packet = table.packet
    flows_get = table.flows.get
    udp_dns, tcp = insp.udp_dns, insp.tcp
    skipped, bad = stats.ignored, stats.bad
    frame4 = _ETH_IP4_L4
    tcp_bits, upper, lower = TCP_BITS, UPPER, LOWER
    burst_gap = BURST_GAP
    heads, head_bytes = _HEADS, _HEAD_BYTES
    next_sweep = table.next_sweep  # a local copy, refreshed whenever packet() ran
    max_record = MAX_RECORD
    n = end = 0
    size = cap.size
    if cap.kind == "pcap":
        frames = None
        lt, scale, rec = pcap_header(buf)  # one link type for the whole file
        off = 24
        last_header = size - 16  # the last offset where a record header fits
    else:
        frames = cap.frames(stats)
    try:
        while True:
            if frames is None:
                if off > last_header:
                    if off < size:
                        bad("truncated record header")
                    break
                sec, frac, caplen, _wire = rec(buf, off)
                start = off + 16
                end = start + caplen
                if caplen > max_record:
                    bad("bad record length")
                    break
                if end > size:
                    bad("truncated record")
                    break
                off = end
                ts = sec + frac * scale
            else:
                nxt = next(frames, None)
                if nxt is None:
                    break
                ts, lt, start, end = nxt
            n += 1
            # -- decode: the common frame (Ethernet + IPv4 without options + TCP|UDP)
            # inline, any other through decode(). vlan stays -1 when the inline code
            # did not finish the frame (a flag less to test).
            vlan = -1
            if lt == 1 and end - start >= 48:  # the bytes _ETH_IP4_L4 reads
                (etype, vihl, ip_len, frag, proto, src, dst, sport, dport, doff,
                 flags) = frame4(buf, start)
                if etype == 0x0800 and vihl == 0x45 and not frag & 0x1FFF:
                    pe = start + 14 + ip_len
                    if pe > end:
                        pe = end  # cut by the snaplen: count the wire length
                    if proto == TCP:
                        doff = (doff >> 4) << 2
                        if pe - start >= 54 and 20 <= doff <= ip_len - 20:
                            plen = ip_len - 20 - doff
                            ps = start + 34 + doff
                            if ps > pe:
                                ps = pe
                            vlan = 0
                    elif proto == UDP and pe - start >= 42 and ip_len >= 28:
                        flags = 0
                        plen = ip_len - 28
                        ps = start + 42
                        vlan = 0
            if vlan < 0:
                p = decode(buf, start, end, lt)
                if type(p) is str:
                    if p in SKIP:
                        skipped[p] += 1
                    else:
                        bad(p)
                    continue
                proto, src, sport, dst, dport, vlan, ip_len, flags, plen, ps, pe = p
            # -- flows: the table's lookup and FlowTable.packet's accounting, inlined for
            # the common case (a known flow, no SYN, no sweep due): a call less per
            # packet is a tenth of the budget
            f = flows_get((proto, src, sport, dst, dport, vlan))
            fwd = True
            if f is None:
                f = flows_get((proto, dst, dport, src, sport, vlan))
                fwd = False
            # (a SYN without ACK may reopen a closed connection: FlowTable.packet decides)
            if f is None or flags & 0x12 == 0x02 or ts >= next_sweep:
                f, fwd = packet(ts, proto, src, sport, dst, dport, vlan, ip_len, flags, plen)
                next_sweep = table.next_sweep
            else:
                if proto == TCP:
                    bits = tcp_bits[(flags & 0x17) | (8 if plen else 0)]
                else:
                    bits = 8 if plen else 0
                if plen and ts - f.last >= burst_gap:
                    note_burst(f, ts)
                f.last = ts
                if fwd:
                    f.opkts += 1
                    f.obytes += ip_len
                    new = bits & ~f.obits
                    if new:
                        f.obits |= new
                        f.history += upper[new]
                else:
                    f.rpkts += 1
                    f.rbytes += ip_len
                    new = bits & ~f.rbits
                    if new:
                        f.rbits |= new
                        f.history += lower[new]
            # -- payloads: only flows that may still be DNS/HTTP/TLS/SSH are looked at
            if ps < pe:
                if proto == UDP:
                    if sport in UDP_PORTS or dport in UDP_PORTS:
                        udp_dns(f, ts, buf, ps, pe)
                elif proto == TCP:
                    if f.app is None:
                        tcp(f, fwd, ts, buf, ps, pe, sport, dport)
                    else:
                        budget = f.budget
                        if budget > 0 or (budget and (buf[ps] in head_bytes
                                                      and buf[ps:ps + 4] in heads
                                                      or f.extra is not None)):
                            # HTTP connections (budget -1): only a segment that starts a
                            # request or response, or continues a head held back, is
                            # parsed; a body segment costs a byte and a slot read
                            tcp(f, fwd, ts, buf, ps, pe, sport, dport)
            if out:  # Session.drain(), inlined
                for item in out:
                    if type(item) is tuple:
                        yield from flow_events(*item)
                    else:
                        yield item
                out.clear()
            if progress is not None and not n & 0xFFFF:
                progress(end)
    finally:
        stats.packets += n
        stats.bytes += end  # how far into the file: headers and packets read
