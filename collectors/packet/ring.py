"""The packet ring: full packet capture to rotating pcapng files under `<data_dir>/pcap/`,
within a size and an age budget, oldest file removed first, never filling the disk.

Configuration (`govsoc.toml`; each key overridable as GOVSOC_COLLECTORS_RING_<KEY>)::

    [collectors.ring]
    enabled = false        # `collect live` writes the ring (also: `--ring`)
    dir = ""               # default <data_dir>/pcap
    file_mb = 64           # a file is closed and the next one begun past this size
    max_mb = 10240         # all ring files together; oldest removed first (>= 2 x file_mb)
    max_age = "7d"         # files whose newest packet is older are removed
    min_free_mb = 1024     # writing stops while the disk has less free space than this
    bpf = ""               # what is kept, e.g. "not port 873" (flows are recorded anyway)
    [collectors.ring.retention]   # per department (ids of [[departments]]): its own age
    wjw = "30d"

A department with its own retention gets its own files (a flow's department: its source
address, else its destination, by the departments' configured CIDRs); everything else
goes to the `all` files under `max_age`.

When writing is impossible (free space below `min_free_mb`, or the files that may not be
removed already fill `max_mb`, or a write fails), the ring stops writing: capture goes on
and flow events are still produced, a `govsoc.pcap` event with action `pcap_ring_paused`
goes to the store (rule "Packet ring stopped writing" raises the alert) and the
collector's health (`collect status`) shows it. Writing resumes (action
`pcap_ring_resumed`) once there is room again.

Each flow event records where its packets are, under `govsoc.pcap`: the stream, the first
and last file, packet number (1-based, as tshark's frame.number) and block offset, and how
many of the flow's packets were written; retrieval reads exactly that range.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.packet import ringfile as rf
from soc_core import ecs
from soc_core.config import Config, ConfigError
from soc_core.store import parse_duration

DATASET = "govsoc.pcap"
DEFAULTS = {"enabled": False, "dir": "", "file_mb": 64, "max_mb": 10240, "max_age": "7d",
            "min_free_mb": 1024, "bpf": ""}
_KEYS = set(DEFAULTS) | {"retention"}
HOUSEKEEP_S = 10.0  # how often the age budget is applied while capturing
FREE_CHECK_S = 1.0  # how often free space is checked while a file fills


@dataclass(frozen=True)
class RingConfig:
    dir: Path
    file_bytes: int
    max_bytes: int
    max_age_s: float
    min_free_bytes: int
    bpf: str = ""
    retention: dict[str, float] = field(default_factory=dict)  # department -> max age (s)
    enabled: bool = False

    def age_for(self, department: str) -> float:
        return self.retention.get(department, self.max_age_s)


def ring_config(cfg: Config) -> RingConfig:
    """`[collectors.ring]` checked; ConfigError with one line naming the key otherwise."""
    raw = cfg.get("collectors.ring", {}) or {}
    if not isinstance(raw, dict):
        raise ConfigError("collectors.ring: must be a table ([collectors.ring])")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"collectors.ring: unknown key {unknown[0]!r}; use "
                          f"{', '.join(sorted(_KEYS))}")

    def get(key: str) -> Any:
        return cfg.get(f"collectors.ring.{key}", DEFAULTS[key])

    def integer(key: str, low: int, high: int) -> int:
        v = get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ConfigError(f"collectors.ring.{key}: must be an integer from {low} to "
                              f"{high}, not {v!r}")
        return v

    def age(key: str, v: Any) -> float:
        try:
            return parse_duration(str(v)).total_seconds()
        except ValueError as exc:
            raise ConfigError(f"collectors.ring.{key}: {exc}") from None

    file_mb = integer("file_mb", 1, 4096)
    max_mb = integer("max_mb", 1, 1 << 30)
    if max_mb < 2 * file_mb:
        raise ConfigError(f"collectors.ring.max_mb ({max_mb}) must be at least twice "
                          f"file_mb ({file_mb}): the file being written and one to keep")
    min_free = integer("min_free_mb", 0, 1 << 30)
    max_age = age("max_age", get("max_age"))
    bpf = get("bpf") or ""
    if not isinstance(bpf, str):
        raise ConfigError(f"collectors.ring.bpf: must be a string, not {bpf!r}")
    if bpf.strip():
        compile_bpf(bpf, 1)  # a bad filter fails here, with its one line
    retention_raw = raw.get("retention", {}) or {}
    if not isinstance(retention_raw, dict):
        raise ConfigError("collectors.ring.retention: must be a table of department = "
                          "\"30d\"")
    known = {d.get("id") for d in (cfg.get("departments", []) or []) if isinstance(d, dict)}
    retention = {}
    for dept, value in retention_raw.items():
        if dept not in known:
            raise ConfigError(f"collectors.ring.retention: {dept!r} is not a configured "
                              "department ([[departments]] id)")
        retention[dept] = age(f"retention.{dept}", value)
    enabled = get("enabled")
    directory = get("dir") or ""
    return RingConfig(dir=Path(directory) if directory else Path(cfg.data_dir) / "pcap",
                      file_bytes=file_mb << 20, max_bytes=max_mb << 20, max_age_s=max_age,
                      min_free_bytes=min_free << 20, bpf=bpf.strip(), retention=retention,
                      enabled=bool(enabled))


# -- the kept-packets filter: libpcap compiles it, libpcap's bpf_filter runs it ------------
class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


_LIBPCAP: Any = None


def _libpcap() -> Any:
    global _LIBPCAP
    if _LIBPCAP is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise ConfigError("collectors.ring.bpf needs libpcap (Debian: libpcap0.8)") \
                from None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram),
                                     ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.bpf_filter.restype = ctypes.c_uint
        lib.bpf_filter.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint,
                                   ctypes.c_uint]
        _LIBPCAP = lib
    return _LIBPCAP


def compile_bpf(expr: str, linktype: int) -> Any:
    """A function frame bytes -> kept? for the BPF expression; ConfigError when libpcap
    refuses it."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(linktype, rf.MAX_SNAP)
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
            msg = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise ConfigError(f"collectors.ring.bpf: bad filter {expr!r}: {msg}")
    finally:
        lib.pcap_close(handle)
    def kept(data: bytes, _run=lib.bpf_filter, _insns=prog.bf_insns, _prog=prog) -> bool:
        # (_prog: the compiled instructions live as long as the function)
        n = len(data)
        return _run(_insns, data, n, n) != 0

    return kept


