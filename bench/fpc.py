"""Full packet capture: the packet ring's cost in live capture, and retrieval from a 2 GiB ring.

1. Live capture on a veth pair (own namespaces, removed afterwards; bench/veth_replay.py):
   the same mixed capture (bench/packet.py's generator) replayed at --rate packets/s from one
   end, captured on the other without the ring and with it: --runs pairs, the order within a
   pair alternating, after one capture not counted (a process's one-off costs). Prints for
   each capture: packets, achieved rate, kernel drops, the capture thread's CPU time (user,
   system) per packet and the load average; for each pair the ratio ring / no ring (CPU
   time against CPU time, same offered load), then the median of all pairs and of the pairs
   where neither side lost a packet (only those did the same work).
   Targets: >= 100,000 packets/s with 0 kernel drops; ratio <= 1.3.
2. A 2 GiB ring (--ring-gib): the capture written once through the ring (collect pcap --ring's
   path), then its files replicated with timestamps shifted by the capture's span (fast:
   a struct walk over the blocks), so every copy is a distinct stretch of time. One flow in
   the middle copy is retrieved with write_flow_pcap (--runs times) and selected with
   `tshark -r FILE -Y '<5-tuple and time span>'` over every ring file (the reference, once
   by default: it reads all 2 GiB); the two outputs are compared packet for packet.
   Target: retrieval <= 1 s. Prints the ratio tshark / retrieval.
Everything lives in a temporary directory removed at the end. Asserts nothing.
Usage: python bench/fpc.py [--rate 100000] [--packets 200000] [--runs 3] [--ring-gib 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# the tests' helpers: a pcap's packets; tshark's filter on a flow's 5-tuple and time span
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/collectors/packet"))


def live_run(capture_path: Path, rate: float, ring_dir: Path | None) -> dict:
    """One capture of the replayed capture (bench/veth_replay.py), with the ring writing
    into `ring_dir` or without it; the ring's files are removed afterwards."""
    from veth_replay import replay

    from collectors.packet import PacketRing, RingConfig

    ring = None
    if ring_dir is not None:
        ring = PacketRing(RingConfig(dir=ring_dir, file_bytes=64 << 20, max_bytes=4096 << 20,
                                     max_age_s=86400, min_free_bytes=256 << 20))
    gc.collect()  # a collection owed by the previous run is not charged to this one
    try:
        r = replay(capture_path, rate, prefix="gz", ring=ring)
    finally:
        if ring_dir is not None:
            shutil.rmtree(ring_dir, ignore_errors=True)
    r["written"] = ring.written if ring else 0
    r["ring_bytes"] = ring.bytes if ring else 0
    r["load"] = os.getloadavg()[0]
    return r


def bench_live(capture_path: Path, rate: float, runs: int, tmp: Path) -> None:
    """`runs` pairs of captures, one without the ring and one with it, the order alternating
    (no ring first in odd pairs, ring first in even ones: a load that rises or falls through
    the bench weighs on both sides alike); the ratio of each pair, then their median."""
    print(f"\n== live capture on a veth pair, {rate:,.0f} packets/s offered, {runs} pairs ==")
    # one capture first, not counted: what a process pays once (imports, its heap growing
    # to the flow table's size) would otherwise fall on the first pair's first side
    live_run(capture_path, rate, tmp / "live-ring-warm-up")
    ratios, per = [], {False: [], True: []}
    for i in range(runs):
        got = {}
        for with_ring in ([False, True] if i % 2 == 0 else [True, False]):
            ring_dir = tmp / f"live-ring-{i}" if with_ring else None
            r = got[with_ring] = live_run(capture_path, rate, ring_dir)
            per[with_ring].append(r["us_per_packet"])
            print(f"run {i + 1} {'ring   ' if with_ring else 'no ring'}: sent {r['sent']:,} at "
                  f"{r['rate']:,.0f}/s; captured {r['packets']:,}, kernel drops "
                  f"{r['drops']:,}; CPU {r['cpu']:.2f} s (user {r['user']:.2f}, system "
                  f"{r['sys']:.2f}) = {r['us_per_packet']:.2f} µs/packet; {r['faults']:,} page "
                  f"faults"
                  + (f"; ring wrote {r['written']:,} packets, "
                     f"{r['ring_bytes'] / 2**20:,.0f} MiB" if with_ring else "")
                  + f"   load {r['load']:.2f}")
        ratio = got[True]["us_per_packet"] / got[False]["us_per_packet"]
        # with packets lost (kernel drops, or short of what was sent: the veth's backlog)
        # the two sides did not do the same work: each kept other packets
        clean = all(got[w]["drops"] == 0 and got[w]["packets"] >= got[w]["sent"]
                    for w in (False, True))
        ratios.append((ratio, clean))
        print(f"run {i + 1}: CPU per packet ring / no ring = {ratio:.2f}x"
              + ("" if clean else "  (packets lost: not the same packets on both sides)"))
    all_r = [r for r, _ in ratios]
    clean_r = [r for r, c in ratios if c]
    print(f"ratios: {', '.join(f'{r:.2f}x' + ('' if c else '*') for r, c in ratios)} "
          f"(* = packets lost); median {statistics.median(all_r):.2f}x, of the pairs without "
          f"loss " + (f"{statistics.median(clean_r):.2f}x ({len(clean_r)})" if clean_r
                       else "none")
          + f" (target <= 1.3x, >= 100,000 packets/s with 0 drops); median µs/packet no "
          f"ring {statistics.median(per[False]):.2f}, ring {statistics.median(per[True]):.2f}"
          f"   load {os.getloadavg()[0]:.2f}")


