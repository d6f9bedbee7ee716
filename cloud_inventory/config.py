"""The inventory's configuration (`[inventory]` in govsoc.toml)::

    [inventory]
    cidrs = ["10.1.0.0/16"]       # the ONLY networks network discovery may probe
    local_nets = ["10.0.0.0/8"]   # addresses that are ours, for passive discovery
                                  # (default: cidrs)
    ports = [22, 23, 80, 443, 3306]  # TCP ports the SYN probe tries (default: PROBE_PORTS)
    rate = 200                    # probe packets per second, at most
    idle_days = 14                # idle: no inbound session and CPU below idle_cpu ...
    idle_cpu = 0.05               # ... (a fraction, 0.05 = 5 %) for idle_days
    interval = 300                # seconds between passive discovery passes in `govsoc up`

    [[inventory.zones]]           # where traffic comes from, for the exposure surface
    name = "ops"
    cidrs = ["10.9.0.0/24"]
    allow = ["management", "database"]   # port classes this zone may reach

    [[inventory.classes]]         # defaults for assets that match (hosts globs or cidrs)
    hosts = ["*-db-*"]
    cidrs = ["10.1.5.0/24"]
    importance = "high"           # high | medium | low
    djcp_level = 3                # 等保 level 1-5
    data_class = "important"      # core | important | general (数据分级)
    tags = ["db"]

A source address in no zone is `internet` when it is a global address, else `unknown`;
neither may reach management or database ports.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from soc_core.config import Config, ConfigError, load_config

# TCP ports the SYN probe tries when none are configured: management, databases, web
PROBE_PORTS = (21, 22, 23, 80, 135, 139, 443, 445, 1433, 1521, 2375, 3306, 3389, 5432,
               5900, 6379, 8080, 8443, 9200, 11211, 27017)
PORT_CLASSES: dict[str, dict[int, str]] = {
    "management": {22: "ssh", 23: "telnet", 3389: "rdp", 5900: "vnc", 5985: "winrm",
                   5986: "winrm", 2375: "docker", 6443: "kubernetes", 10250: "kubelet",
                   161: "snmp", 8006: "proxmox", 9090: "cockpit", 10000: "webmin",
                   135: "msrpc", 445: "smb"},
    "database": {3306: "mysql", 5432: "postgresql", 1433: "mssql", 1521: "oracle",
                 6379: "redis", 27017: "mongodb", 9200: "elasticsearch", 11211: "memcached",
                 5236: "dameng", 54321: "kingbase", 2881: "oceanbase"},
}
# management protocols that carry credentials in clear text
PLAINTEXT = {23: "telnet", 21: "ftp", 513: "rlogin", 514: "rsh", 512: "rexec"}
# HTTP (not HTTPS) admin consoles: their ports, and any plain HTTP service whose observed
# URL path is an admin one
HTTP_ADMIN_PORTS = {8080: "http-admin", 8000: "http-admin", 8088: "http-admin",
                    10000: "webmin", 9090: "cockpit", 8161: "activemq-admin",
                    15672: "rabbitmq-admin", 8081: "http-admin"}
ADMIN_PATHS = ("/admin", "/manager", "/console", "/phpmyadmin", "/wp-admin", "/login")


@dataclass
class Zone:
    name: str
    nets: list[Any]
    allow: frozenset[str]


@dataclass
class InventoryConfig:
    cidrs: list[Any] = field(default_factory=list)
    local_nets: list[Any] = field(default_factory=list)
    ports: tuple[int, ...] = PROBE_PORTS
    rate: float = 200.0
    idle_days: int = 14
    idle_cpu: float = 0.05
    zones: list[Zone] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    _v4: list[tuple[int, int]] | None = field(default=None, repr=False, compare=False)
    _v6: list[Any] = field(default_factory=list, repr=False, compare=False)

    def zone_of(self, ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "unknown"
        best: tuple[int, str] | None = None
        for z in self.zones:
            for n in z.nets:
                if addr.version == n.version and addr in n and (
                        best is None or n.prefixlen > best[0]):
                    best = (n.prefixlen, z.name)
        if best:
            return best[1]
        return "internet" if addr.is_global else "unknown"

    def allowed(self, zone: str, port_class: str) -> bool:
        return any(z.name == zone and port_class in z.allow for z in self.zones)

    def is_local(self, ip: str) -> bool:
        """Whether an address is ours (`local_nets`, else `cidrs`); called for every distinct
        address in a window's flows, so IPv4 is matched on integers, without ipaddress."""
        if self._v4 is None:
            nets = self.local_nets or self.cidrs
            self._v4 = [(int(n.network_address), int(n.netmask)) for n in nets
                        if n.version == 4]
            self._v6 = [n for n in nets if n.version == 6]
        try:
            value = int.from_bytes(socket.inet_aton(ip), "big") if ":" not in ip else None
        except OSError:
            value = None
        if value is not None and ip.count(".") == 3:
            return any(value & mask == net for net, mask in self._v4)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self._v6)


