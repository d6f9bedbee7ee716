"""The exposure surface, with its evidence:

- `zone_violation`  a management or database port of ours that answered connections from a
                    zone the config does not allow to reach that class of port;
- `plaintext_management`  telnet, FTP, rlogin/rsh/rexec listening (swept sockets, probes,
                    host collectors) or seen answering in the flows;
- `http_admin`      an admin console over plain HTTP: a known HTTP admin port listening, or
                    HTTP requests to an admin path (`/admin`, `/manager`...) answered in clear;
- `internet_facing` a service of ours that answered connections from global addresses.

Evidence is what was observed, never typed in: flow counts with their first/last time and
some of the sources (from `EventStore.groups` over `network.flow` / `network.http`), the
listening entry with the sources that saw it, and the last probe's result.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cloud_inventory.config import (
    ADMIN_PATHS,
    HTTP_ADMIN_PORTS,
    PLAINTEXT,
    PORT_CLASSES,
    InventoryConfig,
    inventory_config,
)
from cloud_inventory.passive import ANSWERED, FLOW_DATASET, FLOW_FIELDS, _iso, is_service
from cloud_inventory.registry import list_assets
from soc_core import ecs
from soc_core.store import Selection, resolve_millis

SEVERITY = {"zone_violation": "high", "plaintext_management": "high", "http_admin": "medium",
            "internet_facing": "medium"}
EVIDENCE_SOURCES = 10  # source addresses named in a finding (the count stays exact)


def _port_class(port: int) -> tuple[str, str] | None:
    for cls, ports in PORT_CLASSES.items():
        if port in ports:
            return cls, ports[port]
    return None


class _Inbound:
    """Answered inbound flows to one (address, transport, port), by source zone."""

    def __init__(self) -> None:
        self.by_zone: dict[str, dict[str, Any]] = {}

    def add(self, zone: str, src: str, n: int, first: int, last: int, proto: Any) -> None:
        z = self.by_zone.setdefault(zone, {"flows": 0, "first": first, "last": last,
                                           "sources": set(), "protocols": set()})
        z["flows"] += n
        z["first"], z["last"] = min(z["first"], first), max(z["last"], last)
        z["sources"].add(src)
        if proto:
            z["protocols"].add(proto)

    @staticmethod
    def evidence(z: dict[str, Any]) -> dict[str, Any]:
        return {"flows": z["flows"], "first": _iso(z["first"]), "last": _iso(z["last"]),
                "sources": sorted(z["sources"])[:EVIDENCE_SOURCES],
                "source_count": len(z["sources"]), "protocols": sorted(z["protocols"])}


def exposure_surface(store: Any, *, since: Any = "now-7d", until: Any = None,
             conf: InventoryConfig | None = None, department: str | None = None
             ) -> list[dict[str, Any]]:
    """Every exposure finding, most severe first, each with its evidence."""
    conf = conf or inventory_config()
    start, end = resolve_millis(since), resolve_millis(until or "now")
    assets = [a for a in list_assets(store, department=department)
              if ecs.get_field(a, "govsoc.asset.state") != "gone"]
    by_ip: dict[str, dict[str, Any]] = {}
    for a in assets:
        for ip in (a.get("host") or {}).get("ip") or []:
            by_ip[str(ip)] = a

    inbound: dict[tuple[str, str, int], _Inbound] = defaultdict(_Inbound)
    for (src, dst, dport, transport, proto, state), n, first, last in store.groups(
            FLOW_FIELDS, Selection(dataset=FLOW_DATASET, start=_iso(start), end=_iso(end))):
        if state not in ANSWERED or dport is None or not dst or not conf.is_local(dst):
            continue
        if department and dst not in by_ip:
            continue
        inbound[str(dst), str(transport), int(dport)].add(conf.zone_of(str(src)), str(src), n,
                                                            first, last, proto)

    findings: list[dict[str, Any]] = []

    def add(kind: str, ip: str, transport: str, port: int, detail: dict[str, Any],
            evidence: dict[str, Any]) -> None:
        asset = by_ip.get(ip)
        entry = _listening(asset, transport, port)
        if entry:
            evidence.setdefault("listening", entry)
        probe = ecs.get_field(asset or {}, "govsoc.asset.probe")
        if probe and port in (probe.get("open") or []):
            evidence.setdefault("probe", {"open": True, "at": probe.get("at")})
        findings.append({
            "kind": kind, "severity": SEVERITY[kind], "ip": ip, "protocol": transport,
            "port": port, "asset_id": asset["event"]["id"] if asset else None,
            "host": ecs.get_field(asset, "host.name") if asset else None,
            "department": ecs.get_field(asset, "organization.id") if asset else None,
            **detail, "evidence": evidence})

    # traffic: zones reaching what they should not, and the internet reaching us
    for (ip, transport, port), seen in inbound.items():
        cls = _port_class(port) if transport == "tcp" else None
        for zone, z in seen.by_zone.items():
            if cls and not conf.allowed(zone, cls[0]):
                add("zone_violation", ip, transport, port,
                    {"zone": zone, "port_class": cls[0], "service": cls[1]},
                    {"flows": _Inbound.evidence(z)})
            if zone == "internet" and is_service(port, z["protocols"], z["flows"]):
                add("internet_facing", ip, transport, port,
                    {"zone": zone, "service": next(iter(sorted(z["protocols"])), None)},
                    {"flows": _Inbound.evidence(z)})

    # plaintext management: listening (any source) or answering in the flows
    plain: dict[tuple[str, str, int], dict[str, Any]] = {}
    for a in assets:
        ips = [str(i) for i in (a.get("host") or {}).get("ip") or []]
        for s in ecs.get_field(a, "govsoc.asset.listening") or []:
            port = int(s["port"])
            if s.get("protocol") == "tcp" and (port in PLAINTEXT or s.get("service") in
                                               PLAINTEXT.values()):
                ip = s.get("address") if s.get("address") in ips else (ips[0] if ips else "")
                plain.setdefault((ip, "tcp", port), {})
    for (ip, transport, port), seen in inbound.items():
        protos = set().union(*(z["protocols"] for z in seen.by_zone.values()))
        if transport == "tcp" and (port in PLAINTEXT or protos & set(PLAINTEXT.values())):
            plain.setdefault((ip, transport, port), {})["flows"] = {
                zone: _Inbound.evidence(z) for zone, z in seen.by_zone.items()}
    for (ip, transport, port), evidence in plain.items():
        add("plaintext_management", ip, transport, port,
            {"service": PLAINTEXT.get(port, "plaintext")}, evidence)

    # HTTP admin consoles in clear text
    admin: dict[tuple[str, int], dict[str, Any]] = {}
    for a in assets:
        ips = [str(i) for i in (a.get("host") or {}).get("ip") or []]
        for s in ecs.get_field(a, "govsoc.asset.listening") or []:
            if s.get("protocol") == "tcp" and int(s["port"]) in HTTP_ADMIN_PORTS:
                ip = s.get("address") if s.get("address") in ips else (ips[0] if ips else "")
                admin.setdefault((ip, int(s["port"])), {})
    for (dst, dport, path), n, first, last in store.groups(
            ["destination.ip", "destination.port", "url.path"],
            Selection(dataset="network.http", start=_iso(start), end=_iso(end))):
        if dst and dport is not None and conf.is_local(dst) and isinstance(path, str) \
                and path.lower().startswith(ADMIN_PATHS):
            ev = admin.setdefault((dst, int(dport)), {}).setdefault(
                "http_requests", {"requests": 0, "first": _iso(first), "last": _iso(last),
                                  "paths": []})
            ev["requests"] += n
            ev["last"] = max(ev["last"], _iso(last))
            if path not in ev["paths"] and len(ev["paths"]) < EVIDENCE_SOURCES:
                ev["paths"].append(path)
    for (ip, port), evidence in admin.items():
        add("http_admin", ip, "tcp", port, {"service": HTTP_ADMIN_PORTS.get(port, "http")},
            evidence)

    rank = {"high": 0, "medium": 1, "low": 2}
    findings.sort(key=lambda f: (rank[f["severity"]], f["kind"], f["ip"], f["port"]))
    return findings


def _listening(asset: dict[str, Any] | None, transport: str, port: int
               ) -> dict[str, Any] | None:
    for s in ecs.get_field(asset or {}, "govsoc.asset.listening") or []:
        if s.get("protocol") == transport and int(s["port"]) == port:
            return {k: s[k] for k in ("address", "process", "service", "sources", "first_seen",
                                      "last_seen", "flows") if s.get(k) is not None}
    return None
