"""govsoc cloud_inventory: the asset registry (the one owner of asset documents), its
discovery sources, the exposure surface and idle systems.

Public API (import from `cloud_inventory`; the modules behind it are internals):

    list_assets(store, query=None, department=None, include_gone=True) -> [asset doc]
    get_asset(store, key) -> asset doc | None   key: id, name, hostname, machine-id, IP, MAC
    changes(store, run_id=None, since=None, until=None) -> [change event]
    sweeps(store, limit=20) -> [run summary, newest first]
    annotate(store, key, department=, importance=, djcp_level=, data_class=, tags=,
             registered=, note=, by=) -> asset doc           (InventoryError)
    asset_history(store, asset_id) -> [change event, newest first] (who changed what)
    record(store, observations, source=, run_id=, in_scope=None, baseline=None)
        -> RecordResult   (a source's first run is its baseline: no change reported)
    RecordResult (run_id, source, assets, baseline, changes: [Change]), Change, Observation,
    asset_id, ASSET_DATASET, EVENT_DATASET, ALERT_RULES (change kind -> alert rule)
    record_sweep(run_dict, store)   the `asset_sweep` playbook's results (entry point
                                    `govsoc.playbook_results`)
    inventory_config(cfg=None) -> InventoryConfig   the `[inventory]` settings
    discover_network(store, cidrs=None, ports=None, rate=None) -> (ProbeResult, RecordResult)
                        ARP/ICMP/SYN probes of the configured CIDRs only (DiscoveryError)
    discover_flows(store, since=None, until=None) -> RecordResult   passive, from flows
    discover_host_collectors(store, since=None, until=None) -> RecordResult
    exposure_surface(store, since="now-7d", department=None) -> [finding], each with `kind`
        (zone_violation | plaintext_management | http_admin | internet_facing), `severity`,
        ip, port, protocol, host, department, service, and `evidence` (flows, listening,
        probe, http_requests)
    idle_systems(store, days=None, cpu=None, department=None) -> {"window", "systems":
        [{host, verdict: zombie|low_load|busy|unmeasured, evidence}], "departments":
        {id: utilisation}};  tag_idle(store, report);  retire_plan(store, key, approved_by,
        services)
    run(store_url, stop_event, demo)   the `govsoc.services` entry: passive discovery every
                                       `inventory.interval` seconds   (cloud_inventory.service)

Compliance and reports:

    check_compliance(store, cfg, standard=None) -> [Finding]   等保 level 3 ("djcp-l3") and
                                    密评 ("mp") controls: pass / fail / not_applicable /
                                    not_evidenced, with evidence and remediation
    Finding, STANDARDS
    make_report(kind, store, cfg, fmt="pdf", lang="zh-CN", out_dir=None) -> Made
    list_reports(store, kind=None), report_entry(store, name), report_files(entry),
    ReportError, REPORT_KINDS
    sign_file(path, keystore), verify_file(path, sig, keystore=|public_pem=) -> Verified,
    SignatureError, DISTID    detached SM2/SM3 signatures by the platform key
    mail_report(cfg, made, recipients, channel=None)   e-mail a signed report (its signature
                                    and the public key attached) through the notify outbox
"""

from soc_core.lazy import lazy_exports

_WHERE = {
    "list_assets": "registry", "get_asset": "registry", "changes": "registry",
    "sweeps": "registry", "annotate": "registry", "asset_history": "registry", "record": "registry",
    "RecordResult": "registry", "Change": "registry", "InventoryError": "registry",
    "EVENT_DATASET": "registry", "ALERT_RULES": "registry",
    "Observation": "model", "asset_id": "model", "ASSET_DATASET": "model",
    "record_sweep": "active", "run": "service",
    "discover_network": "discovery", "DiscoveryError": "discovery",
    "discover_flows": "passive", "discover_host_collectors": "passive",
    "exposure_surface": "exposure",
    "idle_systems": "idle", "tag_idle": "idle", "retire_plan": "idle",
    "inventory_config": "config", "InventoryConfig": "config",
}
_WHERE.update({
    "check_compliance": "compliance", "Finding": "compliance", "STANDARDS": "compliance",
    "make_report": "reports", "list_reports": "reports", "report_entry": "reports",
    "report_files": "reports", "ReportError": "reports", "REPORT_KINDS": "reports",
    "sign_file": "signing", "verify_file": "signing", "SignatureError": "signing",
    "DISTID": "signing", "mail_report": "reports",
})
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
