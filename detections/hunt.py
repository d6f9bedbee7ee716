"""`govsoc hunt PATH...`: an incident responder's evidence (pcaps, EVTX, Linux logs) into a
scratch store (or `--store`), every rule and correlation run over exactly the time span of
that evidence, and the findings grouped by host and rule (the Chainsaw / Hayabusa /
Zircolite use case, with the same rules and engine as the live SOC).

Exit status: 0 nothing found, 1 findings, 2 an error (one line). The evidence importer
comes from the `govsoc.importers` entry point `evidence` (collectors registers it), so
this package does not import collectors.
"""

from __future__ import annotations

import bisect
import csv
import gc
import io
import os
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import orjson

from detections import prefilter
from detections.alerts import iso
from detections.engine import Engine, Settings
from detections.evaluator import Evaluator
from detections.memory import AlertTable, Matches, MemoryEngine, hunt_rules
from detections.rules import LEVELS, OWN_PACK, RuleError
from soc_core import ecs
from soc_core.cliutil import exit_now, fail
from soc_core.records import SourceRecord, UnmatchedRecords
from soc_core.store import EventStore, Selection, StoreError, open_store

BATCH = 5000
MATCH_BATCH = 256
HUNT_GC_THRESHOLDS = (20_000, 20, 100)
CSV_FIELDS = ["host", "rule", "level", "alerts", "events", "first_seen", "last_seen", "rule_id"]
TIMELINE_FIELDS = ["time", "level", "host", "rule", "message", "source_ip", "user"]


def importer() -> Callable[..., list[dict[str, Any]]]:
    found = [ep for ep in entry_points(group="govsoc.importers") if ep.name == "evidence"]
    if not found:
        raise RuntimeError("no evidence importer installed (govsoc.importers: evidence)")
    return found[0].load()


