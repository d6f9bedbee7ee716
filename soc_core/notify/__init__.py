"""Notifications: DingTalk, WeCom and Feishu robot webhooks (each signed as its vendor
documents) and e-mail, for new alerts at or above a level, playbook runs waiting for
approval and playbook results.

Producers queue `Message`s in a durable local `Outbox`; a `Dispatcher` drains it, one thread
a channel, rate-limited and retried with backoff; the `Watcher` (run by the `notify`
service of `govsoc up`) reads new alerts and run states from the store, so detection never
waits for a notification. Any package may queue a message directly::

    outbox = Outbox(outbox_path(cfg)); outbox.enqueue(msg, channels_from_config(cfg).values())

Config (`govsoc.toml`, each key overridable by GOVSOC_NOTIFY_...):

    [notify]
    min_level = "high"      # alerts at or above (per channel: min_level)
    interval = 10           # seconds between store reads
    lookback = "24h"        # how far back a pass looks for alerts and runs
    outbox = "<data_dir>/notify/outbox.db"
    retry_base = 2.0        # first retry after ~2 s, doubling...
    retry_max = 300.0       # ...up to 5 minutes; a channel gives up after max_attempts
    [notify.channels.<name>]  see soc_core.notify.channels

Interface:

    Message, Channel, WebhookChannel, EmailChannel, DeliveryError, channels_from_config,
    LEVELS, KINDS, level_at_least                           soc_core.notify.channels
    Outbox, Claim, outbox_path                              soc_core.notify.outbox
    Dispatcher, TokenBucket, Backoff                        soc_core.notify.worker
    Watcher, alert_message, run_message, APPROVAL_STATES, RESULT_STATES, REQUEST_DATASET
                                                            soc_core.notify.watch
    dingtalk_sign, dingtalk_query, feishu_sign              soc_core.notify.signing
    run   the `govsoc.services` entry `notify`               soc_core.notify.service
"""

from soc_core.notify.channels import (
    KINDS,
    LEVELS,
    Channel,
    DeliveryError,
    EmailChannel,
    Message,
    WebhookChannel,
    channels_from_config,
    level_at_least,
)
from soc_core.notify.outbox import Claim, Outbox, outbox_path
from soc_core.notify.signing import dingtalk_query, dingtalk_sign, feishu_sign
from soc_core.notify.watch import (
    APPROVAL_STATES,
    REQUEST_DATASET,
    RESULT_STATES,
    Watcher,
    alert_message,
    run_message,
)
from soc_core.notify.worker import Backoff, Dispatcher, TokenBucket

__all__ = ["APPROVAL_STATES", "KINDS", "LEVELS", "REQUEST_DATASET", "RESULT_STATES",
           "Backoff", "Channel", "Claim", "DeliveryError", "Dispatcher", "EmailChannel",
           "Message", "Outbox", "TokenBucket", "Watcher", "WebhookChannel", "alert_message",
           "channels_from_config", "dingtalk_query", "dingtalk_sign", "feishu_sign",
           "level_at_least", "outbox_path", "run_message"]

