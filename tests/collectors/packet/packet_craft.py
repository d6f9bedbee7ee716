"""Crafted traffic with known ground truth, built with scapy, for the packet tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scapy.all import DNS, DNSQR, DNSRR, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw, wrpcap
from scapy.layers.tls.extensions import (
    ServerName,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedGroups,
    TLS_Ext_SupportedPointFormat,
)
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.record import TLS

T0 = 1_700_000_000.0
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


@dataclass
class Traffic:
    """Packets in time order plus what a correct collector must report about them."""

    packets: list = field(default_factory=list)
    t: float = T0
    # (client ip, client port, server ip, server port) -> expected flow facts
    flows: dict = field(default_factory=dict)

    def add(self, pkt, dt: float = 0.001):
        self.t += dt
        pkt.time = self.t
        self.packets.append(pkt)
        return pkt

    def write(self, path: Path) -> Path:
        wrpcap(str(path), self.packets)
        return path

    def _flow(self, c, cp, s, sp):
        return self.flows.setdefault((c, cp, s, sp), {"opkts": 0, "obytes": 0, "rpkts": 0,
                                                      "rbytes": 0})

    def send(self, pkt, from_client: bool, key, dt: float = 0.001):
        p = self.add(pkt, dt)
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        size = len(ip)  # IP header + payload: the bytes Zeek's *_ip_bytes count
        f = self._flow(*key)
        if from_client:
            f["opkts"] += 1
            f["obytes"] += size
        else:
            f["rpkts"] += 1
            f["rbytes"] += size
        return p

    def tcp_session(self, c, cp, s, sp, c2s=(), s2c=(), close="fin", ip=IP, vlan=None,
                    handshake=True):
        """A TCP connection: handshake, client payloads, server payloads (each acked),
        then close="fin" (both FIN), "rst" (client RST), "none" (left open)."""
        key = (c, cp, s, sp)
        eth = ETH / Dot1Q(vlan=vlan) if vlan else ETH
        cs, ss = 1000, 9000

        def cl(**kw):
            return eth / ip(src=c, dst=s) / TCP(sport=cp, dport=sp, **kw)

        def sv(**kw):
            return eth / ip(src=s, dst=c) / TCP(sport=sp, dport=cp, **kw)

        if handshake:
            self.send(cl(flags="S", seq=cs), True, key)
            self.send(sv(flags="SA", seq=ss, ack=cs + 1), False, key)
            cs, ss = cs + 1, ss + 1
            self.send(cl(flags="A", seq=cs, ack=ss), True, key)
        for data in c2s:
            self.send(cl(flags="PA", seq=cs, ack=ss) / Raw(data), True, key)
            cs += len(data)
            self.send(sv(flags="A", seq=ss, ack=cs), False, key)
        for data in s2c:
            self.send(sv(flags="PA", seq=ss, ack=cs) / Raw(data), False, key)
            ss += len(data)
            self.send(cl(flags="A", seq=cs, ack=ss), True, key)
        if close == "fin":
            self.send(cl(flags="FA", seq=cs, ack=ss), True, key)
            self.send(sv(flags="FA", seq=ss, ack=cs + 1), False, key)
            self.send(cl(flags="A", seq=cs + 1, ack=ss + 1), True, key)
        elif close == "rst":
            self.send(cl(flags="R", seq=cs), True, key)
        return key

    def dns(self, c, cp, s, qname, qid, answers=(), rcode=0, answered=True, qtype="A"):
        key = (c, cp, s, 53)
        self.send(ETH / IP(src=c, dst=s) / UDP(sport=cp, dport=53)
                  / DNS(id=qid, rd=1, qd=DNSQR(qname=qname, qtype=qtype)), True, key)
        if answered:
            an = list(answers)
            self.send(ETH / IP(src=s, dst=c) / UDP(sport=53, dport=cp)
                      / DNS(id=qid, qr=1, rd=1, ra=1, rcode=rcode,
                            qd=DNSQR(qname=qname, qtype=qtype), an=an), False, key)
        return key


def client_hello(sni: str, ciphers=(0xC02F, 0xC030, 0x1301, 0xE053)) -> bytes:
    return bytes(TLS(msg=[TLSClientHello(
        version=0x0303, ciphers=list(ciphers),
        ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]),
             TLS_Ext_SupportedGroups(groups=[29, 23, 24]),
             TLS_Ext_SupportedPointFormat(ecpl=[0])])]))


def server_hello(cipher: int = 0xC02F) -> bytes:
    return bytes(TLS(msg=[TLSServerHello(version=0x0303, cipher=cipher)]))


HTTP_REQ = (b"GET /portal/login?next=%2Fhome HTTP/1.1\r\nHost: www.example.gov.cn\r\n"
            b"User-Agent: Mozilla/5.0 (govsoc-test)\r\nAccept: */*\r\n\r\n")
HTTP_RESP = b"HTTP/1.1 302 Found\r\nLocation: /home\r\nContent-Length: 0\r\n\r\n"


def standard_mix() -> Traffic:
    """The reference capture: HTTP, TLS (with an SM cipher offered), DNS (answer with
    CNAME+A, NXDOMAIN), SSH banners, a rejected, an attempted and a reset connection,
    IPv6, a VLAN-tagged flow, an ICMP echo pair and an ARP frame."""
    from scapy.all import ARP

    t = Traffic()
    t.tcp_session("10.0.0.1", 41000, "10.0.0.80", 80, [HTTP_REQ], [HTTP_RESP])
    t.tcp_session("10.0.0.1", 41001, "10.0.0.43", 443,
                  [client_hello("api.example.gov.cn")], [server_hello()])
    t.dns("10.0.0.1", 5301, "10.0.0.53", "www.example.gov.cn", 0x1111,
          [DNSRR(rrname="www.example.gov.cn", type="CNAME", rdata="web.example.gov.cn",
                 ttl=300),
           DNSRR(rrname="web.example.gov.cn", type="A", rdata="10.0.0.80", ttl=60)])
    t.dns("10.0.0.1", 5302, "10.0.0.53", "nosuch.example.gov.cn", 0x2222, rcode=3)
    t.tcp_session("10.0.0.1", 41002, "10.0.0.22", 22, [b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"],
                  [b"SSH-2.0-OpenSSH_8.4\r\n"])
    # rejected: SYN answered by RST-ACK
    key = ("10.0.0.1", 41003, "10.0.0.99", 8080)
    t.send(ETH / IP(src=key[0], dst=key[2]) / TCP(sport=key[1], dport=key[3], flags="S"),
           True, key)
    t.send(ETH / IP(src=key[2], dst=key[0]) / TCP(sport=key[3], dport=key[1], flags="RA"),
           False, key)
    # attempted: a lone SYN
    key = ("10.0.0.1", 41004, "10.0.0.98", 3389)
    t.send(ETH / IP(src=key[0], dst=key[2]) / TCP(sport=key[1], dport=key[3], flags="S"),
           True, key)
    t.tcp_session("10.0.0.1", 41005, "10.0.0.81", 9000, [b"hello"], [], close="rst")
    t.tcp_session("2001:db8::1", 41006, "2001:db8::80", 80,
                  [b"GET /v6 HTTP/1.1\r\nHost: v6.example.gov.cn\r\n\r\n"],
                  [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], ip=IPv6)
    t.tcp_session("10.1.0.1", 41007, "10.1.0.80", 80,
                  [b"GET /tenant HTTP/1.1\r\nHost: tenant\r\n\r\n"],
                  [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"], vlan=101)
    key = ("10.0.0.1", 8, "10.0.0.80", 0)
    t.send(ETH / IP(src=key[0], dst=key[2]) / ICMP(type=8, id=1, seq=1) / Raw(b"ping"),
           True, key)
    t.send(ETH / IP(src=key[2], dst=key[0]) / ICMP(type=0, id=1, seq=1) / Raw(b"ping"),
           False, key)
    t.add(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.80"))
    return t


def make_cert(cn: str, *, issuer: tuple | None = None, days: tuple[int, int] = (-30, 365),
              at: float = T0):
    """(DER, key) of a certificate for `cn` valid from at+days[0] to at+days[1] days,
    signed by `issuer` ((DER, key) of a CA) or by its own key (self-signed)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Gov"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    if issuer:
        ca = x509.load_der_x509_certificate(issuer[0])
        issuer_name, sign_key = ca.subject, issuer[1]
    else:
        issuer_name, sign_key = name, key
    t = dt.datetime.fromtimestamp(at, dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(0x1234 + len(cn))
            .not_valid_before(t + dt.timedelta(days=days[0]))
            .not_valid_after(t + dt.timedelta(days=days[1]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(sign_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), key


def _hs(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _record(body: bytes, ctype: int = 22) -> bytes:
    return bytes([ctype, 3, 3]) + len(body).to_bytes(2, "big") + body


def raw_server_hello(cipher: int = 0xC02F, version13: bool = False) -> bytes:
    """A ServerHello handshake message (TLS 1.3 when version13: supported_versions)."""
    ext = b"\x00\x2b\x00\x02\x03\x04" if version13 else b""
    body = b"\x03\x03" + b"r" * 32 + b"\x00" + cipher.to_bytes(2, "big") + b"\x00" + \
        len(ext).to_bytes(2, "big") + ext
    return _hs(2, body)


def server_flight(ders: list[bytes], cipher: int = 0xC02F) -> bytes:
    """A TLS 1.2 server's first flight: ServerHello, Certificate (the chain), then
    ServerHelloDone, in two records."""
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    cert = _hs(11, len(chain).to_bytes(3, "big") + chain)
    return _record(raw_server_hello(cipher)) + _record(cert + _hs(14, b""))


def der(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    n = len(body)
    size = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + size + body


def _int(v: int) -> bytes:
    return der(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))


def _kstr(s: str) -> bytes:
    return der(0x1B, s.encode())


def _principal(name_type: int, *names: str) -> bytes:
    return der(0x30, der(0xA0, _int(name_type)), der(0xA1, der(0x30, *map(_kstr, names))))


def krb_request(kind: int, user: str, realm: str, service: tuple[str, ...]) -> bytes:
    """An AS-REQ (kind 10) or TGS-REQ (12) for `user`@`realm` to `service`."""
    body = der(0x30, der(0xA0, der(0x03, b"\x00\x40\x81\x00\x10")),
               der(0xA1, _principal(1, user)), der(0xA2, _kstr(realm)),
               der(0xA3, _principal(2, *service)),
               der(0xA5, der(0x18, b"20370913024805Z")), der(0xA7, _int(12345)),
               der(0xA8, der(0x30, _int(18), _int(17))))
    return der(0x60 | kind, der(0x30, der(0xA1, _int(5)), der(0xA2, _int(kind)),
                                der(0xA4, body)))


def krb_reply(kind: int, user: str, realm: str) -> bytes:
    """An AS-REP (11) or TGS-REP (13) for `user`@`realm` (ticket and enc-part opaque)."""
    ticket = der(0x61, der(0x30, der(0xA0, _int(5)), der(0xA1, _kstr(realm)),
                           der(0xA2, _principal(2, "krbtgt", realm)),
                           der(0xA3, der(0x30, der(0xA0, _int(18)),
                                         der(0xA2, der(0x04, b"t" * 40))))))
    enc = der(0x30, der(0xA0, _int(18)), der(0xA2, der(0x04, b"e" * 48)))
    return der(0x60 | kind, der(0x30, der(0xA0, _int(5)), der(0xA1, _int(kind)),
                                der(0xA3, _kstr(realm)), der(0xA4, _principal(1, user)),
                                der(0xA5, ticket), der(0xA6, enc)))


def krb_error(code: int, user: str, realm: str, service: tuple[str, ...]) -> bytes:
    return der(0x7E, der(0x30, der(0xA0, _int(5)), der(0xA1, _int(30)),
                         der(0xA4, der(0x18, b"20261130120000Z")), der(0xA5, _int(1)),
                         der(0xA6, _int(code)), der(0xA8, _principal(1, user)),
                         der(0xA9, _kstr(realm)), der(0xAA, _principal(2, *service))))


def ldap_bind(ident: int, dn: str, password: str | None = None,
              mechanism: str | None = None) -> bytes:
    auth = der(0x80, password.encode()) if mechanism is None else \
        der(0xA3, der(0x04, mechanism.encode()))
    return der(0x30, _int(ident), der(0x60, _int(3), der(0x04, dn.encode()), auth))


def ldap_bind_response(ident: int, result: int) -> bytes:
    return der(0x30, _int(ident), der(0x61, der(0x0A, bytes([result])), der(0x04, b""),
                                      der(0x04, b"")))
