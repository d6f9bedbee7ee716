"""Passive discovery as a `govsoc up` service: every `inventory.interval` seconds (default
300), the flows and host-collector reports since the last run are folded into the asset
registry. Network discovery sends packets, so it never runs unasked: it is a command
(`govsoc inventory discover --network`), scheduled by whoever operates the network."""

from __future__ import annotations

import logging
import threading

from cloud_inventory.config import inventory_config
from cloud_inventory.passive import discover_flows, discover_host_collectors
from cloud_inventory.registry import InventoryError
from soc_core.config import ConfigError, load_config
from soc_core.store import StoreError, open_store

log = logging.getLogger(__name__)


def run(store_url: str, stop: threading.Event, demo: bool = False) -> None:
    """Run until `stop` is set (the `govsoc.services` contract)."""
    try:
        interval = max(10.0, float(load_config().get("inventory.interval", 300)))
    except (TypeError, ValueError, ConfigError) as exc:
        log.error("inventory service not started: inventory.interval: %s", exc)
        return
    store = open_store(store_url)
    try:
        while not stop.is_set():
            try:
                conf = inventory_config()
                for rec in (discover_flows(store, conf=conf), discover_host_collectors(store)):
                    if rec.changes:
                        log.info("inventory %s run %s: %d changes", rec.source, rec.run_id,
                                 len(rec.changes))
            except (StoreError, ConfigError, InventoryError, ValueError) as exc:
                log.warning("inventory pass failed (retried next interval): %s", exc)
            stop.wait(interval)
    finally:
        store.close()