class Loader:
    """A sink writing events to the store in batches and keeping their time span."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.batch: list[dict[str, Any]] = []
        self.first: int | None = None
        self.last: int | None = None
        self.written = 0
        self._stored_form: list[str] = []  # the earliest and latest of those, as text

    def span(self, timestamp: str) -> None:
        ts = ecs.to_millis(timestamp)
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts

    def span_stored_form(self, timestamp: str) -> None:
        """`span` for a time already in the stored form (`ecs.format_time`'s, which a
        `SourceRecord` carries): fixed width, so text order is time order; read as a
        time once, in `close_span`, instead of once per record."""
        if len(timestamp) != 24 or timestamp[19] != "." or timestamp[-1] != "Z":
            self.span(timestamp)  # not that form after all: read it now
            return
        seen = self._stored_form
        if not seen:
            seen[:] = [timestamp, timestamp]
        elif timestamp < seen[0]:
            seen[0] = timestamp
        elif timestamp > seen[1]:
            seen[1] = timestamp

    def close_span(self) -> None:
        for timestamp in self._stored_form:
            self.span(timestamp)
        self._stored_form = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.span(event["@timestamp"])
        self.batch.append(event)
        if len(self.batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            res = self.store.write(self.batch)
            if res.rejected:
                raise StoreError(f"event rejected by the store: {res.rejected[0].reason}")
            self.written += len(self.batch)
            self.batch = []


def hunt(store: EventStore, paths: list[str], rule_paths: list[str], *,
         import_all: bool = False, native: bool | None = None) -> dict[str, Any]:
    """Evaluate every rule against each evidence event once (in memory), then raise alerts
    over the evidence's span with the engine; return what was found. With `import_all`
    (`--store`), the store receives every event and the alerts. Without it the store is
    the hunt's scratch store, gone when the hunt ends: the matched events and the alerts
    stay in memory (`Matches`, `AlertTable`), where the engine reads them; the store holds
    the engine's own state. EVTX files are then read through the native prefilter
    (`detections.prefilter`) when it is installed (`native`: None), or as `native` says."""
    # the cyclic collector's passes made rarer for the whole hunt: loading the rules makes
    # millions of objects, and each record dozens, so at the default thresholds (700, 10,
    # 10) a young pass ran every ~15 records and the full passes walked every kept event
    # again and again, ~15 % of a hunt's CPU time; the cyclic garbage a hunt makes
    # (little: records and events hold no cycles) waits longer
    thresholds = gc.get_threshold()
    gc.set_threshold(*HUNT_GC_THRESHOLDS)
    try:
        backend = Engine.backend_of(store)
        pack, compiled, unsupported = hunt_rules([str(OWN_PACK), *rule_paths], backend)
        matches = Matches(Evaluator(compiled))
        # the loaded rules live to the end: out of the collector's sight, so its full
        # passes do not walk them each time
        gc.freeze()
        # and, in memory (no `--store`: no store client's garbage for hours of writes),
        # no pass at all while the evidence is read and the alerts raised: records,
        # events and alerts hold no cycles (a hunt over 82,540 records left ~1,800 cyclic
        # objects, and the collector's passes still took 3 % of its CPU time walking the
        # kept events); those few wait for the first pass after the hunt
        enabled = gc.isenabled()
        if not import_all:
            gc.disable()
        try:
            if native is None:  # GOVSOC_HUNT_NATIVE=0: the Python reader (to compare)
                native = prefilter.available() and os.environ.get("GOVSOC_HUNT_NATIVE") != "0"
            pre = (prefilter.EvtxPrefilter(matches.evaluator)
                   if native and not import_all else None)
            return _hunt(store, paths, pack, matches, unsupported, import_all, pre)
        finally:
            # what the hunt made and returns (its alerts: ~2 M objects for 45,000) goes to
            # the oldest generation with the rules, not to the youngest, whose next passes
            # would walk it all again and again (0.5 s after a hunt of 404,446 records)
            gc.freeze()
            gc.unfreeze()
            if enabled:
                gc.enable()
    finally:
        gc.set_threshold(*thresholds)


def _hunt(store: EventStore, paths: list[str], pack: Any, matches: Matches,
          unsupported: dict[str, str], import_all: bool,
          pre: prefilter.EvtxPrefilter | None) -> dict[str, Any]:
    loader = Loader(store)
    # EVTX records come as SourceRecords: the evaluator reads their winlog fields, and
    # only the events it keeps (or every one, with import_all) are built
    # evaluated in batches, in the order read: matching each record right after the
    # parser made it costs ~12% more, the parser pushing the matcher's working set (the
    # literal automaton's states, the rules' code) out of the CPU caches every time
    pending: list[dict[str, Any] | SourceRecord] = []
    if import_all:
        def drain() -> None:
            for event in pending:
                matches(event)
                loader(event.event() if isinstance(event, SourceRecord) else event)
            pending.clear()
    else:
        span_stored, span = loader.span_stored_form, loader.span

        def drain() -> None:
            matches.feed(pending)
            if pre is not None:  # the shapes this batch planned, for the records to come
                pre.sync()
            # the records' span at once (their times' text order is their time order);
            # an event's time read as it comes
            stored: list[str] = []
            for event in pending:
                if type(event) is UnmatchedRecords:
                    stored += (event.earliest, event.latest)
                elif isinstance(event, SourceRecord):
                    stored.append(event.timestamp)
                else:
                    span(event["@timestamp"])
            if stored:
                span_stored(min(stored))
                span_stored(max(stored))
            pending.clear()

    def sink(event: dict[str, Any] | SourceRecord) -> None:
        pending.append(event)
        if len(pending) >= MATCH_BATCH:
            drain()

    imported = importer()(paths, sink, lazy=True, prefilter=pre)
    drain()
    loader.close_span()
    matches.finish()
    loader.flush()
    store.refresh()
    out: dict[str, Any] = {"imported": imported, "events": matches.count, "span": None,
                           "rules": len(pack.rules), "unsupported": unsupported,
                           "alerts": []}
    if loader.first is None:
        return out
    first, last = loader.first, loader.last
    out["span"] = {"start": iso(first), "end": iso(last)}
    # exactly the evidence's span: no delay for late events (nothing more will come) and
    # the window starts at the first event
    # the alerts go into the store the evidence went into (`--store`); a scratch store
    # is thrown away, so they stay in memory
    table = None if import_all else AlertTable(getattr(store, "departments", None))
    engine = MemoryEngine(store, pack, matches, alerts=table, settings=Settings(delay_ms=0))
    summary = engine.run_once(now=iso(last + 1), since=iso(first))
    if summary.errors:
        rid, why = next(iter(summary.errors.items()))
        raise StoreError(f"rule {rid} failed: {why}")
    if table is None:
        store.refresh()
        raised = store.scan(Selection(family="alerts"))
    else:
        raised = table.alerts()
    alerts = [a for a in raised
              if first <= ecs.to_millis(a["event"]["end"]) and
              ecs.to_millis(a["event"]["start"]) <= last]
    for a in alerts:
        a["govsoc"]["hunt_host"] = _host(store, a, matches.events)
    out["alerts"] = sorted(alerts, key=lambda a: (a["event"]["start"], a["rule"]["name"]))
    out["sources"] = _sources(imported, matches, pack, out["alerts"])
    return out


def _sources(imported: list[dict[str, Any]], matches: Matches, pack: Any,
             alerts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per evidence file, the alerts (rule ids -> level) its events are part of. Every match
    of an alerting single-event rule is in one of its alerts; a correlation's alert names
    its events (up to the evidence cap)."""
    starts, names, at = [], [], 0
    for item in imported:
        if item["kind"] != "skipped":
            starts.append(at)
            names.append(item["path"])
            at += item["events"]
    out: dict[str, dict[str, str]] = {name: {} for name in names}

    def mark(eid: str, rid: str, level: str) -> None:
        for pos in matches.positions.get(eid, ()):
            out[names[bisect.bisect_right(starts, pos) - 1]][rid] = level

    alerted = {a["rule"]["id"]: a["govsoc"]["alert"]["level"] for a in alerts}
    by_id = pack.by_id()
    for rid, level in alerted.items():
        rule = by_id.get(rid)
        if rule is not None and not rule.is_correlation:
            for doc in matches.by_rule.get(rid, ()):
                mark(doc["event"]["id"], rid, level)
    for a in alerts:
        if by_id.get(a["rule"]["id"]) is None or by_id[a["rule"]["id"]].is_correlation:
            for eid in a["govsoc"]["alert"].get("event_ids") or ():
                mark(eid, a["rule"]["id"], a["govsoc"]["alert"]["level"])
    return out


