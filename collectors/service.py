"""The `govsoc up` service of this package: this machine's agent (`collectors.agent`): the
host collector and tailers of its auth log, syslog and audit log, through one shipper."""

from __future__ import annotations

import threading

from soc_core.config import load_config


def run(store_url: str, stop: threading.Event, demo: bool = False) -> None:
    """Run until `stop` is set (the `govsoc.services` contract)."""
    from collectors.agent import Agent

    Agent(load_config(), store_url).run(stop)