_EPB_TS = struct.Struct("<II")


def shift_copy(src: Path, dst: Path, shift_us: int) -> None:
    """A copy of a ring file with every packet's time moved by `shift_us`."""
    from collectors.packet import ringfile as rf

    data = bytearray(src.read_bytes())
    off, size = rf.HEADER_LEN, len(data)
    u32 = struct.Struct("<I").unpack_from
    unpack, pack = _EPB_TS.unpack_from, _EPB_TS.pack_into
    while off + 12 <= size:
        btype, blen = u32(data, off)[0], u32(data, off + 4)[0]
        if blen < 12:
            break
        if btype == 6:
            hi, lo = unpack(data, off + 12)
            t = ((hi << 32) | lo) + shift_us
            pack(data, off + 12, t >> 32, t & 0xFFFFFFFF)
        off += blen
    dst.write_bytes(data)


def bench_retrieval(capture_path: Path, gib: float, runs: int, tshark_runs: int,
                    tmp: Path) -> None:
    from collectors.packet import PacketRing, RingConfig, read_pcaps, write_flow_pcap
    from collectors.packet import ringfile as rf
    from soc_core import ecs
    from soc_core.store import open_store

    print(f"\n== retrieval of one flow from a {gib:g} GiB ring ==")
    ring_dir = tmp / "ring"
    cfg = RingConfig(dir=ring_dir, file_bytes=64 << 20, max_bytes=int(gib * 2 ** 30) * 2,
                     max_age_s=10 * 365 * 86400, min_free_bytes=0)
    t0 = time.perf_counter()
    events, _ = read_pcaps([capture_path], ring=PacketRing(cfg))
    flows = [e for e in events if e["event"]["dataset"] == "network.flow"]
    base = sorted(ring_dir.glob("*.pcapng"))
    stream = rf.parse_name(base[0].name)[0]
    per_copy = len(base)
    copy_bytes = sum(p.stat().st_size for p in base)
    first_us = min(ecs.to_millis(f["event"]["start"]) for f in flows) * 1000
    last_us = max(ecs.to_millis(f["event"]["end"]) for f in flows) * 1000
    span_us = last_us - first_us + 1_000_000
    copies = max(1, int(gib * 2 ** 30 // copy_bytes) + (gib * 2 ** 30 % copy_bytes > 0))
    for k in range(1, copies):
        for p in base:
            seq = rf.parse_name(p.name)[1]
            shift_copy(p, ring_dir / rf.file_name(stream, seq + k * per_copy), k * span_us)
    total = sum(p.stat().st_size for p in ring_dir.glob("*.pcapng"))
    print(f"ring: {copies} copies of a {copy_bytes / 2**20:.0f} MiB capture "
          f"({len(flows):,} flows), {total / 2**30:.2f} GiB in "
          f"{len(list(ring_dir.glob('*.pcapng')))} files, made in "
          f"{time.perf_counter() - t0:.1f} s")
    # the flow: a bulk one of the middle copy, its event moved there
    k = copies // 2
    flow = max((f for f in flows if f["network"]["transport"] == "tcp"),
               key=lambda f: (f["network"]["packets"], f["event"]["id"]))
    shifted = _shift_event(flow, k, per_copy, span_us, stream)
    store = open_store(f"sqlite:///{tmp}/fpc.db")
    store.write([shifted], refresh=True)
    times = []
    out = tmp / "flow.pcap"
    for _ in range(runs):
        t = time.perf_counter()
        result = write_flow_pcap(store, cfg, out, flows=[shifted["event"]["id"]])
        times.append(time.perf_counter() - t)
    print(f"write_flow_pcap: {result.packets} packets of flow {shifted['source']['ip']}:"
          f"{shifted['source']['port']} -> {shifted['destination']['ip']}:"
          f"{shifted['destination']['port']} in copy {k}; wall "
          + ", ".join(f"{x * 1000:.1f} ms" for x in times) + " (target <= 1 s)")
    from ring_helpers import flow_filter, pcap_packets

    filt = flow_filter(shifted)
    files = sorted(ring_dir.glob("*.pcapng"))
    ts_times = []
    for _ in range(tshark_runs):
        t = time.perf_counter()
        parts = []
        for i, p in enumerate(files):
            part = tmp / f"part{i}.pcap"
            subprocess.run(["tshark", "-r", str(p), "-Y", filt, "-F", "pcap", "-w", str(part)],
                           check=True, capture_output=True)
            parts.append(part)
        ts_times.append(time.perf_counter() - t)
    got = [pk for part in parts for pk in pcap_packets(part)]
    mine = pcap_packets(out)
    print(f"tshark -r FILE -Y '<5-tuple and time span>' over the {len(files)} files: wall "
          + ", ".join(f"{x:.1f} s" for x in ts_times)
          + f"; selected {len(got)} packets; equal to write_flow_pcap's: {got == mine}")
    best = min(times)
    print(f"ratio tshark / write_flow_pcap (best of each): {min(ts_times) / best:,.0f}x; "
          f"retrieval {best * 1000:.1f} ms ({'meets' if best <= 1 else 'misses'} <= 1 s)   "
          f"load {os.getloadavg()[0]:.2f}")
    store.close()


def _shift_event(flow: dict, k: int, per_copy: int, span_us: int, stream: str) -> dict:
    import copy

    from collectors.packet import ringfile as rf
    from collectors.packet.events import iso_time
    from soc_core import ecs

    def iso(ms: int) -> str:
        return iso_time(ms / 1000)

    doc = copy.deepcopy(flow)
    for key in ("start", "end"):
        doc["event"][key] = iso(ecs.to_millis(flow["event"][key]) + k * span_us // 1000)
    doc["@timestamp"] = doc["event"]["start"]
    doc["event"]["id"] = f"{flow['event']['id']}-copy{k}"
    loc = doc["govsoc"]["pcap"]
    for end in ("first", "last"):
        seq = rf.parse_name(loc[end]["file"])[1]
        loc[end]["file"] = rf.file_name(stream, seq + k * per_copy)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100_000)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ring-gib", type=float, default=2.0)
    ap.add_argument("--tshark-runs", type=int, default=1,
                    help="passes of tshark over the whole ring (each reads all of it)")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-retrieval", action="store_true")
    args = ap.parse_args()
    from packet import make_capture

    print(f"machine: {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="govsoc-fpc-", dir="/var/tmp") as tmp_s:
        tmp = Path(tmp_s)
        cap = tmp / "mixed.pcap"
        make_capture(cap, args.packets)
        print(f"capture: {args.packets:,} packets, {cap.stat().st_size / 2**20:.0f} MiB")
        if not args.skip_live:
            if os.geteuid() == 0:
                bench_live(cap, args.rate, args.runs, tmp)
            else:
                print("live capture: skipped, needs root (network namespaces)")
        if not args.skip_retrieval:
            bench_retrieval(cap, args.ring_gib, args.runs, args.tshark_runs, tmp)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