# -- the writer --------------------------------------------------------------------------
CLOSED = 1 << 62  # the offset of a stream with no open file: its next write rotates
# Blocks are packed into a buffer per stream and written out when it is full (and each
# second). Its size: each write() costs the kernel a fixed ~20 µs when capture paces the
# writes (measured on 75 MiB written at 100,000 packets/s: system time per packet 0.5 µs
# with 64 KiB writes, 0.3 with 256 KiB, 0.2 with 1 MiB); a smaller buffer leaves more of
# the CPU's cache to the decoder. 256 KiB: few writes, a small part of the cache.
BUFFER = 256 << 10
_PACKERS: dict[int, tuple[Any, int]] = {}  # frame length -> (pack_into, block length)
_PACKERS_MAX = 4096  # distinct frame lengths given their own packer (MTU-sized traffic:
# all of them); other lengths take a three-step path


def _packer(n: int) -> tuple[Any, int]:
    """(pack_into, block length) of an enhanced packet block of an n-byte frame:
    pack_into(buf, pos, 6, blen, 0, ts_hi, ts_lo, n, n, data, blen) writes the whole block
    at `pos` (header, frame, zero padding, trailing length) in one call and one copy."""
    blen = 32 + n + (-n & 3)
    if len(_PACKERS) < _PACKERS_MAX:
        got = _PACKERS[n] = (struct.Struct(f"<7I{n}s{-n & 3}xI").pack_into, blen)
        return got
    head, end, tail = rf.EPB_HEAD_INTO, 28 + n, rf.PAD[n & 3] + blen.to_bytes(4, "little")

    def pack_into(buf, pos, t, blen, i, hi, lo, c, w, data, _b) -> None:
        head(buf, pos, t, blen, i, hi, lo, c, w)
        buf[pos + 28:pos + end] = data
        buf[pos + end:pos + blen] = tail
    return pack_into, blen


