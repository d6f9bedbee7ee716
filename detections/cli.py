"""`govsoc rules|detect|alerts|posture`: scriptable commands (keep their output stable)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click
import orjson

from detections.rules import BACKENDS, OWN_PACK, RuleError, load_pack
from soc_core import ecs
from soc_core.cliutil import fail, open_cli_store, store_option
from soc_core.config import ConfigError, load_config
from soc_core.store import StoreError


def _load(paths: tuple[str, ...], backends: list[str], with_own: bool = True):
    try:
        return load_pack(([str(OWN_PACK)] if with_own else []) + list(paths), backends=backends)
    except RuleError as exc:
        fail(str(exc))


def _echo_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, default=str) + b"\n")
    sys.stdout.flush()


# -- rules -------------------------------------------------------------------------
@click.group("rules")
def rules() -> None:
    """Sigma rule packs: check, list, tune (exceptions, snooze, disable), health."""


@rules.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--skipped/--no-skipped", default=True, help="List each skipped rule.")
def rules_check(paths: tuple[str, ...], as_json: bool, skipped: bool) -> None:
    """Load rule files/folders and report, per backend, what converts and what can match."""
    from rich.console import Console
    from rich.table import Table

    from detections.catalog import missing_fields, usable

    pack = _load(paths, list(BACKENDS), with_own=False)
    base = [r for r in pack.rules if not r.is_correlation]
    corr = [r for r in pack.rules if r.is_correlation]
    report: dict[str, Any] = {"rules": len(pack.rules) + len(pack.skipped),
                              "parsed": len(pack.rules), "not_parsed": len(pack.skipped),
                              "correlation": len(corr), "backends": {}}
    for b in BACKENDS:
        report["backends"][b] = {
            "converted": sum(1 for r in base if b in r.queries) + sum(
                1 for r in corr if r in pack.runnable(b)),
            "failed": sum(1 for r in base if b in r.errors),
            "collected_logsource": sum(1 for r in base if b in r.queries and r.datasets),
            "usable": sum(1 for r in base if usable(r, b)),
        }
    skips = [{"file": s.where, "reason": s.reason, "backend": None, "line": s.line}
             for s in pack.skipped]
    for r in base:
        for b, why in sorted(r.errors.items()):
            skips.append({"file": r.path, "rule": r.id, "backend": b, "reason": why})
    # converted, on a collected log source, but naming a field no govsoc event carries:
    # such a rule runs and can never match, which the user must hear about
    never = [{"file": r.path, "rule": r.id, "fields": missing_fields(r)} for r in base
             if r.queries and r.datasets and missing_fields(r)]
    if as_json:
        _echo_json({**report, "skipped": skips, "never_match": never})
        sys.exit(1 if pack.skipped else 0)
    out = Console(width=200, highlight=False)
    if skipped:
        for s in skips:
            where = f"[{s['backend']}] " if s["backend"] else ""
            out.print(f"skipped {where}{s['file']}: {s['reason']}", markup=False)
        for n in never:
            out.print(f"never matches {n['file']} {n['rule']}: no event carries "
                      f"{', '.join(n['fields'])}", markup=False)
    t = Table(title=f"{report['rules']} rules ({report['not_parsed']} not parsed, "
                    f"{report['correlation']} correlation)")
    for col in ("backend", "converted", "failed", "collected log source", "usable (fields)"):
        t.add_column(col, justify="right" if col != "backend" else "left")
    for b, v in report["backends"].items():
        pct = 100.0 * v["converted"] / max(1, report["rules"])
        t.add_row(b, f"{v['converted']} ({pct:.1f}%)", str(v["failed"]),
                  str(v["collected_logsource"]), str(v["usable"]))
    out.print(t)
    # files that did not parse fail the check (exit 1), so a CI step catches them
    sys.exit(1 if pack.skipped else 0)


@rules.command("list")
@click.option("--rules", "paths", multiple=True, help="Extra rule file or folder.")
@click.option("--json", "as_json", is_flag=True)
def rules_list(paths: tuple[str, ...], as_json: bool) -> None:
    """The rules the engine runs: id, level, ATT&CK techniques, title."""
    pack = _load(paths, [])
    for r in pack.rules:
        if not (r.is_correlation or r.generate):
            continue
        tech = ",".join((r.threat().get("technique") or {}).get("id", []))
        if as_json:
            _echo_json({"id": r.id, "title": r.title, "level": r.level, "techniques": tech,
                        "correlation": r.is_correlation, "path": r.path})
        else:
            click.echo(f"{r.id}  {r.level:13} {tech:22} {r.title}")


@rules.command("health")
@store_option
@click.option("--json", "as_json", is_flag=True)
def rules_health(store_url: str | None, as_json: bool) -> None:
    """Per rule: last run, duration, matches, errors, gaps."""
    from detections.tuning import health

    with open_cli_store(store_url) as store:
        data = health(store)
    if as_json:
        _echo_json(data)
        return
    for rid, h in sorted(data.items()):
        snooze = f" snoozed until {h['snooze']['until']}" if h.get("snooze") else ""
        err = f" last error: {h['last_error']}" if h.get("last_error") else ""
        click.echo(f"{rid} runs={h['runs']} last={h.get('last_run')} "
                   f"{h.get('duration_ms')}ms matches={h.get('matches')} "
                   f"errors={h['errors']} gaps={len(h['gaps'])}{snooze}{err}")


@rules.command("except")
@click.argument("rule_id")
@click.option("--field", required=True, help="ECS field, e.g. source.ip.")
@click.option("--value", "values", multiple=True, required=True, help="Value (* wildcards).")
@click.option("--reason", required=True, help="Why this match is benign.")
@click.option("--by", default=None, help="Who adds it (default: $USER).")
@store_option
def rules_except(rule_id: str, field: str, values: tuple[str, ...], reason: str,
                 by: str | None, store_url: str | None) -> None:
    """Exclude matches of RULE_ID whose FIELD equals a value."""
    import getpass

    from detections.tuning import TuningError, add_exception

    _known_rule(rule_id)
    with open_cli_store(store_url) as store:
        try:
            exc = add_exception(store, rule_id, field, list(values),
                                by=by or getpass.getuser(), reason=reason)
        except TuningError as err:
            fail(str(err))
    click.echo(f"exception {exc['id']} added to {rule_id}")


@rules.command("snooze")
@click.argument("rule_id")
@click.option("--until", "until", required=True, help="ISO time or e.g. now+... (ISO only).")
@click.option("--reason", default="", help="Why.")
@click.option("--by", default=None)
@store_option
def rules_snooze(rule_id: str, until: str, reason: str, by: str | None,
                 store_url: str | None) -> None:
    """Silence RULE_ID until a time."""
    import getpass

    from detections.tuning import TuningError, snooze

    _known_rule(rule_id)
    with open_cli_store(store_url) as store:
        try:
            entry = snooze(store, rule_id, until, by=by or getpass.getuser(), reason=reason)
        except TuningError as err:
            fail(str(err))
    click.echo(f"{rule_id} snoozed until {entry['until']}")


@rules.command("unsnooze")
@click.argument("rule_id")
@store_option
def rules_unsnooze(rule_id: str, store_url: str | None) -> None:
    from detections.tuning import unsnooze

    with open_cli_store(store_url) as store:
        done = unsnooze(store, rule_id)
    click.echo(f"{rule_id} {'unsnoozed' if done else 'was not snoozed'}")


@rules.command("disable")
@click.argument("rule_id")
@click.option("--reason", required=True, help="Why it is switched off.")
@click.option("--by", default=None, help="Who (default: $USER).")
@store_option
def rules_disable(rule_id: str, reason: str, by: str | None, store_url: str | None) -> None:
    """Switch RULE_ID off: no engine runs it until it is enabled again."""
    _switch(rule_id, False, reason, by, store_url)


@rules.command("enable")
@click.argument("rule_id")
@click.option("--by", default=None, help="Who (default: $USER).")
@store_option
def rules_enable(rule_id: str, by: str | None, store_url: str | None) -> None:
    """Switch RULE_ID back on."""
    _switch(rule_id, True, "", by, store_url)


def _switch(rule_id: str, on: bool, reason: str, by: str | None, store_url: str | None
            ) -> None:
    import getpass

    from detections.tuning import set_enabled

    if not on and not reason.strip():
        fail("say why: --reason")
    _known_rule(rule_id)
    with open_cli_store(store_url) as store:
        changed = set_enabled(store, rule_id, on, by=by or getpass.getuser(), reason=reason)
    state = "enabled" if on else "disabled"
    click.echo(f"{rule_id} {state}" if changed else f"{rule_id} was already {state}")


def _known_rule(rule_id: str) -> None:
    from detections.service import configured_packs

    pack = load_pack(configured_packs(), backends=[])
    if rule_id not in pack.by_id():
        fail(f"no rule with id {rule_id} in the configured packs")


# -- detect ------------------------------------------------------------------------
@click.group("detect")
def detect() -> None:
    """Run detections over the stored events."""


@detect.command("run")
@click.option("--once", is_flag=True, help="One pass over the stored events, then exit. "
              "Stored events no pass examined (imported evidence) are covered too, up to "
              "detections.backfill_max_events (default 1,000,000).")
@click.option("--rules", "paths", multiple=True, help="Extra rule file or folder (repeatable).")
@click.option("--since", default=None, help="Also cover events from this time (ISO / now-1h).")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between passes.")
@store_option
def detect_run(once: bool, paths: tuple[str, ...], since: str | None, interval: float,
               store_url: str | None) -> None:
    """Run the rule packs: once (--once) or on a schedule until interrupted."""
    from detections.engine import Engine, Settings
    from soc_core.store import resolve_time

    if since is not None:
        try:
            resolve_time(since)
        except ValueError as exc:
            fail(str(exc))
    with open_cli_store(store_url) as store:
        pack = _load(paths, [Engine.backend_of(store)])
        for s in pack.skipped:
            click.echo(f"skipped {s.path}: {s.reason}", err=True)
        try:
            bound = int(load_config().get("detections.backfill_max_events", 1_000_000))
        except (ConfigError, ValueError) as exc:
            fail(f"detections.backfill_max_events: {exc}")
        engine = Engine(store, pack, settings=Settings(interval_s=interval,
                                                       backfill_max_events=bound))

        def report(summary: Any) -> None:
            if summary.unexamined:
                click.echo(summary.unexamined.line(), err=not summary.unexamined.covered)
            for rid, err in summary.errors.items():
                click.echo(f"rule {rid} failed: {err}", err=True)
            click.echo(summary.line(), nl=True)
            sys.stdout.flush()

        # the first pass also covers what was stored before any window
        if once:
            try:
                report(engine.run_once(since=since, backfill=True))
            except StoreError as exc:
                fail(str(exc))
            return
        _scheduled(engine, interval, since, report)


def _scheduled(engine: Any, interval: float, since: str | None, report: Any) -> None:
    """Passes while this process leads the rule set (detections.leader); other engines
    over the same store stand by and take over within the lease time if it dies."""
    import signal

    from detections.leader import run_scheduled

    try:
        ttl = float(load_config().get("detections.lease_s", 10.0))
    except (ConfigError, ValueError) as exc:
        fail(f"detections.lease_s: {exc}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a clean stop hands the lease on

    def changed(leading: bool) -> None:
        click.echo(f"engine {engine.name} {'leads' if leading else 'stands by for'} "
                   f"the rule set", err=True)

    try:
        run_scheduled(engine, stop, interval, ttl_s=ttl, on_pass=report, on_change=changed,
                      first={"since": since, "backfill": True})
    except KeyboardInterrupt:
        pass


# -- alerts ------------------------------------------------------------------------
@click.group("alerts")
def alerts() -> None:
    """List alerts and move them through their workflow."""


@alerts.command("list")
@click.option("--status", type=click.Choice(["open", "acknowledged", "closed"]), default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON alert per line.")
@store_option
def alerts_list(status: str | None, limit: int, as_json: bool, store_url: str | None) -> None:
    """Newest first, one alert per line."""
    from detections.alerts import list_alerts

    with open_cli_store(store_url) as store:
        docs = list_alerts(store, status=status, limit=limit)
    for doc in docs:
        al = doc["govsoc"]["alert"]
        tech = ",".join(ecs.get_field(doc, "threat.technique.id") or [])
        if as_json:
            _echo_json({
                "id": doc["event"]["id"], "rule.id": doc["rule"]["id"],
                "rule.name": doc["rule"]["name"], "threat.technique.id": tech,
                "source.ip": ecs.get_field(doc, "source.ip"),
                "destination.ip": ecs.get_field(doc, "destination.ip"),
                "host.name": ecs.get_field(doc, "host.name"), "level": al["level"],
                "status": al["status"], "count": al["count"], "first_seen": al["first_seen"],
                "last_seen": al["last_seen"], "assignee": al.get("assignee"),
                "close_reason": al.get("close_reason")})
        else:
            click.echo(
                f"{doc['event']['id']} {al['status']:12} {al['level']:8} "
                f"rule.id={doc['rule']['id']} rule.name={doc['rule']['name']!r} "
                f"threat.technique.id={tech or '-'} "
                f"source.ip={ecs.get_field(doc, 'source.ip') or '-'} "
                f"destination.ip={ecs.get_field(doc, 'destination.ip') or '-'} "
                f"host.name={ecs.get_field(doc, 'host.name') or '-'} count={al['count']} "
                f"last_seen={al['last_seen']}")
    if not as_json:
        click.echo(f"-- {len(docs)} alerts", err=True)


@alerts.command("set")
@click.argument("alert_id")
@click.option("--status", default=None, help="open, acknowledged or closed.")
@click.option("--reason", "close_reason", default=None,
              help="With --status closed: resolved, false_positive, true_positive, "
                   "duplicate, benign.")
@click.option("--note", default=None, help="A note to append.")
@click.option("--assignee", default=None, help="Who owns it ('' to clear).")
@click.option("--by", default=None, help="Who makes the change (default: $USER).")
@store_option
def alerts_set(alert_id: str, status: str | None, close_reason: str | None, note: str | None,
               assignee: str | None, by: str | None, store_url: str | None) -> None:
    """Change an alert's status, assignee or notes."""
    import getpass

    from detections.alerts import AlertError, set_status

    if status is None and note is None and assignee is None and close_reason is None:
        fail("nothing to change: give --status, --note, --assignee or --reason")
    with open_cli_store(store_url) as store:
        try:
            doc = set_status(store, alert_id, status=status, note=note, assignee=assignee,
                             close_reason=close_reason, by=by or getpass.getuser())
        except AlertError as exc:
            fail(str(exc))
    al = doc["govsoc"]["alert"]
    reason = f" ({al['close_reason']})" if al.get("close_reason") else ""
    click.echo(f"{alert_id} {al['status']}{reason}")


