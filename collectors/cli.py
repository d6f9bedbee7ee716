"""`govsoc collect ...`: run a collector into the store named by GOVSOC_STORE_URL (or
--store). Every command delivers through the shipper (spooling while the store is down)
and ends with a summary: events written, records skipped with their reasons.

Configuration (`govsoc.toml`, each key overridable as GOVSOC_<KEY>); the `govsoc up` agent
reads the same keys (`Shipper.from_config`):

    [collectors]
    batch_size = 1000          # documents per store write when the queue is shallow
    max_batch_size = 20000     # a deep queue grows the batch up to this
    queue_size = 20000         # bounded queue between sources and the shipper
    flush_interval = 1.0       # seconds at most before a partial batch is written
    spool_fsync = "interval"   # always | interval | never (see soc_core.spool)
    spool_max_mb = 2048        # past this, batches are dropped (counted)
    [collectors.host]
    interval = 10              # seconds between host collection cycles
    fim_paths = ["/etc/passwd", "/etc/ssh"]
    [collectors.logs]          # what `govsoc up` tails (missing files are skipped)
    auth_paths = ["/var/log/auth.log", "/var/log/secure"]
    syslog_paths = ["/var/log/syslog", "/var/log/messages"]
    auditd_paths = ["/var/log/audit/audit.log"]

State lives in the data directory (Config.data_dir): `spool/<collector>/` (undelivered
batches), `collectors/<collector>.health.json` (what `collect status` shows),
`collectors/positions-*.json` (log read positions), `collectors/fim-state.json`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from soc_core.cliutil import fail, store_option
from soc_core.config import Config, ConfigError, load_config

log = logging.getLogger("govsoc.collect")


@click.group("collect")
def collect() -> None:
    """Collect events: packets, host activity, logs, Windows event logs."""


# -- shared plumbing ---------------------------------------------------------------------
def _config() -> Config:
    try:
        return load_config()
    except ConfigError as exc:
        fail(str(exc))


def make_shipper(store_url: str | None, name: str, cfg: Config | None = None):
    """A started shipper for collector `name`. A store that is down is not an error
    (events are spooled); a store URL that can never work is."""
    from collectors.shipper import Shipper
    from soc_core.spool import SpoolError

    cfg = cfg or _config()
    url = store_url or cfg.store_url
    check_store(url)
    try:
        return Shipper.from_config(url, name, cfg).start()
    except (SpoolError, ConfigError) as exc:
        fail(str(exc))


def check_store(url: str) -> None:
    """Fail (exit 2) for a store URL that can never work; only warn for one that is down."""
    from soc_core.store import StoreError, StoreUnavailable, open_store

    try:
        open_store(url).close()
    except StoreUnavailable as exc:
        click.echo(f"warning: store unreachable ({exc}); events are spooled until it is back",
                   err=True)
    except (StoreError, ConfigError) as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. the SQLite file's directory cannot be created
        fail(f"cannot open the store {url}: {exc.strerror or exc}")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An Event set by SIGINT/SIGTERM, so long-running commands stop cleanly."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop.signalled = False  # type: ignore[attr-defined]  # a user's stop, not a timer's

    def handler(*_: Any) -> None:
        stop.signalled = True  # type: ignore[attr-defined]
        stop.set()

    for s in old:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def close_shipper(shipper: Any, stop: threading.Event | None = None) -> dict[str, Any]:
    """Close the command's shipper. Interrupted (Ctrl-C, SIGTERM) while the store is down,
    it stops at once instead of waiting out the drain window: the spool keeps the events
    for the next run."""
    interrupted = getattr(stop, "signalled", False) or isinstance(sys.exc_info()[1],
                                                                   KeyboardInterrupt)
    if interrupted and not shipper.health.store_up:
        return shipper.close(drain_timeout=0.0)
    return shipper.close()


def path_list(value: Any) -> list[str]:
    """A list of paths from the config: a TOML list, or (from an environment variable)
    one string separated by commas or colons."""
    if not value:
        return []
    if isinstance(value, str):
        return [p for p in value.replace(",", ":").split(":") if p]
    return [str(p) for p in value]


def delivery_summary(snap: dict[str, Any]) -> list[str]:
    new = snap["events_out"] - snap["duplicates"]
    lines = [f"written {new} new, {snap['duplicates']} already present, "
             f"{snap['rejected']} rejected by the store, {snap['dropped']} dropped"]
    if snap["spooled"]:
        lines.append(f"spooled {snap['spooled']} while the store was unavailable, "
                     f"{snap['drained']} delivered from the spool since")
    if snap["spool_bytes"]:
        lines.append(f"warning: {snap['spool_bytes']} bytes still spooled on disk; the next "
                     f"`govsoc collect` run of this kind delivers them")
    if snap.get("spool_corruptions"):
        # what spool damage destroyed was already counted as spooled: say it is lost
        lines.append(f"lost {snap.get('spool_lost_bytes', 0)} spooled bytes in "
                     f"{snap['spool_corruptions']} damaged spool region(s); the events in "
                     "them were not delivered")
    for reason in snap.get("reasons", [])[:20]:
        lines.append(f"  {reason}")
    return lines


def _print_skips(stats, snap: dict[str, Any] | None = None) -> None:
    """The bad records of a read (`collectors.readstats.ReadStats`), by reason; records lost
    in a damaged spool region (`snap` from the shipper) are skipped records too."""
    reasons = stats.bad_reasons.copy()
    if snap and snap.get("spool_corruptions"):
        reasons["damaged spool region (its events were lost)"] += snap["spool_corruptions"]
    total = sum(reasons.values())
    if not total:
        click.echo("skipped 0 records")
        return
    click.echo(f"skipped {total} records:")
    for reason, n in reasons.most_common():
        click.echo(f"  {n:>8}  {reason}")
    for ex in stats.examples[:10]:
        click.echo(f"  e.g. {ex}")


def _progress(total: int | None, label: str):
    from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn(label), BarColumn(), TransferSpeedColumn(), transient=True,
                   disable=not sys.stderr.isatty())
    return bar, bar.add_task(label, total=total)


def _check_files(files: tuple[str, ...]) -> list[str]:
    if not files:
        fail("give at least one file")
    for f in files:
        p = Path(f)
        if not p.exists():
            fail(f"no such file: {f}")
        if not p.is_file():
            fail(f"not a regular file: {f}")
    return [str(Path(f)) for f in files]


# -- logs --------------------------------------------------------------------------------
@collect.command("logs")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["auth", "auditd", "syslog"]),
              help="auth: auth.log/secure; auditd: audit.log; syslog: any syslog file.")
@click.option("--follow", is_flag=True, help="Keep reading new lines (and rotations) until "
              "interrupted.")
@click.option("--from-start", is_flag=True, help="Ignore saved read positions.")
@store_option
def logs_cmd(files: tuple[str, ...], fmt: str, follow: bool, from_start: bool,
             store_url: str | None) -> None:
    """Import (or tail with --follow) Linux log files."""
    from collectors.logs import LogReader, LogStats, Positions, parser_for

    paths = _check_files(files)
    cfg = _config()
    positions = Positions(Path(cfg.data_dir) / "collectors" / f"positions-logs-{fmt}.json")
    shipper = make_shipper(store_url, f"logs-{fmt}", cfg)
    stats = LogStats()
    readers = [LogReader(p, parser_for(fmt), shipper.put, positions=positions,
                         checkpoint=shipper.checkpoint, stats=LogStats(),
                         resume=not from_start) for p in paths]
    stop = None
    try:
        if follow:
            with stop_on_signals() as stop:
                threads = [threading.Thread(target=r.follow, args=(stop,), daemon=True)
                           for r in readers]
                for t in threads:
                    t.start()
                click.echo(f"following {len(paths)} file(s); Ctrl-C to stop", err=True)
                while any(t.is_alive() for t in threads) and not stop.is_set():
                    stop.wait(0.5)
                stop.set()
                for t in threads:
                    t.join()
        else:
            total = sum(Path(p).stat().st_size for p in paths)
            bar, task = _progress(total, f"logs ({fmt})")
            with bar:
                for r in readers:
                    r.import_once()
                    bar.advance(task, Path(r.path).stat().st_size)
    finally:
        snap = close_shipper(shipper, stop)
    for r in readers:
        stats.merge(r.stats)
        for path, off in r.resumed_at.items():
            click.echo(f"{path}: resumed at byte {off} (saved read position)")
    click.echo(f"logs ({fmt}): {len(paths)} file(s), {stats.lines} lines, "
               f"{stats.events_total} events, {stats.ignored_total} banner/blank lines")
    for line in delivery_summary(snap):
        click.echo(line)
    _print_skips(stats, snap)


# -- evtx --------------------------------------------------------------------------------
@collect.command("evtx")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@store_option
def evtx_cmd(files: tuple[str, ...], store_url: str | None) -> None:
    """Import Windows EVTX files (Security, System, Sysmon...) mapped as Winlogbeat does."""
    from collectors.logs import LogStats
    from collectors.logs.evtx import EvtxError, read_evtx

    paths = _check_files(files)
    for p in paths:  # every file is checked before anything is written
        with open(p, "rb") as fh:
            if fh.read(8) != b"ElfFile\x00":
                fail(f"{p}: not an EVTX file (bad signature)")
    shipper = make_shipper(store_url, "evtx")
    stats = LogStats()
    try:
        for p in paths:
            try:
                read_evtx(p, shipper.put, stats)
            except EvtxError as exc:
                stats.bad(str(exc), p)
    finally:
        snap = close_shipper(shipper)
    click.echo(f"evtx: {len(paths)} file(s), {stats.lines} records, "
               f"{stats.events_total} events")
    for line in delivery_summary(snap):
        click.echo(line)
    _print_skips(stats, snap)


# -- host --------------------------------------------------------------------------------
@collect.command("host")
@click.option("--once", is_flag=True, help="One collection cycle, then exit.")
@click.option("--interval", type=click.FloatRange(min=0.5), default=None,
              help="Seconds between cycles (default: collectors.host.interval or 10).")
@click.option("--fim", "fim_paths", multiple=True, type=click.Path(),
              help="File or directory to watch for integrity changes (repeatable; default "
                   "collectors.host.fim_paths).")
@store_option
def host_cmd(once: bool, interval: float | None, fim_paths: tuple[str, ...],
             store_url: str | None) -> None:
    """Processes, sockets, sessions, metrics and file integrity of this host."""
    from collectors.host import HostCollector

    cfg = _config()
    interval = interval or float(cfg.get("collectors.host.interval", 10))
    paths = list(fim_paths) or path_list(cfg.get("collectors.host.fim_paths", []))
    shipper = make_shipper(store_url, "host", cfg)
    hc = HostCollector(shipper.put, fim_paths=paths,
                       state_dir=str(Path(cfg.data_dir) / "collectors"),
                       checkpoint=shipper.checkpoint)
    try:
        with stop_on_signals() as stop:
            hc.run(stop, interval, once=once)
    finally:
        snap = close_shipper(shipper, stop)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(hc.counts.items())) or "none"
    click.echo(f"host: {hc.cycles} cycle(s), events: {counts}")
    for line in delivery_summary(snap):
        click.echo(line)


# -- packets (collectors.packet, imported only when used) --------------------------------
@collect.command("pcap")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--engine", type=click.Choice(["fast", "tshark"]), default="fast",
              show_default=True, help="fast: built-in decoder; tshark: deep dissection.")
@click.option("--ring", is_flag=True, help="Also write the packets to the packet ring "
              "([collectors.ring]), so `govsoc pcap get` can retrieve flows later.")
@store_option
def pcap_cmd(files: tuple[str, ...], engine: str, ring: bool, store_url: str | None) -> None:
    """Read pcap/pcapng captures into flow, DNS, HTTP and TLS events."""
    from collectors.packet import CaptureError, read_pcaps

    paths = _check_files(files)
    cfg = _config()
    bar, task = _progress(None, f"pcap ({engine})")

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    writer = make_ring(cfg, source="pcap") if ring else None
    try:
        events, stats = read_pcaps(paths, engine=engine, progress=progress, ring=writer)
    except CaptureError as exc:
        fail(str(exc))
    shipper = make_shipper(store_url, "pcap", cfg)
    if writer is not None:
        writer.attach(shipper.put, shipper.health)
    error = None
    try:
        with bar:
            for ev in events:
                shipper.put(ev)
    except CaptureError as exc:
        error = str(exc)
    finally:
        snap = close_shipper(shipper)
    if error:
        fail(error)
    click.echo(f"pcap ({engine}): {stats.summary()}")
    if writer is not None:
        click.echo(ring_summary(writer))
    for line in delivery_summary(snap):
        click.echo(line)


def make_ring(cfg: Config, *, worker: int = 0, source: str = ""):
    """The packet ring of `[collectors.ring]` (exit 2 with one line if misconfigured)."""
    from collectors.packet import PacketRing, ring_config
    from soc_core.departments import Departments

    try:
        rc = ring_config(cfg)
        departments = Departments.from_config(cfg) if rc.retention else None
    except ConfigError as exc:
        fail(str(exc))
    return PacketRing(rc, worker=worker, departments=departments, source=source)


def ring_summary(ring: Any) -> str:
    st = ring.status()
    line = (f"packet ring ({st['dir']}): {st['packets_written']} packets written "
            f"({st['bytes_written']} bytes), {st['packets_filtered']} not kept by its filter, "
            f"{st['packets_not_written']} not written, {st['files_removed']} old files removed")
    if st["paused_reason"]:
        line += f"; STOPPED WRITING: {st['paused_reason']}"
    return line


@contextmanager
def capture_window(duration: float | None, banner: str
                   ) -> Iterator[tuple[threading.Event, threading.Event]]:
    """(stop, ready) for a live capture: `stop` is set by SIGINT/SIGTERM or after `duration`
    seconds; once the capture sets `ready`, `banner` goes to stderr (scripts wait for that
    line before they make traffic)."""
    with stop_on_signals() as stop:
        timer = threading.Timer(duration, stop.set) if duration else None
        if timer:
            timer.daemon = True
            timer.start()
        ready = threading.Event()

        def announce() -> None:
            if ready.wait(60) and not stop.is_set():
                click.echo(banner, err=True)

        threading.Thread(target=announce, daemon=True).start()
        try:
            yield stop, ready
        finally:
            if timer:
                timer.cancel()


@collect.command("live")
@click.option("--iface", required=True, help="Interface to capture on.")
@click.option("--bpf", default=None, help="Kernel capture filter, e.g. 'tcp port 443'.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None,
              help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Capture processes sharing the traffic by flow (PACKET_FANOUT hash); "
                   "each sees whole flows and reports its own kernel drops.")
@click.option("--ring/--no-ring", "ring", default=None,
              help="Write the packets to the packet ring (default: collectors.ring.enabled).")
@store_option
def live_cmd(iface: str, bpf: str | None, duration: float | None, workers: int,
             ring: bool | None, store_url: str | None) -> None:
    """Capture live traffic into flow, DNS, HTTP and TLS events."""
    from collectors.packet import CaptureError, live, ring_config

    cfg = _config()
    try:
        use_ring = ring_config(cfg).enabled if ring is None else ring
    except ConfigError as exc:
        fail(str(exc))
    if workers > 1:
        _live_workers(iface, bpf, duration, workers, store_url, use_ring)
        return
    writer = make_ring(cfg, source=f"live:{iface}") if use_ring else None
    shipper = make_shipper(store_url, "live", cfg)
    if writer is not None:
        writer.attach(None, shipper.health)  # capture() sends its events to the sink

    def sink(ev: dict[str, Any]) -> None:
        shipper.put(ev, block=False)  # never stall the capture: a full queue counts drops

    stats = None
    error = None
    stop = None
    try:
        with capture_window(duration, f"capturing on {iface}") as (stop, ready):
            stats = live.capture(iface, bpf, stop, sink, ready=ready, ring=writer)
    except CaptureError as exc:
        error = str(exc)
    finally:
        snap = close_shipper(shipper, stop)
    if error:
        fail(error)
    if stats is not None:
        click.echo(f"live ({iface}): {stats.summary()}")
    if writer is not None:
        click.echo(ring_summary(writer))
    for line in delivery_summary(snap):
        click.echo(line)


def _live_workers(iface: str, bpf: str | None, duration: float | None, workers: int,
                  store_url: str | None, use_ring: bool = False) -> None:
    """`collect live --workers N`: N capture processes, each with its own shipper
    (collector `live-<i>`, its own spool), started after the store URL is checked."""
    from collectors.packet import CaptureError
    from collectors.packet.workers import capture_workers
    from collectors.shipper import Shipper
    from soc_core.spool import SpoolError

    cfg = _config()
    url = store_url or cfg.store_url
    check_store(url)

    healths: dict[int, Any] = {}

    def make_sink(i: int):  # runs in worker i
        shipper = Shipper.from_config(url, f"live-{i}", cfg).start()
        healths[i] = shipper.health  # (this worker's copy of the dict)
        return (lambda ev: shipper.put(ev, block=False)), shipper.close

    def make_ring_for(i: int):  # runs in worker i, after make_sink(i)
        writer = make_ring(cfg, worker=i, source=f"live:{iface}")
        writer.attach(None, healths.get(i))
        return writer

    if use_ring:
        make_ring(cfg)  # a misconfigured ring fails here, before any worker starts

    results = None
    error = None
    try:
        with capture_window(duration, f"capturing on {iface} with {workers} workers"
                            ) as (stop, ready):
            results = capture_workers(iface, bpf, workers, stop, make_sink, ready=ready,
                                      make_ring=make_ring_for if use_ring else None)
    except (CaptureError, SpoolError, ConfigError) as exc:
        error = str(exc)
    if error:
        fail(error)
    for i, (stats, snap) in enumerate(results or []):
        click.echo(f"live ({iface}) worker {i}: {stats.summary()}")
        for line in delivery_summary(snap):
            click.echo(f"  {line}")
    if results:
        click.echo(f"live ({iface}): {workers} workers, "
                   f"{sum(s.packets for s, _ in results)} packets, "
                   f"{sum(s.kernel_drops for s, _ in results)} kernel drops")


# -- status ------------------------------------------------------------------------------
@collect.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per collector.")
def status_cmd(as_json: bool) -> None:
    """Health of every collector that ran here (last snapshot) and its spool."""
    import orjson

    from collectors.health import load_snapshots
    from soc_core.spool import backlog_bytes

    cfg = _config()
    snaps = load_snapshots(cfg.data_dir)
    if not snaps:
        click.echo(f"no collector has run with data directory {cfg.data_dir}")
        return
    for s in snaps:
        s["spool_on_disk"] = backlog_bytes(Path(cfg.data_dir) / "spool" / s["name"])
        if as_json:
            click.echo(orjson.dumps(s).decode())
            continue
        state = "up" if s["store_up"] else "DOWN"
        click.echo(f"{s['name']:12} pid {s['pid']:<7} updated {s['updated']}  store {state}")
        click.echo(f"  events in {s['events_in']}  out {s['events_out']} "
                   f"(duplicates {s['duplicates']})  rejected {s['rejected']}  "
                   f"spooled {s['spooled']}  drained {s['drained']}  dropped {s['dropped']}  "
                   f"errors {s['errors']}  lag {s['lag_seconds']}s")
        click.echo(f"  queued {s.get('queued', 0)}  spool: {s['spool_on_disk']} bytes waiting"
                   + (f", {s['spool_corruptions']} damaged regions skipped"
                      if s["spool_corruptions"] else ""))
        if s.get("settings"):
            c = s["settings"]
            click.echo(f"  settings: batch {c['batch_size']}..{c['max_batch_size']}, "
                       f"queue {c['queue_size']}, flush {c['flush_interval']} s, "
                       f"spool fsync {c['spool_fsync']}, spool max {c['spool_max_bytes']} bytes")
        if s.get("ring"):
            r = s["ring"]
            state = "writing" if r.get("writing") else f"STOPPED: {r.get('paused_reason')}"
            click.echo(f"  packet ring: {state}; {r.get('packets_written', 0)} packets "
                       f"written, {r.get('packets_not_written', 0)} not written, "
                       f"{r.get('files_removed', 0)} old files removed")
        if s.get("last_error"):
            click.echo(f"  last error: {s['last_error']}")

