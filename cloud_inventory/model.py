"""The asset document: one ECS document a host (`event.kind: asset`, `event.dataset:
assets`, family `assets`), and the observations the discovery sources make of hosts.

Layout of an asset document::

    event.id            the asset id (see `asset_id`)
    host.name           the name it is known by (the inventory name, else the hostname,
                        else its first address)
    host.hostname, host.id (machine-id), host.ip[], host.mac[], host.os.*, host.architecture
    organization.id/name  owner department (责任部门): stamped from the config's
                        [[departments]] by the store, or set in the registry
    govsoc.asset.
        state           active | gone
        registered      true once the host is managed (an Ansible sweep reached it) or was
                        declared by an operator; an unregistered host is shadow IT
        importance      high | medium | low            (重要程度)
        djcp_level      1..5                           (等保级别)
        data_class      core | important | general     (数据分级: 核心/重要/一般数据)
        tags[]
        first_seen, last_seen
        listening[]     {protocol, port, address, process, service, sources[], first_seen,
                         last_seen, flows}: merged from every source
        listening_ports[]
        packages[]      {name, version} (Ansible)
        seen_by[]       the sources that ever saw it
        sources.<attr>  {source, seen}: where each attribute's current value came from
        ...             the Ansible sweep's other facts (users, sudoers, sshd, time_sync,
                        disks, interfaces, services, last_patch, run_id)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soc_core.ecs import stable_id

ASSET_DATASET = "assets"
SOURCES = ("ansible", "network", "passive", "host", "operator")
# a host one of these sees is managed (reached by Ansible, running our agent): registered
MANAGED_SOURCES = frozenset({"ansible", "host", "operator"})
IMPORTANCE = ("high", "medium", "low")
DATA_CLASSES = ("core", "important", "general")


def asset_id(record: dict[str, Any]) -> str:
    """The asset's identity from its strongest identifier: the machine-id (stable across
    renames and readdressing), else the hostname, else its MAC, else its address."""
    if record.get("machine_id"):
        return stable_id("host", record["machine_id"])
    if record.get("hostname"):
        return stable_id("host", record["hostname"])
    macs = record.get("macs") or []
    if macs:
        return stable_id("host-mac", macs[0].lower())
    ips = record.get("ips") or []
    return stable_id("host-ip", ips[0] if ips else "")


@dataclass
class Observation:
    """What one source saw of one host at one time. Empty fields mean "not observed"
    (never "observed empty"), except `listening`/`packages` when `complete_*` is set: then
    the list is the whole truth for the ports probed (`probed_ports`, None: every port) or
    the installed software."""

    source: str
    seen: str  # ISO-8601 UTC: when the source last saw the host
    name: str | None = None  # inventory name
    hostname: str | None = None
    machine_id: str | None = None
    ips: list[str] = field(default_factory=list)
    macs: list[str] = field(default_factory=list)
    os: dict[str, Any] | None = None
    listening: list[dict[str, Any]] | None = None
    probed_ports: list[tuple[str, int]] | None = None  # (protocol, port) a probe covered
    packages: list[dict[str, Any]] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # other govsoc.asset fields
    host: dict[str, Any] = field(default_factory=dict)  # other host.* fields
    first: str | None = None  # when the source first saw it, if earlier than `seen`

    def record(self) -> dict[str, Any]:
        return {"machine_id": self.machine_id, "hostname": self.hostname, "macs": self.macs,
                "ips": self.ips}
