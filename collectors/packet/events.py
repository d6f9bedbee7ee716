"""ECS documents for flows, DNS, HTTP and TLS, laid out as Filebeat's Zeek module writes
them (zeek conn/dns/http/ssl -> source.*, destination.*, network.*, dns.*, http.*,
url.*, user_agent.*, tls.*), so Sigma's Zeek rules map onto them. Both engines build
their events here, which is what makes their output comparable."""

from __future__ import annotations

import math
import socket
import time
from typing import Any

from collectors.packet.flows import Flow, community_id, conn_state
from collectors.packet.proto import dns as dnsp
from collectors.packet.proto import tls as tlsp
from soc_core.ecs import stable_id

TRANSPORTS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 47: "gre",
              50: "esp", 51: "ah", 2: "igmp", 89: "ospf"}


_PORTED = frozenset({6, 17, 132, 1, 58})  # transports whose events carry ports
_IP_TEXT: dict[bytes, str] = {}


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


def make_event(dataset: str, ts: float | str, source_key: str, fields: dict[str, Any]) -> dict:
    """soc_core.ecs.make_event for documents that are nested already: the same document
    and the same id (tests/collectors/packet/test_packet_events.py holds the two equal),
    without re-walking each document for dotted keys (event building was a third of the
    fast path's time)."""
    fields["@timestamp"] = ts if type(ts) is str else iso_time(ts)
    event = fields["event"]
    event["dataset"] = dataset
    event["id"] = stable_id(dataset, source_key)
    return fields


_SECONDS: dict[int, str] = {}


def iso_time(ts: float) -> str:
    """soc_core.ecs.format_time for an epoch float, with the per-second prefix cached
    (a capture's events cluster in a few seconds). Microseconds are rounded from the
    fraction alone, as datetime.fromtimestamp does: round(ts * 1e6) rounds the product,
    which differs at half-microsecond ties (35184373.0529995 gave .053, core .052)."""
    frac_s, whole = math.modf(ts)
    sec, frac = int(whole), round(frac_s * 1_000_000)
    if frac >= 1_000_000:
        sec, frac = sec + 1, frac - 1_000_000
    prefix = _SECONDS.get(sec)
    if prefix is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        prefix = _SECONDS[sec] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
    return f"{prefix}{frac // 1000:03d}Z"


def _us(ts: float) -> int:
    return round(ts * 1_000_000)


def _endpoints(key: tuple) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    proto, src, sport, dst, dport, vlan = key
    source: dict[str, Any] = {"ip": ip_text(src)}
    destination: dict[str, Any] = {"ip": ip_text(dst)}
    if proto in _PORTED:
        source["port"] = sport
        destination["port"] = dport
    network: dict[str, Any] = {
        "transport": TRANSPORTS.get(proto, str(proto)), "iana_number": str(proto),
        "type": "ipv4" if len(src) == 4 else "ipv6",
    }
    if vlan:
        network["vlan"] = {"id": str(vlan)}
    return source, destination, network


