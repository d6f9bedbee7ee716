"""The durable spool: order, restart, segment rolling, damage detection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soc_core.spool import HEADER_SIZE, Record, Spool, SpoolError, SpoolFull, backlog_bytes


def _drain(spool: Spool) -> list[bytes]:
    return [rec.payload for rec in spool]


def test_fifo_order_and_ack(tmp_path):
    with Spool(tmp_path, fsync="always") as sp:
        for i in range(50):
            sp.append(f"batch-{i}".encode())
        first = sp.peek()
        assert first.payload == b"batch-0"
        assert sp.peek().payload == b"batch-0"  # peek does not consume
        sp.ack(first)
        assert _drain(sp) == [f"batch-{i}".encode() for i in range(1, 50)]
        assert sp.peek() is None and sp.pending_bytes == 0
        assert sp.corruptions == []


def test_backlog_read_beside_the_owner_matches_the_spool(tmp_path):
    """`collect status` reads the backlog while the collector holds the spool's lock."""
    assert backlog_bytes(tmp_path / "none") == 0
    with Spool(tmp_path, fsync="always", segment_bytes=200) as sp:
        for i in range(30):
            sp.append(b"x" * (i + 1))
        for _ in range(12):  # acknowledged across segment boundaries
            sp.ack(sp.peek())
        assert sp.pending_bytes > 0
        assert backlog_bytes(tmp_path) == sp.pending_bytes
        _drain(sp)
        assert backlog_bytes(tmp_path) == sp.pending_bytes == 0


def test_resume_after_reopen_keeps_unacked_records(tmp_path):
    sp = Spool(tmp_path, fsync="interval")
    for i in range(10):
        sp.append(b"r%d" % i)
    for _ in range(4):
        sp.ack(sp.peek())
    sp.close()
    with Spool(tmp_path) as again:
        again.append(b"after-restart")
        assert _drain(again) == [b"r%d" % i for i in range(4, 10)] + [b"after-restart"]


def test_rolls_segments_and_removes_drained_ones(tmp_path):
    with Spool(tmp_path, segment_bytes=1000, fsync="never") as sp:
        for i in range(100):
            sp.append(b"x" * 100 + b"%03d" % i)
        segs = sorted(tmp_path.glob("seg-*.spool"))
        assert len(segs) > 5
        out = _drain(sp)
        assert [p[-3:] for p in out] == [b"%03d" % i for i in range(100)]
        assert len(list(tmp_path.glob("seg-*.spool"))) == 1  # only the one being written


def test_one_owner_at_a_time(tmp_path):
    with Spool(tmp_path), pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path)


def test_size_limit(tmp_path):
    with Spool(tmp_path, max_bytes=10 * (HEADER_SIZE + 10)) as sp:
        for _ in range(10):
            sp.append(b"0123456789")
        with pytest.raises(SpoolFull):
            sp.append(b"0123456789")
        sp.ack(sp.peek())
        sp.append(b"0123456789")  # room again after a delivery


def test_bad_fsync_policy(tmp_path):
    with pytest.raises(SpoolError, match="fsync policy"):
        Spool(tmp_path, fsync="sometimes")


def _segment(tmp_path) -> str:
    (seg,) = list(tmp_path.glob("seg-*.spool"))
    return str(seg)


def test_truncated_tail_is_reported_and_good_records_delivered(tmp_path):
    sp = Spool(tmp_path)
    for i in range(5):
        sp.append(b"record-%d" % i * 10)
    sp.close()
    seg = _segment(tmp_path)
    os.truncate(seg, os.path.getsize(seg) - 7)  # a torn last write
    with Spool(tmp_path) as again:
        assert _drain(again) == [b"record-%d" % i * 10 for i in range(4)]
        (damage,) = again.corruptions
        assert damage.reason == "record truncated"
        assert damage.segment == os.path.basename(seg)
        assert damage.skipped_bytes == HEADER_SIZE + 80 - 7


def test_flipped_byte_in_the_middle_skips_only_that_record(tmp_path):
    sp = Spool(tmp_path)
    for i in range(5):
        sp.append(b"payload-%d" % i)
    sp.close()
    seg = _segment(tmp_path)
    rec = HEADER_SIZE + len(b"payload-0")
    with open(seg, "r+b") as fh:  # damage the payload of record 2
        fh.seek(2 * rec + HEADER_SIZE + 3)
        fh.write(b"\xff")
    with Spool(tmp_path) as again:
        assert _drain(again) == [b"payload-0", b"payload-1", b"payload-3", b"payload-4"]
        (damage,) = again.corruptions
        assert damage.reason == "checksum mismatch" and damage.offset == 2 * rec
        assert damage.skipped_bytes == rec
        assert "checksum mismatch" in str(damage)


def test_garbage_header_is_resynchronised(tmp_path):
    sp = Spool(tmp_path)
    for i in range(3):
        sp.append(b"p%d" % i)
    sp.close()
    seg = _segment(tmp_path)
    with open(seg, "r+b") as fh:  # overwrite the first record's marker and length
        fh.write(b"\x00" * 8)
    with Spool(tmp_path) as again:
        assert _drain(again) == [b"p1", b"p2"]
        assert again.corruptions[0].reason == "bad record marker"
        # the damage is behind the cursor now: a later open does not report it again
    with Spool(tmp_path) as third:
        assert _drain(third) == [] and third.corruptions == []


