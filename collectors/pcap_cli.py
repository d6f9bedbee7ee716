"""`govsoc pcap ...`: packets out of the packet ring (collectors.packet.ring).

    govsoc pcap get --flow EVENT_ID [--flow ...] -o flow.pcap
    govsoc pcap get --alert ALERT_ID -o alert.pcap
    govsoc pcap get --query 'destination.port:445' --from now-1h --to now -o smb.pcap

writes a pcap of exactly those flows' packets (both directions, in time order) and says
what could not be delivered (a file rotated out, a damaged file, a flow captured without
the ring). The group lives here alone so other packet commands join it.
"""

from __future__ import annotations

from pathlib import Path

import click

from soc_core.cliutil import fail, open_cli_store, store_option
from soc_core.config import ConfigError, load_config


@click.group("pcap")
def pcap() -> None:
    """Packets from the packet ring: retrieve a flow's, an alert's or a query's packets."""


@pcap.command("get")
@click.option("--flow", "flows", multiple=True, metavar="EVENT_ID",
              help="A flow event (or any network event of a flow); repeatable.")
@click.option("--alert", "alert", default=None, metavar="ALERT_ID",
              help="The flows of an alert's matched events.")
@click.option("--query", "query", default=None, metavar="Q",
              help="Events matching this query (with --from/--to): their flows.")
@click.option("--from", "start", default=None, metavar="T", help="Start of the query's span.")
@click.option("--to", "end", default=None, metavar="T", help="End of the query's span.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="The pcap file to write.")
@store_option
def get_cmd(flows: tuple[str, ...], alert: str | None, query: str | None, start: str | None,
            end: str | None, output: str, store_url: str | None) -> None:
    """Write the packets of flows (both directions, in time order) to a pcap file."""
    from collectors.packet import PcapError, write_flow_pcap
    from soc_core.store import StoreError

    if sum(bool(x) for x in (flows, alert, query)) != 1:
        fail("give exactly one of --flow, --alert, --query")
    if query and (not start or not end):
        fail("--query needs --from and --to")
    try:
        cfg = load_config()
    except ConfigError as exc:
        fail(str(exc))
    store = open_cli_store(store_url)
    try:
        result = write_flow_pcap(store, cfg, output, flows=flows, alert=alert, query=query,
                                 start=start, end=end)
    except (PcapError, ConfigError, StoreError) as exc:
        fail(str(exc).splitlines()[0])
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    finally:
        store.close()
    if not result.flows:
        Path(output).unlink(missing_ok=True)
        fail(f"nothing written: {result.notes[0] if result.notes else 'no flow matched'}")
    click.echo(f"wrote {result.packets} packets of {result.flows} flow(s) to {output}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
