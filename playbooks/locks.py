"""Per-host run locks: no two playbook runs may work on the same host at once.

One lock file a host under the data dir, held with flock for the run's lifetime. The
kernel drops a lock when its holder dies, so a crashed run never leaves a host locked.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterable
from pathlib import Path

from playbooks.catalog import PlaybookError


class HostLocks:
    def __init__(self, lock_dir: Path, run_id: str) -> None:
        self.dir = lock_dir
        self.run_id = run_id
        self._fds: list[int] = []

    def acquire(self, hosts: Iterable[str]) -> None:
        """All or nothing: raise PlaybookError naming a busy host (and its run)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            for host in sorted(set(hosts)):
                path = self.dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", host) + ".lock")
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise PlaybookError(
                        f"host {host} is busy with run {holder or '?'}; try again later"
                    ) from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, self.run_id.encode(), 0)
                self._fds.append(fd)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> HostLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
