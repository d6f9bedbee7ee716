"""File integrity monitoring: SM3 digests of configured files and directories, and
`file_integrity` events (created/updated/deleted/attributes_modified) as Auditbeat's
file_integrity module writes them. The baseline persists, so changes made while the
collector was down are reported at the next start."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from collectors.host.hashing import HashCache
from soc_core.ecs import make_event

DATASET = "file_integrity"
MAX_FILES = 20_000


def _name(fn, ident: int) -> str | None:
    try:
        return fn(ident)[0]
    except KeyError:
        return None


class FileIntegrity:
    def __init__(self, host: str, paths: Iterable[str], hashes: HashCache,
                 state_path: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.paths = [str(p) for p in paths]
        self.hashes = hashes
        self.state_path = Path(state_path) if state_path else None
        self.state: dict[str, list[Any]] | None = None
        if self.state_path and self.state_path.exists():
            try:
                self.state = orjson.loads(self.state_path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                self.state = None

    def _files(self) -> Iterable[str]:
        n = 0
        for root in self.paths:
            if os.path.isfile(root):
                yield root
                n += 1
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for f in sorted(filenames):
                    p = os.path.join(dirpath, f)
                    if os.path.isfile(p) and not os.path.islink(p):
                        yield p
                        n += 1
                        if n >= MAX_FILES:
                            return

    def scan(self) -> dict[str, list[Any]]:
        """path -> [inode, size, mtime_ns, mode, uid, gid, sm3]"""
        prev = self.state or {}
        out: dict[str, list[Any]] = {}
        for p in self._files():
            try:
                st = os.stat(p)
            except OSError:
                continue
            old = prev.get(p)
            if old and old[:3] == [st.st_ino, st.st_size, st.st_mtime_ns]:
                digest = old[6]  # content unchanged by its metadata: no re-read
            else:
                digest = self.hashes.sm3(p, st)
            out[p] = [st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode),
                      st.st_uid, st.st_gid, digest]
        return out

    def _event(self, path: str, rec: list[Any], action: str, etype: str, ts: float
               ) -> dict[str, Any]:
        ino, size, mtime_ns, mode, uid, gid, digest = rec
        p = Path(path)
        file: dict[str, Any] = {"path": path, "name": p.name, "directory": str(p.parent),
                                "type": "file", "inode": str(ino), "size": size,
                                "uid": str(uid), "gid": str(gid), "mode": f"{mode:04o}",
                                "mtime": _iso(mtime_ns)}
        if p.suffix:
            file["extension"] = p.suffix[1:]
        if (owner := _name(pwd.getpwuid, uid)) is not None:
            file["owner"] = owner
        if (group := _name(grp.getgrgid, gid)) is not None:
            file["group"] = group
        if digest and action != "deleted":
            file["hash"] = {"sm3": digest}
        fields = {"file": file, "host": {"name": self.host},
                  "event": {"module": "file_integrity", "category": ["file"], "type": [etype],
                            "action": [action]},
                  "message": f"{path} {action}"}
        return make_event(DATASET, ts, (self.host, path, action, digest, mtime_ns, mode, uid,
                                        gid), fields)

    def collect(self, ts: float) -> list[dict[str, Any]]:
        now = self.scan()
        out: list[dict[str, Any]] = []
        if self.state is not None:
            for path, rec in now.items():
                old = self.state.get(path)
                if old is None:
                    out.append(self._event(path, rec, "created", "creation", ts))
                elif old[6] != rec[6]:
                    out.append(self._event(path, rec, "updated", "change", ts))
                elif old[3:6] != rec[3:6]:
                    out.append(self._event(path, rec, "attributes_modified", "change", ts))
            for path, old in self.state.items():
                if path not in now:
                    out.append(self._event(path, old, "deleted", "deletion", ts))
        self.state = now
        return out

    def save(self) -> None:
        if self.state_path is None or self.state is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.state))
        os.replace(tmp, self.state_path)


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
