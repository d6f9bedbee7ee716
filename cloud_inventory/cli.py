"""`govsoc inventory list|show|diff|discover|exposure|idle` (entry point in pyproject.toml).

`--json` prints one JSON object (or list) for scripts; a user error is one line, exit 2.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from soc_core import ecs
from soc_core.cliutil import fail, open_cli_store, store_option
from soc_core.config import ConfigError

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_DEPT = click.option("--department", default=None, help="Only this department's assets.")


def _dump(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _conf() -> Any:
    from cloud_inventory.config import inventory_config

    try:
        return inventory_config()
    except ConfigError as exc:
        fail(str(exc))


@click.group("inventory")
def inventory() -> None:
    """The asset registry: assets, their changes, discovery, exposure, idle systems."""


@inventory.command("list")
@click.option("--query", default=None, help="Analyst query over the asset documents.")
@_DEPT
@click.option("--active", is_flag=True, help="Leave out assets that are gone.")
@_JSON
@store_option
def list_cmd(query: str | None, department: str | None, active: bool, as_json: bool,
             store_url: str | None) -> None:
    """Every asset, one line each."""
    from cloud_inventory.registry import list_assets
    from soc_core.query import QueryError

    with open_cli_store(store_url) as store:
        try:
            docs = list_assets(store, query=query, department=department,
                               include_gone=not active)
        except QueryError as exc:
            fail(str(exc))
    if as_json:
        _dump(docs)
        return
    click.echo(f"{'name':24} {'addresses':18} {'state':7} {'reg':3} {'dept':8} {'imp':6} "
               f"{'等保':4} {'data':9} {'ports':24} last seen")
    for d in docs:
        h, a = d.get("host") or {}, ecs.get_field(d, "govsoc.asset") or {}
        ports = ",".join(str(p) for p in a.get("listening_ports") or [])
        click.echo(f"{str(h.get('name'))[:24]:24} {','.join(h.get('ip') or [])[:18]:18} "
                   f"{a.get('state', ''):7} {'yes' if a.get('registered') else 'no':3} "
                   f"{str(ecs.get_field(d, 'organization.id') or '-'):8} "
                   f"{str(a.get('importance') or '-'):6} {str(a.get('djcp_level') or '-'):4} "
                   f"{str(a.get('data_class') or '-'):9} {ports[:24]:24} {a.get('last_seen')}")
    click.echo(f"{len(docs)} assets")


@inventory.command("show")
@click.argument("key")
@_JSON
@store_option
def show_cmd(key: str, as_json: bool, store_url: str | None) -> None:
    """One asset (by id, name, hostname, machine-id, address or MAC), with the source of
    each attribute."""
    from cloud_inventory.registry import get_asset

    with open_cli_store(store_url) as store:
        doc = get_asset(store, key)
    if doc is None:
        fail(f"no asset {key!r}")
    if as_json:
        _dump(doc)
        return
    h, a = doc.get("host") or {}, ecs.get_field(doc, "govsoc.asset") or {}
    src = a.get("sources") or {}

    def line(label: str, value: Any, attr: str | None = None) -> None:
        origin = (src.get(attr) or {}).get("source") if attr else None
        value = "-" if value is None or value == "" else value
        click.echo(f"{label:14} {value}" + (f"   [{origin}]" if origin else ""))

    line("id", doc["event"]["id"])
    line("name", h.get("name"), "name")
    line("hostname", h.get("hostname"), "hostname")
    line("machine-id", h.get("id"), "machine_id")
    line("addresses", ", ".join(h.get("ip") or []), "ip")
    line("MACs", ", ".join(h.get("mac") or []), "mac")
    line("OS", (h.get("os") or {}).get("full") or (h.get("os") or {}).get("name"), "os")
    org = doc.get("organization") or {}
    line("责任部门", f"{org.get('name') or ''} ({org.get('id') or '-'})", "department")
    line("importance", a.get("importance") or "-", "importance")
    line("等保 level", a.get("djcp_level") or "-", "djcp_level")
    line("数据分级", a.get("data_class") or "-", "data_class")
    line("state", f"{a.get('state')}  registered={a.get('registered')}  "
                  f"seen by {', '.join(a.get('seen_by') or [])}")
    line("first/last", f"{a.get('first_seen')} / {a.get('last_seen')}")
    line("tags", ", ".join(a.get("tags") or []) or "-")
    line("packages", a.get("package_count", 0), "packages")
    click.echo("listening:")
    for s in a.get("listening") or []:
        what = str(s.get("process") or s.get("service") or "")
        click.echo(f"  {s['protocol']}/{s['port']:<6} {what:16}"
                   f" {str(s.get('address') or ''):16} [{', '.join(s.get('sources') or [])}]"
                   + (f" flows={s['flows']}" if s.get("flows") else ""))


@inventory.command("diff")
@click.argument("run_id", required=False)
@click.option("--since", default=None, help="Changes from this time (now-1d, ISO-8601).")
@click.option("--runs", "list_runs", is_flag=True, help="List the recorded runs instead.")
@_JSON
@store_option
def diff_cmd(run_id: str | None, since: str | None, list_runs: bool, as_json: bool,
             store_url: str | None) -> None:
    """What changed between a run and the registry before it: new hosts (shadow IT), new
    services, hosts gone, software changes. RUN_ID: that run (default: the latest run that
    changed something)."""
    from cloud_inventory.registry import changes, sweeps

    with open_cli_store(store_url) as store:
        runs = sweeps(store, limit=50)
        if list_runs:
            out = [ecs.get_field(r, "govsoc.inventory") | {"at": r["@timestamp"]} for r in runs]
            if as_json:
                _dump(out)
            else:
                for r in out:
                    click.echo(f"{r['run_id']}  {r['at']}  {r['source']:8} assets={r['assets']}"
                               f"  changes={r.get('changes') or {}}")
            return
        if run_id is None and since is None:
            if not runs:
                fail("no inventory run recorded yet: run `govsoc inventory discover`")
            # the latest run that changed something (else the latest run)
            latest = next((r for r in runs if ecs.get_field(r, "govsoc.inventory.changes")),
                          runs[0])
            run_id = ecs.get_field(latest, "govsoc.inventory.run_id")
        try:
            found = changes(store, run_id=run_id, since=since)
        except ValueError as exc:
            fail(str(exc))
    if run_id and not found and not any(
            ecs.get_field(r, "govsoc.inventory.run_id") == run_id for r in runs):
        fail(f"no inventory run {run_id!r}")
    rows = [{"at": d["@timestamp"], **(ecs.get_field(d, "govsoc.inventory") or {}),
             "message": d.get("message")} for d in found]
    if as_json:
        _dump(rows)
        return
    for r in rows:
        click.echo(f"{r['at']}  {r['change']:16} {r.get('message')}")
    click.echo(f"{len(rows)} changes" + (f" in run {run_id}" if run_id else ""))


@inventory.command("discover")
@click.option("--network", "network", is_flag=True,
              help="Probe the configured CIDRs (ARP, ICMP, TCP SYN; needs root).")
@click.option("--passive/--no-passive", default=None,
              help="Hosts and services seen in the collected flows (default unless --network).")
@click.option("--hosts/--no-hosts", "host_agents", default=None,
              help="Listening sockets the host collectors reported (default unless --network).")
@click.option("--cidr", "cidrs", multiple=True, help="Probe this CIDR (instead of the config).")
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535),
              help="TCP port to probe (repeatable; default: inventory.ports).")
@click.option("--rate", type=click.FloatRange(1, 10000), default=None,
              help="Probe packets per second at most (default: inventory.rate).")
@click.option("--timeout", type=click.FloatRange(0.1, 30), default=1.0, show_default=True,
              help="Seconds to wait for the last answers of each probe round.")
@click.option("--since", default=None, help="Passive window start (default: the last run's end).")
@click.option("--until", default=None, help="Passive window end (default: now).")
@_JSON
@store_option
def discover_cmd(network: bool, passive: bool | None, host_agents: bool | None,
                 cidrs: tuple[str, ...], ports: tuple[int, ...], rate: float | None,
                 timeout: float, since: str | None, until: str | None, as_json: bool,
                 store_url: str | None) -> None:
    """Discover hosts and services and record them in the registry; prints the changes."""
    from cloud_inventory.discovery import DiscoveryError, discover_network
    from cloud_inventory.passive import discover_flows, discover_host_collectors

    conf = _conf()
    passive = (not network) if passive is None else passive
    host_agents = (not network) if host_agents is None else host_agents
    if (cidrs or ports or rate) and not network:
        fail("--cidr, --port and --rate are for --network")
    results = []
    with open_cli_store(store_url) as store:
        try:
            if network:
                probe, rec = discover_network(store, cidrs=cidrs or None, ports=ports or None,
                                              rate=rate, timeout=timeout, conf=conf)
                results.append({**rec.to_dict(), "probe": {
                    "cidrs": probe.cidrs, "sent": probe.sent, "tag": probe.tag,
                    "answered": sorted(probe.found)}})
            if passive:
                results.append(discover_flows(store, since=since, until=until,
                                              conf=conf).to_dict())
            if host_agents:
                results.append(discover_host_collectors(store, since=since,
                                                        until=until).to_dict())
        except (DiscoveryError, ValueError) as exc:
            fail(str(exc))
    if as_json:
        _dump(results)
        return
    for r in results:
        extra = f", {r['probe']['sent']} probes sent" if "probe" in r else ""
        click.echo(f"{r['source']} run {r['run_id']}: {r['assets']} assets{extra}, "
                   f"{len(r['changes'])} changes")
        for c in r["changes"]:
            what = f" {c['protocol']}/{c['port']}" if c.get("port") else ""
            click.echo(f"  {c['kind']:16} {c['name']}{what}")


@inventory.command("exposure")
@click.option("--since", default="now-7d", show_default=True, help="Flows from this time.")
@_DEPT
@_JSON
@store_option
def exposure_cmd(since: str, department: str | None, as_json: bool,
                 store_url: str | None) -> None:
    """Management and database ports reached from zones that should not reach them,
    plaintext management protocols, HTTP admin consoles, internet-facing services."""
    from cloud_inventory.exposure import exposure_surface

    conf = _conf()
    with open_cli_store(store_url) as store:
        try:
            found = exposure_surface(store, since=since, conf=conf, department=department)
        except ValueError as exc:
            fail(str(exc))
    if as_json:
        _dump(found)
        return
    for f in found:
        ev = f["evidence"]
        proof = []
        if "flows" in ev:
            fl = ev["flows"]
            n = fl["flows"] if "flows" in fl else sum(z["flows"] for z in fl.values())
            proof.append(f"{n} flows")
        if "listening" in ev:
            proof.append("listening [" + ",".join(ev["listening"].get("sources") or []) + "]")
        if "probe" in ev:
            proof.append("probe: open")
        if "http_requests" in ev:
            proof.append(f"{ev['http_requests']['requests']} admin requests")
        click.echo(f"{f['severity']:6} {f['kind']:21} {str(f['host'] or f['ip']):20} "
                   f"{f['protocol']}/{f['port']:<5} {str(f.get('service') or ''):12} "
                   f"{('from ' + f['zone']) if f.get('zone') else '':14} {'; '.join(proof)}")
    click.echo(f"{len(found)} findings")


@inventory.command("idle")
@click.option("--days", type=click.IntRange(1, 3650), default=None,
              help="Window in days (default: inventory.idle_days).")
@click.option("--cpu", type=click.FloatRange(0, 1), default=None,
              help="Mean CPU below this fraction is low (default: inventory.idle_cpu).")
@_DEPT
@click.option("--all", "show_all", is_flag=True, help="Every asset, not only idle ones.")
@click.option("--tag", "do_tag", is_flag=True,
              help="Tag the zombies and notify their owner departments.")
@click.option("--stop", "stop_key", default=None, metavar="ASSET",
              help="Stop an approved zombie's services through the retire_host playbook.")
@click.option("--approved-by", default="", help="Who approved the stop (required with --stop).")
@click.option("--service", "services", multiple=True, help="Service to stop (with --stop).")
@click.option("--inventory", "inventory_file", type=click.Path(dir_okay=False), default=None,
              help="Ansible inventory for --stop (default: the asset registry).")
@click.option("--check", is_flag=True, help="With --stop: a dry run.")
@_JSON
@store_option
def idle_cmd(days: int | None, cpu: float | None, department: str | None, show_all: bool,
             do_tag: bool, stop_key: str | None, approved_by: str, services: tuple[str, ...],
             inventory_file: str | None, check: bool, as_json: bool,
             store_url: str | None) -> None:
    """Idle (僵尸) and low-load (低负载) systems with evidence, utilisation per department;
    tag → notify the owner department → stop after approval."""
    from cloud_inventory.idle import idle_systems, tag_idle
    from cloud_inventory.registry import InventoryError

    conf = _conf()
    with open_cli_store(store_url) as store:
        if stop_key:
            _retire(store, stop_key, approved_by, list(services), inventory_file, check,
                    as_json)
            return
        try:
            report = idle_systems(store, days=days, cpu=cpu, conf=conf, department=department)
            notices = tag_idle(store, report) if do_tag else []
        except (InventoryError, ValueError) as exc:
            fail(str(exc))
    shown = report["systems"] if show_all else [
        s for s in report["systems"] if s["verdict"] in ("zombie", "low_load")]
    if as_json:
        _dump({**report, "systems": shown, "notices": [n["message"] for n in notices]})
        return
    w = report["window"]
    click.echo(f"window {w['start']} .. {w['end']} ({w['days']} days), "
               f"CPU threshold {w['cpu_threshold']:.0%}")
    for s in shown:
        ev = s["evidence"]
        cpu_txt = (f"cpu mean {ev['cpu']['mean']:.1%} peak {ev['cpu']['peak']:.1%} "
                   f"({ev['cpu']['samples']} samples)" if "cpu" in ev else "no metrics")
        click.echo(f"{s['verdict']:10} {str(s['host']):24} {str(s['department'] or '-'):8} "
                   f"inbound sessions {ev['inbound_sessions']:<6} {cpu_txt}")
    click.echo("utilisation per department:")
    for dept, u in sorted(report["departments"].items()):
        mean = "-" if u["cpu_mean"] is None else f"{u['cpu_mean']:.1%}"
        click.echo(f"  {dept:12} assets {u['assets']:<4} measured {u['measured']:<4} "
                   f"cpu mean {mean:7} zombie {u['zombie']:<3} low-load {u['low_load']}")
    for n in notices:
        click.echo(f"notified: {n['message']}")


def _retire(store: Any, key: str, approved_by: str, services: list[str],
            inventory_file: str | None, check: bool, as_json: bool) -> None:
    from cloud_inventory.idle import retire_plan
    from cloud_inventory.registry import InventoryError
    from playbooks import Driver, PlaybookError

    try:
        asset, extravars = retire_plan(store, key, approved_by, services)
        name = ecs.get_field(asset, "host.name")
        ips = ecs.get_field(asset, "host.ip") or []
        if not inventory_file and not ips:
            fail(f"{key} has no address to reach it at; give --inventory FILE")
        source: Any = inventory_file or {"all": {"hosts": {name: {"ansible_host": ips[0]}}}}
        result = Driver(store).run("retire_host", source, limit=name, check=check,
                                   extravars=extravars)
    except (InventoryError, PlaybookError) as exc:
        fail(str(exc))
    if as_json:
        _dump(result.to_dict())
    else:
        click.echo(f"run {result.run_id}: retire_host {result.status}"
                   + (f" ({result.reason})" if result.reason else ""))
    sys.exit(0 if result.ok else 1)
