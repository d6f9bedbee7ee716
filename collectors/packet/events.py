"""ECS documents for flows, DNS, HTTP and TLS, laid out as Filebeat's Zeek module writes
them (zeek conn/dns/http/ssl -> source.*, destination.*, network.*, dns.*, http.*,
url.*, user_agent.*, tls.*), so Sigma's Zeek rules map onto them. Both engines build
their events here, which is what makes their output comparable."""

from __future__ import annotations

import copy
import hashlib
import socket
import time
from typing import Any

from collectors.packet.flows import Flow, community_id, conn_state
from collectors.packet.proto import dns as dnsp
from collectors.packet.proto import tls as tlsp
from collectors.packet.proto import x509 as x509p
from collectors.packet.ringfile import flow_fields as ring_fields

TRANSPORTS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 47: "gre",
              50: "esp", 51: "ah", 2: "igmp", 89: "ospf"}

# Event building is the larger half of the fast path's time (one flow event per
# connection, one event per DNS/HTTP/TLS transaction), so the builders below are
# shaped for speed: each document is one nested literal in its final key order, ids
# are hashed inline, repeated texts (addresses, protocol numbers, second prefixes,
# millisecond suffixes) come from tables. Key order and values stay exactly those of
# soc_core's make_event (tests/collectors/packet/test_packet_events.py).

_PORTED = frozenset({6, 17, 132, 1, 58})  # transports whose events carry ports
_IP_TEXT: dict[bytes, str] = {}
_PROTO_TEXT = {i: str(i) for i in range(256)}  # network.iana_number
_TRANSPORT_TEXT = {i: TRANSPORTS.get(i) or str(i) for i in range(256)}
_blake2b = hashlib.blake2b


def ip_text(addr: bytes) -> str:
    """Address text, cached: the same servers and clients recur in every event."""
    text = _IP_TEXT.get(addr)
    if text is None:
        if len(_IP_TEXT) > 65536:
            _IP_TEXT.clear()
        text = _IP_TEXT[addr] = socket.inet_ntop(
            socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)
    return text


def flow_key_text(key: tuple) -> str:
    proto, src, sport, dst, dport, vlan = key
    return f"{proto}|{ip_text(src)}|{sport}|{ip_text(dst)}|{dport}|{vlan}"


def event_id(dataset: str, source_key: str) -> str:
    """soc_core.ecs.stable_id(dataset, source_key) for two strings, in one hash call
    (stable_id first checks every part's type through a generator)."""
    return _blake2b(f"{dataset}\x1f{source_key}\x1f".encode(), digest_size=16).hexdigest()


def make_event(dataset: str, ts: float | str, source_key: str, fields: dict[str, Any]) -> dict:
    """soc_core.ecs.make_event for documents that are nested already: the same document
    and the same id (tests/collectors/packet/test_packet_events.py holds the two equal),
    without re-walking each document for dotted keys (event building was a third of the
    fast path's time)."""
    fields["@timestamp"] = ts if type(ts) is str else iso_time(ts)
    event = fields["event"]
    event["dataset"] = dataset
    event["id"] = _blake2b(f"{dataset}\x1f{source_key}\x1f".encode(),
                           digest_size=16).hexdigest()
    return fields


_SECONDS: dict[int, str] = {}
_MILLIS = [f"{i:03d}Z" for i in range(1000)]


def iso_time(ts: float) -> str:
    """soc_core.ecs.format_time for an epoch float, with the per-second prefix cached
    (a capture's events cluster in a few seconds). Microseconds are rounded from the
    fraction alone, as datetime.fromtimestamp does: round(ts * 1e6) rounds the product,
    which differs at half-microsecond ties (35184373.0529995 gave .053, core .052)."""
    # int() truncates toward zero as math.modf does, and ts - sec is exact (the
    # integer part of a float subtracts without rounding): the same fraction, one call less
    sec = int(ts)
    frac = round((ts - sec) * 1_000_000)
    if frac >= 1_000_000:
        sec += 1
        frac -= 1_000_000
    prefix = _SECONDS.get(sec)
    if prefix is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        prefix = _SECONDS[sec] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
    if frac < 0:  # before 1970: not from a capture, formatted as before
        return f"{prefix}{frac // 1000:03d}Z"
    return prefix + _MILLIS[frac // 1000]


def _us(ts: float) -> int:
    return round(ts * 1_000_000)


def _proto_text(proto: int) -> str:
    return _PROTO_TEXT.get(proto) or str(proto)


def _transport(proto: int) -> str:
    return _TRANSPORT_TEXT.get(proto) or str(proto)


def _endpoints(key: tuple, protocol: str) -> tuple[dict[str, Any], dict[str, Any],
                                                   dict[str, Any], str]:
    """source, destination and network objects of a flow's events, and the flow's key
    text (flow_key_text) for their ids."""
    proto, src, sport, dst, dport, vlan = key
    s_ip = _IP_TEXT.get(src) or ip_text(src)
    d_ip = _IP_TEXT.get(dst) or ip_text(dst)
    if proto in _PORTED:
        source: dict[str, Any] = {"ip": s_ip, "port": sport}
        destination: dict[str, Any] = {"ip": d_ip, "port": dport}
    else:
        source = {"ip": s_ip}
        destination = {"ip": d_ip}
    if vlan:
        network: dict[str, Any] = {
            "transport": _transport(proto), "iana_number": _proto_text(proto),
            "type": "ipv4" if len(src) == 4 else "ipv6", "vlan": {"id": str(vlan)},
            "protocol": protocol}
    else:
        network = {"transport": _transport(proto), "iana_number": _proto_text(proto),
                   "type": "ipv4" if len(src) == 4 else "ipv6", "protocol": protocol}
    return source, destination, network, f"{proto}|{s_ip}|{sport}|{d_ip}|{dport}|{vlan}"


class EventBuilder:
    """Builds the events of one capture source; `ident` is the capture's identity
    (file content digest, or live:host:iface) and enters every event id."""

    def __init__(self, ident: str, source_name: str) -> None:
        self.ident = ident
        self.source_name = source_name

    def flow(self, f: Flow, reason: str, service: str | None,
             ssh: dict[str, str] | None) -> dict[str, Any]:
        # Written out flat rather than through _endpoints: one flow event per
        # connection makes this the most frequent builder on the fast path.
        proto, src, sport, dst, dport, vlan = key = f.key
        s_ip = _IP_TEXT.get(src) or ip_text(src)
        d_ip = _IP_TEXT.get(dst) or ip_text(dst)
        first, last = f.first, f.last
        first_us, last_us = round(first * 1_000_000), round(last * 1_000_000)
        start = iso_time(first)
        zstate, state = conn_state(f)
        obytes, opkts, rbytes, rpkts = f.obytes, f.opkts, f.rbytes, f.rpkts
        if proto in _PORTED:
            source = {"ip": s_ip, "port": sport, "bytes": obytes, "packets": opkts}
            destination = {"ip": d_ip, "port": dport, "bytes": rbytes, "packets": rpkts}
        else:
            source = {"ip": s_ip, "bytes": obytes, "packets": opkts}
            destination = {"ip": d_ip, "bytes": rbytes, "packets": rpkts}
        network: dict[str, Any] = {
            "transport": _TRANSPORT_TEXT.get(proto) or str(proto),
            "iana_number": _PROTO_TEXT.get(proto) or str(proto),
            "type": "ipv4" if len(src) == 4 else "ipv6",
            "bytes": obytes + rbytes, "packets": opkts + rpkts}
        if vlan:
            network["vlan"] = {"id": str(vlan)}
        if proto == 6 or proto == 17 or proto == 132:
            network["community_id"] = community_id(key)
        if service:
            network["protocol"] = service
        g: dict[str, Any] = {"capture": {"source": self.source_name},
                             "flow": {"state": state, "end_reason": reason}}
        if ssh:
            g["ssh"] = ssh
        if f.bursts and len(f.bursts) >= 3:
            g["flow"].update(burst_stats(f.bursts))
        if f.ring is not None:
            g["pcap"] = ring_fields(f.ring)
        eid = _blake2b(f"network.flow\x1f{self.ident}|{proto}|{s_ip}|{sport}|{d_ip}|{dport}|"
                       f"{vlan}|{first_us}\x1f".encode(), digest_size=16).hexdigest()
        return {
            "event": {"kind": "event", "category": ["network"],
                      "type": ["connection", "end"], "action": "network_flow",
                      "start": start, "end": iso_time(last),
                      "duration": (last_us - first_us) * 1000,
                      "dataset": "network.flow", "id": eid},
            "source": source, "destination": destination, "network": network,
            "zeek": {"connection": {"state": zstate, "history": f.history}},
            "govsoc": g,
            "@timestamp": start,
        }

    def dns(self, f: Flow, ts: float, query: dict | None, reply: dict | None,
            reply_ts: float | None) -> dict[str, Any]:
        msg = query or reply
        assert msg is not None
        source, destination, network, key_text = _endpoints(f.key, "dns")
        ident = msg["id"]
        d: dict[str, Any] = {"id": str(ident), "type": "answer" if reply else "query"}
        qname = ""
        g: dict[str, Any] = {"capture": {"source": self.source_name}}
        if msg["questions"]:
            qname, qtype, qclass = msg["questions"][0]
            d["question"] = {"name": qname, "type": dnsp.type_name(qtype),
                             "class": dnsp.class_name(qclass)}
            parts = domain_parts(qname)
            if parts:
                d["question"].update(parts)
                if "subdomain" in parts:
                    g["dns"] = subdomain_stats(parts["subdomain"])
        ts_us = round(ts * 1_000_000)
        if reply:
            d["response_code"] = dnsp.RCODES.get(reply["rcode"]) or str(reply["rcode"])
            answers = reply["answers"]
            if answers:
                d["answers"] = answers
                chain = dnsp.cname_chain(answers)
                if chain:
                    g.setdefault("dns", {})["cname_chain"] = chain
                ips = [a["data"] for a in answers if a["type"] in ("A", "AAAA")]
                if ips:
                    d["resolved_ip"] = ips
            if query and reply_ts is not None:
                event: dict[str, Any] = {
                    "kind": "event", "category": ["network"], "type": ["protocol", "info"],
                    "action": "dns_query",
                    "duration": (round(reply_ts * 1_000_000) - ts_us) * 1000}
                flags = sorted({*query["flags"], *reply["flags"]})
            else:
                event = {"kind": "event", "category": ["network"],
                         "type": ["protocol", "info"], "action": "dns_query"}
                flags = sorted({*query["flags"], *reply["flags"]} if query
                               else set(reply["flags"]))
        else:
            event = {"kind": "event", "category": ["network"], "type": ["protocol", "info"],
                     "action": "dns_query"}
            flags = sorted(set(msg["flags"]))
        if flags:
            d["header_flags"] = flags
        event["dataset"] = "network.dns"
        event["id"] = _blake2b(f"network.dns\x1f{self.ident}|{key_text}|{ident}|{qname}|"
                               f"{ts_us}\x1f".encode(), digest_size=16).hexdigest()
        return {"event": event, "source": source, "destination": destination,
                "network": network, "dns": d, "govsoc": g, "@timestamp": iso_time(ts)}

    def http(self, f: Flow, ts: float, seq: int, req: dict | None,
             resp: dict | None) -> dict[str, Any]:
        source, destination, network, key_text = _endpoints(f.key, "http")
        http: dict[str, Any] = {}
        event: dict[str, Any] = {"kind": "event", "category": ["network", "web"],
                                 "type": ["protocol", "access"], "action": "http_request"}
        fields: dict[str, Any] = {
            "event": event, "source": source, "destination": destination,
            "network": network, "http": http,
            "govsoc": {"capture": {"source": self.source_name}},
        }
        if req:
            request: dict[str, Any] = {"method": req["method"]}
            http["request"] = request
            http["version"] = req["version"]
            if req.get("referrer"):
                request["referrer"] = req["referrer"]
            if req.get("content_length") is not None:
                request["body"] = {"bytes": req["content_length"]}
            uri = req["uri"]
            url: dict[str, Any] = {"original": uri}
            path, _, query = uri.partition("?")
            if path.startswith("/"):
                url["path"] = path
                if query:
                    url["query"] = query
            host = req.get("host")
            if host:
                url["domain"] = host_name(host)
                destination["domain"] = url["domain"]
            fields["url"] = url
            if req.get("user_agent"):
                fields["user_agent"] = {"original": req["user_agent"]}
        if resp:
            status = resp["status"]
            response: dict[str, Any] = {"status_code": status}
            http["response"] = response
            if "version" not in http:
                http["version"] = resp["version"]
            if resp.get("content_length") is not None:
                response["body"] = {"bytes": resp["content_length"]}
            elif resp.get("body_bytes") is not None:  # counted up to the close
                response["body"] = {"bytes": resp["body_bytes"]}
            if resp.get("content_type"):
                response["mime_type"] = resp["content_type"].split(";")[0].strip()
            event["outcome"] = "success" if status < 400 else "failure"
        event["dataset"] = "network.http"
        event["id"] = _blake2b(f"network.http\x1f{self.ident}|{key_text}|{seq}|"
                               f"{round(ts * 1_000_000)}\x1f".encode(),
                               digest_size=16).hexdigest()
        fields["@timestamp"] = iso_time(ts)
        return fields

    def tls(self, f: Flow, ts: float, hello: dict, server: dict | None = None,
            cert: dict | None = None, chain: int = 0) -> dict[str, Any]:
        source, destination, network, key_text = _endpoints(f.key, "tls")
        ciphers = hello["ciphers"]
        client: dict[str, Any] = {"ja3": hello["ja3"],
                                  "supported_ciphers": [_cipher_name(c) or tlsp.cipher_name(c)
                                                        for c in ciphers]}
        sni = hello.get("sni")
        if sni:
            client["server_name"] = sni
            destination["domain"] = sni
        tls: dict[str, Any] = {"client": client}
        if server:
            proto, ver = tlsp.version_of(server["version"])
            tls["cipher"] = tlsp.cipher_name(server["cipher"])
            tls["established"] = True
        else:
            offered = hello.get("supported_versions") or [hello["client_version"]]
            proto, ver = tlsp.version_of(max(offered))
        if hello["client_version"] == 0x0101 or hello.get("record_version") == 0x0101:
            proto, ver = "tlcp", "1.1"
        tls["version"] = ver
        tls["version_protocol"] = proto
        g: dict[str, Any] = {"ja3_full": hello["ja3_full"]}
        sm = [_SM_CIPHERS[c] for c in ciphers if c in _SM_CIPHERS]
        if sm:
            g["sm_ciphers"] = sm
        if proto == "tlcp":
            g["tlcp"] = True
        if hello.get("alpn"):
            g["alpn"] = hello["alpn"]
        if hello.get("sslv2"):
            g["sslv2_hello"] = True
        if cert:
            tls["server"] = server_cert_fields(cert)
            status = x509p.validity(cert, ts)
            g["server"] = {"self_signed": cert["self_signed"],
                           "expired": ts > cert["not_after_ts"],
                           "chain_length": chain}
            if status:
                event_zeek: dict[str, Any] | None = {"ssl": {"validation_status": status}}
            else:
                event_zeek = None
        else:
            event_zeek = None
        eid = _blake2b(f"network.tls\x1f{self.ident}|{key_text}|"
                       f"{round(ts * 1_000_000)}\x1f".encode(), digest_size=16).hexdigest()
        doc = {"event": {"kind": "event", "category": ["network"],
                         "type": ["protocol", "info"], "action": "tls_client_hello",
                         "dataset": "network.tls", "id": eid},
               "source": source, "destination": destination, "network": network,
               "tls": tls,
               "govsoc": {"capture": {"source": self.source_name}, "tls": g},
               "@timestamp": iso_time(ts)}
        if event_zeek:
            doc["zeek"] = event_zeek
        return doc


def server_cert_fields(cert: dict[str, Any]) -> dict[str, Any]:
    """ECS tls.server.* of a leaf certificate's facts (proto.x509.facts), copied: the
    facts are cached per certificate and events must not share their objects."""
    xs = copy.deepcopy(cert["x509"])
    return {"x509": xs, "hash": {"sha256": cert["sha256"]},
            "subject": xs["subject"]["distinguished_name"],
            "issuer": xs["issuer"]["distinguished_name"],
            "not_before": xs["not_before"], "not_after": xs["not_after"]}


_cipher_name = tlsp.CIPHER_NAMES.get
_SM_CIPHERS = tlsp.SM_CIPHERS


def burst_stats(times: list[float]) -> dict[str, Any]:
    """How regular a flow's bursts are: their count, the median interval and the median
    absolute deviation of the intervals over that median (the robust jitter measure RITA
    scores beacons with: an implant's random sleep of +/-J moves it to about J/2, a
    person's or a browser's gaps put it near or above 1)."""
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    mid = _median(gaps)
    mad = _median(sorted(abs(g - mid) for g in gaps))
    return {"bursts": len(times), "burst_interval_s": round(mid, 1),
            "burst_jitter": round(mad / mid, 3) if mid > 0 else 0.0}


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def host_name(host: str) -> str:
    """A Host header without its port; an IPv6 literal without its brackets, as ECS
    url.domain holds it ("[2001:db8::1]:8080" -> "2001:db8::1")."""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    return host.rsplit(":", 1)[0]


_STATS: dict[str, dict[str, Any]] = {}


def subdomain_stats(subdomain: str) -> dict[str, Any]:
    """govsoc.dns.subdomain_length / subdomain_entropy of a query's subdomain (cached,
    copied: the events must not share one object that a later one extends)."""
    got = _STATS.get(subdomain)
    if got is None:
        n, h = dnsp.label_stats(subdomain)
        if len(_STATS) > 65536:
            _STATS.clear()
        got = _STATS[subdomain] = {"subdomain_length": n, "subdomain_entropy": round(h, 2)}
    return dict(got)


_PSL: Any = None
_PARTS: dict[str, dict[str, str] | None] = {}


def domain_parts(name: str) -> dict[str, str] | None:
    """ECS dns.question.registered_domain / subdomain / top_level_domain of a name, from
    the Public Suffix List the publicsuffixlist package ships (offline, as Filebeat's
    registered_domain processor fills them): "a1.b.example.gov.cn" -> example.gov.cn, a1.b,
    gov.cn. Cached: the same names recur in most traffic."""
    got = _PARTS.get(name, False)
    if got is not False:
        return got
    global _PSL
    if _PSL is None:
        from publicsuffixlist import PublicSuffixList

        _PSL = PublicSuffixList()
    bare = name.rstrip(".")
    low = bare.lower()
    out = None
    registered = _PSL.privatesuffix(low) if low and "\\" not in low else None
    if registered:
        out = {"registered_domain": registered,
               "top_level_domain": registered.split(".", 1)[1]}
        if len(low) > len(registered):
            out["subdomain"] = bare[:-len(registered) - 1]  # case kept: it can carry data
    if len(_PARTS) > 65536:
        _PARTS.clear()
    _PARTS[name] = out
    return out