def _nets(values: Any, where: str) -> list[Any]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise ConfigError(f"{where} must be a list of CIDRs")
    try:
        return [ipaddress.ip_network(str(v), strict=False) for v in values]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def inventory_config(cfg: Config | None = None) -> InventoryConfig:
    """The `[inventory]` settings, checked; ConfigError (one line) for a bad value."""
    cfg = cfg or load_config()
    raw = cfg.get("inventory", {}) or {}
    if not isinstance(raw, dict):
        raise ConfigError("[inventory] must be a table")
    # list defaults, so GOVSOC_INVENTORY_CIDRS=10.1.0.0/16,10.2.0.0/16 reads as a list
    out = InventoryConfig(cidrs=_nets(cfg.get("inventory.cidrs", []), "inventory.cidrs"),
                          local_nets=_nets(cfg.get("inventory.local_nets", []),
                                           "inventory.local_nets"))
    ports = cfg.get("inventory.ports", list(PROBE_PORTS))
    try:
        ports = [int(p) for p in ports] if isinstance(ports, list) else None
    except (TypeError, ValueError):
        ports = None
    if not ports or not all(0 < p < 65536 for p in ports):
        raise ConfigError("inventory.ports must be a list of TCP ports (1-65535)")
    out.ports = tuple(ports)
    try:
        out.rate = float(cfg.get("inventory.rate", out.rate))
        out.idle_days = int(cfg.get("inventory.idle_days", out.idle_days))
        out.idle_cpu = float(cfg.get("inventory.idle_cpu", out.idle_cpu))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[inventory]: {exc}") from exc
    if not 0 < out.rate <= 10000:
        raise ConfigError("inventory.rate must be 1-10000 packets per second")
    for i, z in enumerate(raw.get("zones") or []):
        if not isinstance(z, dict) or not z.get("name"):
            raise ConfigError(f"inventory.zones[{i}] needs a name")
        allow = z.get("allow") or []
        bad = [a for a in allow if a not in PORT_CLASSES]
        if bad:
            raise ConfigError(f"inventory.zones[{i}].allow: unknown port class {bad[0]!r} "
                              f"(one of {', '.join(PORT_CLASSES)})")
        out.zones.append(Zone(str(z["name"]), _nets(z.get("cidrs"), f"inventory.zones[{i}]"),
                              frozenset(allow)))
    for i, c in enumerate(raw.get("classes") or []):
        if not isinstance(c, dict):
            raise ConfigError(f"inventory.classes[{i}] must be a table")
        c = dict(c)
        c["nets"] = _nets(c.get("cidrs"), f"inventory.classes[{i}].cidrs")
        out.classes.append(c)
    return out


def classifier(conf: InventoryConfig | None = None) -> Callable[[dict[str, Any]], None]:
    """Sets importance, 等保 level, data class and tags from `[[inventory.classes]]` on an
    asset document, unless an operator set them; the first matching class wins."""
    if conf is None:
        try:
            conf = inventory_config()
        except ConfigError:
            conf = InventoryConfig()
    classes = conf.classes

    def apply(doc: dict[str, Any]) -> None:
        host = doc.get("host") or {}
        names = [str(host.get(k)) for k in ("name", "hostname") if host.get(k)]
        ips = []
        for ip in host.get("ip") or []:
            try:
                ips.append(ipaddress.ip_address(ip))
            except ValueError:
                pass
        a = doc["govsoc"]["asset"]
        sources = a.setdefault("sources", {})
        for c in classes:
            if not (any(fnmatch(n.lower(), str(p).lower()) for n in names
                        for p in c.get("hosts") or [])
                    or any(ip.version == n.version and ip in n for ip in ips
                           for n in c["nets"])):
                continue
            for key in ("importance", "djcp_level", "data_class"):
                if key in c and (sources.get(key) or {}).get("source") != "operator":
                    a[key] = c[key]
                    sources[key] = {"source": "config"}
            if c.get("tags"):
                a["tags"] = sorted({*a.get("tags", []), *map(str, c["tags"])})
            return

    return apply