@settings(max_examples=80, deadline=None)
@given(ops=st.lists(st.one_of(st.binary(min_size=0, max_size=300).map(lambda b: ("append", b)),
                              st.just(("ack", b"")), st.just(("reopen", b""))), max_size=40),
       damage=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(1, 255))))
def test_model_with_reopens_and_damage(ops, damage):
    """Against a plain list as the model: order kept across reopens; with one flipped
    byte, at most the damaged records are lost, the others arrive in order."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        sp = Spool(d, segment_bytes=700, fsync="never")
        model: list[bytes] = []
        for op, payload in ops:
            if op == "append":
                sp.append(payload)
                model.append(payload)
            elif op == "ack" and model:
                rec = sp.peek()
                assert rec.payload == model[0]
                sp.ack(rec)
                model.pop(0)
            elif op == "reopen":
                sp.close()
                sp = Spool(d, segment_bytes=700, fsync="never")
        sp.close()
        if damage is not None:
            segs = sorted(Path(d).glob("seg-*.spool"))
            sizes = [s.stat().st_size for s in segs]
            if sum(sizes):
                pos, xor = damage[0] % sum(sizes), damage[1]
                for seg, size in zip(segs, sizes, strict=True):
                    if pos < size:
                        data = bytearray(seg.read_bytes())
                        data[pos] ^= xor
                        seg.write_bytes(data)
                        break
                    pos -= size
        with Spool(d) as again:
            got = _drain(again)
            if damage is None:
                assert got == model and again.corruptions == []
            else:
                it = iter(model)  # got is model with some records left out, same order
                assert all(any(g == m for m in it) for g in got)
                # one flipped byte costs exactly the one record it falls in, reported
                assert len(again.corruptions) <= 1
                assert len(got) == len(model) - len(again.corruptions)


def test_peek_many_ack_many_and_last(tmp_path):
    """The audit trail's drain takes many small records at once and acknowledges them with
    one cursor save; a restarted writer continues from `last()`."""
    with Spool(tmp_path, segment_bytes=400, fsync="never") as sp:
        for i in range(20):
            sp.append(b"rec-%02d" % i + b"." * 40)
        assert sp.last().payload.startswith(b"rec-19")
        got = []
        while batch := sp.peek_many(100):
            assert len({r.segment for r in batch}) == 1  # never across a segment
            got += [r.payload[:6] for r in batch]
            sp.ack_many(batch)
        assert got == [b"rec-%02d" % i for i in range(20)]
        assert sp.last() is None and sp.pending_bytes == 0
        sp.append(b"after")
        (only,) = sp.peek_many(5)
        with pytest.raises(SpoolError, match="not the oldest"):
            sp.ack_many([Record(only.segment, only.end, only.end + 10, 0, b"")])
    with Spool(tmp_path) as again:
        assert [r.payload for r in again.peek_many(10)] == [b"after"]
        assert again.last().payload == b"after"


def test_peek_many_reads_about_a_batch_and_misses_no_record_of_another_size(tmp_path,
                                                                             monkeypatch):
    """peek_many sizes its one read by the first record: records larger than the first end
    a batch early (the next batch takes them), and a batch of a long tail does not copy
    the whole tail."""
    sizes = [10] + [3000] * 5 + [10] * 400
    with Spool(tmp_path, fsync="never") as sp:
        for i, n in enumerate(sizes):
            sp.append(b"%04d" % i + b"." * n)
        read: list[int] = []
        real = os.pread
        monkeypatch.setattr(os, "pread", lambda fd, n, off: read.append(n) or real(fd, n, off))
        got = []
        while batch := sp.peek_many(50):
            got += [r.payload for r in batch]
            sp.ack_many(batch)
        assert [int(p[:4]) for p in got] == list(range(len(sizes)))
        assert [len(p) - 4 for p in got] == sizes
        # the first batch: the tail after its first record is ~ 21 kB, its 49 short
        # records take ~ 1.5 kB
        assert read and read[0] < 4096


KILLED_WRITER = """
import os, resource, signal, sys
from soc_core.spool import SMALL_WRITE, Spool
sp = Spool(sys.argv[1], fsync="never")
sizes = [10, SMALL_WRITE - 100, SMALL_WRITE + 1, 200, 3 * SMALL_WRITE]
for i, n in enumerate(sizes):
    sp.append(bytes([65 + i]) * n)
# a write the file system refuses is an error of append, on either path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
size = os.fstat(sp._write_fd).st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, resource.RLIM_INFINITY))
for n in (100, 2 * SMALL_WRITE):
    try:
        sp.append(b"z" * n)
    except OSError as exc:
        print(n, exc.errno, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: what append wrote must be there
"""


def test_appended_records_survive_a_kill_small_and_large(tmp_path):
    """Small records are written without releasing the GIL, large ones by os.write: both
    are in the file when `append` returns, and a refused write raises on both paths."""
    import errno
    import subprocess
    import sys

    from soc_core.spool import SMALL_WRITE

    out = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    assert out.stdout.split() == ["100", str(errno.EFBIG), str(2 * SMALL_WRITE),
                                  str(errno.EFBIG)]
    sizes = [10, SMALL_WRITE - 100, SMALL_WRITE + 1, 200, 3 * SMALL_WRITE]
    with Spool(tmp_path) as sp:
        got = _drain(sp)
        # the refused records left at most a torn tail, reported and skipped
        assert got == [bytes([65 + i]) * n for i, n in enumerate(sizes)]
