"""File carving: the files a capture's HTTP, FTP and SMB transfers carry, extracted by
Wireshark's "export objects" (`tshark --export-objects`), hashed with SM3 and SHA-256,
kept once by content under `<data_dir>/carved/`, and described as ECS `file` events.

The bytes are hostile by nature (the malware an alert is about): they are stored as plain
files named by their SHA-256, never executed or rendered, and handed out only as
`application/octet-stream` downloads by the API.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from collectors.packet.dissection import tshark_error
from collectors.packet.pcapfile import open_capture
from collectors.packet.stats import CaptureStats
from collectors.packet.tshark import check_tshark
from soc_core import ecs, sm3

DATASET = "file.carved"
# tshark's export-objects protocol -> the ECS network.protocol of the transfer
PROTOCOLS = {"http": "http", "ftp-data": "ftp", "smb": "smb"}
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CarveLimits:
    files: int = 1000
    total_bytes: int = 1 << 30
    timeout_s: float = 120.0


@dataclass
class Carved:
    files: list[dict[str, Any]] = field(default_factory=list)  # the file.* events
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "notes": self.notes}


def carved_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "carved"


def carved_path(data_dir: str | os.PathLike, sha256: str) -> Path:
    """Where the carved bytes of `sha256` are kept; ValueError for anything but 64 hex
    digits (a name from a request never reaches the file system otherwise)."""
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        raise ValueError("a SHA-256 is 64 lowercase hex digits")
    return carved_dir(data_dir) / sha256[:2] / sha256


def _hashes(path: Path) -> tuple[str, str, int]:
    h256, hsm3, size = hashlib.sha256(), sm3.new(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h256.update(chunk)
            hsm3.update(chunk)
            size += len(chunk)
    return h256.hexdigest(), hsm3.finalize().hex(), size


def _content_types(path: str, timeout_s: float) -> dict[str, str]:
    """HTTP response Content-Type by the file name export-objects gives it (the last
    segment of the request's path)."""
    cmd = [check_tshark(), "-n", "-r", path, "-Y", "http.response && http.content_type",
           "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f",
           "-e", "http.response_for.uri", "-e", "http.content_type"]
    try:
        text = subprocess.run(cmd, capture_output=True, timeout=timeout_s,
                              check=False).stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return {}
    found: dict[str, str] = {}
    for line in text.splitlines():
        uri, _, ctype = line.partition("\t")
        name = unquote(urlsplit(uri).path.rsplit("/", 1)[-1])
        ctype = ctype.split(";", 1)[0].strip().lower()
        if ctype and len(ctype) < 128:
            found.setdefault(name or "%2f", ctype)  # tshark names a "/" download "%2f"
    return found


def _smb2_gaps(path: str, timeout_s: float) -> dict[str, tuple[int, int]]:
    """SMB2 files the capture does not hold in full: export-objects writes a file whose
    READ responses are missing (packets lost, capture started late) at its full size, the
    gaps filled with whatever was in tshark's memory, so its hashes match nothing. Exported
    name ("File_Id_<guid>" without the open) and its bare file name -> (bytes missing, size),
    from the READ responses seen against the size the open reported."""
    cmd = [check_tshark(), "-n", "-r", path, "-Y",
           "smb2.cmd == 5 || smb2.cmd == 8", "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=f"]
    for f in ("frame.number", "smb2.cmd", "smb2.flags.response", "smb2.response_to",
              "smb2.nt_status", "smb2.fid", "smb2.filename", "smb2.file_offset",
              "smb2.olb.length", "smb2.eof"):
        cmd += ["-e", f]
    try:
        text = subprocess.run(cmd, capture_output=True, timeout=timeout_s,
                              check=False).stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return {}
    requests: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    sizes: dict[str, int] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for line in text.splitlines():
        row = (line.split("\t") + [""] * 10)[:10]
        frame, command, response, to, status, fid, name, offset, length, eof = row
        if response in ("0", "False"):
            requests[frame] = row
            continue
        req = requests.get(to)
        if not req or status not in ("", "0", "0x00000000"):
            continue
        try:
            if command == "5" and fid:
                names[fid] = req[6]
                sizes[fid] = int(eof or 0)
            elif command == "8" and req[5] and req[7]:
                spans.setdefault(req[5], []).append((int(req[7]), int(length or 0)))
        except ValueError:
            continue
    gaps: dict[str, tuple[int, int]] = {}
    for fid, got in spans.items():
        size = sizes.get(fid) or max(o + n for o, n in got)
        held, end = 0, 0
        for o, n in sorted(got):
            o, stop = max(o, end), min(o + n, size)
            if stop > o:
                held += stop - o
                end = stop
        if held < size:
            name = names.get(fid)
            for key in (f"File_Id_{fid}", file_name(name, "smb") if name else None):
                if key:
                    miss, total = gaps.get(key, (0, 0))
                    gaps[key] = (miss + size - held, total + size)
    return gaps


def _first_time(path: str) -> str:
    cap = open_capture(path)
    try:
        for ts, *_ in cap.frames(CaptureStats()):
            return ecs.format_time(datetime.fromtimestamp(ts, UTC))
    finally:
        cap.close()
    return ecs.now_iso()


def carve(path: str | os.PathLike, data_dir: str | os.PathLike, *,
          origin: dict[str, Any] | None = None,
          limits: CarveLimits = CarveLimits()) -> Carved:
    """Carve the files of the capture `path` into `<data_dir>/carved/`; returns their
    `file.carved` events (not yet written: `record` does) and notes. `origin`: the flow
    event or alert the capture was cut for: its id (`govsoc.carve.origin`, and what the
    event ids derive from), endpoints, time and departments go into each event, so the
    files are seen by whoever sees it. Without one the ids derive from the capture's
    content."""
    path = str(path)
    cap = open_capture(path)  # CaptureError (one line) for a missing or non-capture file
    identity = cap.identity
    cap.close()
    out = Carved()
    base = carved_dir(data_dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".carve-", dir=base))  # same file system: rename
    try:
        cmd = [check_tshark(), "-n", "-r", path, "-q"]
        for proto in PROTOCOLS:
            cmd += ["--export-objects", f"{proto},{work / proto}"]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=limits.timeout_s,
                                  check=False)
            err = tshark_error(done.stderr.decode("utf-8", "replace"))
            if "cut short" in err:
                out.notes.append("the capture is truncated: files after the cut are missing "
                                 "or incomplete")
            elif done.returncode != 0 and err:
                out.notes.append(f"tshark reported: {err}")
        except subprocess.TimeoutExpired:
            out.notes.append(f"carving stopped after {limits.timeout_s:g} s: only the files "
                             "exported until then are kept")
        ctypes = _content_types(path, min(limits.timeout_s, 30.0))
        # (tshark makes every export folder: read the SMB2 exchanges only if it has files)
        smb = work / "smb"
        gaps = (_smb2_gaps(path, min(limits.timeout_s, 30.0))
                if smb.is_dir() and any(smb.iterdir()) else {})
        when = (origin or {}).get("@timestamp") or _first_time(path)
        key = ((origin or {}).get("event") or {}).get("id") or identity
        total = 0
        for proto, network_proto in PROTOCOLS.items():
            folder = work / proto
            if not folder.is_dir():
                continue
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                if not item.is_file() or item.is_symlink():
                    continue
                if len(out.files) >= limits.files:
                    out.notes.append(f"only the first {limits.files} files are kept")
                    break
                size = item.stat().st_size
                if total + size > limits.total_bytes:
                    out.notes.append(f"{item.name}: not kept, past the "
                                     f"{limits.total_bytes} byte carving budget")
                    continue
                sha256, sm3_hex, size = _hashes(item)
                total += size
                dest = carved_path(data_dir, sha256)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.exists():
                    item.unlink()
                else:
                    os.replace(item, dest)
                    os.chmod(dest, 0o640)
                ev = _event(item.name, size, sha256, sm3_hex, network_proto, ctypes, when,
                                key, origin)
                gap = (gaps.get(item.name) or gaps.get(ev["file"]["name"])
                       if proto == "smb" else None)
                if gap:
                    ev["govsoc"]["carve"]["partial"] = True
                    out.notes.append(f"{ev['file']['name']}: {gap[0]} of {gap[1]} bytes are "
                                     "not in the capture: the carved file is partial and its "
                                     "hashes are not the transferred file's")
                out.files.append(ev)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def file_name(exported: str, proto: str) -> str:
    """The transferred file's name from the one export-objects gave it: tshark escapes
    "/", "?" and the like as %xx and keeps an HTTP request's query; the name is the
    path's last segment without the query."""
    name = unquote(exported)
    if proto == "http":
        name = name.split("?", 1)[0]
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name if name and name not in (".", "..") else exported


