"""Active sweeps: the facts the `asset_sweep` playbook gathers on each host become
observations of the registry. The playbook driver hands a finished run here through the
`govsoc.playbook_results` entry point (`record_sweep`), so playbooks never import us."""

from __future__ import annotations

from typing import Any

from cloud_inventory.config import classifier
from cloud_inventory.model import Observation
from cloud_inventory.registry import RecordResult, record
from soc_core.ecs import now_iso, stable_id

# the sweep's facts kept on the asset as they are (the rest are merged attributes)
_FACTS = ("services", "users", "sudoers", "sshd", "time_sync", "disks", "interfaces",
          "last_patch", "auth", "integrity_sm3")


def observation(name: str, rec: dict[str, Any], run_id: str, seen: str) -> Observation:
    osr = rec.get("os") or {}
    return Observation(
        source="ansible", seen=seen, name=name, hostname=rec.get("hostname"),
        machine_id=rec.get("machine_id"), ips=list(rec.get("ips") or []),
        macs=list(rec.get("macs") or []),
        os={"name": osr.get("name"), "version": osr.get("version"), "full": osr.get("full"),
            "family": osr.get("family"), "platform": osr.get("platform"),
            "kernel": osr.get("kernel"), "type": osr.get("type", "linux")},
        listening=list(rec.get("listening") or []), probed_ports=None,
        packages=list(rec.get("packages") or []),
        facts={"run_id": run_id, **{k: rec.get(k) for k in _FACTS if rec.get(k) is not None}},
        host={"architecture": rec.get("architecture"), "uptime": rec.get("uptime_s")})


def record_sweep(run: dict[str, Any], store: Any) -> RecordResult:
    """Record a finished `asset_sweep` run (`RunResult.to_dict()`): one asset per host that
    answered, `asset_gone` for a swept host that no longer answers, and the sweep summary
    (`event.dataset: govsoc.asset_sweep`)."""
    run_id = run["run_id"]
    hosts: dict[str, dict[str, Any]] = run.get("hosts") or {}
    seen = now_iso()
    answered = {h: s for h, s in hosts.items()
                if s.get("result") and s.get("status") in ("ok", "changed")}
    lost = {h for h, s in hosts.items() if s.get("status") == "unreachable"}
    obs = [observation(h, s["result"], run_id, seen) for h, s in answered.items()]
    counts = {st: sum(1 for s in hosts.values() if s.get("status") == st)
              for st in ("ok", "changed", "failed", "unreachable", "not_run")}
    failed = sorted(h for h, s in hosts.items() if s.get("status") in ("failed", "unreachable"))
    result = record(store, obs, source="ansible", run_id=run_id,
                    in_scope=lambda d: (d.get("host") or {}).get("name") in lost,
                    summary={"hosts": len(hosts), "recorded": len(obs), **counts,
                             "failed_hosts": failed},
                    classify=classifier())
    doc = {
        "@timestamp": now_iso(),
        "event": {"dataset": "govsoc.asset_sweep", "kind": "event",
                  "id": stable_id("asset_sweep", run_id), "action": "asset_sweep",
                  "outcome": "success" if len(obs) == len(hosts) else "failure"},
        "message": f"asset sweep {run_id}: {len(obs)} of {len(hosts)} hosts recorded",
        "govsoc": {"sweep": {"run_id": run_id, "hosts": len(hosts), "recorded": len(obs),
                             **counts, "failed_hosts": failed}},
    }
    res = store.write([doc], refresh=True)
    if res.rejected:
        raise RuntimeError(f"sweep summary rejected: {res.rejected[0].reason}")
    return result
