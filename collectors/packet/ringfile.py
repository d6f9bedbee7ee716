"""The packet ring's file format and names: pcapng (one section header, one interface
description, enhanced packet blocks with microsecond timestamps), read back from a byte
offset. Shared by the writer (collectors.packet.ring) and retrieval
(collectors.packet.retrieve), so both agree on names, blocks and packet numbers.

File names: `<stream>-<seq>.pcapng`, a stream being `ring-<run>-w<worker>-<department>`:
one run of one capture worker writes one stream per department with its own retention
(`all` for the rest); seq counts that stream's files from 1, so the files a flow spans
are named by its first and last file alone.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIX = ".pcapng"
NAME = re.compile(r"\A(ring-[0-9A-Za-z]+-[0-9a-f]+-w[0-9]+-[a-z0-9_-]+)-([0-9]{6,})\.pcapng\Z")

# section header block: type, length, byte-order magic, version 1.0, section length unknown
SHB = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
_IDB = struct.Struct("<IIHHII")  # type, length, link type, reserved, snaplen, length
_EPB_HEAD = struct.Struct("<IIIIIII")  # type 6, length, iface, ts hi, ts lo, caplen, len
EPB_HEAD_INTO, _EPB = _EPB_HEAD.pack_into, _EPB_HEAD.unpack_from
_U32 = struct.Struct("<I")
PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # by len % 4
MAX_SNAP = 262144


def header(linktype: int) -> bytes:
    """The first bytes of every ring file: section header and one interface (microsecond
    timestamps, the pcapng default resolution)."""
    return SHB + _IDB.pack(1, 20, linktype, 0, MAX_SNAP, 20)


HEADER_LEN = len(header(1))


def file_name(stream: str, seq: int) -> str:
    return f"{stream}-{seq:06d}{SUFFIX}"


def parse_name(name: str) -> tuple[str, int] | None:
    """(stream, seq) of a ring file name; None for anything else."""
    m = NAME.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def department_of_stream(stream: str) -> str:
    return stream.split("-", 4)[4]  # ring-<run>-<pid>-w<worker>-<department>


def flow_fields(loc: list) -> dict[str, Any]:
    """`govsoc.pcap` of a flow event from the flow's ring location."""
    s = loc[0]
    return {"stream": s.name, "packets": loc[7],
            "first": {"file": loc[1], "packet": loc[2], "offset": loc[3]},
            "last": {"file": loc[4], "packet": loc[5], "offset": loc[6]}}


class RingReadError(ValueError):
    """A ring file that cannot be read at all (its header is damaged)."""


def read_header(path: Path) -> int:
    """The link type of a ring file; RingReadError when it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_LEN)
    if len(head) < HEADER_LEN or head[:4] != SHB[:4] or _U32.unpack_from(head, 28)[0] != 1:
        raise RingReadError(f"{path.name}: not a packet ring file (damaged header)")
    return struct.unpack_from("<H", head, 36)[0]


def packets(buf, start: int, end: int | None, first_number: int
            ) -> Iterator[tuple[int, int, int, int, int]]:
    """(packet number, block offset, ts in microseconds, data start, data end) of the
    packets whose blocks begin in [start, end] (end None: to the end of the buffer),
    numbered from `first_number` at `start`. Raises TornBlock (with its offset) at the
    first damaged block: a torn tail after a crash or a full disk, or other damage."""
    size = len(buf)
    off = start
    n = first_number
    last = size if end is None else min(end, size)
    while off <= last and off + 12 <= size:
        btype, blen = _U32.unpack_from(buf, off)[0], _U32.unpack_from(buf, off + 4)[0]
        if blen < 12 or blen % 4 or off + blen > size or \
                _U32.unpack_from(buf, off + blen - 4)[0] != blen:
            raise TornBlock(off)
        if btype == 6:
            if blen < 32:
                raise TornBlock(off)
            _t, _l, _i, hi, lo, caplen, _w = _EPB(buf, off)
            if 28 + caplen > blen - 4:
                raise TornBlock(off)
            yield n, off, (hi << 32) | lo, off + 28, off + 28 + caplen
            n += 1
        off += blen


class TornBlock(Exception):  # noqa: N818 - a position, raised to end the walk
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset
