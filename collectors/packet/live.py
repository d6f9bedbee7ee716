"""Live capture: scapy's Linux packet socket with a kernel BPF filter, frames decoded
by the fast path, events handed to a sink as flows end (and all at stop).

The socket's kernel counters (PACKET_STATISTICS: packets seen by the filter, packets
dropped because the receive buffer was full) are read and reported: zero drops is
the proof the collector kept up.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from collectors.packet.decode import DLT_EN10MB, DLT_RAW
from collectors.packet.events import EventBuilder
from collectors.packet.fast import Inspector
from collectors.packet.session import Session
from collectors.packet.stats import CaptureError, CaptureStats

SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000
SO_TIMESTAMPNS = 35
PACKET_AUXDATA = 8
PACKET_FANOUT = 18
# flow hash (the kernel's symmetric hash: both directions of a flow to one socket), with
# fragments reassembled first so a fragmented datagram is not split between sockets
PACKET_FANOUT_HASH, PACKET_FANOUT_FLAG_DEFRAG = 0, 0x8000
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40
_TIMESPEC = struct.Struct("qq").unpack_from
_AUX = struct.Struct("I12xHH").unpack_from  # tpacket_auxdata: status ... vlan tci, tpid
_VLAN = struct.Struct(">HH").pack
# a frame is read whole up to this: a veth or a NIC with segmentation offload hands the
# socket TCP segments of up to 64 KiB of IP plus the link headers, past 65535. (Not more:
# a buffer past glibc's mmap threshold, 128 KiB, is mapped and unmapped on every recvmsg,
# 8x slower.)
SNAP = 65536 + 256
RCVBUF = 64 << 20  # 64 MiB of kernel buffer absorbs bursts while Python catches up
_ARPHRD_TO_DLT = {1: DLT_EN10MB, 772: DLT_EN10MB, 65534: DLT_RAW, 776: DLT_RAW}


@dataclass
class LiveStats(CaptureStats):
    iface: str = ""
    kernel_packets: int = 0  # passed the BPF filter, as counted by the kernel
    kernel_drops: int = 0  # lost: the socket buffer was full

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "iface": self.iface,
                "kernel_packets": self.kernel_packets, "kernel_drops": self.kernel_drops}

    def summary(self) -> str:
        return (f"{super().summary()}; kernel: {self.kernel_packets} packets, "
                f"{self.kernel_drops} dropped")


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block in network namespace `name` (this thread only): a packet socket
    belongs to the namespace it was created in and keeps it afterwards."""
    if not name:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    path = f"/run/netns/{name}"
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise CaptureError(f"network namespace {name!r} does not exist") from None
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise CaptureError(f"cannot enter network namespace {name!r}: "
                               f"{os.strerror(err)}")
        try:
            yield
        finally:
            libc.setns(home, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)


def open_socket(iface: str, bpf: str | None, promisc: bool = False, netns: str | None = None):
    """scapy's listening socket on `iface` with `bpf` compiled into the kernel."""
    import scapy.layers.l2  # noqa: F401 - registers link types the socket looks up
    from scapy.arch.linux import L2ListenSocket
    from scapy.error import Scapy_Exception

    # L2ListenSocket: also sees what this host sends, not only what it receives
    cls = L2ListenSocket
    with in_netns(netns):
        try:
            socket.if_nametoindex(iface)  # asks the kernel of this thread's namespace
        except OSError:
            where = f" in namespace {netns}" if netns else ""
            raise CaptureError(f"no such network interface: {iface}{where}") from None
        try:
            sock = cls(iface=iface, filter=bpf or None, promisc=promisc)
        except PermissionError:
            raise CaptureError(f"live capture on {iface} is not permitted: it needs root "
                               "or the CAP_NET_RAW capability") from None
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise CaptureError(f"live capture on {iface} is not permitted: it needs "
                                   "root or the CAP_NET_RAW capability") from None
            raise CaptureError(f"cannot capture on {iface}: {exc.strerror or exc}") from None
        except Scapy_Exception as exc:
            raise CaptureError(f"bad BPF filter {bpf!r}: {exc}") from None
    try:
        sock.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    return sock


def join_fanout(sock, group: int) -> None:
    """Put `sock` into PACKET_FANOUT group `group` (0..65535, one per capture): the kernel
    hands each flow's packets, both directions, to exactly one socket of the group."""
    mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
    try:
        sock.ins.setsockopt(SOL_PACKET, PACKET_FANOUT,
                            struct.pack("I", group & 0xFFFF | mode << 16))
    except OSError as exc:
        raise CaptureError(f"cannot join fan-out group {group}: {exc.strerror or exc}") from None


