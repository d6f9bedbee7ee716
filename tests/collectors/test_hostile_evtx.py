"""EVTX damage the parser cannot see: each chunk carries CRC32s of its header and of its
records. A chunk whose bytes no longer match is not imported (its records would carry
mangled fields); its records are counted with the reason, and the other chunks import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from evtx_writer import with_chunk_repeated

from collectors.logs.evtx import read_evtx

SAMPLE = Path(__file__).parent / "data" / "Security_short_selected.evtx"
GOVSOC = str(Path(sys.executable).parent / "govsoc")
PROVIDER = "Security-Auditing".encode("utf-16-le")
HEAD, CHUNK = 4096, 65536


def _two_chunks() -> bytearray:
    """The sample's file header and its one chunk (7 records), twice."""
    return with_chunk_repeated(SAMPLE.read_bytes(), 2)


def _read(tmp_path, data: bytes):
    path = tmp_path / "x.evtx"
    path.write_bytes(data)
    out: list[dict] = []
    return out, read_evtx(str(path), out.append)


def test_a_flipped_bit_in_a_record_withholds_its_chunk_and_counts_it(tmp_path):
    data = _two_chunks()
    at = data.index(PROVIDER, HEAD + CHUNK)  # the provider name, in the second chunk
    data[at] ^= 0x01  # 'S' -> 'R': still parses, as "Microsoft-Windows-Recurity-..."
    docs, stats = _read(tmp_path, bytes(data))
    assert len(docs) == 7  # the first chunk's records
    assert {d["winlog"]["provider_name"] for d in docs} == {"Microsoft-Windows-Security-Auditing"}
    assert dict(stats.bad_reasons) == {
        "chunk fails its records checksum (CRC32): its records are not imported": 7}
    assert stats.examples[0].endswith(" chunk 1: chunk fails its records checksum (CRC32): "
                                      "its records are not imported")


def test_a_damaged_chunk_header_is_counted_by_the_records_found(tmp_path):
    data = _two_chunks()
    data[HEAD + 10] ^= 0xFF  # the first chunk's first record number
    docs, stats = _read(tmp_path, bytes(data))
    assert len(docs) == 7
    assert dict(stats.bad_reasons) == {
        "chunk fails its header checksum (CRC32): its records are not imported": 7}


def test_an_intact_file_has_no_damage_and_the_cli_gives_the_reason(tmp_path):
    docs, stats = _read(tmp_path, bytes(_two_chunks()))
    assert len(docs) == 14 and stats.bad_total == 0
    data = _two_chunks()
    data[data.index(PROVIDER, HEAD + CHUNK)] ^= 0x01
    (tmp_path / "bad.evtx").write_bytes(bytes(data))
    env = {**os.environ, "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db",
           "GOVSOC_DATA_DIR": str(tmp_path)}
    r = subprocess.run([GOVSOC, "collect", "evtx", str(tmp_path / "bad.evtx")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "skipped 7 records:" in r.stdout
    assert "7  chunk fails its records checksum (CRC32)" in r.stdout
