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

    ring = PacketRing(ring_config(cfg), emit=sink, health=shipper.health)
        The packet ring (collectors.packet.ring): pass it as `capture(..., ring=ring)`
        and every frame is written to rotating pcapng files under <data_dir>/pcap within
        a size and an age budget; each flow event records where its packets are
        (`govsoc.pcap`: stream, first/last file, packet number and block offset).

    result = write_flow_pcap(store, cfg, out, *, flows=(), alert=None, query=None,
                             start=None, end=None, visible=None)
        Writes to `out` (path or binary file) a classic pcap of exactly the packets of
        the chosen flows (event ids of flows or of any network event of a flow, an
        alert's matched events, or a query over [start, end)), both directions, in time
        order, reading only those flows' range of the ring. Returns PcapResult(packets,
        flows, notes, flow_ids): notes say what is missing (a file rotated out, a damaged
        file, a flow captured without the ring). `visible(doc) -> bool` leaves out what
        the caller may not see. Raises PcapError (one line) for an unanswerable request.

    dissect(path, display_filter=None, limits=Limits(), with_hex=True, only=None)
        The packets of a capture decoded by Wireshark's dissectors (pyshark over tshark's
        PDML): per packet summary, protocol tree (`layers`) and hex; a Dissection with
        `notes` saying what was cut (caps, time limit) or damaged. `follow(path, "tcp" |
        "http", stream)` is Wireshark's Follow Stream; `flow_filter(flow_event)` the
        display filter of a flow's packets. DissectError for a bad display filter.

    carve(path, data_dir, origin=None) -> Carved
        The files of HTTP/FTP/SMB transfers (tshark --export-objects), hashed with SM3 and
        SHA-256, kept once under <data_dir>/carved/ by SHA-256 (`carved_path`), as
        `file.carved` events (`record_carved(store, carved)` writes them).

    with flow_capture(store, cfg, flows=(...) | alert=ID, visible=None) as got:
        A temporary pcap (`got.path`) of those flows' packets from the ring, for the two
        above; NoPackets (one line) when the ring has none.
"""

from __future__ import annotations

from collectors.packet.carving import DATASET as CARVED_DATASET
from collectors.packet.carving import Carved, CarveLimits, carve, carved_path
from collectors.packet.carving import record as record_carved
from collectors.packet.dissection import (
    DissectError,
    Dissection,
    Limits,
    dissect,
    flow_filter,
    follow,
    hex_dump,
    tree_text,
)
from collectors.packet.drilldown import FlowCapture, NoPackets, flow_capture, ftp_session
from collectors.packet.reader import ENGINES, read_pcaps
from collectors.packet.retrieve import PcapError, PcapResult, write_flow_pcap
from collectors.packet.ring import PacketRing, RingConfig, ring_config
from collectors.packet.stats import CaptureError, CaptureStats

__all__ = ["ENGINES", "CaptureError", "CaptureStats", "PacketRing", "PcapError", "PcapResult",
           "RingConfig", "read_pcaps", "ring_config", "write_flow_pcap"]
# deep dissection and carving (dissection.py, carving.py, drilldown.py)
__all__ += ["CARVED_DATASET", "CarveLimits", "Carved", "DissectError", "Dissection",
            "FlowCapture", "Limits", "NoPackets", "carve", "carved_path", "dissect",
            "flow_capture", "flow_filter", "follow", "ftp_session", "hex_dump", "record_carved",
            "tree_text"]
