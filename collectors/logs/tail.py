"""Reading log files: from a saved position, line by line, following growth and rotation.

A file is known by its identity — the digest of its first line — not by its name or
inode: a rotated `auth.log` renamed to `auth.log.1` is the same file, and a copy read
elsewhere gives the same event ids (ids derive from identity and byte offset).

Read positions are saved only once the events before them are durable (the shipper's
checkpoint), so a restart after a crash resumes without losing a line; lines read twice
carry the same ids and are stored once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from collectors.logs.records import LineParser, LogStats, Source

log = logging.getLogger("govsoc.logs")

CHUNK = 1 << 20
MAX_LINE = 1 << 20
CHECKPOINT_EVERY = 5000  # lines
_IDENT_BYTES = 4096

Sink = Callable[[dict[str, Any]], Any]
Checkpoint = Callable[[Callable[[], Any]], Any]


def identity_of(fh: Any, *, complete_only: bool = True) -> str | None:
    """Digest of the file's first line (up to 4 KiB). None while that line is still being
    written (no newline yet), unless `complete_only` is False (a finished import)."""
    pos = fh.tell()
    fh.seek(0)
    head = fh.read(_IDENT_BYTES)
    fh.seek(pos)
    if not head:
        return None
    nl = head.find(b"\n")
    if nl < 0 and complete_only and len(head) < _IDENT_BYTES:
        return None
    first = head if nl < 0 else head[: nl + 1]
    return hashlib.blake2b(first, digest_size=12).hexdigest()


class Positions:
    """Saved read offsets by file identity, in one JSON file (atomically replaced)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self.data: dict[str, dict[str, Any]] = {}
        if self.path and self.path.exists():
            try:
                self.data = orjson.loads(self.path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                log.warning("ignoring unreadable read positions %s: %s", self.path, exc)

    def get(self, identity: str) -> tuple[int, int | None]:
        """(offset, line number there or None if not saved)."""
        entry = self.data.get(identity)
        if not entry:
            return 0, 0
        lineno = entry.get("line")
        return int(entry["offset"]), (int(lineno) if lineno is not None else None)

    def set(self, identity: str, path: str, offset: int, lineno: int | None = None) -> None:
        with self._lock:
            entry: dict[str, Any] = {"path": path, "offset": offset, "at": time.time()}
            if lineno is not None:
                entry["line"] = lineno
            self.data[identity] = entry
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as fh:
                fh.write(orjson.dumps(self.data))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)

    def for_path(self, path: str) -> dict[str, int]:
        """identity -> saved offset, for the files last read under `path`."""
        return {k: int(v["offset"]) for k, v in self.data.items() if v.get("path") == path}