@alerts.command("history")
@click.argument("alert_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON entry per line.")
@store_option
def alerts_history(alert_id: str, as_json: bool, store_url: str | None) -> None:
    """Every change to an alert, oldest first: when, who, what, from -> to, note."""
    from detections.workflow import history

    with open_cli_store(store_url) as store:
        doc = store.get("alerts", alert_id)
    if doc is None:
        fail(f"no alert with id {alert_id}")
    for e in history(doc):
        if as_json:
            click.echo(orjson.dumps(e).decode())
            continue
        change = f"{e['from'] or '-'} -> {e['to'] or '-'}" if e["action"] != "note" else ""
        extra = "".join(f" {k}={e[k]}" for k in ("reason", "note") if e.get(k))
        click.echo(f"{e['at']} {e['by']} {e['action']} {change}{extra}".rstrip())


# -- posture -----------------------------------------------------------------------
@click.command("posture")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@store_option
def posture(as_json: bool, store_url: str | None) -> None:
    """Situational awareness: security index, open alerts by severity/tactic/host, trends."""
    from detections.posture import posture as compute

    with open_cli_store(store_url) as store:
        p = compute(store)
    if as_json:
        _echo_json(p)
        return
    idx = p["security_index"]
    click.echo(f"security index {idx['value']}/100 {idx['band']} ({idx['band_zh']}): "
               f"alerts -{idx['alerts']}, exposure -{idx['exposure']}, "
               f"patch lag -{idx['patch_lag']}")
    click.echo(f"open alerts {p['open_alerts']}: " + ", ".join(
        f"{k} {v}" for k, v in p["by_severity"].items()))
    for title, key in (("by tactic", "by_tactic"), ("by host", "by_host"),
                       ("by department", "by_department")):
        if p[key]:
            click.echo(f"{title}: " + ", ".join(f"{k} {v}" for k, v in p[key].items()))
    if p["top_sources"]:
        click.echo("top sources: " + ", ".join(f"{k} {v}" for k, v in p["top_sources"]))
    if p["top_targets"]:
        click.echo("top targets: " + ", ".join(f"{k} {v}" for k, v in p["top_targets"]))
    if p["new_assets"]:
        click.echo("newly seen: " + ", ".join(p["new_assets"][:20]))
    ag = p["agents"]
    if ag["items"]:
        click.echo(f"agents: {ag['counts']['up']} up, {ag['counts']['silent']} silent")
        for a in ag["items"]:
            if a["status"] == "silent":
                click.echo(f"  silent: {a['name']} on {a['host']} since {a['last_heartbeat']}")
    if p["trend_hourly"]:
        click.echo("alerts per hour: " + ", ".join(f"{t[11:16]} {n}" for t, n in
                                                   p["trend_hourly"]))
