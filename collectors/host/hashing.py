"""SM3 digests of files (GB/T 32905), cached by (path, mtime, size, inode): a process's
executable or a monitored file is hashed once until it changes."""

from __future__ import annotations

import os
from collections import OrderedDict

from soc_core import sm3

_BLOCK = 1 << 20


def sm3_file(path: str, limit: int | None = None) -> str | None:
    """Hex SM3 of a file's content, or None if it cannot be read (or is over `limit`)."""
    h = sm3.new()
    try:
        with open(path, "rb") as fh:
            read = 0
            while chunk := fh.read(_BLOCK):
                read += len(chunk)
                if limit is not None and read > limit:
                    return None
                h.update(chunk)
    except OSError:
        return None
    return h.finalize().hex()


class HashCache:
    def __init__(self, max_entries: int = 4096, max_file_bytes: int = 256 * 1024 * 1024
                 ) -> None:
        self._cache: OrderedDict[tuple, str | None] = OrderedDict()
        self.max_entries = max_entries
        self.max_file_bytes = max_file_bytes
        self.hashed = 0  # how many times a file was actually read

    def sm3(self, path: str, st: os.stat_result | None = None) -> str | None:
        try:
            st = st or os.stat(path)
        except OSError:
            return None
        key = (path, st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        digest = sm3_file(path, self.max_file_bytes)
        self.hashed += 1
        self._cache[key] = digest
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return digest
