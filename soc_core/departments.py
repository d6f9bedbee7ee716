"""Departments (委办局) as tenants: which department an event, asset or alert belongs to.

Configured in `govsoc.toml`, one table per department::

    [[departments]]
    id = "wjw"                 # stable id: lowercase letters, digits, '-' and '_'
    name = "市卫健委"
    cidrs = ["10.1.0.0/16"]    # its address space (longest prefix wins across departments)
    hosts = ["wjw-*"]          # host-name glob patterns (case-insensitive; the most
                               # specific pattern wins: most literal characters)

The asset registry overrides the config: an asset document (family `assets`) that carries
`organization.id` and was not stamped from the config (`govsoc.asset.department_source`
is not `"config"`) decides the department of its host name and its addresses.

Stamping (`Departments.stamp`) sets ECS `organization.id` and `organization.name`. The
candidates are, in order, `host.name`, `host.ip`, `source.ip`, `destination.ip`: the first
that maps gives the organization (so a network event belongs to its source side when that
is internal, else to its destination side); when the candidates map to more than one
department, `govsoc.departments` lists every id involved so each of them can see the event.
A document that already carries an organization is left as it is; one whose department is
unknown gets none (the API shows it as unassigned).

The store calls `stamp_prepared` on every document it writes (one place for every write
path); lookups are cached per address and per host name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

import orjson

from soc_core import ecs
from soc_core.config import Config, ConfigError

__all__ = ["Department", "Departments", "STAMPED_FAMILIES"]

# Families whose documents belong to a department. Audit records and detection state carry
# their own notion of who acted; they are not stamped.
STAMPED_FAMILIES = frozenset({"events", "metrics", "alerts", "assets", "playbook_runs"})
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
_KEYS = {"id", "name", "cidrs", "hosts"}
_CACHE_MAX = 200_000  # addresses and host names remembered; the cache restarts when full
RELOAD_SECONDS = 60.0  # how often registry assignments written by other processes are re-read
_MISS = object()


@dataclass(frozen=True, eq=False)  # compared by identity: one object per department
class Department:
    id: str
    name: str
    cidrs: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "cidrs": list(self.cidrs),
                "hosts": list(self.hosts)}


def _where(i: int, raw: Any) -> str:
    did = raw.get("id") if isinstance(raw, dict) else None
    return f"departments[{i}]" + (f" (id {did!r})" if isinstance(did, str) else "")


def _parse(i: int, raw: Any) -> Department:
    where = _where(i, raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table ([[departments]])")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; use id, name, cidrs, hosts")
    did = raw.get("id")
    if not isinstance(did, str) or not _ID.match(did):
        raise ConfigError(f"{where}: bad id {did!r}: use 1-64 lowercase letters, digits, "
                          "'-' and '_', starting with a letter or digit")
    name = raw.get("name", did)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name must be a non-empty string")
    cidrs, hosts = raw.get("cidrs", []), raw.get("hosts", [])
    for key, value in (("cidrs", cidrs), ("hosts", hosts)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
    norm = []
    for c in cidrs:
        try:
            norm.append(str(ipaddress.ip_network(c.strip(), strict=True)))
        except ValueError as exc:
            raise ConfigError(f"{where}: bad CIDR {c!r}: {exc}") from None
    return Department(did, name.strip(), tuple(norm), tuple(h.strip().lower() for h in hosts))


class Departments:
    """The configured departments and the registry's assignments, with a fast `stamp`."""

    def __init__(self, departments: Sequence[Department] = ()) -> None:
        self._list = list(departments)
        self._by_id: dict[str, Department] = {}
        nets: dict[str, str] = {}
        for d in self._list:
            if d.id in self._by_id:
                raise ConfigError(f"departments: duplicate id {d.id!r}")
            self._by_id[d.id] = d
            for c in d.cidrs:
                if c in nets:
                    raise ConfigError(f"departments: CIDR {c} is given to both "
                                      f"{nets[c]!r} and {d.id!r}")
                nets[c] = d.id
        # per (version, prefix length), longest first: network number -> department
        tables: dict[tuple[int, int], dict[int, Department]] = {}
        for d in self._list:
            for c in d.cidrs:
                net = ipaddress.ip_network(c)
                tables.setdefault((net.version, net.prefixlen), {})[
                    int(net.network_address) >> (net.max_prefixlen - net.prefixlen)] = d
        self._tables = {v: [(net_bits - plen, t) for (ver, plen), t in
                            sorted(tables.items(), key=lambda kv: -kv[0][1]) if ver == v]
                        for v, net_bits in ((4, 32), (6, 128))}
        self._by_24 = all(plen <= 24 for ver, plen in tables if ver == 4)
        # host patterns, most specific first (most literal characters), then config order
        pats = [(len(p.replace("*", "").replace("?", "")), n, p, d)
                for n, d in enumerate(self._list) for p in d.hosts]
        pats.sort(key=lambda x: (-x[0], x[1]))
        self._patterns = [(re.compile(translate(p)), d) for _, _, p, d in pats]
        self._lock = threading.Lock()
        self._override_hosts: dict[str, Department] = {}
        self._override_ips: dict[str, Department] = {}
        self._reset_caches()
        self._loaded_at: float | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Config) -> Departments:
        """The `[[departments]]` tables of the config; ConfigError (one line) if unusable."""
        raw = cfg.get("departments", [])
        if raw in (None, ""):
            raw = []
        if not isinstance(raw, list):
            raise ConfigError("departments: use [[departments]] tables "
                              "(id, name, cidrs, hosts)")
        return cls([_parse(i, r) for i, r in enumerate(raw)])

    # -- reading -----------------------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self._list)

    def all(self) -> list[Department]:
        """Every configured department, in config order."""
        return list(self._list)

    def get(self, dept_id: str) -> Department | None:
        return self._by_id.get(dept_id)

    def name_of(self, dept_id: str) -> str:
        d = self._by_id.get(dept_id)
        return d.name if d else dept_id

    def for_address(self, ip: str) -> Department | None:
        """The department of an address: a registry assignment, else the longest
        configured prefix that holds it."""
        if self._override_ips:
            hit = self._override_ips.get(ip)
            if hit is not None:
                return hit
        # when no IPv4 prefix is longer than /24, the /24 decides: cache by it (a few
        # thousand keys that stay hot, where most addresses may be seen once each)
        key = ip[:ip.rfind(".")] if self._by_24 and ":" not in ip else ip
        hit = self._ip_cache.get(key, _MISS)
        if hit is _MISS:
            hit = self._longest_prefix(ip)
            if hit is _MISS:  # not an address: never cached
                return None
            if len(self._ip_cache) >= _CACHE_MAX:
                self._ip_cache = {}
            self._ip_cache[key] = hit
        return hit  # type: ignore[return-value]

    def for_host(self, name: str) -> Department | None:
        """The department of a host name: a registry assignment, else its pattern."""
        hit = self._host_cache.get(name, _MISS)
        if hit is _MISS:
            low = name.lower()
            hit = self._override_hosts.get(low)
            if hit is None:
                hit = next((d for rx, d in self._patterns if rx.match(low)), None)
            if len(self._host_cache) >= _CACHE_MAX:
                self._host_cache = {}
            self._host_cache[name] = hit
        return hit  # type: ignore[return-value]

    def _longest_prefix(self, ip: str) -> Any:
        """The department, None, or _MISS when `ip` is not an address."""
        version = 6 if ":" in ip else 4
        try:  # inet_pton: strict and in C, several times faster than ipaddress on a miss
            value = int.from_bytes(socket.inet_pton(
                socket.AF_INET6 if version == 6 else socket.AF_INET, ip))
        except (OSError, TypeError):
            return _MISS
        if version == 6 and value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d is an IPv4 address
            value, version = value & 0xFFFFFFFF, 4
        for shift, table in self._tables[version]:
            d = table.get(value >> shift)
            if d is not None:
                return d
        return None

    def resolve(self, doc: dict[str, Any]) -> list[Department]:
        """Every department the document involves, the owning one first (see module doc):
        `host.name`, each `host.ip`, then the (first) `source.ip` and `destination.ip`."""
        found: list[Department] = []
        host = doc.get("host")
        if type(host) is dict:
            name = host.get("name")
            if type(name) is str and name and (d := self.for_host(name)) is not None:
                found.append(d)
            ips = host.get("ip")
            for ip in ips if type(ips) is list else (ips,):
                if type(ip) is str and (d := self.for_address(ip)) is not None \
                        and d not in found:  # identity: eq=False
                    found.append(d)
        for side in ("source", "destination"):
            sub = doc.get(side)
            ip = sub.get("ip") if type(sub) is dict else None
            if type(ip) is list:
                ip = ip[0] if ip else None
            if type(ip) is str and (d := self.for_address(ip)) is not None and d not in found:
                found.append(d)
        return found

    # -- stamping ----------------------------------------------------------------------
    def stamp(self, doc: dict[str, Any], family: str | None = None) -> bool:
        """Set `organization.*` (and `govsoc.departments` when several departments are
        involved) on a nested document; True if it was stamped. A document that carries
        an organization already is left alone (an asset with one is a registry
        assignment and is remembered)."""
        family = family or ecs.family_of(doc)
        if family not in STAMPED_FAMILIES:
            return False
        if "organization" in doc:
            if family == "assets":
                self._learn(doc)
            return False
        found = self.resolve(doc)
        if not found:
            return False
        self._apply(doc, family, found)
        return True

    def _apply(self, doc: dict[str, Any], family: str, found: list[Department]) -> None:
        doc["organization"] = {"id": found[0].id, "name": found[0].name}
        if len(found) > 1:
            ecs.set_field(doc, "govsoc.departments", [d.id for d in found])
        if family == "assets" and not self._registry_assigned(doc, found[0]):
            ecs.set_field(doc, "govsoc.asset.department_source", "config")

    def _registry_assigned(self, doc: dict[str, Any], dept: Department) -> bool:
        """True when an asset's department came from a registry assignment of its host, so
        a new sweep of the host keeps the assignment."""
        host = doc.get("host") or {}
        name = host.get("name")
        if isinstance(name, str) and self._override_hosts.get(name.lower()) is dept:
            return True
        ips = host.get("ip") or []
        return any(self._override_ips.get(ip) is dept
                   for ip in (ips if isinstance(ips, list) else [ips]) if isinstance(ip, str))

    def stamp_prepared(self, p: ecs.Prepared) -> ecs.Prepared:
        """`stamp` for a document the store has validated: the hot path of ingest.

        It uses the addresses `ecs.prepare` already read, looks the departments of
        (host name, source, destination) up in caches, and extends the JSON with a suffix
        cached per combination of departments instead of serializing the document again.
        Assets, documents with `host.ip` and multi-department documents that already have
        a `govsoc` object take the general way (`stamp`) and are serialized again."""
        family = p.family
        if family not in STAMPED_FAMILIES:
            return p
        doc = p.doc
        host = doc.get("host")
        if "organization" in doc or family == "assets" or (
                host is not None and type(host) is dict and host.get("ip") is not None):
            if not self.stamp(doc, family):
                return p
            return tuple.__new__(ecs.Prepared, (*p[:9], orjson.dumps(doc), doc))
        name, src, dst = p.host_name, p.source_ip, p.destination_ip
        a = b = c = None
        if name is not None:
            a = self._host_cache.get(name, _MISS)
            if a is _MISS:
                a = self.for_host(name) if type(name) is str and name else None
        if src is not None:
            b = self.for_address(src)
        if dst is not None:
            c = self.for_address(dst)
        if a is None and b is None and c is None:
            return p
        key = (a, b, c)
        stamp = self._stamps.get(key)
        if stamp is None:
            found = []
            for d in key:
                if d is not None and d not in found:
                    found.append(d)
            tail: dict[str, Any] = {"organization": {"id": found[0].id, "name": found[0].name}}
            if len(found) > 1:
                tail["govsoc"] = {"departments": [d.id for d in found]}
            stamp = self._stamps[key] = (b"," + orjson.dumps(tail)[1:], found)
        suffix, found = stamp
        if len(found) > 1 and "govsoc" in doc:
            self._apply(doc, family, found)
            text = orjson.dumps(doc)
        else:
            doc["organization"] = {"id": found[0].id, "name": found[0].name}
            if len(found) > 1:
                doc["govsoc"] = {"departments": [d.id for d in found]}
            text = p.json[:-1] + suffix
        # tuple.__new__: a C call, where `_replace` runs the namedtuple's Python code
        return tuple.__new__(ecs.Prepared, (*p[:9], text, doc))

    # -- registry assignments ----------------------------------------------------------
    def _learn(self, asset: dict[str, Any]) -> None:
        """Remember an asset's explicit assignment (not one stamped from the config)."""
        did = ecs.get_field(asset, "organization.id")
        if not isinstance(did, str) or ecs.get_field(
                asset, "govsoc.asset.department_source") == "config":
            return
        dept = self._by_id.get(did) or Department(
            did, str(ecs.get_field(asset, "organization.name") or did))
        host = asset.get("host") or {}
        names = [n.lower() for n in (host.get("name"), host.get("hostname"))
                 if isinstance(n, str) and n]
        ips = host.get("ip") or []
        ips = [ip for ip in (ips if isinstance(ips, list) else [ips]) if _assignable(ip)]
        if all(self._override_hosts.get(n) is dept for n in names) and all(
                self._override_ips.get(ip) is dept for ip in ips):
            return
        with self._lock:
            for n in names:
                self._override_hosts[n] = dept
            for ip in ips:
                self._override_ips[ip] = dept
            self._reset_caches()

    def load_assignments(self, assets: Iterable[dict[str, Any]]) -> int:
        """Replace the registry assignments with those of these asset documents (read in
        full first: a failed read keeps the assignments known so far); returns how many
        assets assign a department."""
        explicit = [d for d in assets if "organization" in d]
        with self._lock:
            self._override_hosts, self._override_ips = {}, {}
            self._reset_caches()
        for doc in explicit:
            self._learn(doc)
        self._loaded_at = time.monotonic()
        return sum(1 for d in explicit if ecs.get_field(
            d, "govsoc.asset.department_source") != "config")

    def reload_due(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at > RELOAD_SECONDS

    def _reset_caches(self) -> None:
        self._ip_cache: dict[str, Any] = {}
        self._host_cache: dict[str, Any] = {}
        # (host's, source's, destination's department) -> (JSON suffix, departments)
        self._stamps: dict[tuple, tuple[bytes, list[Department]]] = {}


def _assignable(ip: Any) -> bool:
    """Addresses an asset can own: not loopback or link-local (every host has those)."""
    if not isinstance(ip, str):
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local or addr.is_unspecified)
