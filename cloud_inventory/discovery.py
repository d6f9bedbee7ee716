"""Network discovery: ARP, ICMP echo and TCP SYN probes (scapy) of the configured CIDRs,
and nothing else, at a bounded packet rate.

Every packet is built by `_Prober.packet()`, which refuses a destination outside the
configured networks: the CIDR list is the one boundary, whatever the routing table says.
Order: ARP (on-link networks) and ICMP echo find live hosts; SYNs go to the configured TCP
ports of live hosts only. The kernel answers the SYN-ACKs with RSTs (no socket of ours
owns the source port), so no half-open connection is left behind. The run's tag (TCP
source port, ICMP identifier) marks every probe, so a capture can pick them out.

Needs root or CAP_NET_RAW.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud_inventory.config import InventoryConfig, classifier, inventory_config
from cloud_inventory.model import Observation
from cloud_inventory.registry import RecordResult, in_cidrs, record
from soc_core import ecs

MAX_TARGETS = 65536  # a /16: more is a configuration mistake, not an inventory


class DiscoveryError(RuntimeError):
    """Discovery cannot run as asked (no CIDRs, too many targets, no permission)."""


@dataclass
class Found:
    ip: str
    mac: str | None = None
    arp: bool = False
    icmp: bool = False
    open_ports: list[int] = field(default_factory=list)
    closed_ports: list[int] = field(default_factory=list)


@dataclass
class ProbeResult:
    tag: int
    cidrs: list[str]
    found: dict[str, Found]
    sent: int  # packets sent
    ports: list[int]
    started: str
    ended: str


class _Prober:
    def __init__(self, cidrs: list[Any], ports: Iterable[int], rate: float, timeout: float,
                 tag: int | None) -> None:
        self.nets = cidrs
        self.ports = sorted(set(ports))
        self.inter = 1.0 / rate
        self.timeout = timeout
        self.tag = tag or random.randint(40000, 60999)  # noqa: S311 - a marker, not a secret
        self.sent = 0

    def allowed(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr.version == n.version and addr in n for n in self.nets)

    def packet(self, layer: str, dst: str, port: int = 0, seq: int = 0) -> Any:
        """The one place a probe is built: refuses any destination outside the CIDRs."""
        from scapy.layers.inet import ICMP, IP, TCP
        from scapy.layers.l2 import ARP, Ether

        if not self.allowed(dst):
            raise DiscoveryError(f"refusing to probe {dst}: outside the configured CIDRs")
        if layer == "arp":
            return Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=dst)
        if layer == "icmp":
            return IP(dst=dst) / ICMP(id=self.tag, seq=seq & 0xFFFF)
        return IP(dst=dst) / TCP(sport=self.tag, dport=port, flags="S",
                                 seq=random.getrandbits(32))  # noqa: S311

    def targets(self) -> list[str]:
        out: list[str] = []
        for n in self.nets:
            hosts = [n.network_address] if n.num_addresses == 1 else list(n.hosts())
            out.extend(str(h) for h in hosts)
            if len(out) > MAX_TARGETS:
                raise DiscoveryError(f"the CIDRs hold more than {MAX_TARGETS} addresses")
        return sorted(set(out), key=ipaddress.ip_address)

    def run(self) -> dict[str, Found]:
        from scapy.all import conf, sr, srp

        conf.verb = 0
        found: dict[str, Found] = {}
        targets = self.targets()
        onlink: dict[str, list[str]] = {}
        for t in targets:
            iface, _src, gw = conf.route.route(t)
            if gw == "0.0.0.0" and iface != conf.loopback_name:  # noqa: S104 - on-link
                onlink.setdefault(iface, []).append(t)
        try:
            for iface, ips in onlink.items():
                pkts = [self.packet("arp", ip) for ip in ips]
                self.sent += len(pkts)
                ans, _ = srp(pkts, iface=iface, inter=self.inter, timeout=self.timeout)
                for _q, r in ans:
                    f = found.setdefault(r.psrc, Found(r.psrc))
                    f.mac, f.arp = r.hwsrc.lower(), True
            pkts = [self.packet("icmp", ip, seq=i) for i, ip in enumerate(targets)]
            self.sent += len(pkts)
            ans, _ = sr(pkts, inter=self.inter, timeout=self.timeout)
            for q, r in ans:
                if r.haslayer("ICMP") and r["ICMP"].type == 0:
                    found.setdefault(q.dst, Found(q.dst)).icmp = True
            live = sorted(found, key=ipaddress.ip_address)
            pkts = [self.packet("syn", ip, p) for ip in live for p in self.ports]
            if pkts:
                self.sent += len(pkts)
                ans, _ = sr(pkts, inter=self.inter, timeout=self.timeout)
                for q, r in ans:
                    if not r.haslayer("TCP"):
                        continue
                    flags = int(r["TCP"].flags)
                    f = found[q.dst]
                    if flags & 0x12 == 0x12:  # SYN-ACK: open
                        f.open_ports.append(q["TCP"].dport)
                    elif flags & 0x04:  # RST: closed
                        f.closed_ports.append(q["TCP"].dport)
        except PermissionError as exc:
            raise DiscoveryError("network discovery needs root or the CAP_NET_RAW "
                                 "capability") from exc
        for f in found.values():
            f.open_ports.sort()
            f.closed_ports.sort()
        return found


def probe(cidrs: Iterable[str], *, ports: Iterable[int], rate: float = 200.0,
          timeout: float = 1.0, tag: int | None = None) -> ProbeResult:
    """Probe the CIDRs (and nothing else); what answered."""
    try:
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    except ValueError as exc:
        raise DiscoveryError(f"bad CIDR: {exc}") from exc
    nets = [n for n in nets if n.version == 4]  # ARP/ICMPv4/SYN over IPv4
    if not nets:
        raise DiscoveryError("no IPv4 CIDR to probe: set inventory.cidrs or give --cidr")
    if not 0 < rate <= 10000:
        raise DiscoveryError("the probe rate must be 1-10000 packets per second")
    prober = _Prober(nets, ports, rate, timeout, tag)
    started = ecs.now_iso()
    found = prober.run()
    return ProbeResult(tag=prober.tag, cidrs=[str(n) for n in nets], found=found,
                       sent=prober.sent, ports=prober.ports, started=started,
                       ended=ecs.now_iso())


def observations(result: ProbeResult) -> list[Observation]:
    probed = [("tcp", p) for p in result.ports]
    return [Observation(
        source="network", seen=result.ended, ips=[f.ip], macs=[f.mac] if f.mac else [],
        listening=[{"protocol": "tcp", "port": p, "address": f.ip} for p in f.open_ports],
        probed_ports=probed,
        facts={"probe": {"arp": f.arp, "icmp": f.icmp, "open": f.open_ports,
                         "closed": f.closed_ports, "at": result.ended}})
        for f in result.found.values()]


def discover_network(store: Any, *, cidrs: Iterable[str] | None = None,
                     ports: Iterable[int] | None = None, rate: float | None = None,
                     timeout: float = 1.0, conf: InventoryConfig | None = None,
                     tag: int | None = None) -> tuple[ProbeResult, RecordResult]:
    """Probe the configured CIDRs (or `cidrs`) and record what answered; a host of those
    networks that answered an earlier probe and not this one is gone."""
    conf = conf or inventory_config()
    nets = list(cidrs) if cidrs else [str(n) for n in conf.cidrs]
    t0 = time.monotonic()
    result = probe(nets, ports=ports or conf.ports, rate=rate or conf.rate, timeout=timeout,
                   tag=tag)
    run_id = ecs.stable_id("network", result.started, result.tag)
    rec = record(store, observations(result), source="network", run_id=run_id,
                 in_scope=in_cidrs(result.cidrs), classify=classifier(conf),
                 summary={"cidrs": result.cidrs, "sent": result.sent, "tag": result.tag,
                          "since": result.started, "until": result.ended,
                          "seconds": round(time.monotonic() - t0, 3)})
    return result, rec