def tactic_coverage(sources: dict[str, dict[str, str]], manifest: str | Path,
                    min_level: str = "low") -> dict[str, dict[str, int]]:
    """Per ATT&CK tactic of a sample manifest (`files[]` with `path` relative to the
    manifest's folder and `tactic`), how many samples were read and how many raised at
    least one alert from `min_level` up."""
    root = Path(manifest).resolve().parent
    try:
        data = orjson.loads(Path(manifest).read_bytes())
        tactic_of = {str((root / f["path"]).resolve()): f.get("tactic")
                     for f in data["files"]}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"unusable manifest {manifest}: {exc}") from None
    floor = LEVELS[min_level]
    out: dict[str, dict[str, int]] = {}
    for path, rules in sources.items():
        tactic = tactic_of.get(str(Path(path).resolve()))
        if not tactic:
            continue
        row = out.setdefault(tactic, {"samples": 0, "alerted": 0})
        row["samples"] += 1
        row["alerted"] += any(LEVELS.get(lv, 0) >= floor for lv in rules.values())
    return dict(sorted(out.items()))


def _host(store: EventStore, alert: dict[str, Any], known: dict[str, dict[str, Any]]) -> str:
    """Where it happened: the host the alert names, else the one its first event names
    (Filebeat's system module writes host.hostname), else the address it came from. The
    event is one of the hunt's matches (`known`, by id) unless an engine's exception or
    correlation named another: only then is the store asked."""
    host = ecs.get_field(alert, "host.name")
    if not host:
        ids = alert["govsoc"]["alert"].get("event_ids") or []
        if ids:
            hits = [known[ids[0]]] if ids[0] in known else store.search(
                Selection(filters={"event.id": ids[:1]}), size=1).hits
            if hits:
                host = ecs.get_field(hits[0], "host.name") or ecs.get_field(hits[0],
                                                                            "host.hostname")
    return (host or ecs.get_field(alert, "source.ip") or ecs.get_field(alert, "destination.ip")
            or "-")


def host_of(alert: dict[str, Any]) -> str:
    return alert["govsoc"].get("hunt_host") or "-"


def findings(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts grouped by host and rule, most severe first."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for a in alerts:
        key = (host_of(a), a["rule"]["id"])
        g = a["govsoc"]["alert"]
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"host": key[0], "rule": a["rule"]["name"], "level": g["level"],
                               "alerts": 0, "events": 0, "first_seen": g["first_seen"],
                               "last_seen": g["last_seen"], "rule_id": key[1]}
        row["alerts"] += 1
        row["events"] += int(g["count"])
        row["first_seen"] = min(row["first_seen"], g["first_seen"])
        row["last_seen"] = max(row["last_seen"], g["last_seen"])
    return sorted(rows.values(), key=lambda r: (-LEVELS.get(r["level"], 0), r["host"],
                                                r["rule"]))


def timeline(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"time": a["govsoc"]["alert"]["first_seen"], "level": a["govsoc"]["alert"]["level"],
             "host": host_of(a), "rule": a["rule"]["name"], "message": a["message"],
             "source_ip": ecs.get_field(a, "source.ip"), "user": ecs.get_field(a, "user.name")}
            for a in sorted(alerts, key=lambda a: a["govsoc"]["alert"]["first_seen"])]


@click.command("hunt")
@click.argument("paths", nargs=-1, required=True)
@click.option("--store", "store_url", default=None, metavar="URL",
              help="Import into this store (default: a scratch SQLite store, removed after).")