def _event(exported: str, size: int, sha256: str, sm3_hex: str, proto: str,
           ctypes: dict[str, str], when: str, key: str, origin: dict[str, Any] | None
           ) -> dict[str, Any]:
    name = file_name(exported, proto)
    bare = re.sub(r"\(\d+\)(?=(\.[^.]*)?\Z)", "", name)  # tshark's "(1)" for a repeated name
    mime = (ctypes.get(name) or ctypes.get(bare) or ctypes.get(exported)
            if proto == "http" else None) or mimetypes.guess_type(bare)[0]
    file: dict[str, Any] = {"name": name, "size": size, "hash": {"sha256": sha256}}
    ext = Path(bare).suffix.lstrip(".").lower()
    if ext and len(ext) <= 16:
        file["extension"] = ext
    if mime:
        file["mime_type"] = mime
    doc: dict[str, Any] = {
        "@timestamp": when,
        "event": {"kind": "event", "category": ["file"], "type": ["info"],
                  "action": "file-carved", "dataset": DATASET, "module": "govsoc",
                  "id": ecs.stable_id("carved", key, proto, exported, sha256)},
        "file": file,
        "network": {"protocol": proto},
        "related": {"hash": [sha256, sm3_hex]},
        # ECS has no SM3 hash field: ours lives under govsoc.*
        "govsoc": {"file": {"hash": {"sm3": sm3_hex}}, "carve": {"origin": key}},
        "message": f"{proto} file {name} ({size} bytes) carved, sha256 {sha256}",
    }
    if origin:
        for side in ("source", "destination"):
            if isinstance(origin.get(side), dict):
                doc[side] = {k: v for k, v in origin[side].items() if k in ("ip", "port")}
        transport = (origin.get("network") or {}).get("transport")
        if transport:
            doc["network"]["transport"] = transport
        # the origin's departments, as stamped on it: its viewers see its files
        if isinstance(origin.get("organization"), dict):
            doc["organization"] = dict(origin["organization"])
        depts = (origin.get("govsoc") or {}).get("departments")
        if depts:
            doc["govsoc"]["departments"] = depts
    return doc


def record(store: Any, carved: Carved) -> Any:
    """Write the carved files' events (deterministic ids: carving again adds nothing)."""
    return store.write(carved.files, refresh=True)


__all__ = ["DATASET", "PROTOCOLS", "CarveLimits", "Carved", "carve", "carved_dir",
           "carved_path", "file_name", "record"]
