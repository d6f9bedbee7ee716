"""A pcapng with one bogus block length: the reader resynchronises on the next block that
frames correctly (its trailing length repeats the leading one), counts the damaged block
and the bytes skipped, and reads every packet after it."""

from __future__ import annotations

import struct

from packet_craft import standard_mix

from collectors.packet import read_pcaps


def _pcapng(tmp_path, n: int):
    from scapy.all import PcapNgWriter

    path = tmp_path / "x.pcapng"
    with PcapNgWriter(str(path)) as w:
        for p in standard_mix().packets[:n]:
            w.write(p)
    return path


def _blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block."""
    out, off = [], 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        out.append((off, btype, blen))
        off += blen
    return out


def _read(path):
    events, stats = read_pcaps([str(path)])
    return list(events), stats


def test_one_bogus_block_length_skips_that_block_only(tmp_path):
    path = _pcapng(tmp_path, 20)
    data = bytearray(path.read_bytes())
    packets = [b for b in _blocks(bytes(data)) if b[1] == 6]
    assert len(packets) == 20
    off = packets[5][0]
    struct.pack_into("<I", data, off + 4, 0x00FFFFF0)  # the sixth packet's length: bogus
    path.write_bytes(bytes(data))
    events, stats = _read(path)
    assert stats.packets == 19  # every packet but the damaged one
    assert stats.bad_reasons == {"bad pcapng block length": 1}
    assert stats.resync_bytes == packets[5][2]  # exactly the damaged block
    assert stats.to_dict()["resync_bytes"] == packets[5][2]


def test_a_length_within_the_file_is_caught_by_its_trailing_copy(tmp_path):
    path = _pcapng(tmp_path, 10)
    data = bytearray(path.read_bytes())
    off, _, blen = [b for b in _blocks(bytes(data)) if b[1] == 6][2]
    struct.pack_into("<I", data, off + 4, blen + 8)  # plausible, but the copy says otherwise
    path.write_bytes(bytes(data))
    _, stats = _read(path)
    assert stats.packets == 9 and stats.bad_reasons == {"bad pcapng block length": 1}


def test_garbage_to_the_end_is_counted_and_ends_the_file(tmp_path):
    path = _pcapng(tmp_path, 8)
    data = path.read_bytes() + struct.pack("<II", 6, 999_999) + b"\xab" * 4000
    path.write_bytes(data)
    _, stats = _read(path)
    assert stats.packets == 8 and stats.bad_reasons == {"bad pcapng block length": 1}
    assert stats.resync_bytes == 4008