class EventBuilder:
    """Builds the events of one capture source; `ident` is the capture's identity
    (file content digest, or live:host:iface) and enters every event id."""

    def __init__(self, ident: str, source_name: str) -> None:
        self.ident = ident
        self.source_name = source_name

    def _govsoc(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        g: dict[str, Any] = {"capture": {"source": self.source_name}}
        if extra:
            g.update(extra)
        return g

    def flow(self, f: Flow, reason: str, service: str | None,
             ssh: dict[str, str] | None) -> dict[str, Any]:
        # Written out flat rather than through _endpoints: one flow event per
        # connection makes this the most frequent builder on the fast path.
        proto, src, sport, dst, dport, vlan = f.key
        s_ip, d_ip = ip_text(src), ip_text(dst)
        first_us, last_us = round(f.first * 1_000_000), round(f.last * 1_000_000)
        start = iso_time(f.first)
        zstate, state = conn_state(f)
        if proto in _PORTED:
            source = {"ip": s_ip, "port": sport, "bytes": f.obytes, "packets": f.opkts}
            destination = {"ip": d_ip, "port": dport, "bytes": f.rbytes, "packets": f.rpkts}
        else:
            source = {"ip": s_ip, "bytes": f.obytes, "packets": f.opkts}
            destination = {"ip": d_ip, "bytes": f.rbytes, "packets": f.rpkts}
        network: dict[str, Any] = {
            "transport": TRANSPORTS.get(proto) or str(proto), "iana_number": str(proto),
            "type": "ipv4" if len(src) == 4 else "ipv6",
            "bytes": f.obytes + f.rbytes, "packets": f.opkts + f.rpkts}
        if vlan:
            network["vlan"] = {"id": str(vlan)}
        cid = community_id(f.key)
        if cid:
            network["community_id"] = cid
        if service:
            network["protocol"] = service
        g: dict[str, Any] = {"capture": {"source": self.source_name},
                             "flow": {"state": state, "end_reason": reason}}
        if ssh:
            g["ssh"] = ssh
        fields = {
            "event": {"kind": "event", "category": ["network"],
                      "type": ["connection", "end"], "action": "network_flow",
                      "start": start, "end": iso_time(f.last),
                      "duration": (last_us - first_us) * 1000},
            "source": source, "destination": destination, "network": network,
            "zeek": {"connection": {"state": zstate, "history": f.history}},
            "govsoc": g,
        }
        return make_event("network.flow", start, f"{self.ident}|{proto}|{s_ip}|{sport}|"
                          f"{d_ip}|{dport}|{vlan}|{first_us}", fields)

    def dns(self, f: Flow, ts: float, query: dict | None, reply: dict | None,
            reply_ts: float | None) -> dict[str, Any]:
        msg = query or reply
        assert msg is not None
        source, destination, network = _endpoints(f.key)
        network["protocol"] = "dns"
        d: dict[str, Any] = {"id": str(msg["id"]), "type": "answer" if reply else "query"}
        if msg["questions"]:
            name, qtype, qclass = msg["questions"][0]
            d["question"] = {"name": name, "type": dnsp.type_name(qtype),
                             "class": dnsp.class_name(qclass)}
        flags = set(query["flags"] if query else [])
        event: dict[str, Any] = {"kind": "event", "category": ["network"],
                                 "type": ["protocol", "info"], "action": "dns_query"}
        if reply:
            flags.update(reply["flags"])
            d["response_code"] = dnsp.RCODES.get(reply["rcode"], str(reply["rcode"]))
            answers = reply["answers"]
            if answers:
                d["answers"] = answers
                ips = [a["data"] for a in answers if a["type"] in ("A", "AAAA")]
                if ips:
                    d["resolved_ip"] = ips
            if query and reply_ts is not None:
                event["duration"] = (_us(reply_ts) - _us(ts)) * 1000
        if flags:
            d["header_flags"] = sorted(flags)
        qname = d.get("question", {}).get("name", "")
        fields = {"event": event, "source": source, "destination": destination,
                  "network": network, "dns": d, "govsoc": self._govsoc()}
        return make_event("network.dns", ts, f"{self.ident}|{flow_key_text(f.key)}|"
                          f"{msg['id']}|{qname}|{_us(ts)}", fields)

    def http(self, f: Flow, ts: float, seq: int, req: dict | None,
             resp: dict | None) -> dict[str, Any]:
        source, destination, network = _endpoints(f.key)
        network["protocol"] = "http"
        http: dict[str, Any] = {}
        fields: dict[str, Any] = {
            "event": {"kind": "event", "category": ["network", "web"],
                      "type": ["protocol", "access"], "action": "http_request"},
            "source": source, "destination": destination, "network": network,
            "http": http, "govsoc": self._govsoc(),
        }
        if req:
            http["request"] = {"method": req["method"]}
            http["version"] = req["version"]
            if req.get("referrer"):
                http["request"]["referrer"] = req["referrer"]
            if req.get("content_length") is not None:
                http["request"]["body"] = {"bytes": req["content_length"]}
            uri = req["uri"]
            url: dict[str, Any] = {"original": uri}
            path, _, query = uri.partition("?")
            if path.startswith("/"):
                url["path"] = path
                if query:
                    url["query"] = query
            if req.get("host"):
                host = req["host"]
                url["domain"] = host.rsplit(":", 1)[0] if not host.startswith("[") else host
                destination["domain"] = url["domain"]
            fields["url"] = url
            if req.get("user_agent"):
                fields["user_agent"] = {"original": req["user_agent"]}
        if resp:
            http["response"] = {"status_code": resp["status"]}
            http.setdefault("version", resp["version"])
            if resp.get("content_length") is not None:
                http["response"]["body"] = {"bytes": resp["content_length"]}
            if resp.get("content_type"):
                http["response"]["mime_type"] = resp["content_type"].split(";")[0].strip()
            fields["event"]["outcome"] = "success" if resp["status"] < 400 else "failure"
        return make_event("network.http", ts, f"{self.ident}|{flow_key_text(f.key)}|"
                          f"{seq}|{_us(ts)}", fields)

    def tls(self, f: Flow, ts: float, hello: dict, server: dict | None) -> dict[str, Any]:
        source, destination, network = _endpoints(f.key)
        network["protocol"] = "tls"
        client: dict[str, Any] = {"ja3": hello["ja3"],
                                  "supported_ciphers": [tlsp.cipher_name(c)
                                                        for c in hello["ciphers"]]}
        if hello.get("sni"):
            client["server_name"] = hello["sni"]
            destination["domain"] = hello["sni"]
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
        sm = [tlsp.SM_CIPHERS[c] for c in hello["ciphers"] if c in tlsp.SM_CIPHERS]
        if sm:
            g["sm_ciphers"] = sm
        if proto == "tlcp":
            g["tlcp"] = True
        if hello.get("alpn"):
            g["alpn"] = hello["alpn"]
        fields = {"event": {"kind": "event", "category": ["network"],
                            "type": ["protocol", "info"], "action": "tls_client_hello"},
                  "source": source, "destination": destination, "network": network,
                  "tls": tls, "govsoc": self._govsoc({"tls": g})}
        return make_event("network.tls", ts,
                          f"{self.ident}|{flow_key_text(f.key)}|{_us(ts)}", fields)