class _Stream:
    """One department's files of one worker's run: the open file, its buffer (the file's
    bytes from `base` on, not yet written out), where the file ends (`offset`, buffer
    included) and where the buffer or the file is full (`end`)."""

    __slots__ = ("name", "department", "seq", "fd", "buf", "base", "base_number", "end",
                 "file", "offset", "number", "linktype", "done_packets", "done_bytes")

    def __init__(self, name: str, department: str) -> None:
        self.name = name
        self.department = department
        self.seq = 0
        self.fd = -1
        self.buf = bytearray(BUFFER)
        self.base = 0  # file offset of buf[0]
        self.base_number = 0  # packets in the file before buf[0]
        self.end = 0  # past this offset a write goes the slow way: buffer full, or rotate
        self.file = ""
        self.offset = CLOSED
        self.number = 0  # packets in the open file
        self.linktype = -1
        self.done_packets = self.done_bytes = 0  # in the files closed so far


class PacketRing:
    """Writes captured frames to the ring; `write(us, frame, flow)` per packet (`flow` the
    flow-table entry it was counted in, or None), `tick(now)` about once a second, `close()`
    at the end. `emit(event)` receives the ring's health events (the capture's sink);
    `health` (collectors.health.Health), if given, carries the ring's state for
    `collect status`."""

    def __init__(self, config: RingConfig, *, linktype: int = 1, worker: int = 0,
                 departments: Any = None, emit: Any = None, health: Any = None,
                 source: str = "") -> None:
        self.cfg = config
        self.limit = config.file_bytes
        self.linktype = linktype
        self.worker = worker
        self.emit = emit
        self.health = health
        self.source = source
        self.run = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid():x}"
        self.departments = departments if config.retention else None
        self.streams: dict[str, _Stream] = {}
        self.kept = None
        self.paused: str | None = None
        self.gate = False  # paused, or a filter to apply: the per-packet path checks once
        self.use_linktype(linktype)
        self.not_written = self.filtered = 0
        self.removed_files = self.removed_bytes = 0
        self.pauses = 0
        self._next_free = self._next_house = 0.0
        try:
            config.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._pause(f"cannot create {config.dir}: {exc.strerror or exc}")
        self._publish()

    @property
    def written(self) -> int:
        return sum(s.done_packets + s.number for s in self.streams.values())

    @property
    def bytes(self) -> int:
        return sum(s.done_bytes + (s.offset if s.fd >= 0 else 0)
                   for s in self.streams.values())

    def attach(self, emit: Any, health: Any = None) -> None:
        """Where health events go (and the health to keep current), given after the ring
        was made; a pause that happened before is reported now."""
        self.emit = emit
        if health is not None:
            self.health = health
            if self.paused is not None:
                health.note(f"packet ring stopped writing: {self.paused}")
        if self.paused is not None:
            self._health_event("pcap_ring_paused", self.paused)
        self._publish()

    def use_linktype(self, linktype: int) -> None:
        """The link type of the frames to come (the kept-packets filter is compiled for
        it); open files of another link type are closed (the next write begins a file)."""
        if linktype != self.linktype:
            for s in self.streams.values():
                self._close_file(s)
        self.linktype = linktype
        self.kept = compile_bpf(self.cfg.bpf, linktype) if self.cfg.bpf else None
        self.gate = self.paused is not None or self.kept is not None

    # -- per packet ------------------------------------------------------------------------
    def write(self, us: int, data: bytes, flow: Any = None, linktype: int | None = None
              ) -> None:
        """One frame captured at `us` (microseconds since the epoch, an int: the capture
        has it so; the ring keeps microseconds). The hot path of capture with the ring,
        kept short: the block is packed into the stream's buffer in one call; files and
        budgets are looked at in `_make_room`, once a buffer's worth of packets."""
        if self.gate:
            if self.paused is not None:
                self.not_written += 1
                return
            if not self.kept(data):
                self.filtered += 1
                return
        if flow is not None:
            loc = flow.ring
            s = loc[0] if loc is not None else self._stream(flow)
        else:
            loc = None
            s = self._stream(None)
        off = s.offset
        n = len(data)
        pack, blen = _PACKERS.get(n) or _packer(n)
        if off + blen > s.end or (linktype is not None and linktype != s.linktype):
            off = self._make_room(s, blen, self.linktype if linktype is None else linktype)
            if off < 0:
                self.not_written += 1
                return
        pack(s.buf, off - s.base, 6, blen, 0, us >> 32, us & 0xFFFFFFFF, n, n, data, blen)
        s.offset = off + blen
        number = s.number = s.number + 1
        if loc is not None:
            loc[4] = s.file
            loc[5] = number
            loc[6] = off
            loc[7] += 1
        elif flow is not None:
            flow.ring = [s, s.file, number, off, s.file, number, off, 1]

    def _make_room(self, s: _Stream, blen: int, linktype: int) -> int:
        """Where a `blen`-byte block of `linktype` goes: the offset in the stream's file
        (rotated first when full, closed or of another link type), its buffer written out
        first when the block does not fit; -1 when the ring cannot write (paused)."""
        if (s.offset >= self.limit or linktype != s.linktype) and not self._rotate(s, linktype):
            return -1
        pos = s.offset - s.base
        if pos + blen > len(s.buf):
            if pos and not self._drain(s):
                return -1
            if blen > len(s.buf):  # a frame bigger than the buffer: a buffer of its size
                s.buf = bytearray(blen)
        s.end = min(s.base + len(s.buf), self.limit)
        return s.offset

    def _stream(self, flow: Any) -> _Stream:
        dept = "all"
        if self.departments is not None and flow is not None:
            dept = self._department(flow.key)
        s = self.streams.get(dept)
        if s is None:
            s = self.streams[dept] = _Stream(f"ring-{self.run}-w{self.worker}-{dept}", dept)
        return s

    def _department(self, key: tuple) -> str:
        from collectors.packet.events import ip_text

        for addr in (key[1], key[3]):
            d = self.departments.for_address(ip_text(addr))
            if d is not None and d.id in self.cfg.retention:
                return d.id
        return "all"

    # -- files -----------------------------------------------------------------------------
    def _rotate(self, s: _Stream, linktype: int) -> bool:
        """Close the stream's file and begin its next one, within the budgets; False (and
        paused) when that is not possible."""
        self._close_file(s)
        if self.paused is not None:  # (writing out the closed file's buffer failed)
            return False
        self.enforce(time.time(), extra=self.cfg.file_bytes)
        if self.paused is not None:
            return False
        if self._free_bytes() < self.cfg.min_free_bytes + self.cfg.file_bytes:
            self._pause(f"free disk space under {self.cfg.min_free_bytes >> 20} MiB "
                        f"(collectors.ring.min_free_mb) on {self.cfg.dir}")
            return False
        s.seq += 1
        s.file = rf.file_name(s.name, s.seq)
        path = self.cfg.dir / s.file
        fd = -1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: never removed
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            self._pause(f"cannot write {path}: {exc.strerror or exc}")
            return False
        head = rf.header(linktype)
        s.buf[:len(head)] = head  # (the buffer keeps its size: len(head) bytes replaced)
        s.fd, s.base, s.base_number = fd, 0, 0
        s.offset, s.number, s.linktype = len(head), 0, linktype
        return True

    def _drain(self, s: _Stream) -> bool:
        """Write the stream's buffer out to its file; False (the file cut back and closed,
        writing paused) when that fails."""
        pos = s.offset - s.base
        view = memoryview(s.buf)[:pos]
        done = 0
        try:
            while done < pos:
                done += os.write(s.fd, view[done:])
        except OSError as exc:
            self._write_failed(s, exc)
            return False
        finally:
            view.release()
        s.base, s.base_number = s.offset, s.number
        s.end = min(s.base + len(s.buf), self.limit)
        return True

    def _close_file(self, s: _Stream) -> None:
        if s.fd >= 0:
            if s.offset > s.base and not self._drain(s):
                return  # (_write_failed closed it)
            self._forget_file(s)

    def _forget_file(self, s: _Stream) -> None:
        with contextlib.suppress(OSError):
            os.close(s.fd)  # the lock goes with the file
        s.done_packets += s.number
        s.done_bytes += s.offset
        s.fd = -1
        s.number = s.base = s.base_number = s.end = 0
        s.offset = CLOSED

    def _write_failed(self, s: _Stream, exc: OSError) -> None:
        """Writing out a buffer failed (the disk is full...): cut the file back to where
        the buffer began, its last whole block, so what it holds stays readable, and stop
        writing. The buffer's packets count as not written."""
        lost = s.number - s.base_number
        with contextlib.suppress(OSError):
            os.ftruncate(s.fd, s.base)
        s.offset, s.number = s.base, s.base_number
        self.not_written += lost
        self._forget_file(s)
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        self._pause(f"writing {s.file} failed: {why}")

    def _free_bytes(self) -> int:
        try:
            st = os.statvfs(self.cfg.dir)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def ring_files(self) -> list[tuple[float, int, Path, str]]:
        """(newest packet's time (mtime), size, path, stream) of every ring file here."""
        out = []
        try:
            entries = list(os.scandir(self.cfg.dir))
        except OSError:
            return out
        for e in entries:
            parsed = rf.parse_name(e.name)
            if parsed is None:
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, Path(e.path), parsed[0]))
        out.sort()
        return out

    def enforce(self, now: float, extra: int = 0) -> None:
        """Remove files past their age, then the oldest until the ring (plus `extra` bytes
        about to be written) fits `max_bytes`. A file another writer holds (locked) is
        never removed; when what is left still does not fit, writing pauses."""
        files = self.ring_files()
        total = sum(size for _, size, _, _ in files)
        keep = []
        for mtime, size, path, stream in files:
            age = self.cfg.age_for(rf.department_of_stream(stream))
            if now - mtime > age and self._remove(path):
                total -= size
            else:
                keep.append((mtime, size, path))
        for _mtime, size, path in keep:
            if total + extra <= self.cfg.max_bytes:
                break
            if self._remove(path):
                total -= size
        if total + extra > self.cfg.max_bytes:
            self._pause(f"the ring's files in use fill its budget of "
                        f"{self.cfg.max_bytes >> 20} MiB (collectors.ring.max_mb)")

    def _remove(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # being written
            size = os.fstat(fd).st_size
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            self.removed_files += 1
            self.removed_bytes += size
            return True
        finally:
            os.close(fd)

    # -- housekeeping and health -----------------------------------------------------------
    def tick(self, now: float) -> None:
        """About once a second from the capture loop: free space while files fill, the age
        budget every HOUSEKEEP_S, resuming a paused ring when there is room again."""
        if now >= self._next_free:
            self._next_free = now + FREE_CHECK_S
            self.flush()  # a flow's packets are on disk by the time its event is stored
            free = self._free_bytes()
            if self.paused is None:
                if free < self.cfg.min_free_bytes:
                    for s in self.streams.values():
                        self._close_file(s)
                    self._pause(f"free disk space under {self.cfg.min_free_bytes >> 20} MiB "
                                f"(collectors.ring.min_free_mb) on {self.cfg.dir}")
            elif free >= self.cfg.min_free_bytes + self.cfg.file_bytes:
                reason, self.paused = self.paused, None
                self.gate = self.kept is not None
                self.enforce(now, extra=self.cfg.file_bytes)
                if self.paused is None:
                    self._health_event("pcap_ring_resumed", f"writing again after: {reason}")
                self._publish()
        if now >= self._next_house:
            self._next_house = now + HOUSEKEEP_S
            self.enforce(now)
            self._publish()

    def flush(self) -> None:
        for s in self.streams.values():
            if s.fd >= 0 and s.offset > s.base:
                self._drain(s)

    def close(self) -> None:
        self.flush()
        for s in self.streams.values():
            self._close_file(s)
        self._publish()

    def _pause(self, reason: str) -> None:
        if self.paused is None:
            self.paused = reason
            self.gate = True
            self.pauses += 1
            self._health_event("pcap_ring_paused", reason)
            if self.health is not None:
                self.health.note(f"packet ring stopped writing: {reason}")
            self._publish()

    def _health_event(self, action: str, reason: str) -> None:
        if self.emit is None:
            return
        now = time.time()
        doc = ecs.make_event(DATASET, now, (self.run, self.worker, action, now), {
            "message": f"packet ring: {reason}",
            "host": {"name": socket.gethostname()},
            "event": {"kind": "event", "category": ["host"], "type": ["info"],
                      "action": action, "module": "govsoc",
                      "outcome": "failure" if action == "pcap_ring_paused" else "success"},
            "govsoc": {"pcap": {"ring": self.status()},
                       "capture": {"source": self.source}},
        })
        with contextlib.suppress(Exception):  # a health event never stops the capture
            self.emit(doc)

    def status(self) -> dict[str, Any]:
        return {"dir": str(self.cfg.dir), "writing": self.paused is None,
                "paused_reason": self.paused or "", "pauses": self.pauses,
                "packets_written": self.written, "bytes_written": self.bytes,
                "packets_not_written": self.not_written, "packets_filtered": self.filtered,
                "files_removed": self.removed_files, "bytes_removed": self.removed_bytes,
                "worker": self.worker}

    def _publish(self) -> None:
        if self.health is not None:
            self.health.ring = self.status()

