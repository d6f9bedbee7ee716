"""Playbook runs as ECS documents (`event.dataset: govsoc.playbook_run`).

Two shapes share the dataset: one *status* document a run (`event.kind: state`, id
`run-<run_id>`, rewritten in place as the run progresses) and one *event* document a
runner event (id derived from the run id and the runner's event uuid, so re-streaming a
run never duplicates).
"""

from __future__ import annotations

from typing import Any

from soc_core.ecs import now_iso, stable_id

DATASET = "govsoc.playbook_run"
STATUSES = ("queued", "running", "successful", "failed", "canceled")
_TEXT_LIMIT = 2000
# Runner event names -> ECS outcome.
_OUTCOME = {"runner_on_ok": "success", "runner_on_failed": "failure",
            "runner_on_unreachable": "failure", "runner_on_skipped": "unknown",
            "runner_item_on_ok": "success", "runner_item_on_failed": "failure"}


def status_id(run_id: str) -> str:
    return f"run-{run_id}"


def status_doc(run: dict[str, Any]) -> dict[str, Any]:
    """The run's status document from the driver's run record."""
    status = run["status"]
    outcome = {"successful": "success", "failed": "failure"}.get(status, "unknown")
    event: dict[str, Any] = {"dataset": DATASET, "kind": "state", "id": status_id(run["run_id"]),
                             "action": "playbook_run", "outcome": outcome,
                             "start": run["created"]}
    if run.get("ended"):
        event["end"] = run["ended"]
    return {
        "@timestamp": run["created"],
        "event": event,
        "message": f"playbook {run['playbook']} {status}"
                   + (f": {run['reason']}" if run.get("reason") else ""),
        "govsoc": {"playbook": {k: v for k, v in run.items() if v is not None}},
    }


def _trim(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _TEXT_LIMIT:
        return value[:_TEXT_LIMIT] + "…"
    return value


def runner_event_doc(run_id: str, playbook: str, data: dict[str, Any]) -> dict[str, Any]:
    """One ansible-runner event as an ECS event. Task results are cut to what an analyst
    reads (msg, rc, output heads, changed/failed); facts are listed by name only."""
    name = data.get("event", "unknown")
    ed = data.get("event_data") or {}
    host = ed.get("host") or ed.get("remote_addr")
    pb: dict[str, Any] = {"run_id": run_id, "name": playbook, "event": name,
                          "counter": data.get("counter")}
    for key in ("play", "task", "role", "task_action"):
        if ed.get(key):
            pb[key] = ed[key]
    res = ed.get("res")
    if isinstance(res, dict):
        kept = {k: _trim(res[k]) for k in ("msg", "rc", "stdout", "stderr", "changed",
                                           "failed", "skipped", "unreachable") if k in res}
        if isinstance(res.get("ansible_facts"), dict):
            kept["facts"] = sorted(res["ansible_facts"])
        pb["result"] = kept
    if name == "playbook_on_stats":
        pb["stats"] = {k: ed.get(k) or {} for k in ("ok", "changed", "failures", "dark",
                                                    "skipped", "rescued", "ignored")}
    timestamp = data.get("created") or now_iso()  # runner's times are naive UTC
    event: dict[str, Any] = {"dataset": DATASET, "kind": "event",
                             "id": stable_id(run_id, data.get("uuid") or data.get("counter")),
                             "action": name, "sequence": data.get("counter")}
    if name in _OUTCOME:
        event["outcome"] = _OUTCOME[name]
    doc: dict[str, Any] = {"@timestamp": timestamp, "event": event,
                           "message": _message(name, host, ed), "govsoc": {"playbook": pb}}
    if host:
        doc["host"] = {"name": host}
    return doc


def _message(name: str, host: str | None, ed: dict[str, Any]) -> str:
    task = ed.get("task") or ed.get("play") or ""
    short = name.removeprefix("runner_on_").removeprefix("playbook_on_")
    if name == "runner_on_ok" and (ed.get("res") or {}).get("changed"):
        short = "changed"
    return " ".join(p for p in (host and f"{host}:", task, short) if p)
