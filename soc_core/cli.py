"""`govsoc`: the command line. The core composes the commands that every installed package
declares under the `govsoc.commands` entry-point group; it imports none of them itself."""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import tzinfo
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import orjson

from soc_core import ecs
from soc_core.audit import MIN_RETENTION_DAYS
from soc_core.cliutil import fail, open_cli_store, store_option
from soc_core.config import ConfigError, redact_url, viewer_zone
from soc_core.query import QueryError
from soc_core.store import Selection, StoreError, parse_duration


class _Composed(click.Group):
    """Loads subcommands from entry points on demand, so `govsoc crypto ...` does not
    import the packet stack."""

    def _eps(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group="govsoc.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._eps())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        ep = self._eps().get(name)
        if ep is None:
            return None
        try:
            return ep.load()
        except Exception as exc:  # one broken package must not take the whole CLI down
            reason = f"{type(exc).__name__}: {exc}"

            @click.command(name, help=f"(unavailable: {reason})")
            def broken() -> None:
                fail(f"command {name!r} could not be loaded: {reason}")

            return broken


@click.group(cls=_Composed, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="govsoc")
def main() -> None:
    """govsoc — security operations for government clouds."""


# -- store ---------------------------------------------------------------------------
@click.group("store")
def store_group() -> None:
    """Inspect and maintain the event store."""


@store_group.command("info")
@store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def store_info(store_url: str | None, as_json: bool) -> None:
    """Backend, datasets and document counts."""
    with open_cli_store(store_url) as store:
        info = store.info()
    if as_json:
        click.echo(orjson.dumps(info).decode())
        return
    click.echo(f"backend: {info['backend']}  {info.get('version', '')}")
    click.echo(f"url:     {info['url']}")
    for family, datasets in info["families"].items():
        total = sum(datasets.values())
        click.echo(f"{family:14} {total:>10}")
        for name, n in sorted(datasets.items()):
            click.echo(f"  {name:30} {n:>10}")


@store_group.command("prune")
@store_option
@click.option("--older-than", default="180d", show_default=True,
              help="Delete logs, metrics and audit records older than this (e.g. 180d).")
def store_prune(store_url: str | None, older_than: str) -> None:
    """Apply retention now."""
    try:
        days = parse_duration(older_than).total_seconds() / 86400
    except ValueError as exc:
        fail(str(exc))
    if days < 1 or days != int(days):
        fail("--older-than must be a whole number of days, e.g. 180d")
    families = ["events", "metrics", "audit", "playbook_runs"]
    if days < MIN_RETENTION_DAYS:
        families.remove("audit")  # the legal minimum for the audit trail
        click.echo(f"audit records are kept at least {MIN_RETENTION_DAYS} days: not pruned",
                   err=True)
    with open_cli_store(store_url) as store:
        deleted = store.prune(int(days), families)
    click.echo(f"deleted {deleted} documents older than {int(days)} days")


# -- ingest --------------------------------------------------------------------------
# Documents per store write (one transaction on SQLite). Each commit rewrites every index
# page its batch touched, and ids and addresses land all over their indexes: 20,000 per
# commit ingests about a fifth faster than 5,000 (bench/ingest.py --batch), for ~60 MB.
INGEST_BATCH = 20_000


@click.command("ingest")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--dataset", default=None, help="event.dataset for lines that carry none.")
@click.option("--batch", default=INGEST_BATCH, show_default=True, type=click.IntRange(1),
              help="Documents per write.")
@store_option
def ingest_cmd(file: str, dataset: str | None, batch: int, store_url: str | None) -> None:
    """Load an NDJSON file of ECS events. Bad lines are reported and skipped."""
    from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

    if file != "-" and not Path(file).exists():
        fail(f"no such file: {file}")
    stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    size = None if file == "-" else Path(file).stat().st_size
    written = dup = 0
    skipped: list[str] = []
    with open_cli_store(store_url) as store, Progress(
        TextColumn("ingest"), BarColumn(), TransferSpeedColumn(),
        TextColumn("{task.fields[n]} events"),
        transient=True, disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("ingest", total=size, n=0)
        pending: list[dict] = []
        line_of: dict[int, int] = {}  # id(doc) -> line number, to name rejected lines

        def flush() -> None:
            nonlocal written, dup
            result = _write_or_fail(store, pending)
            written += result.written
            dup += result.duplicates
            by_event_id = {ecs.get_field(d, "event.id"): line_of[id(d)] for d in pending}
            for rej in result.rejected:
                where = line_of.get(id(rej.doc)) or by_event_id.get(rej.id, "?")
                skipped.append(f"line {where}: {rej.reason}")
            pending.clear()
            line_of.clear()
            bar.update(task, n=written + dup)

        for lineno, line in enumerate(stream, 1):
            bar.advance(task, len(line))
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                skipped.append(f"line {lineno}: not JSON ({exc.args[0].split(':')[0]})")
                continue
            if isinstance(doc, dict) and dataset:
                doc = ecs.expand_dotted(doc)
                doc.setdefault("event", {}).setdefault("dataset", dataset)
            pending.append(doc)
            line_of[id(doc)] = lineno
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        store.refresh()  # a script's next command sees what was ingested
    if file != "-":
        stream.close()
    for line in skipped[:50]:
        click.echo(f"skipped {line}", err=True)
    if len(skipped) > 50:
        click.echo(f"... and {len(skipped) - 50} more skipped lines", err=True)
    click.echo(f"ingested {written} new, {dup} already present, {len(skipped)} skipped")


def _write_or_fail(store, docs):
    try:
        return store.write(docs)
    except StoreError as exc:
        fail(f"store refused the batch: {exc}")


# -- search --------------------------------------------------------------------------
@click.command("search")
@click.argument("query", required=False)
@click.option("--family", default="events", show_default=True,
              type=click.Choice(ecs.FAMILIES))
@click.option("--dataset", default=None, help="event.dataset, e.g. network.dns.")
@click.option("--from", "start", default=None, help="Start time (ISO-8601 or now-1h).")
@click.option("--to", "end", default=None, help="End time (ISO-8601 or now).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--desc/--asc", default=True, help="Newest first (default) or oldest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
@store_option
def search_cmd(query: str | None, family: str, dataset: str | None, start: str | None,
               end: str | None, limit: int, desc: bool, as_json: bool,
               store_url: str | None) -> None:
    """Search events with the Kibana field:value query syntax."""
    try:
        sel = Selection(family=family, dataset=dataset, start=start, end=end, query=query)
    except (QueryError, ValueError) as exc:
        fail(f"bad query: {exc}")
    try:
        zone = viewer_zone()
    except ConfigError as exc:
        fail(str(exc))
    shown = 0
    with open_cli_store(store_url) as store:
        try:
            for doc in store.scan(sel, page_size=min(limit, 5000), descending=desc):
                if as_json:
                    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
                else:
                    click.echo(_one_line(doc, zone))
                shown += 1
                if shown >= limit:
                    break
        except StoreError as exc:
            fail(str(exc))
    if not as_json:
        click.echo(f"-- {shown} shown", err=True)


def _one_line(doc: dict, zone: tzinfo) -> str:
    ev = doc.get("event", {})
    src = ecs.get_field(doc, "source.ip") or ""
    dst = ecs.get_field(doc, "destination.ip") or ""
    host = ecs.get_field(doc, "host.name") or ""
    msg = doc.get("message") or ""
    flow = f" {src}->{dst}" if src or dst else ""
    when = ecs.parse_time(doc["@timestamp"]).astimezone(zone).isoformat(timespec="milliseconds")
    return f"{when} {ev.get('dataset', '')} {host}{flow} {msg}".rstrip()


# -- up: the main job ----------------------------------------------------------------
@click.command("up")
@store_option
@click.option("--demo", is_flag=True, help="Replay the bundled attack scenario first.")
@click.option("--once", is_flag=True, help="Start every service, show one status, stop.")
def up_cmd(store_url: str | None, demo: bool, once: bool) -> None:
    """Run the main job: every installed service on the configured store, with a live view.

    Services come from the `govsoc.services` entry-point group: each is a callable
    `(store_url, stop: threading.Event, demo: bool) -> None` that runs until `stop` is set.
    """
    from rich.live import Live
    from rich.table import Table

    with open_cli_store(store_url) as store:
        url = store.url
    stop = threading.Event()
    threads = []
    for name, fn in _load_group("govsoc.services"):
        t = threading.Thread(target=_guard, args=(name, fn, url, stop, demo),
                             name=name, daemon=True)
        t.start()
        threads.append(t)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    views = [fn for _, fn in _load_group("govsoc.views")]

    def view():
        """Panels from `govsoc.views` entry points (callables store -> rich renderable);
        document counts when no package offers one."""
        from rich.console import Group

        with open_cli_store(url) as s:
            if views:
                return Group(*(render(s) for render in views))
            table = Table(title=f"govsoc · {redact_url(url)}")
            table.add_column("family")
            table.add_column("documents", justify="right")
            for family, datasets in s.info()["families"].items():
                table.add_row(family, str(sum(datasets.values())))
        table.caption = "services: " + (", ".join(t.name for t in threads) or "none")
        return table

    try:
        with Live(view(), refresh_per_second=1) as live:
            while not stop.is_set() and not once:
                time.sleep(2)
                live.update(view())
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)


def _load_group(group: str) -> list[tuple[str, Any]]:
    """Entry points of a group, loaded; one that fails to load is reported and left out."""
    loaded = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            loaded.append((ep.name, ep.load()))
        except Exception as exc:  # a broken package must not stop the main job
            click.echo(f"{group} {ep.name} unavailable: {type(exc).__name__}: {exc}", err=True)
    return loaded


def _guard(name: str, fn: Any, url: str, stop: threading.Event, demo: bool) -> None:
    try:
        fn(url, stop, demo)
    except Exception as exc:  # a failing service is reported; the others go on
        click.echo(f"service {name} stopped: {exc}", err=True)


if __name__ == "__main__":
    main()
