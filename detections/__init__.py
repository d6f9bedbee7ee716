"""Detections: Sigma rule packs compiled for both stores, the scheduler, alerts,
correlation, tuning and the situational-awareness posture (态势感知).

Public API (the CLI, `govsoc up` and the web API use exactly these; import them from
`detections`, the modules behind them are internals):

    load_pack(paths=None, backends=...) -> RulePack      detections.rules (RuleError)
    rule_source(rule) -> the rule's YAML; configured_packs(cfg=None) -> pack paths
    Engine(store, pack, settings=Settings()).run_once(now=None, since=None, backfill=False)
                                                          detections.engine (LeaseLost)
    list_alerts(store, status=None, limit=...)           detections.alerts (AlertError)
    set_status(store, alert_id, status=..., note=..., assignee=..., close_reason=..., by=...)
    workflow: the module; Change(status, reason, assignee, note), apply(store, id, change,
        by=, visible=), bulk(store, ids, change, by=, visible=), recover(store),
        history(doc), resolve_query(store, sel); AlertNotFound, TransitionRefused
    add_exception / remove_exception / snooze / unsnooze / set_enabled / tuning_of / health /
    health_of(state)                                      detections.tuning (TuningError)
    DetectionState.for_store(store): load() / update(fn)  detections.state (in the store)
    Lease(store, name, ttl_s=...), run_scheduled(...), leaders(store)
                                                          detections.leader (one engine leads)
    posture: the module; posture.posture(store) -> dict (security index and its parts)
    agents: the module; agents.agents(store, now, intervals=) -> heartbeat rows (up/silent),
        agents.summary(rows), agents.raise_silent_alerts(store) -> alert ids written
    render(store) -> rich renderable for `govsoc up`                detections.view
    hunt.hunt(store, paths, rule_paths, import_all=False) -> dict; tactic_coverage(sources,
        manifest, min_level)                                        detections.hunt
    Evaluator(compiled).match(doc) -> rule indexes (doc: an ECS document or a
        soc_core.records.SourceRecord); compile_rules(rules)       detections.evaluator
    hunt_rules(paths, backend) -> (pack, compiled, unsupported), cached by content;
        Matches(evaluator) (an import sink), MemoryEngine(store, pack, matches)
                                                                    detections.memory
    run(store_url, stop_event, demo)  the `govsoc.services` entry   detections.service
"""

from soc_core.lazy import lazy_exports

# name -> the module holding it, loaded on first use: importing the package stays cheap
_WHERE = {
    "load_pack": "rules", "rule_source": "rules", "configured_packs": "service",
    "RulePack": "rules", "RuleError": "rules",
    "Engine": "engine", "Settings": "engine",
    "list_alerts": "alerts", "set_status": "alerts", "AlertError": "alerts",
    "add_exception": "tuning", "remove_exception": "tuning", "snooze": "tuning",
    "unsnooze": "tuning", "health": "tuning", "set_enabled": "tuning", "tuning_of": "tuning",
    "health_of": "tuning", "TuningError": "tuning", "DetectionState": "state",
    "Lease": "leader", "leaders": "leader",
    "run_scheduled": "leader", "LeaseLost": "engine", "render": "view", "run": "service",
    "Evaluator": "evaluator", "compile_rules": "evaluator", "MemoryEngine": "memory",
    "Matches": "memory", "hunt_rules": "memory", "tactic_coverage": "hunt",
}
__all__ = sorted([*_WHERE, "agents", "posture", "workflow"])
__getattr__ = lazy_exports(__name__, _WHERE, modules=["agents", "posture", "workflow"])
