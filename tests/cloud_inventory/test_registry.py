"""The asset registry on both backends: merging observations from several sources into one
asset, the changes a run shows (events and alerts), idempotent recording, hosts gone,
operator annotations, and the store's GROUP BY the discovery sources count with."""

from __future__ import annotations

import pytest

from cloud_inventory import (
    InventoryError,
    Observation,
    annotate,
    asset_id,
    changes,
    get_asset,
    list_assets,
    record,
)
from cloud_inventory.registry import in_cidrs
from soc_core import ecs
from soc_core.store import Selection

T1, T2, T3 = "2026-11-30T08:00:00.000Z", "2026-11-30T09:00:00.000Z", "2026-11-30T10:00:00.000Z"


def _probe(ip: str, mac: str, open_ports: list[int], seen: str = T1) -> Observation:
    return Observation(source="network", seen=seen, ips=[ip], macs=[mac],
                       listening=[{"protocol": "tcp", "port": p, "address": ip}
                                  for p in open_ports],
                       probed_ports=[("tcp", 22), ("tcp", 23), ("tcp", 80)])


def _swept(packages: dict[str, str], ports: list[int], seen: str) -> Observation:
    return Observation(source="ansible", seen=seen, name="gov-web-01", hostname="gov-web-01",
                       machine_id="0123456789abcdef0123456789abcdef", ips=["10.8.0.11"],
                       macs=["02:00:00:00:00:11"], os={"name": "Debian GNU/Linux"},
                       listening=[{"protocol": "tcp", "port": p, "address": "10.8.0.11",
                                   "process": "sshd" if p == 22 else "python3"}
                                  for p in ports],
                       packages=[{"name": n, "version": v} for n, v in packages.items()])


def _alerts(store) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for a in store.scan(Selection(family="alerts")):
        out.setdefault(a["govsoc"]["inventory"]["change"], []).append(a)
    return out


