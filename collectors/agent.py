"""`govsoc agent`: the host collector, the log tailers (and live capture where configured)
of one machine as one long-running service with one shipper, one spool and its own
health, identifying itself on every event. `govsoc up` runs the same agent
(`collectors.service`).

Configuration (the file given by `--config`, or GOVSOC_CONFIG / ./govsoc.toml; each key
overridable as GOVSOC_<KEY>):

    store_url = "http://10.0.0.5:9200"   # the central store the agent ships to
    data_dir = "/var/lib/govsoc-agent"   # spool, read positions, agent id, health
    [agent]
    name = "web-01"              # agent.name (default: the host name)
    health_interval = 10         # seconds between heartbeats (govsoc.agent metric events)
    log_poll = 1                 # seconds between looks at each tailed log for new lines
    live_iface = ""              # capture this interface too ("" = no live capture)
    live_bpf = ""                # its kernel filter
    [collectors.host]            # interval, fim_paths: as for `govsoc collect host`
    [collectors.logs]            # auth_paths, syslog_paths, auditd_paths (missing: skipped)

Crash safety: events go through the shipper's spool, log read positions are saved only
once what was read before them is durable, and every event id derives from its source
record. SIGTERM drains (queue to the store or the spool); after SIGKILL the next start
resumes the logs from their saved positions (files rotated meanwhile first) and the store
keeps one copy of whatever is delivered twice.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import socket
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import click

from soc_core import ecs
from soc_core.config import Config, ConfigError, load_config

log = logging.getLogger("govsoc.agent")

DATASET = "govsoc.agent"
AGENT_TYPE = "govsoc"
DEFAULT_LOGS = {
    "auth": ["/var/log/auth.log", "/var/log/secure"],
    "syslog": ["/var/log/syslog", "/var/log/messages"],
    "auditd": ["/var/log/audit/audit.log"],
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("govsoc")
    except PackageNotFoundError:
        return "0"


def agent_id(data_dir: Path) -> str:
    """This agent's id: made once and kept in `<data_dir>/agent/id`, so it is the same
    after every restart (and new after a reinstall that removed the data dir)."""
    path = data_dir / "agent" / "id"
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = uuid.uuid4().hex
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return value


def host_fields() -> dict[str, Any]:
    """ECS `host.*` of this machine."""
    import psutil

    name = socket.gethostname()
    fields: dict[str, Any] = {"name": name, "hostname": name,
                              "architecture": platform.machine(),
                              "os": {"type": "linux", "kernel": platform.release()}}
    try:
        fields["id"] = Path("/etc/machine-id").read_text().strip()
    except OSError:
        pass
    ips = sorted({a.address.split("%")[0] for addrs in psutil.net_if_addrs().values()
                  for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)
                  and not a.address.startswith(("127.", "::1", "fe80"))})
    if ips:
        fields["ip"] = ips
    return fields


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


class Agent:
    """One machine's collectors behind one shipper. `run(stop)` until `stop` is set."""

    def __init__(self, cfg: Config, store_url: str | None = None, *,
                 shipper_name: str = "agent") -> None:
        from collectors.shipper import Shipper

        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir)
        self.store_url = store_url or cfg.store_url
        self.interval = _positive(cfg, "agent.health_interval", 10.0)
        self.host_interval = _positive(cfg, "collectors.host.interval", 10.0)
        # each look at a quiet log is a thread wake-up, and a wake-up costs ~0.2 ms of CPU
        # on a VM: 1 s (Filebeat's backoff) rather than the interactive tail's 0.25 s
        self.log_poll = _positive(cfg, "agent.log_poll", 1.0)
        self.id = agent_id(self.data_dir)
        self.host = host_fields()
        self.name = str(cfg.get("agent.name") or self.host["name"])
        self.meta = {"id": self.id, "name": self.name, "type": AGENT_TYPE,
                     "version": _version()}
        self.shipper = Shipper.from_config(self.store_url, shipper_name, cfg)
        self.started = time.time()
        self.last_error = ""
        self.readers: list[Any] = []

    # -- every event says which agent and host it comes from ----------------------
    def put(self, doc: dict[str, Any], block: bool = True) -> bool:
        doc["agent"] = dict(self.meta)
        host = doc.get("host")
        if isinstance(host, dict):
            for k, v in self.host.items():
                host.setdefault(k, v)
        else:
            doc["host"] = dict(self.host)
        return self.shipper.put(doc, block=block)

    def _live_put(self, doc: dict[str, Any]) -> None:
        self.put(doc, block=False)  # never stall a capture: a full queue counts drops

    # -- the parts -----------------------------------------------------------------
    def _threads(self, stop: threading.Event) -> list[threading.Thread]:
        from collectors.cli import path_list
        from collectors.host import HostCollector
        from collectors.logs import LogReader, Positions, parser_for

        positions = Positions(self.data_dir / "collectors" / "positions-agent.json")
        threads: list[threading.Thread] = []
        for fmt, defaults in DEFAULT_LOGS.items():
            for path in path_list(self.cfg.get(f"collectors.logs.{fmt}_paths", defaults)):
                if not os.path.isfile(path):
                    log.info("not tailing %s: no such file", path)
                    continue
                reader = LogReader(path, parser_for(fmt), self.put, positions=positions,
                                   checkpoint=self.shipper.checkpoint)
                self.readers.append(reader)
                threads.append(threading.Thread(
                    target=self._guard, args=(partial(reader.follow, poll=self.log_poll), stop),
                    name=f"tail:{path}", daemon=True))
        host = HostCollector(self.put, host_name=self.host["name"],
                             fim_paths=path_list(self.cfg.get("collectors.host.fim_paths")),
                             state_dir=str(self.data_dir / "collectors"),
                             checkpoint=self.shipper.checkpoint)
        threads.append(threading.Thread(
            target=self._guard, args=(lambda s: host.run(s, self.host_interval), stop),
            name="host", daemon=True))
        iface = str(self.cfg.get("agent.live_iface") or "")
        if iface:
            from collectors.packet import live

            bpf = str(self.cfg.get("agent.live_bpf") or "") or None
            threads.append(threading.Thread(
                target=self._guard,
                args=(lambda s: live.capture(iface, bpf, s, self._live_put), stop),
                name=f"live:{iface}", daemon=True))
        return threads

    def _guard(self, fn: Any, stop: threading.Event) -> None:
        """A part that fails is reported (last_error, the log) and restarted, never the
        whole agent taken down with it."""
        while not stop.is_set():
            try:
                fn(stop)
                return
            except Exception as exc:  # noqa: BLE001 - any failure of one part
                self.last_error = f"{threading.current_thread().name}: " \
                                  f"{type(exc).__name__}: {exc}"[:300]
                log.exception("agent part %s failed; restarting it",
                              threading.current_thread().name)
                stop.wait(5)

    # -- health --------------------------------------------------------------------
    def heartbeat(self, *, cpu_pct: float, events_per_s: float) -> dict[str, Any]:
        """The agent's health as a `govsoc.agent` metric event."""
        h = self.shipper.health
        now = time.time()
        spool = self.shipper.spool.pending_bytes
        fields = {
            "agent": dict(self.meta), "host": dict(self.host),
            "event": {"module": "govsoc", "category": ["host"], "type": ["info"]},
            "govsoc": {"agent": {
                "interval_s": self.interval, "uptime_s": round(now - self.started, 1),
                "events_per_s": round(events_per_s, 2), "events_in": h.events_in,
                "events_out": h.events_out, "dropped": h.dropped,
                "spool": {"bytes": spool}, "queued": h.queued,
                "store_up": h.store_up, "cpu_pct": round(cpu_pct, 3),
                "cpu_seconds": round(_cpu_seconds(), 3), "rss_bytes": _rss_bytes(),
                "last_error": self.last_error or h.last_error,
                "logs": sorted(r.path for r in self.readers)}},
        }
        return ecs.make_event(DATASET, now, (self.id, round(now, 3)), fields, kind="metric")

    def run(self, stop: threading.Event) -> dict[str, Any]:
        """Run until `stop` is set, then drain; returns the shipper's last health."""
        raise_open_files_limit()
        self.shipper.start()
        threads = self._threads(stop)
        for t in threads:
            t.start()
        log.info("agent %s (%s) shipping to the store", self.name, self.id)
        last_wall, last_cpu, last_in = time.monotonic(), _cpu_seconds(), 0
        try:
            while True:
                stop.wait(self.interval)
                wall, cpu = time.monotonic(), _cpu_seconds()
                span = max(wall - last_wall, 1e-6)
                events_in = self.shipper.health.events_in
                # the heartbeat itself is not traffic: count what came before it
                self.put(self.heartbeat(cpu_pct=100 * (cpu - last_cpu) / span,
                                        events_per_s=(events_in - last_in) / span))
                last_wall, last_cpu, last_in = wall, cpu, events_in + 1
                if stop.is_set():
                    break
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
            snap = self.shipper.close(drain_timeout=float(
                self.cfg.get("agent.drain_timeout", 10)))
        return snap


