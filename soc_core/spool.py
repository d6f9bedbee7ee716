"""A durable, ordered disk spool: append-only segment files of checksummed records.

The shipper puts a batch here when the store cannot take it, and drains the spool in
order once the store is back. Layout of a spool directory:

    seg-000000000001.spool   records, oldest segment first
    cursor                   "<segment> <offset>": the first record not yet acknowledged
    lock                     flock'ed by the one process that appends (the owner)
    drain.lock               flock'ed by the one that reads and acknowledges: the owner
                             itself, or a drain in another process (`Spool.drainer`)

One record on disk (little-endian):

    magic b"GSPL" | length u32 | crc32 u32 | appended_ms u64 | payload (length bytes)

The CRC covers `appended_ms` and the payload, so a torn write (crash mid-record) or a
flipped byte is detected. A damaged region is reported (`corruptions`) and skipped by
searching forward for the next record whose checksum holds: every good record is still
delivered. Appends never go after damage: a spool opened again starts a fresh segment.

Records are acknowledged after they are delivered; the cursor is then advanced. A crash
between delivery and acknowledgement redelivers the record, which deterministic event
ids make harmless (at-least-once delivery, exactly-once effect).

fsync policy: "always" (every append and cursor move reaches the disk before returning:
survives power loss), "interval" (at most every `fsync_interval` seconds: survives a
killed process, loses at most that much on power loss), "never" (the OS decides).

Draining elsewhere: an owner opened with `acks="external"` only appends; another process
opens the same directory with `Spool.drainer` and reads, acknowledges and removes finished
segments. The owner learns what was acknowledged from the cursor file (`refresh`), and
pauses the drainer (`drain_paused`) while it reads its own tail at start: a drainer
removing a segment under that read could hide records the chain must continue after.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

MAGIC = b"GSPL"
_HEAD = struct.Struct("<4sIIQ")  # magic, length, crc32, appended_ms
_MS = struct.Struct("<Q")  # appended_ms alone: the CRC covers it first
HEADER_SIZE = _HEAD.size
MAX_RECORD = 256 * 1024 * 1024  # a larger length field can only be damage
_BATCH_READ = 4 * 1024 * 1024  # peek_many reads at most this much at once
FSYNC_POLICIES = ("always", "interval", "never")
# Records up to this size are written with the GIL held (see write_holding_gil).
SMALL_WRITE = 64 * 1024


def _libc_write() -> object | None:
    """libc's write(2) called through ctypes.PyDLL, which keeps the GIL (CDLL and os.write
    release it). None where there is no such symbol."""
    try:
        fn = ctypes.PyDLL(None, use_errno=True).write
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    fn.restype = ctypes.c_ssize_t
    return fn


_WRITE = _libc_write()


def write_holding_gil(fd: int, blob: bytes) -> None:
    """Write a small record without releasing the GIL. A write of a few KiB into the page
    cache takes microseconds; releasing the GIL around it (os.write) lets another thread
    take the interpreter, and taking it back costs the appending thread a wait and two
    context switches. In an API worker the appender is a request handler beside the event
    loop: that handoff cost more than the audit record itself. Large records (a shipper's
    batch) and systems without libc's symbol go through os.write."""
    if _WRITE is None or len(blob) > SMALL_WRITE:
        os.write(fd, blob)
        return
    while True:
        n = _WRITE(fd, blob, len(blob))
        if n == len(blob):
            return
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            raise OSError(err, os.strerror(err))
        os.write(fd, blob[n:])  # a short write (disk full?): the rest, or its error
        return


# what a record still being written looks like to a reader in another process (at the tail
# of the newest segment); anywhere else, damage
_UNFINISHED = ("truncated record header", "record truncated")


class SpoolError(RuntimeError):
    """The spool cannot be used (bad directory, owned by another process, full)."""


class SpoolFull(SpoolError):
    """Appending would exceed the spool's size limit."""


class SpoolBusy(SpoolError):
    """The spool directory is owned (flock'ed) by another open Spool."""


