"""The API as a `govsoc up` service: one worker in a thread beside the collectors and the
detection engine, on the configured address (HTTPS unless `api.insecure_http` is set on
loopback); its URL is printed when it starts."""

from __future__ import annotations

import logging
import threading

from soc_api.app import create_app
from soc_api.serve import Listen, serve_in_thread
from soc_core.config import load_config

log = logging.getLogger("govsoc.api")


def run(store_url: str, stop: threading.Event, demo: bool) -> None:
    cfg = load_config()
    cfg.values["store_url"] = store_url
    listen = Listen.from_config(cfg, workers=1,
                                insecure_http=bool(cfg.get("api.insecure_http", False)))
    print(f"govsoc API: {listen.url}", flush=True)  # noqa: T201 - the user needs the URL
    serve_in_thread(cfg, listen, stop, create_app(cfg))