@click.option("--rules", "rule_paths", multiple=True, metavar="PATH",
              help="More Sigma rules (files or folders, e.g. SigmaHQ's), besides the pack.")
@click.option("--min-level", type=click.Choice(list(LEVELS)), default="low",
              show_default=True, help="Report findings from this level up.")
@click.option("--json", "as_json", is_flag=True, help="Findings as one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="Findings as CSV.")
@click.option("--timeline", "as_timeline", is_flag=True,
              help="Every alert in time order instead of the grouped table.")
@click.option("--manifest", default=None, metavar="JSON",
              help="A sample manifest (files[].path, files[].tactic): report per ATT&CK "
                   "tactic how many samples raise at least one alert.")
def hunt_cmd(paths: tuple[str, ...], store_url: str | None, rule_paths: tuple[str, ...],
             min_level: str, as_json: bool, as_csv: bool, as_timeline: bool,
             manifest: str | None) -> None:
    """Hunt through evidence files (pcap/pcapng, EVTX, auth/syslog/auditd logs): exit 0 when
    nothing is found, 1 with findings, 2 on an error."""
    if as_json and as_csv:
        fail("--json and --csv exclude each other")
    scratch = None
    try:
        if store_url:
            store = open_store(store_url)
        else:
            scratch = tempfile.TemporaryDirectory(prefix="govsoc-hunt-")
            store = open_store(f"sqlite:///{Path(scratch.name) / 'hunt.db'}", scratch=True)
        try:
            result = hunt(store, list(paths), list(rule_paths), import_all=bool(store_url))
        finally:
            store.close()
    except (StoreError, RuleError, RuntimeError) as exc:
        fail(str(exc).splitlines()[0])
    except ValueError as exc:  # EvidenceError: a missing or unreadable evidence file
        fail(str(exc).splitlines()[0])
    finally:
        if scratch is not None:
            scratch.cleanup()
    coverage = None
    if manifest:
        try:
            coverage = tactic_coverage(result.get("sources") or {}, manifest, min_level)
        except ValueError as exc:
            fail(str(exc).splitlines()[0])
    floor = LEVELS[min_level]
    alerts = [a for a in result["alerts"] if LEVELS.get(a["govsoc"]["alert"]["level"], 0) >= floor]
    rows = timeline(alerts) if as_timeline else findings(alerts)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps({
            "span": result["span"], "imported": result["imported"], "events": result["events"],
            "rules": result["rules"], "unsupported": result.get("unsupported", {}),
            "coverage": coverage,
            "findings" if not as_timeline else "timeline": rows}, default=str) + b"\n")
    elif as_csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=TIMELINE_FIELDS if as_timeline else CSV_FIELDS,
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        _print(result, rows, as_timeline, coverage)
    exit_now(1 if alerts else 0)


def _print(result: dict[str, Any], rows: list[dict[str, Any]], as_timeline: bool,
           coverage: dict[str, dict[str, int]] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=200, highlight=False)
    kinds: dict[str, int] = {}
    for item in result["imported"]:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    # "N file(s)" counts what was read; skipped ones are named in the parenthesis
    span = result["span"]
    files = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    when = f", {span['start']} .. {span['end']}" if span else ""
    out.print(f"{len(result['imported'])} file(s) ({files}), {result['events']} events{when}, "
              f"{result['rules']} rules", markup=False)
    if result.get("unsupported"):
        out.print(f"{len(result['unsupported'])} rule(s) the evaluator cannot express, not run",
                  markup=False)
    if coverage:
        c = Table(title="samples with at least one alert, by ATT&CK tactic")
        for col in ("tactic", "samples", "alerted", "share"):
            c.add_column(col, justify="left" if col == "tactic" else "right")
        for tactic, row in coverage.items():
            c.add_row(tactic, str(row["samples"]), str(row["alerted"]),
                      f"{row['alerted'] / row['samples']:.0%}")
        out.print(c)
    if not rows:
        out.print("no findings", markup=False)
        return
    if as_timeline:
        t = Table(title="timeline")
        for col in ("time", "level", "host", "rule", "source ip", "user"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["time"], r["level"], r["host"], r["rule"], str(r["source_ip"] or ""),
                      str(r["user"] or ""))
    else:
        t = Table(title=f"{len(rows)} findings by host and rule")
        for col in ("host", "rule", "level", "alerts", "events", "first seen", "last seen"):
            t.add_column(col, justify="right" if col in ("alerts", "events") else "left")
        for r in rows:
            t.add_row(r["host"], r["rule"], r["level"], str(r["alerts"]), str(r["events"]),
                      r["first_seen"], r["last_seen"])
    out.print(t)