def kernel_counters(sock) -> tuple[int, int]:
    """(packets, drops) since the last call (the kernel resets them on each read)."""
    raw = sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    return struct.unpack("II", raw)


def capture(iface: str, bpf: str | None, stop_event: threading.Event,
            sink: Callable[[dict[str, Any]], None], *, netns: str | None = None,
            promisc: bool = False, ready: threading.Event | None = None,
            stats: LiveStats | None = None, fanout: int | None = None,
            ring: Any = None, **table_opts: Any) -> LiveStats:
    """Capture until `stop_event` is set; every event goes to `sink`. `ready` (if given)
    is set once the socket and its filter are in place, so a caller can start traffic;
    `stats` (if given) is filled while running, for a live status display. `fanout`: the
    PACKET_FANOUT group this socket joins, as one of several workers
    (collectors.packet.workers); event ids do not depend on which worker saw the flow.
    `ring` (collectors.packet.ring.PacketRing): every frame is also written to the packet
    ring and each flow event says where; the ring's health events go to `sink` too."""
    sock = open_socket(iface, bpf, promisc, netns)
    if fanout is not None:
        try:
            join_fanout(sock, fanout)
        except CaptureError:
            sock.close()
            raise
    if stats is None:
        stats = LiveStats()
    stats.iface = iface
    ident = f"live:{socket.gethostname()}:{netns or ''}:{iface}"
    session = Session(EventBuilder(ident, f"live:{iface}"), stats, **table_opts)
    insp = Inspector(session)
    frame = insp.frame
    out, drain = session.out, session.drain
    hatype = sock.ins.getsockname()[3]
    linktype = _ARPHRD_TO_DLT.get(hatype, DLT_EN10MB)
    fd = sock.ins.fileno()
    recvmsg = sock.ins.recvmsg
    # loopback shows every packet twice (leaving and arriving): keep the arrival
    skip_out = hatype == 772
    ring_write = None
    if ring is not None:
        ring.use_linktype(linktype)
        if ring.emit is None:
            ring.emit = sink
        ring_write = ring.write
    sock.ins.setblocking(False)
    kernel_counters(sock)  # reset: count from here
    if ready is not None:
        ready.set()
    t0 = time.perf_counter()
    next_check = 0.0
    try:
        while not stop_event.is_set():
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                # Drain what is queued before looking at the stop flag again. recvmsg
                # directly (not scapy's recv_raw, 2.5x slower) with the ancillary data
                # scapy's socket enabled: kernel timestamp and the stripped VLAN tag.
                for _ in range(4096):
                    try:
                        data, anc, _fl, addr = recvmsg(SNAP, 256)
                    except (BlockingIOError, InterruptedError):
                        break
                    if skip_out and addr[2] == socket.PACKET_OUTGOING:
                        continue
                    us = 0
                    for level, kind, cdata in anc:
                        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                            sec, nsec = _TIMESPEC(cdata)
                            # whole microseconds, as libpcap and tshark give them
                            us = sec * 1_000_000 + nsec // 1000
                        elif kind == PACKET_AUXDATA and level == SOL_PACKET:
                            status, tci, tpid = _AUX(cdata)
                            if status & TP_STATUS_VLAN_VALID and linktype == DLT_EN10MB:
                                data = data[:12] + _VLAN(
                                    tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100,
                                    tci) + data[12:]
                    if not us:  # (no kernel timestamp: now)
                        us = int(time.time() * 1_000_000)
                    if ring_write is None:
                        frame(us / 1_000_000, linktype, data, 0, len(data))
                    else:  # the ring takes the microseconds as they are
                        ring_write(us, data, frame(us / 1_000_000, linktype, data, 0, len(data)))
                    if out:
                        for ev in drain():
                            sink(ev)
            now = time.time()
            if now >= next_check:
                next_check = now + 1.0
                pk, dr = kernel_counters(sock)
                stats.kernel_packets += pk
                stats.kernel_drops += dr
                if ring is not None:
                    ring.tick(now)
                if now >= session.table.next_sweep:  # end idle flows while traffic is quiet
                    session.table.sweep(now)
                for ev in drain():
                    sink(ev)
    finally:
        pk, dr = kernel_counters(sock)
        stats.kernel_packets += pk
        stats.kernel_drops += dr
        sock.close()
        if ring is not None:
            ring.close()
        session.finish()
        for ev in drain():
            sink(ev)
        stats.elapsed = time.perf_counter() - t0
    return stats
