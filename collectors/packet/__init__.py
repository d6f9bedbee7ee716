"""Packet collector: pcap/pcapng files and live interfaces -> ECS network events.

Public API (the `govsoc collect pcap|live` commands call exactly these):

    events, stats = read_pcaps(paths, engine="fast" | "tshark", progress=cb)
        `events` is an iterator of ECS event dicts (`event.dataset` one of
        `network.flow`, `network.dns`, `network.http`, `network.tls`, and the login
        datasets `network.ftp|rdp|smtp|pop3|imap|smb|kerberos|ldap`), in the layout
        Filebeat's Zeek module writes; ids are deterministic (same file -> same ids).
        `stats` is a CaptureStats filled while iterating: packets, bytes, bad packets
        with reasons (`stats.bad_reasons`), ignored non-IP frames, flows, events per
        dataset; `stats.to_dict()` / `stats.summary()` for printing.
        `progress(done_bytes, total_bytes)` is called now and then.
        Raises CaptureError (one clear line) before yielding anything when a file is
        missing or is not a pcap/pcapng capture; damage inside a file is counted, not
        raised.

    collectors.packet.live.capture(iface, bpf, stop_event, sink, *, netns=None,
                                   promisc=False, ready=None, stats=None)
        Sniffs `iface` (scapy's Linux socket with a kernel BPF filter compiled from
        `bpf`), decodes with the fast path and calls `sink(event)` for every ECS event
        until `stop_event` (threading.Event) is set, then flushes the open flows;
        returns a LiveStats (packets, kernel_packets/kernel_drops read from
        PACKET_STATISTICS, flows, events; pass `stats=LiveStats()` to watch it fill
        while running, `ready=threading.Event()` to learn when the filter is in place).
        Raises CaptureError with one line: "live capture on IF is not permitted: it
        needs root or the CAP_NET_RAW capability", "no such network interface: IF",
        "bad BPF filter ...". `fanout=group` joins the socket to a PACKET_FANOUT group.

    collectors.packet.workers.capture_workers(iface, bpf, workers, stop_event, make_sink,
                                              *, netns=None, promisc=False, ready=None)
        `workers` processes in one PACKET_FANOUT group (symmetric flow hash: each sees
        whole flows, both directions); `make_sink(i)` runs in worker i and returns
        (sink, flush); returns [(LiveStats, flush result)] per worker, kernel drops
        per worker. `govsoc collect live --workers N` runs it with a shipper per worker
        (collector `live-<i>`).
"""

from __future__ import annotations

from collectors.packet.reader import ENGINES, read_pcaps
from collectors.packet.stats import CaptureError, CaptureStats

__all__ = ["ENGINES", "CaptureError", "CaptureStats", "read_pcaps"]