class LogReader:
    """One log file (and its rotations, when following) through one parser."""

    def __init__(self, path: str | os.PathLike[str], parser: LineParser, sink: Sink, *,
                 positions: Positions | None = None, checkpoint: Checkpoint | None = None,
                 stats: LogStats | None = None, resume: bool = True) -> None:
        self.path = str(path)
        self.parser = parser
        self.sink = sink
        self.positions = positions or Positions(None)
        self.checkpoint = checkpoint
        self.stats = stats or LogStats()
        self.resume = resume
        self.resumed_at: dict[str, int] = {}
        self._saved: dict[str, int] = {}  # identity -> last checkpointed offset

    # -- one pass over an open file --------------------------------------------------
    def _read(self, fh: Any, identity: str, offset: int, lineno: int, *, final: bool
              ) -> tuple[int, int]:
        """Read complete lines from `offset`; at EOF with `final`, a last line without
        newline counts too. Returns the new (offset, lineno)."""
        fh.seek(offset)
        buf = b""
        since_ckpt = 0
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            buf += chunk
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                raw = buf[start:nl]
                lineno += 1
                self._line(raw, identity, offset, lineno)
                offset += nl + 1 - start
                start = nl + 1
                since_ckpt += 1
            buf = buf[start:]
            if len(buf) > MAX_LINE:
                # A runaway line: skip to its end rather than hold it all in memory.
                lineno += 1
                self.stats.bad(f"line longer than {MAX_LINE} bytes", f"{self.path}:{lineno}")
                rest = self._skip_line(fh)
                offset += len(buf) + rest
                buf = b""
                fh.seek(offset)
            if since_ckpt >= CHECKPOINT_EVERY:
                self._checkpoint(identity, offset, lineno)
                since_ckpt = 0
        if buf and final:
            lineno += 1
            self._line(buf, identity, offset, lineno)
            offset += len(buf)
        if final:
            for doc in self.parser.flush(self.stats):
                self._emit(doc)
        self._checkpoint(identity, offset, lineno)
        return offset, lineno

    @staticmethod
    def _skip_line(fh: Any) -> int:
        skipped = 0
        while chunk := fh.read(CHUNK):
            nl = chunk.find(b"\n")
            if nl >= 0:
                return skipped + nl + 1
            skipped += len(chunk)
        return skipped

    def _line(self, raw: bytes, identity: str, offset: int, lineno: int) -> None:
        self.stats.lines += 1
        text = raw.decode("utf-8", "replace").rstrip("\r")
        src = Source(identity, self.path, offset, lineno)
        try:
            docs = self.parser.feed(text, src, self.stats)
        except (ValueError, KeyError, IndexError) as exc:  # a parser bug must not stop the import
            self.stats.bad(f"unparsable: {type(exc).__name__}: {exc}"[:200], src.where)
            return
        for doc in docs:
            self._emit(doc)

    def _emit(self, doc: dict[str, Any]) -> None:
        self.stats.events[doc["event"]["dataset"]] += 1
        self.sink(doc)

    def _checkpoint(self, identity: str, offset: int, lineno: int) -> None:
        held = self.parser.held_offset
        safe = offset if held is None else min(held, offset)
        line = lineno if held is None or held >= offset else None  # unknown mid-event
        if self._saved.get(identity) == safe:
            return  # nothing new since the last one: no marker, no disk write
        self._saved[identity] = safe

        def save() -> None:
            self.positions.set(identity, self.path, safe, line)

        if self.checkpoint is None:
            save()
        else:
            self.checkpoint(save)

    def _start(self, fh: Any, identity: str) -> tuple[int, int]:
        if not self.resume:
            return 0, 0
        offset, lineno = self.positions.get(identity)
        size = os.fstat(fh.fileno()).st_size
        if offset > size:  # shorter than we read: truncated and rewritten
            return 0, 0
        if offset:
            self.resumed_at[self.path] = offset
            self._saved[identity] = offset
            if lineno is None:  # saved mid-event: count the lines once
                fh.seek(0)
                lineno = fh.read(offset).count(b"\n")
            return offset, lineno
        return 0, 0

    # -- modes -----------------------------------------------------------------------
    def import_once(self) -> LogStats:
        """Read the file to its end (from the saved position) and stop."""
        with open(self.path, "rb") as fh:
            identity = identity_of(fh, complete_only=False)
            if identity is None:
                return self.stats  # empty file
            offset, lineno = self._start(fh, identity)
            self._read(fh, identity, offset, lineno, final=True)
        return self.stats

    def follow(self, stop: threading.Event, poll: float = 0.25) -> LogStats:
        """Tail the file until `stop` is set: new lines as they are written, then the
        next file when it is rotated (renamed, or truncated in place)."""
        self._catch_up_rotated()
        fh = None
        identity = None
        offset = lineno = 0
        quiet_since = time.monotonic()
        try:
            while not stop.is_set():
                if fh is None:
                    try:
                        fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
                    except FileNotFoundError:
                        stop.wait(poll)
                        continue
                    identity = None
                if identity is None:
                    identity = identity_of(fh)
                    if identity is None:
                        stop.wait(poll)
                        continue
                    offset, lineno = self._start(fh, identity)
                before = offset
                offset, lineno = self._read(fh, identity, offset, lineno, final=False)
                if offset != before:
                    quiet_since = time.monotonic()
                elif self.parser.held_offset is not None and time.monotonic() - quiet_since > 1:
                    # nothing more came: the held event (auditd) is complete
                    for doc in self.parser.flush(self.stats):
                        self._emit(doc)
                    self._checkpoint(identity, offset, lineno)
                if self._rotated(fh, offset):
                    # whatever the old file got before the switch, then the new one
                    offset, lineno = self._read(fh, identity, offset, lineno, final=True)
                    fh.close()
                    fh = None
                    continue
                stop.wait(poll)
            if fh is not None and identity is not None:
                self._read(fh, identity, offset, lineno, final=True)
        finally:
            if fh is not None:
                fh.close()
        return self.stats

    def _rotated(self, fh: Any, offset: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed and not recreated yet: keep reading the old one
        mine = os.fstat(fh.fileno())
        if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
            return True
        if mine.st_size < offset:  # copytruncate: the same inode starts again
            fh.seek(0)
            return True
        return False

    def _catch_up_rotated(self) -> None:
        """After a restart: finish files rotated away while we were down (auth.log.1,
        auth.log-20261123) from their saved positions before the live file."""
        if not self.resume:
            return
        base = Path(self.path)
        known = self.positions.for_path(self.path)
        if not known:
            return  # first run: history from before the agent is not imported
        files = []  # (mtime, path, identity), rotated files oldest first
        newest_known = 0.0
        for cand in [*base.parent.glob(base.name + "[.-]*"), base]:
            if cand.suffix in (".gz", ".xz", ".bz2", ".zst") or not cand.is_file():
                continue
            try:
                with open(cand, "rb") as fh:
                    ident = identity_of(fh, complete_only=False)
                    mtime = os.fstat(fh.fileno()).st_mtime
            except OSError:
                continue
            if ident in known:
                newest_known = max(newest_known, mtime)
            if cand != base and ident is not None:
                files.append((mtime, str(cand), ident))
        for mtime, cand, ident in sorted(files):
            # a file never seen but written after the newest one we knew was made while we
            # were down (rotated twice, or rotated before we read it): all of it is new
            if ident not in known and mtime <= newest_known:
                continue
            with open(cand, "rb") as fh:
                if ident in known and known[ident] >= os.fstat(fh.fileno()).st_size:
                    continue
                offset, lineno = self._start(fh, ident)
                self._read(fh, ident, offset, lineno, final=True)
