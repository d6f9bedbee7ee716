"""Host collector (psutil and /proc): processes, sockets, sessions, metrics, file
integrity. `HostCollector(sink, fim_paths=[...]).collect()` runs one cycle;
`.run(stop_event, interval)` loops until stopped."""

from __future__ import annotations

from collectors.host.collector import HostCollector
from collectors.host.hashing import HashCache, sm3_file

__all__ = ["HashCache", "HostCollector", "sm3_file"]
