"""`govsoc pcap show` and `govsoc pcap carve`: a capture file's, a flow's or an alert's
packets dissected by Wireshark (protocol tree, hex, follow stream), and the files they
carry carved and recorded. Flows and alerts are read from the packet ring
(`collectors.packet.write_flow_pcap`); these commands join the ring's `govsoc pcap` group
(collectors.pcap_cli), which the `pcap` entry point takes from here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from collectors.pcap_cli import pcap
from soc_core.cliutil import fail, open_cli_store, store_option
from soc_core.config import ConfigError, load_config


def _source_options(fn: Any) -> Any:
    fn = click.option("--alert", "alert_id", metavar="ALERT_ID",
                      help="The packets of an alert's flows (from the packet ring).")(fn)
    fn = click.option("--flow", "flow_id", metavar="EVENT_ID",
                      help="The packets of one flow event (from the packet ring).")(fn)
    fn = click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
                      help="A pcap/pcapng file.")(fn)
    return store_option(fn)


@contextmanager
def _capture(file: Path | None, flow_id: str | None, alert_id: str | None,
             store_url: str | None, *, session: bool = False
             ) -> Iterator[tuple[Path, list[str], dict[str, Any] | None, Any]]:
    """(capture path, notes, the flow event or alert named, store or None)."""
    from collectors.packet.drilldown import NoPackets, flow_capture, ftp_session
    from collectors.packet.stats import CaptureError

    given = [x for x in (file, flow_id, alert_id) if x]
    if len(given) != 1:
        fail("give exactly one of --file, --flow, --alert")
    if file is not None:
        try:
            from collectors.packet.dissection import check_capture

            check_capture(file)
        except CaptureError as exc:
            fail(str(exc))
        yield file, [], None, None
        return
    try:
        cfg = load_config()
    except ConfigError as exc:
        fail(str(exc))
    store = open_cli_store(store_url)
    try:
        origin = store.get("events", flow_id) if flow_id else store.get("alerts", alert_id)
        if origin is None:
            fail(f"no such flow event: {flow_id}" if flow_id else f"no such alert: {alert_id}")
        try:
            ftp = ftp_session(origin) if session and flow_id else None
            with flow_capture(store, cfg, flows=(flow_id,) if flow_id else (),
                              alert=alert_id, session=ftp) as got:
                yield got.path, got.notes, origin, store
        except NoPackets as exc:
            fail(str(exc))
    finally:
        store.close()


@click.command("show")
@_source_options
@click.option("--filter", "display_filter", metavar="DISPLAY_FILTER",
              help="Wireshark display filter on top (e.g. 'http.request').")
@click.option("--json", "as_json", is_flag=True, help="JSON: packets with tree and hex.")
@click.option("--follow", type=click.Choice(["tcp", "http"]),
              help="Follow a TCP or HTTP stream instead of listing packets.")
@click.option("--stream", type=click.IntRange(min=0), default=None,
              help="TCP stream index to follow (default: the first packet's).")
@click.option("--hex", "with_hex", is_flag=True, help="Add each packet's hex dump.")
@click.option("--max-packets", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60, show_default=True,
              help="Seconds tshark may take.")
def show(file: Path | None, flow_id: str | None, alert_id: str | None, store_url: str | None,
         display_filter: str | None, as_json: bool, follow: str | None, stream: int | None,
         with_hex: bool, max_packets: int, timeout: float) -> None:
    """Packets dissected by Wireshark: the protocol tree of each (as `tshark -V`), with
    --hex their bytes, with --follow the TCP/HTTP stream."""
    from collectors.packet import dissection as d

    limits = d.Limits(packets=max_packets, timeout_s=timeout)
    with _capture(file, flow_id, alert_id, store_url) as (path, notes, _origin, _store):
        try:
            if follow:
                if stream is None:
                    first = d.dissect(path, display_filter=display_filter, with_hex=False,
                                      limits=d.Limits(packets=1, timeout_s=timeout))
                    stream = next((p["tcp_stream"] for p in first.packets
                                   if p["tcp_stream"] is not None), 0)
                got = d.follow(path, follow, stream, limits=limits)
                got["notes"] = notes + got["notes"]
                _print_follow(got, as_json)
                return
            result = d.dissect(path, display_filter=display_filter, limits=limits,
                               with_hex=with_hex or as_json)
        except d.DissectError as exc:
            fail(str(exc))
    result.notes[:0] = notes
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    for p in result.packets:
        click.echo(f"{p['number']}  {p['time']}  {p['source']} → {p['destination']}  "
                   f"{p['protocol']}  {p['length']}  {p['info']}")
        for line in d.tree_text(p["layers"], 1):
            click.echo(line)
        if with_hex:
            click.echo(p.get("hex", ""))
        click.echo("")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


def _print_follow(got: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(got, ensure_ascii=False))
        return
    nodes = got["nodes"] + ["?", "?"]
    click.echo(f"Follow {got['kind'].upper()} stream {got['stream']}: {nodes[0]} ⇄ {nodes[1]}")
    for c in got["chunks"]:
        click.echo(f"--- {nodes[c['from']]} ({c['bytes']} bytes)")
        sys.stdout.write(c["text"] if c["text"].endswith("\n") else c["text"] + "\n")
    for note in got["notes"]:
        click.echo(f"note: {note}", err=True)


@click.command("carve")
@_source_options
@click.option("--json", "as_json", is_flag=True, help="JSON: the file events and notes.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120, show_default=True)
def carve(file: Path | None, flow_id: str | None, alert_id: str | None, store_url: str | None,
          as_json: bool, timeout: float) -> None:
    """Carve the files HTTP, FTP and SMB transfers carry (tshark --export-objects; an FTP
    control flow brings its data connections): kept
    under <data_dir>/carved/ by SHA-256, hashed with SM3 and SHA-256, recorded in the store
    as `file.carved` events."""
    from collectors.packet import carving as c

    try:
        cfg = load_config()
    except ConfigError as exc:
        fail(str(exc))
    with _capture(file, flow_id, alert_id, store_url, session=True) as (path, notes, origin,
                                                                         store):
        got = c.carve(path, cfg.data_dir, origin=origin,
                      limits=c.CarveLimits(timeout_s=timeout))
        got.notes[:0] = notes
        own = store is None
        store = store or open_cli_store(store_url)
        try:
            written = c.record(store, got)
        finally:
            if own:
                store.close()
    if written.rejected:
        fail(f"the store refused {len(written.rejected)} file events: "
             f"{written.rejected[0].reason}")
    if as_json:
        click.echo(json.dumps(got.to_dict(), ensure_ascii=False))
        return
    for e in got.files:
        f = e["file"]
        click.echo(f"{e['network']['protocol']:5} {f['size']:>10}  {f['hash']['sha256']}  "
                   f"sm3 {e['govsoc']['file']['hash']['sm3']}  {f.get('mime_type', '-')}  "
                   f"{f['name']}")
    click.echo(f"{len(got.files)} files carved ({written.written} new events) into "
               f"{Path(cfg.data_dir) / 'carved'}")
    for note in got.notes:
        click.echo(f"note: {note}", err=True)


COMMANDS = (show, carve)
for _cmd in COMMANDS:
    pcap.add_command(_cmd)
