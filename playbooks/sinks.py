"""What playbook results become in the store: asset records, sweep summaries, DR drill
reports. Registered with the driver by playbook name."""

from __future__ import annotations

from typing import Any

from playbooks.driver import RunResult, post_processor
from soc_core.ecs import now_iso, stable_id

ASSET_DATASET = "assets"


def asset_id(record: dict[str, Any]) -> str:
    """The asset's identity: its machine-id (stable across renames and readdressing),
    else its hostname."""
    return stable_id("host", record.get("machine_id") or record.get("hostname"))


def asset_doc(record: dict[str, Any], run_id: str, inventory_name: str) -> dict[str, Any]:
    """One normalized asset record: ECS `host.*` for identity and OS, the rest under
    `govsoc.asset`."""
    osr = record.get("os") or {}
    sshd = record.get("sshd") or {}
    return {
        "@timestamp": now_iso(),
        "event": {"dataset": ASSET_DATASET, "kind": "asset", "id": asset_id(record),
                  "module": "asset_sweep"},
        "message": f"asset {record.get('hostname')} swept",
        "host": {
            "name": inventory_name,
            "hostname": record.get("hostname"),
            "id": record.get("machine_id"),
            "ip": record.get("ips") or [],
            "mac": record.get("macs") or [],
            "architecture": record.get("architecture"),
            "os": {"name": osr.get("name"), "version": osr.get("version"),
                   "full": osr.get("full"), "family": osr.get("family"),
                   "platform": osr.get("platform"), "kernel": osr.get("kernel"),
                   "type": osr.get("type", "linux")},
            "uptime": record.get("uptime_s"),
        },
        "govsoc": {"asset": {
            "run_id": run_id,
            "packages": record.get("packages") or [],
            "package_count": len(record.get("packages") or []),
            "listening": record.get("listening") or [],
            "listening_ports": sorted({s["port"] for s in record.get("listening") or []}),
            "services": record.get("services") or [],
            "users": record.get("users") or [],
            "sudoers": record.get("sudoers") or [],
            "sshd": sshd,
            "time_sync": record.get("time_sync") or {},
            "disks": record.get("disks") or [],
            "interfaces": record.get("interfaces") or [],
            "last_patch": record.get("last_patch"),
        }},
    }


@post_processor("asset_sweep")
def record_assets(result: RunResult, store: Any) -> None:
    docs = [asset_doc(s.result, result.run_id, host)
            for host, s in result.hosts.items() if s.result and s.status in ("ok", "changed")]
    counts = {st: sum(1 for s in result.hosts.values() if s.status == st)
              for st in ("ok", "changed", "failed", "unreachable", "not_run")}
    docs.append({
        "@timestamp": now_iso(),
        "event": {"dataset": "govsoc.asset_sweep", "kind": "event",
                  "id": stable_id("asset_sweep", result.run_id), "action": "asset_sweep",
                  "outcome": "success" if len(docs) == len(result.hosts) else "failure"},
        "message": (f"asset sweep {result.run_id}: {len(docs)} of {len(result.hosts)} "
                    "hosts recorded"),
        "govsoc": {"sweep": {"run_id": result.run_id, "hosts": len(result.hosts),
                             "recorded": len(docs), **counts,
                             "failed_hosts": sorted(h for h, s in result.hosts.items()
                                                    if s.status in ("failed", "unreachable"))}},
    })
    res = store.write(docs, refresh=True)
    if res.rejected:
        raise RuntimeError(f"asset record rejected: {res.rejected[0].reason}")


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
