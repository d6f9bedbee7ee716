"""Live capture of a replayed capture on a veth pair, shared by bench/packet.py,
bench/fpc.py and bench/scale.py: the sender (a pcap's frames sent at a rate from one end,
in its own namespace) and one measured capture on the other end (`replay`).

The capture runs in its own thread; its CPU time is that thread's own (the thread's CPU
clock; the user / system split from getrusage RUSAGE_THREAD), from just before the socket
opens until the capture has drained its socket and stopped: the same span and the same
clock whatever the capture does (with the packet ring or without). The namespaces are
made for the run and removed after it.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# replays a classic pcap's frames from `iface` at `rate` frames/s (500 at a time, sleeping
# when ahead); prints "frames seconds"
SENDER = """
import socket, struct, sys, time
path, iface, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(path, "rb").read()
frames, off = [], 24
while off + 16 <= len(data):
    n = struct.unpack_from("<I", data, off + 8)[0]
    frames.append(data[off + 16:off + 16 + n])
    off += 16 + n
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
send = s.send
t0 = time.perf_counter()
for i in range(0, len(frames), 500):
    for f in frames[i:i + 500]:
        send(f)
    ahead = (i + 500) / rate - (time.perf_counter() - t0)
    if ahead > 0:
        time.sleep(ahead)
dt = time.perf_counter() - t0
print(len(frames), dt)
"""


def send(ns: str, iface: str, capture_path: Path, rate: float) -> tuple[int, float]:
    """Run the sender in namespace `ns` until it is done: (frames sent, seconds)."""
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER,
                          str(capture_path), iface, str(rate)], capture_output=True,
                         text=True, check=True)
    sent, dt = out.stdout.split()
    return int(sent), float(dt)


def _thread_cpu() -> tuple[float, float, float, int]:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return time.thread_time(), ru.ru_utime, ru.ru_stime, ru.ru_minflt


def replay(capture_path: Path, rate: float, *, prefix: str = "gr", ring: Any = None
           ) -> dict[str, Any]:
    """Capture on one end of a new veth pair while `capture_path` is sent from the other at
    `rate`; `ring` (a PacketRing) is passed to the capture as it is. Returns sent, rate
    (achieved), packets (captured), kernel_packets, drops, events, cpu / user / sys (the
    capture thread's seconds), faults (its minor page faults) and us_per_packet (its CPU
    per captured packet)."""
    from collectors.packet.live import LiveStats, capture
    from collectors.packet.vethpair import veth_pair

    with veth_pair(prefix) as (ns_a, ns_b, va, vb):
        stats, stop, ready = LiveStats(), threading.Event(), threading.Event()
        cpu: dict[str, tuple] = {}
        failed: list[BaseException] = []
        events = [0]

        def sink(_e: dict) -> None:
            events[0] += 1

        def run() -> None:
            before = _thread_cpu()
            try:
                capture(vb, None, stop, sink, netns=ns_b, ready=ready, stats=stats,
                        ring=ring)
            except BaseException as exc:  # re-raised in the caller
                failed.append(exc)
                ready.set()
            cpu["t"] = tuple(b - a for a, b in zip(before, _thread_cpu(), strict=True))

        th = threading.Thread(target=run, name="capture")
        th.start()
        try:
            ready.wait(30)
            if failed:
                raise failed[0]
            sent, dt = send(ns_a, va, capture_path, rate)
            last, still = -1, 0
            while still < 3:  # until the capture has drained its socket
                time.sleep(0.2)
                still = still + 1 if stats.packets == last else 0
                last = stats.packets
        finally:
            stop.set()
            th.join()
    if failed:
        raise failed[0]
    total, user, system, faults = cpu["t"]
    return {"sent": sent, "rate": sent / dt, "packets": stats.packets,
            "kernel_packets": stats.kernel_packets, "drops": stats.kernel_drops,
            "events": events[0], "cpu": total, "user": user, "sys": system, "faults": faults,
            "us_per_packet": total / max(stats.packets, 1) * 1e6}
