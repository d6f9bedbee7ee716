"""What playbook results become in the store when playbooks own them: DR drill reports.
Registered with the driver by playbook name. Asset records are not ours: the driver hands
`asset_sweep` results to the asset registry through the `govsoc.playbook_results` entry
point (see `driver.result_sinks`)."""

from __future__ import annotations

from typing import Any

from playbooks.driver import RunResult, post_processor
from soc_core.ecs import now_iso, stable_id


@post_processor("dr_drill")
def record_drill(result: RunResult, store: Any) -> None:
    """The drill report: RPO/RTO and what was verified, or why the drill failed."""
    report = next((s.result for s in result.hosts.values() if s.result and "rto_s" in s.result),
                  None)
    fields: dict[str, Any] = {"run_id": result.run_id, "status": result.status}
    if report:
        fields.update(
            primary=report.get("primary"), standby=report.get("standby"),
            vip=report.get("vip"), checksum_sm3=report.get("checksum_sm3"),
            encrypted=str(report.get("encrypted")).lower() == "true",
            verified=str(report.get("verified")).lower() == "true",
            failed_back=str(report.get("failed_back")).lower() == "true",
            rpo_s=float(report["rpo_s"]), rto_s=float(report["rto_s"]))
    else:
        fields["errors"] = {h: s.error for h, s in result.hosts.items() if s.error}
    passed = bool(report) and result.status == "successful"
    doc = {
        "@timestamp": now_iso(),
        "event": {"dataset": "govsoc.dr_drill", "kind": "event",
                  "id": stable_id("dr_drill", result.run_id), "action": "dr_drill",
                  "outcome": "success" if passed else "failure"},
        "message": (f"DR drill {result.run_id}: RPO {fields['rpo_s']:.1f}s, RTO "
                    f"{fields['rto_s']:.1f}s" if report else
                    f"DR drill {result.run_id} failed: {result.reason}"),
        "govsoc": {"dr": fields},
    }
    res = store.write([doc], refresh=True)
    if res.rejected:
        raise RuntimeError(f"drill report rejected: {res.rejected[0].reason}")
