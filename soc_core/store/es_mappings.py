"""Index templates for Elasticsearch: ECS 8.x types for the fields govsoc writes.

Only field types available in every 8.x distribution are used (`keyword`, `text`, `ip`,
`date`, numbers): Elastic's minimal test distribution has no `wildcard` or
`match_only_text` mappers, and a mapping must not depend on optional modules.
"""

from __future__ import annotations

from typing import Any

# A longer string is kept but not indexed, so no query finds it. ECS's 1,024 left every
# command line, script block and URL padded past it out of sight of every rule (SQLite and
# `govsoc hunt` matched them); 8,191 characters is the most that always fits Lucene's
# 32,766-byte term, whatever the UTF-8.
_KW = {"type": "keyword", "ignore_above": 8191}
_IP = {"type": "ip"}
_LONG = {"type": "long"}
_DATE = {"type": "date"}


def _obj(**props: Any) -> dict[str, Any]:
    return {"properties": props}


ECS_PROPERTIES: dict[str, Any] = {
    "@timestamp": _DATE,
    "message": {"type": "text"},
    "tags": _KW,
    "labels": {"type": "object"},
    "ecs": _obj(version=_KW),
    "event": _obj(
        id=_KW, kind=_KW, category=_KW, type=_KW, action=_KW, outcome=_KW, dataset=_KW,
        module=_KW, provider=_KW, code=_KW, severity=_LONG, risk_score={"type": "float"},
        created=_DATE, start=_DATE, end=_DATE, ingested=_DATE, duration=_LONG,
        original={"type": "keyword", "index": False, "doc_values": False},
    ),
    "host": _obj(name=_KW, hostname=_KW, id=_KW, ip=_IP, mac=_KW,
                 os=_obj(name=_KW, version=_KW, family=_KW, kernel=_KW, platform=_KW)),
    "source": _obj(ip=_IP, port=_LONG, bytes=_LONG, packets=_LONG, domain=_KW, mac=_KW),
    "destination": _obj(ip=_IP, port=_LONG, bytes=_LONG, packets=_LONG, domain=_KW, mac=_KW),
    "client": _obj(ip=_IP, port=_LONG),
    "server": _obj(ip=_IP, port=_LONG),
    "network": _obj(transport=_KW, protocol=_KW, type=_KW, direction=_KW, bytes=_LONG,
                    packets=_LONG, community_id=_KW, vlan=_obj(id=_KW)),
    "related": _obj(ip=_KW, user=_KW, hash=_KW, hosts=_KW),
    "user": _obj(name=_KW, id=_KW, domain=_KW, effective=_obj(name=_KW, id=_KW)),
    "process": _obj(pid=_LONG, name=_KW, executable=_KW, command_line=_KW, args=_KW,
                    working_directory=_KW, start=_DATE,
                    parent=_obj(pid=_LONG, name=_KW, executable=_KW, command_line=_KW),
                    hash=_obj(sm3=_KW, sha256=_KW, md5=_KW)),
    "file": _obj(path=_KW, name=_KW, directory=_KW, extension=_KW, size=_LONG,
                 hash=_obj(sm3=_KW, sha256=_KW)),
    "dns": _obj(type=_KW, id=_KW, response_code=_KW, question=_obj(name=_KW, type=_KW,
                                                                   registered_domain=_KW)),
    "http": _obj(request=_obj(method=_KW), response=_obj(status_code=_LONG)),
    "url": _obj(original=_KW, domain=_KW, path=_KW),
    "user_agent": _obj(original=_KW),
    "tls": _obj(version=_KW, cipher=_KW, client=_obj(server_name=_KW, ja3=_KW)),
    "rule": _obj(id=_KW, name=_KW, uuid=_KW),
    "observer": _obj(name=_KW, type=_KW, hostname=_KW),
    "organization": _obj(id=_KW, name=_KW),  # the department (委办局) that owns the document
}

# Strings we did not type explicitly become keywords (exact match, aggregatable), never
# dates or numbers guessed from their text.
DYNAMIC_TEMPLATES = [{"strings_as_keywords": {"match_mapping_type": "string",
                                              "mapping": _KW}}]


def _explicit_type(field: str) -> str | None:
    """The type the template gives `field`, or None when it is left to dynamic mapping."""
    node: dict[str, Any] = {"properties": ECS_PROPERTIES}
    for part in field.split("."):
        props = node.get("properties")
        if props is None or part not in props:
            return None  # under an untyped object (labels.*) or not listed: dynamic
        node = props[part]
    return node.get("type", "object")


def keyword_field(field: str) -> bool:
    """Whether an event field is an indexed keyword: typed so by the template, or a string
    the template leaves to dynamic mapping (which makes strings keywords). Addresses,
    numbers, dates and the analyzed `message` are not."""
    spec = _explicit_type(field)
    return spec is None or spec == "keyword" and field != "event.original"


# Not indexed, only kept as doc values: the chain's own hashes. `audit verify` reads them
# from the documents it walks, and a search for one still answers (from the doc values,
# slower), but two random 64-hex terms a record in the inverted index are a share of the
# cost of indexing the trail, which a busy API writes all the time.
_UNINDEXED_KW = {"type": "keyword", "index": False, "doc_values": True}
AUDIT_PROPERTIES: dict[str, Any] = {
    **ECS_PROPERTIES,
    "govsoc": _obj(audit=_obj(hash=_UNINDEXED_KW, prev=_UNINDEXED_KW,
                              prev_time=_UNINDEXED_KW)),
}
AUDIT_PRIORITY = 310  # above govsoc-state's, whose `govsoc-*` covers the audit index too


def template(patterns: list[str], *, data_stream: bool, retention: str | None = None,
             ilm_policy: str | None = None, replicas: int = 0,
             audit: bool = False) -> dict[str, Any]:
    """An index template. `audit`: the audit trail's index, written all the time and
    searched seldom (an auditor's page, `audit verify`, which refreshes first): it keeps
    Elasticsearch's default refresh (every second, but not for a shard nobody searched in
    the last 30 s: such a shard refreshes when it is next searched, and that search waits
    for it), so the steady audit writes of a busy API do not make a segment a second that
    is merged again later; and the chain's hashes are not indexed (AUDIT_PROPERTIES)."""
    index: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": replicas,
                             "mapping": {"total_fields": {"limit": 5000}}}
    if not audit:
        index["refresh_interval"] = "1s"  # explicit: refreshed even when nobody searches
    settings: dict[str, Any] = {"index": index}
    if ilm_policy:
        settings["index"]["lifecycle"] = {"name": ilm_policy}
    body: dict[str, Any] = {
        "index_patterns": patterns,
        "priority": AUDIT_PRIORITY if audit else 300,
        "template": {
            "settings": settings,
            "mappings": {"dynamic_templates": DYNAMIC_TEMPLATES, "date_detection": False,
                         "properties": AUDIT_PROPERTIES if audit else ECS_PROPERTIES},
        },
        "_meta": {"managed_by": "govsoc"},
    }
    if data_stream:
        body["data_stream"] = {}
        if retention:
            body["template"]["lifecycle"] = {"data_retention": retention}
    return body