def test_sources_merge_into_one_asset_and_runs_become_changes(inv_store):
    store = inv_store
    # the first probe is the network's baseline: its host is recorded, nothing "changed"
    r0 = record(store, [_probe("10.8.0.11", "02:00:00:00:00:11", [22])], source="network",
                run_id="net-0", in_scope=in_cidrs(["10.8.0.0/24"]))
    assert r0.baseline and r0.changes == []
    assert store.count(Selection(family="alerts")) == 0
    # the next probe finds a second, unknown host: shadow IT
    r1 = record(store, [_probe("10.8.0.11", "02:00:00:00:00:11", [22]),
                        _probe("10.8.0.12", "02:00:00:00:00:12", [80])],
                source="network", run_id="net-1", in_scope=in_cidrs(["10.8.0.0/24"]))
    assert not r1.baseline
    assert [(c.kind, c.name) for c in r1.changes] == [("asset_new", "10.8.0.12"),
                                                      ("shadow_it", "10.8.0.12")]
    assert len(_alerts(store)["shadow_it"]) == 1

    # the first Ansible sweep (its baseline) reaches the first host: the same asset (by
    # MAC), re-keyed by machine-id, registered, its sockets and software now known
    r2 = record(store, [_swept({"openssh-server": "1:9.2", "bash": "5.2"}, [22, 8000], T2)],
                source="ansible", run_id="sweep-1")
    assert r2.baseline and r2.changes == []
    assets = list_assets(store)
    assert len(assets) == 2
    web = get_asset(store, "gov-web-01")
    assert web["event"]["id"] == asset_id({"machine_id": "0123456789abcdef0123456789abcdef"})
    assert get_asset(store, "10.8.0.11")["event"]["id"] == web["event"]["id"]
    assert get_asset(store, "02:00:00:00:00:11")["event"]["id"] == web["event"]["id"]
    a = web["govsoc"]["asset"]
    assert a["registered"] is True and a["state"] == "active"
    assert a["first_seen"] == T1 and a["last_seen"] == T2
    assert a["seen_by"] == ["network", "ansible"]
    assert a["sources"]["os"]["source"] == "ansible"
    assert a["sources"]["mac"]["source"] == "ansible"
    ssh = next(s for s in a["listening"] if s["port"] == 22)
    assert ssh["sources"] == ["network", "ansible"] and ssh["process"] == "sshd"
    assert a["listening_ports"] == [22, 8000]

    # next sweep: the software changed, 8000 closed, 8443 opened; next probe: .12 is gone
    r3 = record(store, [_swept({"openssh-server": "1:9.3", "curl": "7.88"}, [22, 8443], T3)],
                source="ansible", run_id="sweep-2")
    assert [(c.kind, c.detail.get("port")) for c in r3.changes] == [
        ("service_new", 8443), ("software_changed", None)]
    assert r3.changes[1].detail == {"added": ["curl"], "removed": ["bash"],
                                    "upgraded": ["openssh-server 1:9.2 -> 1:9.3"]}
    assert get_asset(store, "gov-web-01")["govsoc"]["asset"]["listening_ports"] == [22, 8443]
    r4 = record(store, [_probe("10.8.0.11", "02:00:00:00:00:11", [22], T3)],
                source="network", run_id="net-2", in_scope=in_cidrs(["10.8.0.0/24"]))
    assert [(c.kind, c.name) for c in r4.changes] == [("asset_gone", "10.8.0.12")]
    assert get_asset(store, "10.8.0.12")["govsoc"]["asset"]["state"] == "gone"
    assert [d["host"]["name"] for d in list_assets(store, include_gone=False)] == ["gov-web-01"]

    # each change is one event of its run, and the ones that matter are alerts
    kinds = [ecs.get_field(d, "govsoc.inventory.change") for d in changes(store)]
    assert sorted(kinds) == sorted(["asset_new", "shadow_it", "service_new",
                                    "software_changed", "asset_gone"])
    assert [ecs.get_field(d, "govsoc.inventory.change")
            for d in changes(store, run_id="net-2")] == ["asset_gone"]
    alerts = _alerts(store)
    assert {k: len(v) for k, v in alerts.items()} == {
        "shadow_it": 1, "service_new": 1, "software_changed": 1, "asset_gone": 1}
    assert alerts["service_new"][0]["destination"]["port"] == 8443
    assert alerts["service_new"][0]["govsoc"]["alert"]["status"] == "open"

    # recording the same run again writes the same documents: nothing new
    before = (store.count(Selection(dataset="govsoc.inventory")),
              store.count(Selection(family="alerts")))
    record(store, [_probe("10.8.0.11", "02:00:00:00:00:11", [22], T3)],
           source="network", run_id="net-2", in_scope=in_cidrs(["10.8.0.0/24"]))
    assert (store.count(Selection(dataset="govsoc.inventory")),
            store.count(Selection(family="alerts"))) == before

    # what an operator knows, with its source; a bad value is refused, nothing changed
    annotate(store, "gov-web-01", department={"id": "wjw", "name": "市卫健委"},
             importance="high", djcp_level=3, data_class="important", tags=["web"])
    web = get_asset(store, "gov-web-01")
    assert web["organization"] == {"id": "wjw", "name": "市卫健委"}
    assert (web["govsoc"]["asset"]["djcp_level"], web["govsoc"]["asset"]["data_class"]) == (
        3, "important")
    assert web["govsoc"]["asset"]["sources"]["djcp_level"]["source"] == "operator"
    assert [d["host"]["name"] for d in list_assets(store, department="wjw")] == ["gov-web-01"]
    with pytest.raises(InventoryError, match="等保 level must be 1-5"):
        annotate(store, "gov-web-01", djcp_level=7)
    with pytest.raises(InventoryError, match="no asset"):
        annotate(store, "nowhere", importance="low")
    assert get_asset(store, "gov-web-01")["govsoc"]["asset"]["djcp_level"] == 3


def test_groups_counts_first_and_last_per_combination(inv_store):
    store = inv_store
    docs = []
    for i, (dst, port) in enumerate([("10.0.0.1", 22), ("10.0.0.1", 22), ("10.0.0.2", 80),
                                     ("10.0.0.1", 22)]):
        docs.append({"@timestamp": f"2026-11-30T08:00:0{i}.000Z",
                     "event": {"dataset": "network.flow", "id": f"f{i}", "kind": "event"},
                     "source": {"ip": "10.0.0.9"}, "destination": {"ip": dst, "port": port},
                     "network": {"transport": "tcp"}})
    assert not store.write(docs, refresh=True).rejected
    got = sorted(store.groups(["destination.ip", "destination.port", "network.transport",
                               "network.protocol"], Selection(dataset="network.flow")))
    t = ecs.to_millis
    assert got == [(("10.0.0.1", 22, "tcp", None), 3, t("2026-11-30T08:00:00Z"),
                    t("2026-11-30T08:00:03Z")),
                   (("10.0.0.2", 80, "tcp", None), 1, t("2026-11-30T08:00:02Z"),
                    t("2026-11-30T08:00:02Z"))]
    assert sorted(store.groups(["destination.port"], Selection(dataset="network.flow"))) == [
        ((22,), 3, t("2026-11-30T08:00:00Z"), t("2026-11-30T08:00:03Z")),
        ((80,), 1, t("2026-11-30T08:00:02Z"), t("2026-11-30T08:00:02Z"))]
