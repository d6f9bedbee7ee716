"""Helpers of the packet ring tests: read a pcap's packets, and what tshark's display
filter on a flow's 5-tuple and time span selects from an original capture."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from soc_core import ecs


def pcap_packets(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp in microseconds, frame) of a classic little-endian microsecond pcap."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", "not a microsecond pcap"
    out, off = [], 24
    while off + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, off)
        out.append((sec * 1_000_000 + usec, data[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return out


def flow_filter(flow: dict) -> str:
    """tshark display filter: the flow's 5-tuple (both directions) and its time span."""
    s, d, n = flow["source"], flow["destination"], flow["network"]
    ipf = "ipv6" if ":" in s["ip"] else "ip"
    f = f"{ipf}.addr=={s['ip']} && {ipf}.addr=={d['ip']}"
    t = n["transport"]
    if t in ("tcp", "udp"):
        f += f" && {t}.port=={s['port']} && {t}.port=={d['port']}"
    else:
        f += f" && {ipf}.{'nxt' if ipf == 'ipv6' else 'proto'}=={n['iana_number']}"
    a, b = ecs.to_millis(flow["event"]["start"]), ecs.to_millis(flow["event"]["end"])
    return f + f" && frame.time_epoch >= {a / 1000:.3f} && frame.time_epoch < {(b + 1) / 1000:.3f}"


def tshark_select(original: Path, flow: dict, out: Path) -> list[tuple[int, bytes]]:
    subprocess.run(["tshark", "-r", str(original), "-Y", flow_filter(flow), "-F", "pcap",
                    "-w", str(out)], check=True, capture_output=True)
    return pcap_packets(out)