def raise_open_files_limit(want: int = 65536) -> None:
    """Raise this process's soft open-files limit towards its hard one (at most `want`):
    the process tracker holds a pidfd per process, and a service's usual soft limit of
    1,024 would leave the rest of a large host to the slower stat-per-process check."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.info("open-files limit stays %s: %s", soft, exc)


def _positive(cfg: Config, key: str, default: float) -> float:
    raw = cfg.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{key}: must be above 0, got {raw!r}")
    return value


@click.command("agent")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The agent's config file (default: GOVSOC_CONFIG or ./govsoc.toml).")
@click.option("--store", "store_url", default=None,
              help="Store URL (default: the config's store_url).")
def agent_cmd(config_path: str | None, store_url: str | None) -> None:
    """Run this host's collectors as one long-running agent (SIGTERM stops it cleanly)."""
    from collectors.cli import check_store, stop_on_signals
    from soc_core.cliutil import fail
    from soc_core.spool import SpoolError

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config_path)
        if config_path:  # the stores the agent opens read the same file
            os.environ["GOVSOC_CONFIG"] = str(Path(config_path).resolve())
        check_store(store_url or cfg.store_url)
        agent = Agent(cfg, store_url)
    except (ConfigError, SpoolError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start the agent: {exc.strerror or exc}")
    with stop_on_signals() as stop:
        snap = agent.run(stop)
    click.echo(f"agent {agent.name} stopped: {snap['events_out']} events delivered, "
               f"{snap['spool_bytes']} bytes left in the spool", err=True)
