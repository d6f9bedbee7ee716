"""The `govsoc up` service of this package: the host collector and tailers of this
machine's auth log, syslog and audit log, delivering through one shipper ("agent")."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from soc_core.config import load_config

log = logging.getLogger("govsoc.agent")

DEFAULT_LOGS = {
    "auth": ["/var/log/auth.log", "/var/log/secure"],
    "syslog": ["/var/log/syslog", "/var/log/messages"],
    "auditd": ["/var/log/audit/audit.log"],
}


def run(store_url: str, stop: threading.Event, demo: bool = False) -> None:
    """Run until `stop` is set (the `govsoc.services` contract)."""
    from collectors.cli import path_list
    from collectors.host import HostCollector
    from collectors.logs import LogReader, Positions, parser_for
    from collectors.shipper import Shipper

    cfg = load_config()
    data_dir = Path(cfg.data_dir)
    shipper = Shipper.from_config(store_url, "agent", cfg).start()
    positions = Positions(data_dir / "collectors" / "positions-agent.json")
    threads: list[threading.Thread] = []
    for fmt, defaults in DEFAULT_LOGS.items():
        paths = path_list(cfg.get(f"collectors.logs.{fmt}_paths", defaults))
        for path in paths:
            if not os.path.isfile(path):
                log.info("not tailing %s: no such file", path)
                continue
            reader = LogReader(path, parser_for(fmt), shipper.put, positions=positions,
                               checkpoint=shipper.checkpoint)
            threads.append(threading.Thread(target=reader.follow, args=(stop,),
                                            name=f"tail:{path}", daemon=True))
    host = HostCollector(shipper.put, fim_paths=path_list(cfg.get("collectors.host.fim_paths")),
                         state_dir=str(data_dir / "collectors"), checkpoint=shipper.checkpoint)
    threads.append(threading.Thread(
        target=host.run, args=(stop, float(cfg.get("collectors.host.interval", 10))),
        name="host", daemon=True))
    for t in threads:
        t.start()
    try:
        stop.wait()
    finally:
        for t in threads:
            t.join(timeout=10)
        shipper.close(drain_timeout=5)
