"""Inventories for a run: the test fleet, a file the user gives, or the asset registry in
the store. Every source ends up as one Ansible inventory file in the run's private dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from playbooks.catalog import PlaybookError
from soc_core.store import Selection


def from_fleet(index: int = 0) -> dict[str, Any]:
    from playbooks.fleet import Fleet, FleetError

    try:
        return Fleet(index).inventory()
    except FleetError as exc:
        raise PlaybookError(str(exc)) from exc


def from_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise PlaybookError(f"inventory file not found: {p}")
    return p.resolve()


def from_assets(store: Any, connection_vars: dict[str, Any] | None = None,
                query: str | None = None) -> dict[str, Any]:
    """Hosts of the asset registry (`event.kind: asset` records), reached at their first
    address; `connection_vars` (user, key, ssh args) apply to all of them. Hosts the
    registry only discovered (`govsoc.asset.registered: false`: nobody manages them) and
    hosts gone are left out: there is nothing to log in to."""
    hosts: dict[str, dict[str, Any]] = {}
    for doc in store.scan(Selection(family="assets", query=query)):
        asset = (doc.get("govsoc") or {}).get("asset") or {}
        if asset.get("registered") is False or asset.get("state") == "gone":
            continue
        host = doc.get("host") or {}
        name = host.get("name") or host.get("hostname")
        ips = host.get("ip") or []
        ips = ips if isinstance(ips, list) else [ips]
        if name and ips:
            hosts[name] = {"ansible_host": ips[0]}
    if not hosts:
        raise PlaybookError("the asset registry holds no host with an address; run a sweep")
    return {"all": {"children": {"assets": {"hosts": hosts,
                                            "vars": dict(connection_vars or {})}}}}


def write_inventory(source: dict[str, Any] | str | Path, run_dir: Path) -> Path:
    """Place the inventory in the run dir (a given file is referenced, not copied)."""
    if isinstance(source, dict):
        path = run_dir / "inventory" / "hosts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(source, sort_keys=True))
        return path
    return from_file(source)


def resolve_hosts(inventory_path: Path, limit: str | None) -> list[str]:
    """The hosts a run would touch, as Ansible itself resolves inventory and --limit."""
    return list(resolve_host_vars(inventory_path, limit))


def resolve_host_vars(inventory_path: Path, limit: str | None) -> dict[str, dict[str, Any]]:
    """The hosts a run would touch with their inventory variables (groups', then the
    host's own), in inventory order."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    Display().verbosity = 0
    try:
        im = InventoryManager(loader=DataLoader(), sources=[str(inventory_path)])
    except Exception as exc:  # ansible raises many types for a bad file
        raise PlaybookError(f"bad inventory {inventory_path}: {exc}") from exc
    if limit:
        im.subset(limit)
    hosts: dict[str, dict[str, Any]] = {}
    for h in im.get_hosts("all"):
        merged: dict[str, Any] = {}
        for group in sorted(h.get_groups(), key=lambda g: g.depth):
            merged.update(group.get_vars())
        merged.update(h.get_vars())
        hosts[str(h.name)] = merged  # plain str: orjson refuses subclasses
    if not hosts:
        where = f" --limit {limit}" if limit else ""
        raise PlaybookError(f"no hosts match{where} in the inventory")
    return hosts
