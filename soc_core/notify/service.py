"""Notifications as a `govsoc up` service (`govsoc.services` entry point `notify`): the
watcher reads the store every `notify.interval` seconds (default 10) and the senders drain
the outbox. Without configured channels it idles. Settings: see `soc_core.notify`."""

from __future__ import annotations

import logging
import threading

from soc_core.config import load_config
from soc_core.notify.channels import channels_from_config
from soc_core.notify.outbox import Outbox, outbox_path
from soc_core.notify.watch import Watcher
from soc_core.notify.worker import Backoff, Dispatcher
from soc_core.store import StoreError, open_store

__all__ = ["run"]

log = logging.getLogger("govsoc.notify")


def run(store_url: str, stop: threading.Event, demo: bool) -> None:
    cfg = load_config()
    channels = list(channels_from_config(cfg).values())
    if not channels:
        log.info("no notification channels configured (notify.channels)")
        stop.wait()
        return
    interval = float(cfg.get("notify.interval", 10))
    outbox = Outbox(outbox_path(cfg))
    store = open_store(store_url)
    dispatcher = Dispatcher(outbox, channels,
                            backoff=Backoff(float(cfg.get("notify.retry_base", 2.0)),
                                            float(cfg.get("notify.retry_max", 300.0)))).start()
    watcher = Watcher(store, outbox, channels, str(cfg.get("notify.lookback", "24h")))
    try:
        while not stop.is_set():
            try:
                watcher.pass_once()
            except StoreError as exc:  # the store is down: what is queued still goes out
                log.warning("notify: cannot read the store now: %s", type(exc).__name__)
            stop.wait(interval)
    finally:
        dispatcher.close()
        outbox.close()
        store.close()
