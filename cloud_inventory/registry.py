"""The asset registry: the one writer of asset documents (see `model`), fed by every
discovery source through `record()`, read through `list_assets()` / `get_asset()`.

`record()` merges a batch of observations from one source (an Ansible sweep, a network
discovery run, a passive pass over flows, host collectors) into the stored assets and
returns what changed. The changes are also written: one event each (`event.dataset:
govsoc.inventory`) and, for what an analyst must look at, an alert (`event.kind: alert`):
a new unregistered host (shadow IT), a new listening service, a host gone, changed
software. Ids derive from the run and the change, so recording a run twice changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud_inventory.model import (
    ASSET_DATASET,
    MANAGED_SOURCES,
    SOURCES,
    Observation,
    asset_id,
)
from soc_core import ecs
from soc_core.store import Selection

EVENT_DATASET = "govsoc.inventory"
ALERT_DATASET = "govsoc.alert"  # the detections' alert dataset: one alert list for analysts
_SEVERITY = {"low": 21, "medium": 47, "high": 73}
# change kind -> (rule id, title, level); kinds without an entry are events only
ALERT_RULES = {
    "shadow_it": ("govsoc-inventory-shadow-it", "新的未登记主机（影子IT）", "high"),
    "service_new": ("govsoc-inventory-new-service", "主机上出现新的监听服务", "medium"),
    "asset_gone": ("govsoc-inventory-host-gone", "资产消失（不再响应）", "medium"),
    "software_changed": ("govsoc-inventory-software-changed", "主机软件变更", "low"),
}


class InventoryError(ValueError):
    """A request the registry cannot satisfy (unknown asset, bad value); one clear line."""


@dataclass
class Change:
    kind: str  # asset_new | shadow_it | service_new | service_gone | asset_gone |
    #            asset_back | software_changed
    asset: str  # asset id
    name: str  # host.name
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "asset": self.asset, "name": self.name, **self.detail}


@dataclass
class RecordResult:
    run_id: str
    source: str
    assets: int = 0  # observed assets written
    changes: list[Change] = field(default_factory=list)
    baseline: bool = False  # the source's first run: nothing to differ from

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "assets": self.assets,
                "baseline": self.baseline, "changes": [c.to_dict() for c in self.changes]}


# -- reads ------------------------------------------------------------------------------
def list_assets(store: Any, *, query: str | None = None, department: str | None = None,
                include_gone: bool = True) -> list[dict[str, Any]]:
    """Every asset document (optionally an analyst query over them, one department's),
    sorted by host name."""
    filters = {"organization.id": department} if department else None
    docs = list(store.scan(Selection(family="assets", dataset=ASSET_DATASET, query=query,
                                     filters=filters)))
    if not include_gone:
        docs = [d for d in docs if _asset(d).get("state") != "gone"]
    return sorted(docs, key=lambda d: (str(ecs.get_field(d, "host.name") or ""),
                                       d["event"]["id"]))


def get_asset(store: Any, key: str) -> dict[str, Any] | None:
    """One asset by id, host name, hostname, machine-id, address or MAC; None if unknown."""
    doc = store.get("assets", key)
    if doc is not None:
        return doc
    key_l = key.strip().lower()
    for d in store.scan(Selection(family="assets", dataset=ASSET_DATASET)):
        h = d.get("host") or {}
        if key_l in {str(h.get("name") or "").lower(), str(h.get("hostname") or "").lower(),
                     str(h.get("id") or "").lower()} \
                or key_l in {str(i).lower() for i in _list(h.get("ip"))} \
                or key_l in {str(m).lower() for m in _list(h.get("mac"))}:
            return d
    return None


def changes(store: Any, *, run_id: str | None = None, since: Any = None,
            until: Any = None) -> list[dict[str, Any]]:
    """The change events recorded (oldest first): of one run, or in a time range."""
    filters = {"govsoc.inventory.run_id": run_id} if run_id else None
    return list(store.scan(Selection(dataset=EVENT_DATASET, start=since, end=until,
                                     filters=filters)))


def sweeps(store: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The latest recorded runs (newest first): their summaries."""
    page = store.search(Selection(dataset=SWEEP_DATASET), size=limit, descending=True)
    return page.hits


SWEEP_DATASET = "govsoc.inventory_sweep"


# -- writes -----------------------------------------------------------------------------
def annotate(store: Any, key: str, *, department: dict[str, str] | None = None,
             importance: str | None = None, djcp_level: int | None = None,
             data_class: str | None = None, tags: Iterable[str] | None = None,
             registered: bool | None = None, note: str | None = None,
             by: str | None = None) -> dict[str, Any]:
    """Set what an operator knows of an asset (owner department, importance, 等保 level,
    data classification, tags, registered, a note); the attribute's source becomes
    `operator`. What changed is also written as one `annotated` change event naming `by`
    (who), each field with its old and new value: the asset's history (`asset_history`)."""
    doc = get_asset(store, key)
    if doc is None:
        raise InventoryError(f"no asset {key!r}")
    a = _asset(doc)
    before = _annotated_fields(doc)
    now = ecs.now_iso()
    src = {"source": "operator", "seen": now}
    if importance is not None:
        if importance not in ("high", "medium", "low"):
            raise InventoryError(f"importance must be high, medium or low, not {importance!r}")
        a["importance"] = importance
        a.setdefault("sources", {})["importance"] = src
    if djcp_level is not None:
        if not 1 <= int(djcp_level) <= 5:
            raise InventoryError(f"等保 level must be 1-5, not {djcp_level!r}")
        a["djcp_level"] = int(djcp_level)
        a.setdefault("sources", {})["djcp_level"] = src
    if data_class is not None:
        if data_class not in ("core", "important", "general"):
            raise InventoryError(
                f"data class must be core, important or general, not {data_class!r}")
        a["data_class"] = data_class
        a.setdefault("sources", {})["data_class"] = src
    if tags is not None:
        a["tags"] = sorted({str(t) for t in tags})
    if registered is not None:
        a["registered"] = bool(registered)
    if department is not None:
        doc["organization"] = {k: department[k] for k in ("id", "name") if k in department}
        a["department_source"] = "operator"
        a.setdefault("sources", {})["department"] = src
    if note is not None:
        a["note"] = note
    after = _annotated_fields(doc)
    changed = [{"field": f, "from": before[f], "to": after[f]} for f in after
               if before[f] != after[f]]
    if not changed:
        return doc
    event = {"@timestamp": now,
             "event": {"kind": "event", "dataset": EVENT_DATASET, "module": "cloud_inventory",
                       "action": "annotated", "category": ["host"], "type": ["change"],
                       "id": ecs.stable_id("annotated", doc["event"]["id"], now, by or "-")},
             "message": _MESSAGES["annotated"].format(name=ecs.get_field(doc, "host.name")
                                                      or doc["event"]["id"]),
             "host": {"name": ecs.get_field(doc, "host.name") or doc["event"]["id"]},
             "user": {"name": by or "-"},
             "govsoc": {"inventory": {"change": "annotated", "asset_id": doc["event"]["id"],
                                      "by": by or "-", "fields": changed}}}
    _place(event, doc)
    # an asset moved to another department: its old department keeps the record too
    old_dept = before["department"]
    if old_dept and old_dept != after["department"]:
        event["govsoc"]["departments"] = sorted({old_dept, after["department"]} - {""})
    _write(store, [doc, event])
    return doc


def _annotated_fields(doc: dict[str, Any]) -> dict[str, str]:
    """What `annotate` may change, each as text (a history entry's old and new values are
    of one type whatever the field, so a search index takes them as one field)."""
    a = _asset(doc)
    return {"department": str(ecs.get_field(doc, "organization.id") or ""),
            "importance": str(a.get("importance") or ""),
            "djcp_level": str(a.get("djcp_level") or ""),
            "data_class": str(a.get("data_class") or ""),
            "tags": ",".join(a.get("tags") or []),
            "registered": "" if a.get("registered") is None else str(bool(a["registered"])),
            "note": str(a.get("note") or "")}


def asset_history(store: Any, asset_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
    """The asset's change events, newest first: who annotated what (old -> new) and what
    the discovery sources saw change."""
    sel = Selection(dataset=EVENT_DATASET, filters={"govsoc.inventory.asset_id": asset_id})
    return store.search(sel, size=limit, descending=True).hits


def record(store: Any, observations: Iterable[Observation], *, source: str, run_id: str,
           in_scope: Callable[[dict[str, Any]], bool] | None = None,
           summary: dict[str, Any] | None = None, classify: Any = None,
           baseline: bool | None = None) -> RecordResult:
    """Merge one run's observations into the registry and write the changes.

    The first run of a source is its baseline (`baseline=None`: when the store holds no
    earlier run of that source): there is no earlier sweep to differ from, so it records the
    assets and raises no change events or alerts (a first passive pass over a city network
    would otherwise call every office PC shadow IT). Changes start with its second run.

    `in_scope(asset_doc)`: which stored assets this run was able to see (its inventory, its
    CIDRs); those it expected (seen by this source before) but did not see are gone. None:
    absence proves nothing (passive discovery). `classify(doc)`: config defaults for
    importance, level, data class and tags (`cloud_inventory.config`)."""
    if source not in SOURCES:
        raise InventoryError(f"unknown source {source!r}")
    if baseline is None:
        baseline = store.count(Selection(dataset=SWEEP_DATASET, filters={
            "govsoc.inventory.source": source})) == 0
    index = _Index(list(store.scan(Selection(family="assets", dataset=ASSET_DATASET))))
    result = RecordResult(run_id=run_id, source=source)
    seen_ids: set[str] = set()
    out: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []
    for obs in observations:
        old = index.find(obs)
        doc, new_changes, old_id = _merge(old, obs, run_id)
        if classify is not None:
            classify(doc)
        aid = doc["event"]["id"]
        if old_id and old_id != aid:
            deleted.append(old_id)
        index.replace(old, doc)
        if doc != old:  # an unchanged asset (the same window seen again) is not rewritten
            out[aid] = doc
        seen_ids.add(aid)
        result.changes.extend(new_changes)
    if in_scope is not None:
        now = ecs.now_iso()
        for doc in index.docs:
            a = _asset(doc)
            aid = doc["event"]["id"]
            if aid in seen_ids or a.get("state") == "gone" or source not in _list(
                    a.get("seen_by")) or not in_scope(doc):
                continue
            a["state"], a["gone_since"] = "gone", now
            out[aid] = doc
            result.changes.append(Change("asset_gone", aid, _name(doc),
                                         {"last_seen": a.get("last_seen"), "source": source}))
    result.assets = len(seen_ids)
    result.baseline = baseline
    if baseline:
        result.changes = []
    docs = list(out.values())
    now = ecs.now_iso()
    docs += [_change_event(c, run_id, source, out.get(c.asset), now) for c in result.changes]
    docs += [_alert(c, run_id, out.get(c.asset), now) for c in result.changes
             if c.kind in ALERT_RULES]
    docs.append(_sweep_doc(result, summary))
    _write(store, docs)
    if deleted:
        store.delete("assets", [d for d in deleted if d not in out])
    return result


def _write(store: Any, docs: list[dict[str, Any]]) -> None:
    res = store.write(docs, refresh=True)
    if res.rejected:
        raise InventoryError(f"asset record rejected: {res.rejected[0].reason}")


# -- merging ----------------------------------------------------------------------------
class _Index:
    """Stored assets by machine-id, MAC, address and name, for matching observations."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by: dict[tuple[str, str], dict[str, Any]] = {}
        for d in docs:
            self.add(d)

    @property
    def docs(self) -> list[dict[str, Any]]:
        return list(self.by_id.values())

    @staticmethod
    def _keys(d: dict[str, Any]) -> list[tuple[str, str]]:
        h = d.get("host") or {}
        keys = [("mid", str(h["id"]))] if h.get("id") else []
        keys += [("mac", str(m).lower()) for m in _list(h.get("mac"))]
        keys += [("ip", str(i)) for i in _list(h.get("ip"))]
        if h.get("name"):
            keys.append(("name", str(h["name"])))
        return keys

    def add(self, d: dict[str, Any]) -> None:
        self.by_id[d["event"]["id"]] = d
        for k in self._keys(d):
            self.by[k] = d

    def find(self, obs: Observation) -> dict[str, Any] | None:
        if obs.machine_id:
            hit = self.by.get(("mid", obs.machine_id))
            if hit is not None:
                return hit
        candidates = [self.by.get(("mac", m.lower())) for m in obs.macs]
        candidates += [self.by.get(("ip", i)) for i in obs.ips]
        if obs.name:
            candidates.append(self.by.get(("name", obs.name)))
        for c in candidates:
            # a host with another machine-id is another host that took over the address
            if c is not None and not (obs.machine_id and (c.get("host") or {}).get("id")):
                return c
        return None

    def replace(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if old is not None:
            self.by_id.pop(old["event"]["id"], None)
            for k in self._keys(old):
                if self.by.get(k) is old:
                    del self.by[k]
        self.add(new)


def _merge(old: dict[str, Any] | None, obs: Observation, run_id: str
           ) -> tuple[dict[str, Any], list[Change], str | None]:
    """The asset after this observation, the changes it shows, and the id it had."""
    # stored documents are nested already (the store expands dotted keys on the way in)
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in old.items()} if old else {}
    old_id = old["event"]["id"] if old else None
    host = dict(doc.get("host") or {})
    gov = dict(doc.get("govsoc") or {})
    a: dict[str, Any] = dict(gov.get("asset") or {})
    sources: dict[str, Any] = dict(a.get("sources") or {})
    stamp = {"source": obs.source, "seen": obs.seen}
    changes: list[Change] = []

    # identity and addresses
    for key, value in (("hostname", obs.hostname), ("id", obs.machine_id)):
        if value:
            host[key] = value
            sources["hostname" if key == "hostname" else "machine_id"] = stamp
    if obs.ips:
        host["ip"] = _union(_list(host.get("ip")), obs.ips)
        sources["ip"] = stamp
    if obs.macs:
        host["mac"] = _union(_list(host.get("mac")), [m.lower() for m in obs.macs])
        sources["mac"] = stamp
    if obs.os:
        host["os"] = {**(host.get("os") or {}), **{k: v for k, v in obs.os.items() if v}}
        sources["os"] = stamp
    host.update({k: v for k, v in obs.host.items() if v is not None})
    host["name"] = obs.name or host.get("name") or host.get("hostname") or obs.hostname \
        or (obs.ips[0] if obs.ips else None) or (obs.macs[0] if obs.macs else None)
    if obs.name:
        sources["name"] = stamp

    was_gone = a.get("state") == "gone"
    a["state"] = "active"
    a.pop("gone_since", None)
    first = obs.first or obs.seen
    a["first_seen"] = min(str(a.get("first_seen") or first), first)
    a["last_seen"] = max(str(a.get("last_seen") or ""), obs.seen)
    a["seen_by"] = _union(_list(a.get("seen_by")), [obs.source])
    if obs.source in MANAGED_SOURCES:
        a["registered"] = True
    a.setdefault("registered", False)
    a.setdefault("tags", [])

    # listening services, merged by (protocol, port)
    if obs.listening is not None:
        merged, opened = _merge_listening(a.get("listening") or [], obs)
        a["listening"] = merged
        a["listening_ports"] = sorted({s["port"] for s in merged})
        sources["listening"] = stamp
        if old is not None and not was_gone:
            changes += [Change("service_new", "", "", {
                "protocol": s["protocol"], "port": s["port"], "process": s.get("process"),
                "source": obs.source}) for s in opened]

    # installed software
    if obs.packages is not None:
        before = {p["name"]: p.get("version") for p in a.get("packages") or []}
        after = {p["name"]: p.get("version") for p in obs.packages}
        a["packages"] = obs.packages
        a["package_count"] = len(obs.packages)
        sources["packages"] = stamp
        if before and before != after:
            changes.append(Change("software_changed", "", "", {
                "added": sorted(set(after) - set(before)),
                "removed": sorted(set(before) - set(after)),
                "upgraded": sorted(f"{n} {before[n]} -> {after[n]}" for n in after
                                   if n in before and before[n] != after[n])}))
    for key, value in obs.facts.items():
        a[key] = value
        sources[key] = stamp
    a["sources"] = sources
    if old is None:
        changes.insert(0, Change("asset_new", "", "", {"registered": a["registered"],
                                                       "source": obs.source}))
        if not a["registered"]:
            changes.insert(1, Change("shadow_it", "", "", {"source": obs.source}))
    elif was_gone:
        changes.insert(0, Change("asset_back", "", "", {"source": obs.source}))

    gov["asset"] = a
    doc["host"] = host
    doc["govsoc"] = gov
    if a.get("department_source") == "config":  # re-stamped from the config as it is now
        doc.pop("organization", None)
        a.pop("department_source", None)
    record = {"machine_id": host.get("id"), "hostname": host.get("hostname"),
              "macs": _list(host.get("mac")), "ips": _list(host.get("ip"))}
    aid = asset_id(record)
    doc["@timestamp"] = a["last_seen"]
    doc["event"] = {"kind": "asset", "dataset": ASSET_DATASET, "id": aid,
                    "module": "cloud_inventory"}
    doc["message"] = f"asset {host['name']} seen by {obs.source}"
    for c in changes:
        c.asset, c.name = aid, host["name"]
    return doc, changes, old_id


def _merge_listening(stored: list[dict[str, Any]], obs: Observation
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stored services with what this source saw: a port it saw gains the source; a port it
    covered but did not see loses it (gone when no source still sees it). Ansible sees every
    socket; a probe only the ports it probed; flows and the host collectors' socket reports
    (sent on change) never prove a service closed."""
    by = {(s["protocol"], int(s["port"])): dict(s) for s in stored}
    seen: set[tuple[str, int]] = set()
    opened: list[dict[str, Any]] = []
    for s in obs.listening or []:
        key = (s["protocol"], int(s["port"]))
        if key in seen:  # the same port on another address (0.0.0.0 and ::)
            continue
        seen.add(key)
        cur = by.get(key)
        if cur is None or not cur.get("sources"):
            cur = {"protocol": key[0], "port": key[1], "sources": [],
                   "first_seen": s.get("first_seen") or obs.first or obs.seen}
            opened.append(cur)
        for f in ("address", "process", "service"):
            if s.get(f) and (obs.source == "ansible" or not cur.get(f)):
                cur[f] = s[f]
        if s.get("flows"):  # answered flows in the window of the last run that saw it
            cur["flows"] = int(s["flows"])
        cur["sources"] = _union(cur["sources"], [obs.source])
        cur["last_seen"] = max(str(cur.get("last_seen") or ""), s.get("last_seen") or obs.seen)
        by[key] = cur
    if obs.source in ("ansible", "network"):
        covered = None if obs.probed_ports is None else {(p, int(n)) for p, n in
                                                         obs.probed_ports}
        for key, cur in list(by.items()):
            if key in seen or obs.source not in cur.get("sources", []):
                continue
            if covered is None or key in covered:
                cur["sources"] = [x for x in cur["sources"] if x != obs.source]
                if not cur["sources"] or obs.source == "ansible":
                    # Ansible reads the socket table itself: what it does not list is closed
                    del by[key]
    return sorted(by.values(), key=lambda s: (s["protocol"], s["port"])), opened


# -- change documents -------------------------------------------------------------------
_MESSAGES = {
    "asset_new": "新资产 {name}",
    "shadow_it": "未登记主机 {name} 出现在网络中",
    "service_new": "{name} 新监听服务 {protocol}/{port}",
    "asset_gone": "资产 {name} 不再响应",
    "asset_back": "资产 {name} 重新出现",
    "software_changed": "{name} 软件变更",
    "annotated": "资产 {name} 的登记信息已修改",
}


def _change_event(c: Change, run_id: str, source: str, asset: dict[str, Any] | None,
                  now: str) -> dict[str, Any]:
    detail = c.to_dict()
    doc = {
        "@timestamp": now,
        "event": {"kind": "event", "dataset": EVENT_DATASET, "module": "cloud_inventory",
                  "action": c.kind, "category": ["host"], "type": ["change"],
                  "id": ecs.stable_id("inventory", run_id, c.kind, c.asset,
                                      detail.get("protocol"), detail.get("port"))},
        "message": _MESSAGES[c.kind].format(**{"protocol": "", "port": "", **detail}),
        "host": {"name": c.name},
        "govsoc": {"inventory": {"run_id": run_id, "source": source, "change": c.kind,
                                 "asset_id": c.asset,
                                 **{k: v for k, v in c.detail.items() if k != "source"}}},
    }
    _place(doc, asset)
    return doc


def _place(doc: dict[str, Any], asset: dict[str, Any] | None) -> list[str]:
    """The asset's addresses and department on a change document, so the store's department
    stamp (by address) and every department's view find it; returns the addresses."""
    ips = _list(((asset or {}).get("host") or {}).get("ip"))
    if ips:
        doc["host"]["ip"] = ips
    org = (asset or {}).get("organization")
    if isinstance(org, dict) and org.get("id"):
        doc["organization"] = {k: org[k] for k in ("id", "name") if k in org}
    return ips


def _alert(c: Change, run_id: str, asset: dict[str, Any] | None, now: str) -> dict[str, Any]:
    rule_id, title, level = ALERT_RULES[c.kind]
    # a new host or service alerts once per asset; a loss or a software change once a run
    key = (c.asset, c.detail.get("protocol"), c.detail.get("port")) \
        if c.kind in ("shadow_it", "service_new") else (c.asset, run_id)
    doc: dict[str, Any] = {
        "@timestamp": now,
        "message": f"{title}: " + _MESSAGES[c.kind].format(
            **{"protocol": "", "port": "", **c.to_dict()}),
        "event": {"kind": "alert", "dataset": ALERT_DATASET, "module": "cloud_inventory",
                  "id": ecs.stable_id("alert", rule_id, repr(key)),
                  "severity": _SEVERITY[level], "risk_score": float(_SEVERITY[level]),
                  "start": now, "end": now},
        "rule": {"id": rule_id, "uuid": rule_id, "name": title, "ruleset": "cloud_inventory"},
        "host": {"name": c.name},
        "govsoc": {"alert": {
            "status": "open", "level": level, "count": 1, "first_seen": now, "last_seen": now,
            "window": {"start": now, "end": now}, "group": {"host.name": c.name},
            "event_ids": [], "correlation": False, "assignee": None, "close_reason": None,
            "notes": [], "created": now},
            "inventory": {"run_id": run_id, "change": c.kind, "asset_id": c.asset,
                          **c.detail}},
    }
    ips = _place(doc, asset)
    if c.detail.get("port") is not None:
        doc["destination"] = {"port": c.detail["port"], **({"ip": ips[0]} if ips else {})}
    return doc


def _sweep_doc(result: RecordResult, summary: dict[str, Any] | None) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for c in result.changes:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    return {
        "@timestamp": ecs.now_iso(),
        "event": {"kind": "event", "dataset": SWEEP_DATASET, "module": "cloud_inventory",
                  "action": f"{result.source}_sweep",
                  "id": ecs.stable_id("inventory_sweep", result.run_id)},
        "message": (f"{result.source} sweep {result.run_id}: {result.assets} assets, "
                    f"{len(result.changes)} changes"),
        "govsoc": {"inventory": {"run_id": result.run_id, "source": result.source,
                                 "assets": result.assets, "changes": counts,
                                 "baseline": result.baseline,
                                 **(summary or {})}},
    }


# -- helpers ----------------------------------------------------------------------------
def _asset(doc: dict[str, Any]) -> dict[str, Any]:
    return doc.setdefault("govsoc", {}).setdefault("asset", {})


def _name(doc: dict[str, Any]) -> str:
    return str(ecs.get_field(doc, "host.name") or doc["event"]["id"])


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _union(a: list[Any], b: Iterable[Any]) -> list[Any]:
    out = list(a)
    for x in b:
        if x not in out:
            out.append(x)
    return out


def in_cidrs(cidrs: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    """`in_scope` for a run that covered these networks: an asset with an address there."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def check(doc: dict[str, Any]) -> bool:
        for ip in _list((doc.get("host") or {}).get("ip")):
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if any(addr.version == n.version and addr in n for n in nets):
                return True
        return False

    return check
