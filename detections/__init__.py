"""Detections: Sigma rule packs compiled for both stores, the scheduler, alerts,
correlation, tuning and the situational-awareness posture (态势感知).

Public API (the CLI, `govsoc up` and the web API use exactly these):

    load_pack(paths=None, backends=...) -> RulePack      detections.rules
    Engine(store, pack).run_once(now=None, since=None)   detections.engine
    list_alerts(store, status=None, limit=...)           detections.alerts
    set_status(store, alert_id, status=..., note=..., assignee=..., close_reason=..., by=...)
    add_exception / remove_exception / snooze / unsnooze / health   detections.tuning
    posture(store) -> dict (security index and its parts)           detections.posture
    render(store) -> rich renderable for `govsoc up`                detections.view
    run(store_url, stop_event, demo)  the `govsoc.services` entry   detections.service
"""
