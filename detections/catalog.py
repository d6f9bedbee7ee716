"""Which fields govsoc's events really carry, per dataset: a rule that converts but names a
field no collector writes can never match, and `rules check` says so."""

from __future__ import annotations

from detections.pipelines import WINDOWS_DATASETS
from detections.rules import Rule

COMMON = ("@timestamp", "message", "event.*", "host.*", "ecs.version", "tags", "labels.*",
          "observer.*", "agent.*", "related.*", "govsoc.*", "log.*")
_PROCESS = ("process.pid", "process.name", "process.executable", "process.command_line",
            "process.args", "process.working_directory", "process.entity_id",
            "process.parent.pid", "process.parent.name", "process.parent.executable",
            "process.parent.command_line", "process.hash.*", "process.user.*", "user.*")
_FLOW = ("source.*", "destination.*", "network.*", "client.*", "server.*")
DATASET_FIELDS: dict[str, tuple[str, ...]] = {
    "system.process": _PROCESS,
    "system.socket": _PROCESS + _FLOW,
    "file_integrity": ("file.*", "process.pid", "process.name", "process.executable", "user.*"),
    "auditd.log": ("auditd.*", "file.path", "user.*") + _PROCESS,
    "system.auth": ("system.auth.*", "user.*", "source.*", "process.pid", "process.name"),
    "system.syslog": ("process.pid", "process.name", "system.syslog.*"),
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
}
for _ds in WINDOWS_DATASETS:
    DATASET_FIELDS[_ds] = ("winlog.*", "source.ip", "user.name", "process.pid")


def carried(field: str, datasets: list[str]) -> bool:
    patterns = list(COMMON)
    for ds in datasets:
        patterns.extend(DATASET_FIELDS.get(ds, ()))
    for pat in patterns:
        if pat.endswith(".*"):
            if field.startswith(pat[:-1]):
                return True
        elif field == pat:
            return True
    return False


def missing_fields(rule: Rule) -> list[str]:
    """Fields of a compiled rule that no event of its datasets carries."""
    if not rule.datasets:
        return sorted(rule.fields)
    return sorted(f for f in rule.fields if not carried(f, rule.datasets))


def usable(rule: Rule, backend: str) -> bool:
    """Converted for `backend`, reads a log source govsoc collects, and names only fields
    our events carry: a rule that can really match."""
    return bool(backend in rule.queries and rule.datasets and not missing_fields(rule))
