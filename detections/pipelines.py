"""pySigma processing pipelines: Sigma log sources and field names -> govsoc ECS events.

Which datasets a rule reads is decided by `logsources.datasets_for`: the engine restricts
each compiled query to those `event.dataset` values, so a Linux rule never scans DNS traffic.

- Linux (host collector, Auditbeat / Elastic Agent layout): `process_creation` ->
  `system.process`, `network_connection` -> `system.socket`, `file_*` -> `file_integrity`,
  `auditd` -> `auditd.log` (Filebeat's auditd module keeps record fields under
  `auditd.log.*`), sshd/auth/sudo/cron-style logs -> `system.auth` / `system.syslog`.
- Zeek and the network categories (packet collector, Filebeat Zeek module layout):
  conn/firewall -> `network.flow`, dns -> `network.dns`, http/proxy/webserver ->
  `network.http`, ssl -> `network.tls`; fields through pySigma's `ecs_zeek_beats` mapping.
- Windows (EVTX imports, Winlogbeat layout): `EventID` -> `winlog.event_id`, the channel
  from the service, every other Sigma field -> `winlog.event_data.<Field>`, which is where
  Winlogbeat keeps raw event data (the stock `ecs_windows` mapping points 570 SigmaHQ rules
  at ECS fields that only Winlogbeat's module ingest pipelines would fill in).

Field names that are already dotted ECS paths (our own pack writes them) pass unchanged.
"""

from __future__ import annotations

from sigma.pipelines.common import windows_logsource_mapping
from sigma.pipelines.elasticsearch.zeek import (
    ecs_zeek_beats,
    ecs_zeek_beats_category_service_mapping,
)
from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    AddFieldnamePrefixTransformation,
    ChangeLogsourceTransformation,
    FieldMappingTransformation,
)

from detections.logsources import LINUX_CATEGORY

_LINUX_PROCESS = {
    "Image": "process.executable",
    "CommandLine": "process.command_line",
    "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "ProcessId": "process.pid",
    "ParentProcessId": "process.parent.pid",
    "CurrentDirectory": "process.working_directory",
    "User": "user.name",
    "LogonId": "process.user.id",
    "OriginalFileName": "process.name",
}
_LINUX_NETWORK = {
    "Image": "process.executable",
    "CommandLine": "process.command_line",
    "User": "user.name",
    "DestinationIp": "destination.ip",
    "DestinationPort": "destination.port",
    "DestinationHostname": "destination.domain",
    "SourceIp": "source.ip",
    "SourcePort": "source.port",
    "Protocol": "network.transport",
    "Initiated": "network.direction",
}
_LINUX_FILE = {
    "TargetFilename": "file.path",
    "Image": "process.executable",
    "User": "user.name",
}
_AUDITD = {  # Filebeat auditd module: a few fields become ECS, the rest stay auditd.log.*
    "type": "auditd.log.record_type",
    "exe": "process.executable",
    "comm": "process.name",
    "pid": "process.pid",
    "ppid": "process.parent.pid",
    "cwd": "process.working_directory",
    "name": "file.path",
    "uid": "user.id",
}
_ZEEK_EXTRA = {  # raw Zeek / W3C names the stock mapping leaves out
    "id.orig_h": "source.ip",
    "id.orig_p": "source.port",
    "id.resp_h": "destination.ip",
    "id.resp_p": "destination.port",
    "cs-uri-query": "url.query",
    "cs-user-agent": "user_agent.original",
}
_WINDOWS = {
    "EventID": "winlog.event_id",
    "Channel": "winlog.channel",
    "Provider_Name": "winlog.provider_name",
    "Computer": "winlog.computer_name",
    "ComputerName": "winlog.computer_name",
}


_LINUX_FIELDS = {"system.process": _LINUX_PROCESS, "system.socket": _LINUX_NETWORK,
                 "file_integrity": _LINUX_FILE}  # dataset -> Sigma field -> ECS field


def _linux_items() -> list[ProcessingItem]:
    items = [
        ProcessingItem(
            identifier=f"govsoc_linux_{cat}",
            transformation=FieldMappingTransformation(_LINUX_FIELDS[dataset]),
            rule_conditions=[LogsourceCondition(product="linux", category=cat)])
        for cat, dataset in LINUX_CATEGORY.items()
    ]
    items.append(ProcessingItem(
        identifier="govsoc_linux_auditd",
        transformation=FieldMappingTransformation(_AUDITD),
        rule_conditions=[LogsourceCondition(product="linux", service="auditd")]))
    items.append(ProcessingItem(
        identifier="govsoc_linux_auditd_prefix",
        transformation=AddFieldnamePrefixTransformation("auditd.log."),
        field_name_conditions=[IncludeFieldCondition(fields=[r"^[A-Za-z0-9_]+$"], mode="re")],
        rule_conditions=[LogsourceCondition(product="linux", service="auditd")]))
    return items


def _zeek_items() -> list[ProcessingItem]:
    # Filebeat's Zeek layout, minus the stock `event.dataset: zeek.<service>` condition:
    # our collector writes network.* datasets, and the engine selects those itself.
    stock = {item.identifier: item for item in ecs_zeek_beats().items}
    mapping = stock["zeek_ecs_field_mapping"].transformation.mapping
    items = [
        ProcessingItem(
            identifier=f"govsoc_zeek_{category}",
            transformation=ChangeLogsourceTransformation(product="zeek", service=service),
            rule_conditions=[LogsourceCondition(category=category)])
        for category, service in ecs_zeek_beats_category_service_mapping.items()
    ]
    items.append(ProcessingItem(
        identifier="govsoc_zeek_fields",
        transformation=FieldMappingTransformation({**mapping, **_ZEEK_EXTRA}),
        rule_conditions=[LogsourceCondition(product="zeek")]))
    return items


def _windows_items() -> list[ProcessingItem]:
    items = [
        ProcessingItem(
            identifier=f"govsoc_windows_channel_{service}",
            transformation=AddConditionTransformation({"winlog.channel": channel}),
            rule_conditions=[LogsourceCondition(product="windows", service=service)])
        for service, channel in windows_logsource_mapping.items()
    ]
    items.append(ProcessingItem(
        identifier="govsoc_windows_fields",
        transformation=FieldMappingTransformation(_WINDOWS),
        rule_conditions=[LogsourceCondition(product="windows")]))
    items.append(ProcessingItem(
        identifier="govsoc_windows_event_data",
        transformation=AddFieldnamePrefixTransformation("winlog.event_data."),
        field_name_conditions=[IncludeFieldCondition(fields=[r"^[A-Za-z0-9_\-]+$"], mode="re")],
        rule_conditions=[LogsourceCondition(product="windows")]))
    return items


def govsoc_pipeline() -> ProcessingPipeline:
    """One pipeline for both backends (field names do not depend on the store)."""
    items = _linux_items() + _zeek_items() + _windows_items()
    return ProcessingPipeline(name="govsoc ECS mappings", priority=20, items=items)


