"""Evidence files into ECS events, whatever they are: the import half of `govsoc hunt`
(an incident responder's pcaps, EVTX files and Linux logs). Registered as the
`govsoc.importers` entry point `evidence`, so the hunt command in detections finds it
without importing collectors.

    kind_of(path) -> "pcap" | "evtx" | "auth" | "syslog" | "auditd"   (EvidenceError)
    import_evidence(paths, sink) -> [{"path", "kind", "events"}]       (EvidenceError)
    import_evidence(paths, sink, lazy=True): EVTX records reach `sink` as
        `soc_core.records.SourceRecord`s (their event built on `event()`)

Every path is opened and recognised before the first event reaches `sink`, so a bad
path fails the whole import with one line and nothing written. Inside a folder, files
that are none of these (a README, a licence) are listed as "skipped" instead."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
               b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
EVTX_MAGIC = b"ElfFile\x00"
AUTH_NAMES = ("auth.log", "secure")


class EvidenceError(ValueError):
    """A path that is missing or holds nothing govsoc can read (one clear line)."""


# the first line of a log govsoc reads: syslog's "Mon dd hh:mm:ss", an RFC 3339 time, or
# an auditd record; other text (a README, a licence, JSON) is not evidence
_LOG_LINE = re.compile(rb"^(<\d+>)?([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|"
                       rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|type=)")


def expand(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """(file, named by the user) for the files given and those under folders (sorted,
    hidden ones left out)."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            # hidden below the folder given: the folder's own path may hold "..", ".cache"
            out.extend((f, False) for f in sorted(path.rglob("*")) if f.is_file()
                       and not any(part.startswith(".")
                                   for part in f.relative_to(path).parts))
        elif path.is_file():
            out.append((path, True))
        else:
            raise EvidenceError(f"no such file or folder: {path}")
    return out


def kind_of(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise EvidenceError(f"{path}: {exc.strerror or exc}") from None
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:8] == EVTX_MAGIC:
        return "evtx"
    first = head.split(b"\n", 1)[0]
    if b"\x00" in head or not _LOG_LINE.match(first):
        raise EvidenceError(f"{path}: not a pcap/pcapng capture, EVTX file or text log")
    if first.startswith(b"type=") or b" type=" in first[:40]:
        return "auditd"
    if path.name.startswith(AUTH_NAMES) or b"sshd[" in head or b"sudo:" in head:
        return "auth"
    return "syslog"


def import_evidence(paths: Iterable[str | os.PathLike], sink: Callable[[Any], Any], *,
                    lazy: bool = False, prefilter: Any = None) -> list[dict[str, Any]]:
    kinds = []
    skipped = []
    for path, named in expand(paths):
        try:
            kinds.append((path, kind_of(path)))
        except EvidenceError:
            if named:
                raise
            skipped.append(path)  # found in a folder: a README or licence beside the logs
    if not kinds:
        raise EvidenceError("no evidence files (pcap/pcapng, EVTX or text logs) found")
    out: list[dict[str, Any]] = [{"path": str(p), "kind": "skipped", "events": 0}
                                 for p in skipped]
    for path, kind in kinds:
        count = 0

        def counted(ev: Any) -> None:
            nonlocal count
            count += 1
            sink(ev)

        if kind == "pcap":
            from collectors.packet import CaptureError, read_pcaps

            try:
                events, _stats = read_pcaps([path])
                for ev in events:
                    counted(ev)
            except CaptureError as exc:
                raise EvidenceError(str(exc)) from None
        elif kind == "evtx":
            from collectors.logs import read_evtx

            try:
                # the sink itself (no counting call for every record): the file's events
                # are those its stats count, each one handed to the sink
                count = read_evtx(str(path), sink, lazy=lazy,
                                  prefilter=prefilter).events_total
            except ValueError as exc:  # EvtxError: the file as a whole is unreadable
                raise EvidenceError(str(exc)) from None
        else:
            from collectors.logs import LogReader, parser_for

            LogReader(path, parser_for(kind), counted, resume=False).import_once()
        out.append({"path": str(path), "kind": kind, "events": count})
    return out
