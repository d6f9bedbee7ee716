"""govsoc core: config, the ECS event model, the event store and the CLI composer.

It imports none of the packages above it (collectors, detections, crypto_svc, playbooks,
cloud_inventory, soc_api); they add their commands through `govsoc.commands` entry points.
Its interface is its modules (import from them):

    soc_core.config    load_config, Config, ConfigError, viewer_zone, redact_url, sqlite_path
    soc_core.ecs       make_event, stable_id, parse_time, format_time, now_iso, to_millis
    soc_core.store     open_store, EventStore, Selection, StoreError, resolve_time/_millis
    soc_core.query     the Kibana field:value query language (QueryError)
    soc_core.spool     Spool (durable disk FIFO), backlog_bytes, SpoolError
    soc_core.regex     compile_regex, regex_problem, regex_test, RegexError: outside regexes on RE2
    soc_core.audit     AuditTrail, Actor, verify, AuditUnavailable: the hash-chained trail
    soc_core.audit_drain  AuditDrain: another process's audit records moved to the store
    soc_core.departments  Departments: which department (委办局) a host or address is in
    soc_core.textcase  fold_case: Sigma's case-insensitive matching, as ES's lowercase does it
    soc_core.records   SourceRecord: an imported record whose ECS event is built on demand
    soc_core.sm3       the SM3 hash: sm3, sm3_hex, new, sm3_parts, sm3_stream
    soc_core.notify    notifications (DingTalk, WeCom, Feishu, e-mail): Outbox, Dispatcher, Watcher
    soc_core.cliutil   fail, store_option, open_cli_store (for every package's commands)
    soc_core.lazy      lazy_exports: a package `__init__` exporting names loaded on use
    soc_core.gcpause   cyclic_gc_paused: the cycle collector paused around big graph builds
    soc_core.cli       the `govsoc` entry point and its core commands
"""

__all__ = ["audit", "audit_drain", "cli", "cliutil", "config", "departments", "ecs", "gcpause",
           "lazy", "notify", "query", "records", "regex", "sm3", "spool", "store", "textcase"]
