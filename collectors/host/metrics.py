"""Host metrics for the observability dashboards, shaped as Metricbeat's system module
writes them (`system.cpu`, `system.memory`, `system.load`, `system.network`,
`system.filesystem`, `system.diskio`), `event.kind: metric`."""

from __future__ import annotations

import os
from typing import Any

import psutil

from soc_core.ecs import make_event

_SKIP_FS = {"tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup", "cgroup2"}


def _metric(host: str, dataset: str, ts: float, key: str, fields: dict[str, Any]
            ) -> dict[str, Any]:
    fields = {**fields, "host": {**fields.get("host", {}), "name": host},
              "event": {"module": "system"}, "metricset": {"name": dataset.split(".", 1)[1]}}
    return make_event(dataset, ts, (host, key, round(ts, 3)), fields, kind="metric")


class MetricsCollector:
    def __init__(self, host: str) -> None:
        self.host = host
        psutil.cpu_times_percent(interval=None)  # primes the next call's delta

    def collect(self, ts: float) -> list[dict[str, Any]]:
        h = self.host
        out = []
        cores = psutil.cpu_count() or 1
        cpu = psutil.cpu_times_percent(interval=None)
        total = max(0.0, 100.0 - cpu.idle) / 100
        out.append(_metric(h, "system.cpu", ts, "cpu", {
            "host": {"cpu": {"usage": round(total, 4)}},
            "system": {"cpu": {"cores": cores,
                               "total": {"norm": {"pct": round(total, 4)}},
                               "user": {"norm": {"pct": round(cpu.user / 100, 4)}},
                               "system": {"norm": {"pct": round(cpu.system / 100, 4)}},
                               "iowait": {"norm": {"pct": round(
                                   getattr(cpu, "iowait", 0.0) / 100, 4)}},
                               "idle": {"norm": {"pct": round(cpu.idle / 100, 4)}}}}}))
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        out.append(_metric(h, "system.memory", ts, "memory", {"system": {"memory": {
            "total": mem.total, "free": mem.free,
            "used": {"bytes": mem.total - mem.available,
                     "pct": round((mem.total - mem.available) / mem.total, 4)},
            "actual": {"free": mem.available},
            "swap": {"total": swap.total, "used": {"bytes": swap.used,
                                                   "pct": round(swap.percent / 100, 4)}}}}}))
        l1, l5, l15 = os.getloadavg()
        out.append(_metric(h, "system.load", ts, "load", {"system": {"load": {
            "1": l1, "5": l5, "15": l15, "cores": cores,
            "norm": {"1": round(l1 / cores, 4), "5": round(l5 / cores, 4),
                     "15": round(l15 / cores, 4)}}}}))
        for name, c in psutil.net_io_counters(pernic=True).items():
            out.append(_metric(h, "system.network", ts, f"net:{name}", {"system": {"network": {
                "name": name,
                "in": {"bytes": c.bytes_recv, "packets": c.packets_recv, "errors": c.errin,
                       "dropped": c.dropin},
                "out": {"bytes": c.bytes_sent, "packets": c.packets_sent, "errors": c.errout,
                        "dropped": c.dropout}}}}))
        for part in psutil.disk_partitions(all=False):
            if part.fstype in _SKIP_FS:
                continue
            try:
                u = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            out.append(_metric(h, "system.filesystem", ts, f"fs:{part.mountpoint}", {
                "system": {"filesystem": {
                    "mount_point": part.mountpoint, "device_name": part.device,
                    "type": part.fstype, "total": u.total, "free": u.free, "available": u.free,
                    "used": {"bytes": u.used, "pct": round(u.percent / 100, 4)}}}}))
        for name, d in (psutil.disk_io_counters(perdisk=True) or {}).items():
            out.append(_metric(h, "system.diskio", ts, f"disk:{name}", {"system": {"diskio": {
                "name": name, "read": {"bytes": d.read_bytes, "count": d.read_count},
                "write": {"bytes": d.write_bytes, "count": d.write_count}}}}))
        return out