def _flock(path: Path, what: str, *, wait: bool = False) -> int:
    """An exclusive flock on `path` (created): its descriptor. SpoolBusy when another
    process holds it (at once, unless `wait`)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError as exc:
        os.close(fd)
        raise SpoolBusy(f"spool {path.parent} is {what} by another process") from exc
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@dataclass(frozen=True)
class Corruption:
    """A damaged region found while reading: where, how long, and why."""

    segment: str
    offset: int
    skipped_bytes: int
    reason: str

    def __str__(self) -> str:
        return (f"{self.segment} at byte {self.offset}: {self.reason} "
                f"({self.skipped_bytes} bytes skipped)")


@dataclass(frozen=True)
class Record:
    segment: int
    offset: int
    end: int  # offset of the next record in the same segment
    appended_ms: int
    payload: bytes


def _seg_name(n: int) -> str:
    return f"seg-{n:012d}.spool"


def _segments(directory: Path) -> list[int]:
    out = []
    for p in directory.glob("seg-*.spool"):
        try:
            out.append(int(p.name[4:-6]))
        except ValueError:
            continue
    return sorted(out)


def _seg_size(directory: Path, n: int) -> int:
    try:
        return (directory / _seg_name(n)).stat().st_size
    except FileNotFoundError:
        return 0


def _cursor(directory: Path, segs: list[int]) -> tuple[int, int]:
    """The first unacknowledged (segment, offset) as the cursor file says."""
    try:
        seg_s, off_s = (directory / "cursor").read_text().split()
        seg, off = int(seg_s), int(off_s)
    except (FileNotFoundError, ValueError):
        return (segs[0] if segs else 1), 0
    if segs and seg < segs[0]:  # the acknowledged segment was already removed
        return segs[0], 0
    return seg, off


def _pending(directory: Path, segs: list[int], seg: int, off: int) -> int:
    total = sum(_seg_size(directory, s) for s in segs if s >= seg)
    return total - (off if seg in segs else 0)


def backlog_bytes(directory: str | os.PathLike[str]) -> int:
    """Bytes a spool directory holds that are not delivered yet, read without taking its
    lock (for `collect status` while the collector that owns the spool runs)."""
    directory = Path(directory)
    segs = _segments(directory)
    return max(0, _pending(directory, segs, *_cursor(directory, segs)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One process's durable FIFO of byte records. Thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: str = "interval",
                 fsync_interval: float = 1.0, segment_bytes: int = 16 * 1024 * 1024,
                 max_bytes: int | None = None, background_sync: bool = False,
                 acks: str = "own") -> None:
        """`background_sync` (policy "interval"): the owner calls `sync()` at least every
        `fsync_interval` seconds from a thread of its own, so `append` never waits for an
        fsync (it would stall the appending thread, e.g. a server's event loop).
        `acks`: "own" (this process reads and acknowledges), "external" (a `drainer` in
        another process does; this one appends), "drainer" (use `Spool.drainer`)."""
        if fsync not in FSYNC_POLICIES:
            raise SpoolError(f"fsync policy {fsync!r}: use one of {', '.join(FSYNC_POLICIES)}")
        if acks not in ("own", "external", "drainer"):
            raise SpoolError(f"acks {acks!r}: own, external or drainer")
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.dir}: {exc.strerror}") from exc
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.background_sync = background_sync
        # whether an append may have to fsync (not with "never", nor with "interval" when
        # the owner's thread does it): else append skips the check
        self._sync_on_append = fsync == "always" or (fsync == "interval" and not background_sync)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.corruptions: list[Corruption] = []
        self._lock = threading.RLock()
        self.acks = acks
        # the owner's lock, and the drain lock where this process reads (a drainer of
        # another process finishes its pass first: it holds that lock a pass at a time)
        self._lock_fd = self._drain_fd = -1
        if acks != "drainer":
            self._lock_fd = _flock(self.dir / "lock", "in use")
        if acks != "external":
            try:
                self._drain_fd = _flock(self.dir / "drain.lock", "drained",
                                        wait=acks == "own")
            except SpoolBusy:
                if self._lock_fd >= 0:
                    _unlock(self._lock_fd)
                raise
        self._last_sync = time.monotonic()
        self._dirty = False
        self.fsyncs = 0  # of the segments appended to (status, tests)
        segs = _segments(self.dir)
        self._read_seg, self._read_off = _cursor(self.dir, segs)
        # Never append after what a previous run left: its tail may be torn.
        self._write_seg = (segs[-1] + 1) if segs else max(1, self._read_seg)
        self._write_fd: int | None = None
        self._write_off = 0
        # (segment, offset) up to which appended records are known on disk (`sync_to`); a
        # drainer knows nothing of another process's appends: it fsyncs what it delivers
        self._durable = (0, 0) if acks == "drainer" else (self._write_seg, 0)
        self._pending_bytes = _pending(self.dir, segs, self._read_seg, self._read_off)
        self._read_fh = None
        self._read_fh_seg = -1

    @classmethod
    def drainer(cls, directory: str | os.PathLike[str], *, fsync: str = "interval") -> Spool:
        """The reading side of a spool whose owner (`acks="external"`) appends in another
        process: peek, acknowledge, `sync_to`; never appends. SpoolBusy while another
        drainer (or an owner acknowledging its own records) holds the directory; a
        missing directory is a SpoolError, not created."""
        if not Path(directory).is_dir():
            raise SpoolError(f"no spool at {directory}")
        return cls(directory, fsync=fsync, acks="drainer")

    def refresh(self) -> None:
        """Read the cursor a drainer of another process saved (owner with
        `acks="external"`): what waits (`pending_bytes`, the size bound) follows it."""
        with self._lock:
            segs = _segments(self.dir)
            self._read_seg, self._read_off = _cursor(self.dir, segs)
            self._pending_bytes = _pending(self.dir, segs, self._read_seg, self._read_off)

    @contextlib.contextmanager
    def drain_paused(self) -> Iterator[None]:
        """Hold off any drainer (its current pass ends first) while the owner reads what
        the spool holds; a no-op where this process holds the drain lock anyway."""
        if self._drain_fd >= 0:
            yield
            return
        fd = _flock(self.dir / "drain.lock", "drained", wait=True)
        try:
            with self._lock:
                segs = _segments(self.dir)
                self._read_seg, self._read_off = _cursor(self.dir, segs)
            yield
        finally:
            _unlock(fd)

    # -- bookkeeping -----------------------------------------------------------------
    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{self._read_seg} {self._read_off}\n")
            if self.fsync == "always":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "cursor")
        if self.fsync == "always":
            _fsync_dir(self.dir)

    def _maybe_sync(self, force: bool = False) -> None:
        if self._write_fd is None or self.fsync == "never":
            return
        now = time.monotonic()
        if self.fsync == "always" or force or (
                not self.background_sync and now - self._last_sync >= self.fsync_interval):
            if self._dirty:
                os.fsync(self._write_fd)
                self.fsyncs += 1
                self._dirty = False
                self._durable = (self._write_seg, self._write_off)
            self._last_sync = now

    # -- writing ---------------------------------------------------------------------
    def append(self, payload: bytes, ms: int | None = None) -> tuple[int, int]:
        """Add one record at the tail; returns its (segment, offset), the position
        `peek` will report for it. Raises SpoolFull past `max_bytes`. `ms`: the record's
        `appended_ms` when the caller has just read the clock (else now)."""
        if self.acks == "drainer":
            raise SpoolError("a drainer does not append")
        if len(payload) > MAX_RECORD:
            raise SpoolError(f"record of {len(payload)} bytes is larger than {MAX_RECORD}")
        if ms is None:
            ms = int(time.time() * 1000)
        crc = zlib.crc32(payload, zlib.crc32(_MS.pack(ms)))
        blob = _HEAD.pack(MAGIC, len(payload), crc, ms) + payload
        with self._lock:
            if self.max_bytes is not None and self._pending_bytes + len(blob) > self.max_bytes:
                raise SpoolFull(f"spool {self.dir} is full ({self._pending_bytes} bytes)")
            if self._write_fd is None or self._write_off >= self.segment_bytes:
                self._roll()
            assert self._write_fd is not None
            write_holding_gil(self._write_fd, blob)  # one write a record: never half seen
            where = (self._write_seg, self._write_off)
            self._write_off += len(blob)
            self._pending_bytes += len(blob)
            self._dirty = True
            if self._sync_on_append:
                self._maybe_sync()
            return where

    def _roll(self) -> None:
        if self._write_fd is not None:
            self._maybe_sync(force=True)
            os.close(self._write_fd)
            self._write_seg += 1
        path = self.dir / _seg_name(self._write_seg)
        self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._write_off = os.fstat(self._write_fd).st_size
        if self.fsync != "never":
            _fsync_dir(self.dir)  # the new file's name must survive too

    def sync(self) -> None:
        """Force appended records to disk now (e.g. before a checkpoint is saved). The
        fsync runs outside the lock (on a duplicate of the descriptor, which a roll may
        close meanwhile): an fsync takes milliseconds, appends go on beside it."""
        with self._lock:
            if self._write_fd is None or self.fsync == "never" or not self._dirty:
                return
            fd = os.dup(self._write_fd)
            upto = (self._write_seg, self._write_off)
            self._dirty = False  # appends from now on mark it again
            self._last_sync = time.monotonic()
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            self.fsyncs += 1
            self._durable = max(self._durable, upto)

    def sync_due(self) -> None:
        """`sync` when the last one is `fsync_interval` old (the "interval" policy's
        background fsync): a drain moving batch after batch does not fsync for each."""
        if time.monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    @property
    def durable(self) -> tuple[int, int]:
        """(segment, offset): the records before it are known to be on disk."""
        with self._lock:
            return self._durable

    def sync_to(self, segment: int, offset: int) -> None:
        """`sync`, unless the records before (segment, offset) are on disk already (a
        sync since they were appended covered them): a drain catching up moves several
        batches that one fsync made durable, instead of one fsync a batch. A drainer
        fsyncs the segment itself (fsync reaches a file's pages through any descriptor;
        an earlier segment was fsynced when it was read to its end, or by its owner)."""
        with self._lock:
            if self.fsync == "never" or (segment, offset) <= self._durable:
                return
            if self.acks == "drainer":
                fd = os.open(self.dir / _seg_name(segment), os.O_RDONLY)
                try:
                    size = os.fstat(fd).st_size
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.fsyncs += 1
                self._durable = (segment, size)
                return
        self.sync()

    # -- reading ---------------------------------------------------------------------
    def cursor(self) -> tuple[int, int]:
        """(segment, offset) of the first unacknowledged byte: where the oldest record
        starts, unless damage or the end of a segment lies there (`peek` skips those)."""
        with self._lock:
            return self._read_seg, self._read_off

    def _open_read(self, seg: int):
        if self._read_fh_seg != seg:
            if self._read_fh is not None:
                self._read_fh.close()
                self._read_fh, self._read_fh_seg = None, -1
            try:
                self._read_fh = open(self.dir / _seg_name(seg), "rb")  # noqa: SIM115
            except FileNotFoundError:
                return None  # not written yet: look again next time
            self._read_fh_seg = seg
        return self._read_fh

    def _read_at(self, seg: int, off: int) -> tuple[Record | None, int]:
        """The first good record at or after `off` in segment `seg` and its offset, or None
        and the end of the segment. Damage on the way is recorded in `corruptions`."""
        fh = self._open_read(seg)
        if fh is None:
            return None, off
        size = os.fstat(fh.fileno()).st_size
        damage_at: int | None = None
        reason = ""
        while off < size:
            fh.seek(off)
            head = fh.read(HEADER_SIZE)
            why = ""
            if len(head) < HEADER_SIZE:
                why = "truncated record header"
            else:
                magic, length, crc, ms = _HEAD.unpack(head)
                if magic != MAGIC:
                    why = "bad record marker"
                elif length > MAX_RECORD:
                    why = f"impossible record length {length}"
                elif off + HEADER_SIZE + length > size:
                    why = "record truncated"
                else:
                    payload = fh.read(length)
                    if zlib.crc32(payload, zlib.crc32(_MS.pack(ms))) == crc:
                        if damage_at is not None:
                            self._report(seg, damage_at, off - damage_at, reason)
                        return Record(seg, off, off + HEADER_SIZE + length, ms, payload), off
                    why = "checksum mismatch"
            if (damage_at is None and why in _UNFINISHED and self.acks == "drainer"
                    and not any(s > seg for s in _segments(self.dir))):
                # the owner is writing this record now: a read beside a write may see the
                # file's size grow a page at a time, never bytes that are not written yet
                return None, off
            if damage_at is None:
                damage_at, reason = off, why
            # resynchronise on the next record marker after the damaged byte
            fh.seek(off + 1)
            nxt = fh.read(size - off - 1).find(MAGIC)
            off = size if nxt < 0 else off + 1 + nxt
        if damage_at is not None:
            self._report(seg, damage_at, size - damage_at, reason)
        return None, size

    def _report(self, seg: int, off: int, n: int, reason: str) -> None:
        c = Corruption(_seg_name(seg), off, n, reason)
        if c not in self.corruptions:
            self.corruptions.append(c)

    def peek(self) -> Record | None:
        """The oldest unacknowledged record, or None when the spool is empty."""
        with self._lock:
            while True:
                rec, stop = self._read_at(self._read_seg, self._read_off)
                if rec is not None:
                    if rec.offset != self._read_off:  # damage skipped: remember it
                        self._pending_bytes -= rec.offset - self._read_off
                        self._read_off = rec.offset
                        self._save_cursor()
                    return rec
                if stop != self._read_off:  # damage to the end: reported, never pending
                    self._pending_bytes -= stop - self._read_off
                    self._read_off = stop
                    self._save_cursor()
                later = [s for s in _segments(self.dir) if s > self._read_seg]
                if not later:
                    self._pending_bytes = max(self._pending_bytes, 0)
                    return None
                self._advance_segment(later[0])

    def _advance_segment(self, nxt: int) -> None:
        done = self._read_seg
        if self._read_fh_seg == done and self._read_fh is not None:
            self._read_fh.close()
            self._read_fh = None
            self._read_fh_seg = -1
        self._read_seg, self._read_off = nxt, 0
        self._save_cursor()
        if done != self._write_seg:
            try:
                os.unlink(self.dir / _seg_name(done))
            except FileNotFoundError:
                pass

    def ack(self, record: Record) -> None:
        """Mark `record` (the one `peek` returned) delivered."""
        with self._lock:
            if (record.segment, record.offset) != (self._read_seg, self._read_off):
                raise SpoolError("acknowledged a record that is not the oldest")
            self._pending_bytes -= record.end - record.offset
            self._read_off = record.end
            self._save_cursor()
            if self._read_seg != self._write_seg and self._read_off >= _seg_size(
                    self.dir, self._read_seg):
                later = [s for s in _segments(self.dir) if s > self._read_seg]
                if later:
                    self._advance_segment(later[0])

    def peek_many(self, max_records: int) -> list[Record]:
        """Up to `max_records` of the oldest unacknowledged records, oldest first, none
        acknowledged: a consumer can deliver several small records in one write and then
        acknowledge them together with `ack_many`."""
        with self._lock:
            first = self.peek()
            if first is None:
                return []
            out = [first]
            seg, off = first.segment, first.end
            # the records after the first read with one pread and checked in memory (a
            # read, seek and stat each cost a drain a third of its time); the first
            # thing that is not a whole good record ends the batch, and the next peek
            # reads it the careful way
            fh = self._open_read(seg)
            # about what the batch needs, sized by the first record (records of one
            # writer are alike): reading the whole tail each time copied megabytes a batch
            guess = (max_records - 1) * (first.end - first.offset) * 2
            want = min(os.fstat(fh.fileno()).st_size - off, guess, _BATCH_READ)
            buf = os.pread(fh.fileno(), want, off) if want > 0 else b""
            pos, size = 0, len(buf)
            while len(out) < max_records and size - pos >= HEADER_SIZE:
                magic, length, crc, ms = _HEAD.unpack_from(buf, pos)
                end = pos + HEADER_SIZE + length
                if magic != MAGIC or end > size:
                    break
                payload = buf[pos + HEADER_SIZE:end]
                if zlib.crc32(payload, zlib.crc32(_MS.pack(ms))) != crc:
                    break
                out.append(Record(seg, off + pos, off + end, ms, payload))
                pos = end
            return out

    def ack_many(self, records: list[Record]) -> None:
        """Acknowledge records `peek_many` returned (all of them, in order), saving the
        cursor once."""
        if not records:
            return
        with self._lock:
            first, last = records[0], records[-1]
            if (first.segment, first.offset) != (self._read_seg, self._read_off) or \
                    last.segment != first.segment:
                raise SpoolError("acknowledged records that are not the oldest")
            # consecutive records of one segment are acknowledged as one span
            self.ack(Record(last.segment, first.offset, last.end, 0, b""))

    def last(self) -> Record | None:
        """The newest good record not yet acknowledged (the tail a restarted writer
        continues from), or None."""
        with self._lock:
            for seg in reversed([s for s in _segments(self.dir) if s >= self._read_seg]):
                off = self._read_off if seg == self._read_seg else 0
                found = None
                while True:
                    rec, stop = self._read_at(seg, off)
                    if rec is None:
                        break
                    found, off = rec, rec.end
                if found is not None:
                    return found
            return None

    def __iter__(self) -> Iterator[Record]:
        """Drain: yield the oldest record, acknowledging it when the next is asked for."""
        while True:
            rec = self.peek()
            if rec is None:
                return
            yield rec
            self.ack(rec)

    # -- state -----------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        return max(0, self._pending_bytes)

    def empty(self) -> bool:
        return self.peek() is None

    def oldest_ms(self) -> int | None:
        rec = self.peek()
        return rec.appended_ms if rec else None

    def close(self) -> None:
        with self._lock:
            if self._write_fd is not None:
                self._maybe_sync(force=True)
                os.close(self._write_fd)
                self._write_fd = None
            if self._read_fh is not None:
                self._read_fh.close()
                self._read_fh = None
            for name in ("_drain_fd", "_lock_fd"):
                if getattr(self, name) >= 0:
                    _unlock(getattr(self, name))
                    setattr(self, name, -1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
