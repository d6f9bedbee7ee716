"""`govsoc playbook ...` and `govsoc fleet ...` (entry points in pyproject.toml).

Scriptable and stable: `--json` prints one JSON object; `playbook run` exits 0 only when
no host failed or was unreachable, 1 when some did, 2 for a usage error.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import click
import orjson
import yaml

from soc_core.cliutil import fail, open_cli_store, store_option

_FLEET_INDEX = click.option(
    "--index", "fleet_index", type=click.IntRange(0, 255),
    default=lambda: int(os.environ.get("GOVSOC_FLEET_INDEX", "0")), show_default="0",
    help="Fleet number k: its hosts live in 10.213.k.0/24 (env GOVSOC_FLEET_INDEX).")


def _parse_extra(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not key.strip().isidentifier():
            fail(f"bad -e {pair!r}: use -e name=value")
        out[key.strip()] = value
    return out


# -- playbook ------------------------------------------------------------------------
@click.group("playbook")
def playbook() -> None:
    """Run the shipped Ansible playbooks and follow their runs."""


@playbook.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def list_cmd(as_json: bool) -> None:
    """The playbooks that can be run."""
    from playbooks.catalog import playbooks

    found = playbooks()
    if as_json:
        click.echo(orjson.dumps({n: p.description for n, p in found.items()}).decode())
        return
    for name, pb in found.items():
        click.echo(f"{name:16} {pb.description}")


@playbook.command("run")
@click.argument("name")
@click.option("--inventory", "inventory_file", type=click.Path(dir_okay=False),
              help="An Ansible inventory file.")
@click.option("--fleet", "use_fleet", is_flag=True, help="Run against the test fleet.")
@click.option("--assets", "use_assets", is_flag=True,
              help="Run against the hosts of the asset registry in the store.")
@_FLEET_INDEX
@click.option("--limit", default=None, help="Ansible host pattern, e.g. host1,host2.")
@click.option("--check", is_flag=True, help="Dry run: report what would change.")
@click.option("-e", "--extra", "extra", multiple=True, metavar="K=V", help="Extra variable.")
@click.option("--timeout", type=click.IntRange(1), default=None,
              help="Seconds before the run is stopped.")
@click.option("--forks", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@store_option
def run_cmd(name: str, inventory_file: str | None, use_fleet: bool, use_assets: bool,
            fleet_index: int, limit: str | None, check: bool, extra: tuple[str, ...],
            timeout: int | None, forks: int, as_json: bool, store_url: str | None) -> None:
    """Run playbook NAME; waits, shows live progress, exit 0 only when no host failed."""
    from playbooks import inventory as inv
    from playbooks.catalog import PlaybookError, get_playbook
    from playbooks.driver import Driver
    from playbooks.variables import validate_vars

    if sum(map(bool, (inventory_file, use_fleet, use_assets))) != 1:
        fail("give exactly one of --inventory FILE, --fleet or --assets")
    extravars = _parse_extra(extra)
    try:
        extravars = validate_vars(name, extravars)  # before any inventory or connection
    except PlaybookError as exc:
        fail(str(exc))
    with open_cli_store(store_url) as store:
        try:
            get_playbook(name)
            if use_fleet:
                source: Any = inv.from_fleet(fleet_index)
            elif use_assets:
                conn = inv.from_fleet(fleet_index)["all"]["children"]["fleet"]["vars"] \
                    if _fleet_up(fleet_index) else {}
                source = inv.from_assets(store, conn)
            else:
                source = inv.from_file(inventory_file)
            driver = Driver(store, forks=forks)
            progress = _Progress(enabled=not as_json and sys.stderr.isatty())
            result = driver.run(name, source, limit=limit, check=check, extravars=extravars,
                                timeout=timeout, on_event=progress.on_event)
            progress.close()
        except PlaybookError as exc:
            fail(str(exc))
    if as_json:
        click.echo(orjson.dumps(result.to_dict()).decode())
    else:
        click.echo(f"run {result.run_id}: {name} {result.status}"
                   + (f" ({result.reason})" if result.reason else ""))
        for host, s in sorted(result.hosts.items()):
            line = (f"  {host:24} {s.status:12} ok={s.ok} changed={s.changed} "
                    f"failed={s.failed} unreachable={s.unreachable}")
            click.echo(line + (f"  {s.error}" if s.error else ""))
    sys.exit(0 if result.ok else 1)


def _fleet_up(index: int) -> bool:
    from playbooks.fleet import Fleet

    return Fleet(index).state() is not None


class _Progress:
    """One status line on stderr: tasks and per-host outcomes as events arrive."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0}
        self.task = ""
        self.lock = threading.Lock()

    def on_event(self, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        name = data.get("event", "")
        ed = data.get("event_data") or {}
        with self.lock:
            if name == "playbook_on_task_start":
                self.task = ed.get("task", "")
            elif name == "runner_on_ok":
                key = "changed" if (ed.get("res") or {}).get("changed") else "ok"
                self.counts[key] += 1
            elif name == "runner_on_failed" and not ed.get("ignore_errors"):
                self.counts["failed"] += 1
            elif name == "runner_on_unreachable":
                self.counts["unreachable"] += 1
            counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
            click.echo(f"\r\x1b[K{self.task[:50]:50} {counts}", nl=False, err=True)

    def close(self) -> None:
        if self.enabled:
            click.echo("\r\x1b[K", nl=False, err=True)


@playbook.command("status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@store_option
def status_cmd(run_id: str, as_json: bool, store_url: str | None) -> None:
    """Status and per-host summary of a run."""
    from playbooks.catalog import PlaybookError
    from playbooks.driver import Driver

    with open_cli_store(store_url) as store:
        try:
            run = Driver(store).status(run_id)
        except PlaybookError as exc:
            fail(str(exc))
    if as_json:
        click.echo(orjson.dumps(run).decode())
        return
    click.echo(f"run {run['run_id']}: {run['playbook']} {run['status']}"
               + (f" ({run['reason']})" if run.get("reason") else ""))
    for host, s in sorted((run.get("summary") or {}).items()):
        click.echo(f"  {host:24} {s['status']:12} ok={s['ok']} changed={s['changed']} "
                   f"failed={s['failed']} unreachable={s['unreachable']}")


@playbook.command("cancel")
@click.argument("run_id")
@store_option
def cancel_cmd(run_id: str, store_url: str | None) -> None:
    """Cancel a queued or running run (it may run in another process)."""
    from playbooks.catalog import PlaybookError
    from playbooks.driver import Driver

    with open_cli_store(store_url) as store:
        try:
            Driver(store).cancel(run_id)
        except PlaybookError as exc:
            fail(str(exc))
    click.echo(f"cancel requested for run {run_id}")


# -- fleet ---------------------------------------------------------------------------
@click.group("fleet")
def fleet() -> None:
    """The namespace test fleet (development and tests; needs root)."""


@fleet.command("up")
@click.argument("count", type=click.IntRange(1, 200))
@_FLEET_INDEX
def fleet_up(count: int, fleet_index: int) -> None:
    """Start COUNT hosts (replaces a running fleet of the same index)."""
    from playbooks.fleet import Fleet, FleetError

    try:
        st = Fleet(fleet_index).up(count)
    except FleetError as exc:
        fail(str(exc))
    for h in st.hosts:
        click.echo(f"{h.name:16} {h.address}")
    click.echo(f"fleet {fleet_index}: {len(st.hosts)} hosts on {st.subnet}, "
               f"controller {st.controller}")


@fleet.command("down")
@_FLEET_INDEX
def fleet_down(fleet_index: int) -> None:
    """Remove every host, link, namespace and process of the fleet."""
    from playbooks.fleet import Fleet, FleetError

    try:
        n = Fleet(fleet_index).down()
    except FleetError as exc:
        fail(str(exc))
    click.echo(f"fleet {fleet_index}: {n} hosts removed")


@fleet.command("inventory")
@_FLEET_INDEX
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
def fleet_inventory(fleet_index: int, as_json: bool) -> None:
    """Print an Ansible inventory of the fleet."""
    from playbooks.fleet import Fleet, FleetError

    try:
        data = Fleet(fleet_index).inventory()
    except FleetError as exc:
        fail(str(exc))
    click.echo(orjson.dumps(data).decode() if as_json else yaml.safe_dump(data, sort_keys=True))
