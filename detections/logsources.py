"""The log sources govsoc collects, in one table: each Sigma log source -> the dataset its
events land in, and each dataset -> the fields those events carry. `datasets_for` (which
events a rule reads), the pipelines (how its field names map) and `rules check` (whether
it can ever match) all read from here."""

from __future__ import annotations

from sigma.rule import SigmaLogSource

# Fields every event carries, whatever its dataset.
COMMON = ("@timestamp", "message", "event.*", "host.*", "ecs.version", "tags", "labels.*",
          "observer.*", "agent.*", "related.*", "govsoc.*", "log.*")
_PROCESS = ("process.pid", "process.name", "process.executable", "process.command_line",
            "process.args", "process.working_directory", "process.entity_id",
            "process.parent.pid", "process.parent.name", "process.parent.executable",
            "process.parent.command_line", "process.hash.*", "process.user.*", "user.*")
_FLOW = ("source.*", "destination.*", "network.*", "client.*", "server.*")
_WINDOWS = ("winlog.*", "source.ip", "user.name", "process.pid")

# dataset -> the fields its events carry besides COMMON (what the collectors write)
DATASET_FIELDS: dict[str, tuple[str, ...]] = {
    # host collector (Auditbeat / Elastic Agent layout) and Linux logs
    "system.process": _PROCESS,
    "system.socket": _PROCESS + _FLOW,
    "file_integrity": ("file.*", "process.pid", "process.name", "process.executable", "user.*"),
    "auditd.log": ("auditd.*", "file.path", "user.*") + _PROCESS,
    "system.auth": ("system.auth.*", "user.*", "source.*", "process.pid", "process.name"),
    "system.syslog": ("process.pid", "process.name", "system.syslog.*"),
    # packet collector (Filebeat Zeek module layout)
    "network.flow": _FLOW + ("zeek.connection.*", "event.duration"),
    "network.dns": _FLOW + ("dns.*", "zeek.dns.*"),
    "network.http": _FLOW + ("http.*", "url.*", "user_agent.*", "zeek.http.*"),
    "network.tls": _FLOW + ("tls.*", "zeek.ssl.*"),
    "network.ftp": _FLOW + ("user.*", "zeek.ftp.*"),
    "network.rdp": _FLOW + ("user.*", "zeek.rdp.*"),
    "network.smtp": _FLOW + ("user.*",),
    "network.pop3": _FLOW + ("user.*",),
    "network.imap": _FLOW + ("user.*",),
    "network.smb": _FLOW + ("user.*",),
    # the packet collector's own health (collectors.packet.ring: the packet ring stopped)
    "govsoc.pcap": (),
    "network.kerberos": _FLOW + ("user.*", "zeek.kerberos.*"),
    "network.ldap": _FLOW + ("user.*", "zeek.ldap.*"),
    # EVTX imports (Winlogbeat layout)
    "system.security": _WINDOWS,
    "system.system": _WINDOWS,
    "system.application": _WINDOWS,
    "windows.sysmon_operational": _WINDOWS,
    "windows.powershell_operational": _WINDOWS,
    "windows.eventlog": _WINDOWS,
}
WINDOWS_DATASETS = [ds for ds, fields in DATASET_FIELDS.items() if fields is _WINDOWS]

# Sigma log source -> dataset
LINUX_CATEGORY = {
    "process_creation": "system.process",
    "network_connection": "system.socket",
    "file_event": "file_integrity",
    "file_change": "file_integrity",
    "file_create": "file_integrity",
    "file_delete": "file_integrity",
    "file_rename": "file_integrity",
}
LINUX_SERVICE = {
    "auditd": "auditd.log",
    "auth": "system.auth",
    "sshd": "system.auth",
    "sudo": "system.auth",
    "su": "system.auth",
    "syslog": "system.syslog",
    "cron": "system.syslog",
}
NETWORK = {  # Zeek service or generic category
    "conn": "network.flow",
    "firewall": "network.flow",
    "dns": "network.dns",
    "http": "network.http",
    "proxy": "network.http",
    "webserver": "network.http",
    "ssl": "network.tls",
    "kerberos": "network.kerberos",
    "ldap": "network.ldap",
}


def datasets_for(logsource: SigmaLogSource) -> list[str] | None:
    """The `event.dataset` values a rule with this log source reads, or None when govsoc
    does not collect that source (the rule loads but is reported as not applicable)."""
    product, category, service = logsource.product, logsource.category, logsource.service
    if product == "govsoc":  # our own pack may name datasets directly: service = dataset
        return [service] if service else None
    found: str | None = None
    if product == "linux":
        if not (category or service):
            return ["system.auth", "system.syslog"]  # builtin logs, keyword rules
        found = LINUX_CATEGORY.get(category) if category else LINUX_SERVICE.get(service)
    elif product == "windows":
        return list(WINDOWS_DATASETS)
    elif product == "zeek":
        found = NETWORK.get(service or "")
    elif product is None and category in ("firewall", "dns", "proxy", "webserver"):
        found = NETWORK[category]
    return [found] if found else None
