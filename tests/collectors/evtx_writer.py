"""A minimal EVTX writer for tests: real EVTX files (file header, one chunk, records in
binary XML) for channels no installable package ships a sample of (Sysmon, System).

It writes BinXML without templates — every element and attribute name inline, values as
UTF-16 strings — which is valid EVTX that any parser reads through its general path.
Layout: the libyal "Windows XML Event Log (EVTX)" format description."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def _filetime(dt: datetime) -> int:
    return int((dt - _FILETIME_EPOCH).total_seconds() * 10_000_000)


def _name_hash(name: str) -> int:
    h = 0
    for ch in name:
        h = (h * 65599 + ord(ch)) & 0xFFFFFFFF
    return h & 0xFFFF


class _Chunk:
    def __init__(self) -> None:
        self.buf = bytearray(512)  # records start after the 512-byte chunk header

    def _name(self, name: str) -> bytes:
        """Name offset pointing at itself, followed by the inline name structure."""
        here = len(self.buf) + 4  # the offset field itself comes first
        chars = name.encode("utf-16-le")
        return struct.pack("<I", here) + struct.pack("<IHH", 0, _name_hash(name), len(name)) \
            + chars + b"\x00\x00"

    def _value(self, text: str) -> bytes:
        return b"\x05\x01" + struct.pack("<H", len(text)) + text.encode("utf-16-le")

    def element(self, name: str, attrs: dict[str, str] | None = None,
                children: list | None = None, text: str | None = None) -> None:
        """Append one element (recursively) at the end of the buffer."""
        attrs = attrs or {}
        # direct record elements carry no dependency identifier (template definitions do)
        self.buf += bytes([0x41 if attrs else 0x01])
        size_at = len(self.buf)
        self.buf += b"\x00\x00\x00\x00"  # data size, patched below
        self.buf += self._name(name)
        if attrs:
            list_at = len(self.buf)
            self.buf += b"\x00\x00\x00\x00"
            a_start = len(self.buf)
            items = list(attrs.items())
            for i, (k, v) in enumerate(items):
                self.buf += bytes([0x46 if i < len(items) - 1 else 0x06])
                self.buf += self._name(k)
                self.buf += self._value(v)
            struct.pack_into("<I", self.buf, list_at, len(self.buf) - a_start)
        if not children and text is None:
            self.buf += b"\x03"  # close empty element
        else:
            self.buf += b"\x02"  # close start element
            if text is not None:
                self.buf += self._value(text)
            for child in children or []:
                self.element(*child)
            self.buf += b"\x04"  # end element
        struct.pack_into("<I", self.buf, size_at, len(self.buf) - size_at - 4)

    def record(self, record_id: int, when: datetime, event: tuple) -> None:
        at = len(self.buf)
        self.buf += b"**\x00\x00" + b"\x00\x00\x00\x00" + struct.pack(
            "<QQ", record_id, _filetime(when))
        self.buf += b"\x0f\x01\x01\x00"  # fragment header
        self.element(*event)
        self.buf += b"\x00"  # end of stream
        while (len(self.buf) - at + 4) % 8:
            self.buf += b"\x00"
        size = len(self.buf) - at + 4
        self.buf += struct.pack("<I", size)
        struct.pack_into("<I", self.buf, at + 4, size)
        self.last_record_at = at


def write_evtx(path: str | Path, records: list[dict]) -> Path:
    """records: {"channel", "provider", "event_id", "record_id", "time" (datetime),
    "computer", "data" {name: value}} -> one EVTX file with one chunk."""
    chunk = _Chunk()
    ids = [r["record_id"] for r in records]
    for r in records:
        system = [
            ("Provider", {"Name": r["provider"]}),
            ("EventID", None, None, str(r["event_id"])),
            ("Version", None, None, "5"),
            ("Level", None, None, "4"),
            ("TimeCreated", {"SystemTime": r["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")}),
            ("EventRecordID", None, None, str(r["record_id"])),
            ("Execution", {"ProcessID": "3000", "ThreadID": "4000"}),
            ("Channel", None, None, r["channel"]),
            ("Computer", None, None, r["computer"]),
            ("Security", {"UserID": "S-1-5-18"}),
        ]
        data = [("Data", {"Name": k}, None, v) for k, v in r["data"].items()]
        event = ("Event", {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                 [("System", None, system), ("EventData", None, data)])
        chunk.record(r["record_id"], r["time"], event)
    free = len(chunk.buf)
    assert free <= 65536, "one chunk holds at most 64 KiB of records"
    body = bytes(chunk.buf) + b"\x00" * (65536 - free)
    head = bytearray(body[:512])
    head[0:8] = b"ElfChnk\x00"
    struct.pack_into("<QQQQIIII", head, 8, 1, len(ids), min(ids), max(ids), 128,
                     chunk.last_record_at, free, zlib.crc32(body[512:free]))
    struct.pack_into("<I", head, 124, zlib.crc32(bytes(head[:120]) + bytes(head[128:512])))
    chunk_bytes = bytes(head) + body[512:]
    fh = bytearray(4096)
    fh[0:8] = b"ElfFile\x00"
    struct.pack_into("<QQQIHHHH", fh, 8, 0, 0, max(ids) + 1, 128, 1, 3, 4096, 1)
    struct.pack_into("<I", fh, 124, zlib.crc32(bytes(fh[:120])))
    out = Path(path)
    out.write_bytes(bytes(fh) + chunk_bytes)
    return out


def with_chunk_repeated(data: bytes, n: int) -> bytearray:
    """`data` (an EVTX file of one chunk) with that chunk `n` times, the file header's
    chunk count and checksum made to match."""
    out = bytearray(data[:4096] + data[4096:4096 + 65536] * n)
    struct.pack_into("<H", out, 42, n)
    struct.pack_into("<I", out, 124, zlib.crc32(bytes(out[:120])))
    return out


def with_resealed_damage(data: bytes, start: int, end: int, fill: int = 0xEE) -> bytes:
    """`data` (an EVTX file of one chunk) with bytes start:end overwritten and the chunk's
    CRCs made to match again: damage written so by the producer, which only the parser's
    reading of the record finds (damage after writing fails the CRC and withholds the
    whole chunk)."""
    out = bytearray(data)
    out[start:end] = bytes([fill]) * (end - start)
    free = int.from_bytes(out[4096 + 48:4096 + 52], "little")
    out[4096 + 52:4096 + 56] = zlib.crc32(out[4096 + 512:4096 + free]).to_bytes(4, "little")
    head = bytes(out[4096:4096 + 120] + out[4096 + 128:4096 + 512])
    out[4096 + 124:4096 + 128] = zlib.crc32(head).to_bytes(4, "little")
    return bytes(out)
