"""Idle (僵尸) and low-load (低负载) systems, and utilisation per department (云资源利用率).

Over the last `inventory.idle_days` days, for each active asset:

- inbound sessions: answered flows (`network.flow`, an established Zeek state) to any of its
  addresses;
- CPU: the host collectors' `system.cpu` metrics (`host.cpu.usage`, 0..1) of its host name:
  the mean and the peak over the samples, and how many there were.

`zombie`: no inbound session and mean CPU below `inventory.idle_cpu`. `low_load`: sessions,
but mean CPU below the threshold. An asset without metrics is never called idle (there is
no evidence of its load); it is counted as `unmeasured`.

The action (`tag_idle`, `retire`): tag the zombies (`zombie` tag on the asset), notify the
owner department (one notice event stamped with its organization), and only after an
approval that names who approved, stop the host's workload through the `retire_host`
playbook.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cloud_inventory.config import InventoryConfig, inventory_config
from cloud_inventory.passive import ANSWERED, FLOW_DATASET, _iso
from cloud_inventory.registry import EVENT_DATASET, InventoryError, annotate, get_asset, list_assets
from soc_core import ecs
from soc_core.store import Selection, resolve_millis

ZOMBIE_TAG = "zombie"
CPU_DATASET = "system.cpu"


def idle_systems(store: Any, *, days: int | None = None, cpu: float | None = None,
                 until: Any = None, conf: InventoryConfig | None = None,
                 department: str | None = None) -> dict[str, Any]:
    """{"window": ..., "systems": [every active asset with its evidence and verdict],
    "departments": {id: utilisation}}; verdict zombie | low_load | busy | unmeasured."""
    conf = conf or inventory_config()
    days = conf.idle_days if days is None else days
    cpu_max = conf.idle_cpu if cpu is None else cpu
    if days < 1:
        raise InventoryError("the idle window must be at least 1 day")
    end = resolve_millis(until or "now")
    start = end - days * 86_400_000
    sessions: dict[str, list[int]] = {}  # dst ip -> [flows, first, last]
    for (dst, state), n, first, last in store.groups(
            ["destination.ip", "zeek.connection.state"],
            Selection(dataset=FLOW_DATASET, start=_iso(start), end=_iso(end))):
        if state in ANSWERED and dst:
            s = sessions.setdefault(str(dst), [0, first, last])
            s[0] += n
            s[1], s[2] = min(s[1], first), max(s[2], last)
    # distinct usage values per host, weighted by how often: mean and peak without reading
    # every sample into Python
    usage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0.0, 0, 0])  # sum n max f l
    for (host, value), n, first, last in store.groups(
            ["host.name", "host.cpu.usage"],
            Selection(family="metrics", dataset=CPU_DATASET, start=_iso(start), end=_iso(end))):
        if host is None or value is None:
            continue
        u = usage[str(host)]
        if not u[1]:
            u[3], u[4] = first, last
        u[0] += float(value) * n
        u[1] += n
        u[2] = max(u[2], float(value))
        u[3], u[4] = min(u[3], first), max(u[4], last)

    systems = []
    for a in list_assets(store, department=department, include_gone=False):
        host = a.get("host") or {}
        ips = [str(i) for i in host.get("ip") or []]
        flows = [sessions[i] for i in ips if i in sessions]
        inbound = sum(f[0] for f in flows)
        names = [str(host[k]) for k in ("name", "hostname") if host.get(k)]
        u = next((usage[n] for n in names if n in usage), None)
        evidence: dict[str, Any] = {"inbound_sessions": inbound}
        if flows:
            evidence["sessions_first"] = _iso(min(f[1] for f in flows))
            evidence["sessions_last"] = _iso(max(f[2] for f in flows))
        if u and u[1]:
            mean = u[0] / u[1]
            evidence["cpu"] = {"mean": round(mean, 4), "peak": round(u[2], 4),
                               "samples": u[1], "first": _iso(u[3]), "last": _iso(u[4])}
            low = mean < cpu_max
            verdict = ("zombie" if not inbound else "low_load") if low else "busy"
        else:
            verdict = "unmeasured"
        systems.append({"asset_id": a["event"]["id"], "host": host.get("name"), "ips": ips,
                        "department": ecs.get_field(a, "organization.id"),
                        "department_name": ecs.get_field(a, "organization.name"),
                        "tags": ecs.get_field(a, "govsoc.asset.tags") or [],
                        "verdict": verdict, "evidence": evidence})
    return {"window": {"start": _iso(start), "end": _iso(end), "days": days,
                       "cpu_threshold": cpu_max},
            "systems": systems, "departments": utilisation(systems)}


def utilisation(systems: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per department: assets, measured ones, their mean CPU, zombies, low-load ones."""
    out: dict[str, dict[str, Any]] = {}
    for s in systems:
        d = out.setdefault(s["department"] or "unassigned", {
            "name": s.get("department_name"), "assets": 0, "measured": 0, "cpu_mean": None,
            "zombie": 0, "low_load": 0, "inbound_sessions": 0, "_sum": 0.0})
        d["assets"] += 1
        d["inbound_sessions"] += s["evidence"]["inbound_sessions"]
        if s["verdict"] in ("zombie", "low_load"):
            d[s["verdict"]] += 1
        cpu = s["evidence"].get("cpu")
        if cpu:
            d["measured"] += 1
            d["_sum"] += cpu["mean"]
    for d in out.values():
        total = d.pop("_sum")
        if d["measured"]:
            d["cpu_mean"] = round(total / d["measured"], 4)
    return out


def tag_idle(store: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tag every zombie of `report` and write one notice a department (`event.action:
    idle_notice`, stamped with the department, so its users see it); returns the notices."""
    by_dept: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in report["systems"]:
        if s["verdict"] != "zombie":
            continue
        if ZOMBIE_TAG not in s["tags"]:
            annotate(store, s["asset_id"], tags=[*s["tags"], ZOMBIE_TAG])
        by_dept[s["department"]].append(s)
    notices = []
    window = report["window"]
    for dept, items in by_dept.items():
        names = sorted(str(s["host"]) for s in items)
        doc: dict[str, Any] = {
            "@timestamp": ecs.now_iso(),
            "event": {"kind": "event", "dataset": EVENT_DATASET, "module": "cloud_inventory",
                      "action": "idle_notice", "category": ["host"], "type": ["info"],
                      "id": ecs.stable_id("idle_notice", dept, window["end"], *names)},
            "message": (f"{len(names)} 台疑似僵尸系统（{window['days']} 天无入站会话且 CPU 低于 "
                        f"{window['cpu_threshold']:.0%}），请责任部门确认是否下线: "
                        + ", ".join(names)),
            "govsoc": {"inventory": {"change": "idle_notice", "hosts": names,
                                     "asset_ids": [s["asset_id"] for s in items],
                                     "window": window,
                                     # a list, not keyed by host: names are not field names
                                     "evidence": [{"host": s["host"], **s["evidence"]}
                                                  for s in items]}},
        }
        if dept:
            doc["organization"] = {"id": dept}
            name = items[0].get("department_name")
            if name:
                doc["organization"]["name"] = name
        notices.append(doc)
    if notices:
        res = store.write(notices, refresh=True)
        if res.rejected:
            raise InventoryError(f"idle notice rejected: {res.rejected[0].reason}")
    return notices


def retire_plan(store: Any, key: str, approved_by: str | None, services: list[str]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `retire_host` run for an approved zombie: its inventory name and the playbook's
    variables. Refused unless the asset is tagged zombie and someone approved.
    `approved_by=None`: a request that the playbook runs' approval step decides (the API's
    retire request); the approver is filled in when it is approved (playbooks.RunRequests)."""
    asset = get_asset(store, key)
    if asset is None:
        raise InventoryError(f"no asset {key!r}")
    if ZOMBIE_TAG not in (ecs.get_field(asset, "govsoc.asset.tags") or []):
        raise InventoryError(f"{key} is not tagged {ZOMBIE_TAG}: run `govsoc inventory idle "
                             "--tag` first, so its department is notified")
    if approved_by is not None and not approved_by.strip():
        raise InventoryError("stopping a system needs the approver's name (--approved-by)")
    if not services:
        raise InventoryError("name the services to stop (--service NAME, repeatable)")
    plan = {"retire_services": services, "retire_asset_id": asset["event"]["id"]}
    if approved_by is not None:
        plan["retire_approved_by"] = approved_by.strip()
    return asset, plan
