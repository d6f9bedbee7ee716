"""pcap and pcapng files walked with struct, straight from a memory map.

`open_capture` checks a file up front (missing, empty, not a capture -> CaptureError);
`CaptureFile.frames` yields `(ts, linktype, start, end)` offsets into `capture.buf`
so the decoder reads packets in place, without copying them. Damage inside a file
(a record length past the end, a bad block) is counted in CaptureStats and ends that
file: the packets before it are kept.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from collectors.packet.stats import CaptureError, CaptureStats

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = 0x0A0D0D0A
# A record claiming more than this is corrupt (no link layer has frames this big).
MAX_RECORD = 256 * 1024
MAX_TS = 253402300799.0  # 9999-12-31: later "times" are corruption


@dataclass
class CaptureFile:
    path: Path
    buf: bytes | mmap.mmap
    size: int
    kind: str  # "pcap" | "pcapng"
    identity: str
    _closers: list = field(default_factory=list)

    def close(self) -> None:
        for c in self._closers:
            c.close()
        self._closers.clear()

    def frames(self, stats: CaptureStats) -> Iterator[tuple[float, int, int, int]]:
        if self.kind == "pcap":
            return _pcap_frames(self.buf, self.size, stats)
        return _pcapng_frames(self.buf, self.size, stats)


def file_identity(buf: bytes | mmap.mmap, size: int) -> str:
    """Identity of a capture by content (size + head + tail digest), not by path: the
    same capture read again, from anywhere, yields the same event ids."""
    h = hashlib.blake2b(digest_size=12)
    h.update(str(size).encode())
    h.update(buf[: 1 << 20])
    if size > 1 << 20:
        h.update(buf[max(1 << 20, size - (1 << 16)):size])
    return h.hexdigest()


def open_capture(path: str | os.PathLike) -> CaptureFile:
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - kept open for the memory map's lifetime
    except FileNotFoundError:
        raise CaptureError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{p}: is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureError(f"{p}: permission denied") from None
    size = os.fstat(fh.fileno()).st_size
    if size < 4:
        fh.close()
        raise CaptureError(f"{p}: not a pcap/pcapng capture (file is {size} bytes)")
    buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    head = buf[:4]
    if head in PCAP_MAGICS:
        kind = "pcap"
        if size < 24:
            buf.close()
            fh.close()
            raise CaptureError(f"{p}: truncated pcap header")
    elif struct.unpack("<I", head)[0] == PCAPNG_SHB:
        kind = "pcapng"
    else:
        buf.close()
        fh.close()
        raise CaptureError(f"{p}: not a pcap/pcapng capture (magic {head.hex()})")
    cap = CaptureFile(p, buf, size, kind, file_identity(buf, size))
    cap._closers += [buf, fh]
    return cap


def pcap_header(buf) -> tuple[int, float, Callable]:
    """(link type, seconds per fraction tick, record header unpacker) of a pcap file."""
    order, scale = PCAP_MAGICS[buf[:4]]
    linktype = struct.unpack_from(order + "I", buf, 20)[0] & 0x0FFFFFFF  # high bits: FCS info
    return linktype, scale, struct.Struct(order + "IIII").unpack_from


def _pcap_frames(buf, size: int, stats: CaptureStats) -> Iterator[tuple[float, int, int, int]]:
    # (fast.run_file walks pcap records inline the same way)
    linktype, scale, rec = pcap_header(buf)
    off = 24
    while off < size:
        if off + 16 > size:
            stats.bad("truncated record header")
            return
        sec, frac, caplen, wirelen = rec(buf, off)
        off += 16
        if caplen > MAX_RECORD:
            # Nothing after a corrupt length can be trusted: pcap has no resync marker.
            stats.bad("bad record length")
            return
        end = off + caplen
        if end > size:
            stats.bad("truncated record")
            return
        yield sec + frac * scale, linktype, off, end
        off = end


def _pcapng_frames(buf, size: int, stats: CaptureStats) -> Iterator[tuple[float, int, int, int]]:
    off = 0
    order = "<"
    ifaces: list[tuple[int, float]] = []  # (linktype, seconds per tick) per interface
    hdr = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIII").unpack_from
    while off < size:
        if off + 12 > size:
            stats.bad("truncated pcapng block")
            return
        btype = struct.unpack_from("<I", buf, off)[0]
        if btype == PCAPNG_SHB:
            magic = buf[off + 8:off + 12]
            if magic == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                stats.bad("bad pcapng byte-order magic")
                return
            hdr = struct.Struct(order + "II").unpack_from
            epb = struct.Struct(order + "IIIII").unpack_from
            ifaces = []  # interface ids are per section
        btype, blen = hdr(buf, off)
        if blen < 12 or blen % 4 or off + blen > size:
            stats.bad("bad pcapng block length")
            return
        body, bend = off + 8, off + blen - 4
        if btype == 6:  # enhanced packet block
            if bend - body < 20:
                stats.bad("bad pcapng block length")
            else:
                iface, hi, lo, caplen, _wire = epb(buf, body)
                start = body + 20
                if iface >= len(ifaces):
                    stats.bad("packet for undeclared pcapng interface")
                elif start + caplen > bend:
                    stats.bad("bad record length")
                else:
                    lt, tick = ifaces[iface]
                    ts = ((hi << 32) | lo) * tick
                    if ts > MAX_TS:
                        stats.bad("bad timestamp")
                    else:
                        yield ts, lt, start, start + caplen
        elif btype == 1:  # interface description block
            if bend - body < 8:
                stats.bad("bad pcapng block length")
            else:
                lt = struct.unpack_from(order + "H", buf, body)[0]
                ifaces.append((lt, _tsresol(buf, body + 8, bend, order)))
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if ifaces and bend - body >= 4:
                wire = struct.unpack_from(order + "I", buf, body)[0]
                start = body + 4
                yield 0.0, ifaces[0][0], start, min(bend, start + wire)
            else:
                stats.bad("simple packet block without interface")
        elif btype == 2:  # obsolete packet block
            if bend - body >= 20 and ifaces:
                iface, hi, lo, caplen = struct.unpack_from(order + "HxxIII", buf, body)
                start = body + 20
                if iface < len(ifaces) and start + caplen <= bend \
                        and ((hi << 32) | lo) * ifaces[iface][1] <= MAX_TS:
                    lt, tick = ifaces[iface]
                    yield ((hi << 32) | lo) * tick, lt, start, start + caplen
                else:
                    stats.bad("bad record length")
            else:
                stats.bad("bad pcapng block length")
        off += blen


def _tsresol(buf, off: int, end: int, order: str) -> float:
    """Seconds per timestamp tick from the if_tsresol option (default microseconds)."""
    while off + 4 <= end:
        code, olen = struct.unpack_from(order + "HH", buf, off)
        if code == 0:
            break
        if code == 9 and olen >= 1 and off + 5 <= end:
            v = buf[off + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        off += 4 + ((olen + 3) & ~3)
    return 1e-6
