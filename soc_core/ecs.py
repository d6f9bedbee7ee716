"""The event model: ECS 8.x documents, validated at the boundary, with deterministic ids.

Documents are nested ECS objects (`{"source": {"ip": ...}}`); dotted keys given at the
boundary are expanded. Our own fields live under `govsoc.*`.

Every stored document belongs to one *family*, which decides where a backend keeps it:

    events         logs by source (`event.dataset` e.g. `network.flow`, `auth`)
    metrics        `event.kind: metric`
    alerts         `event.kind: alert` (mutable: workflow status)
    assets         `event.kind: asset` (mutable: latest record per asset)
    audit          `event.dataset: govsoc.audit`
    playbook_runs  `event.dataset: govsoc.playbook_run`
    state          `event.dataset: govsoc.state.*` (mutable: users, tokens, detection state
                   shared by every API worker and engine)
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

ECS_VERSION = "8.11.0"
FAMILIES = ("events", "metrics", "alerts", "assets", "audit", "playbook_runs", "state")
# Families whose documents are updated in place (latest state wins) instead of appended.
MUTABLE_FAMILIES = frozenset({"alerts", "assets", "playbook_runs", "state"})
STATE_PREFIX = "govsoc.state."
EVENT_KINDS = frozenset(
    {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
)
# objects whose `ip` and `port` are checked at the boundary (ES maps them as ip / long)
# beside host, source and destination, which are also indexed
_OTHER_ADDRESS_OBJECTS = ("client", "server")


class EventError(ValueError):
    """A document that is not a valid govsoc ECS event; the message says which field."""


def stable_id(*parts: Any) -> str:
    """Deterministic id from the parts of a source record (same record -> same id), so a
    redelivered event overwrites itself instead of duplicating."""
    if all(type(p) is str for p in parts):  # the common case, hashed in one call
        return hashlib.blake2b(("\x1f".join(parts) + "\x1f").encode(),
                               digest_size=16).hexdigest()
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def content_id(doc: dict[str, Any]) -> str:
    """Id for a record that carries none: the digest of its canonical JSON."""
    return stable_id(_json(doc, orjson.OPT_SORT_KEYS))


def _json(doc: dict[str, Any], option: int = 0) -> bytes:
    try:
        return orjson.dumps(doc, option=option)
    except TypeError as exc:
        raise EventError(f"not representable as JSON: {exc}") from exc


def family_of(doc: dict[str, Any]) -> str:
    event = doc.get("event") or {}
    return _family(event.get("kind"), event.get("dataset"))


def _family(kind: Any, dataset: Any) -> str:
    if type(kind) is str and (family := _FAMILY_OF_KIND.get(kind)):
        return family
    if type(dataset) is str:
        family = _FAMILY_OF_DATASET.get(dataset)
        if family:
            return family
        if dataset.startswith(STATE_PREFIX):
            return "state"
    return "events"


# the kind decides first, then the dataset; everything else is an event
_FAMILY_OF_KIND = {"metric": "metrics", "alert": "alerts", "asset": "assets"}
_FAMILY_OF_DATASET = {"govsoc.audit": "audit", "govsoc.playbook_run": "playbook_runs"}


def expand_dotted(doc: dict[str, Any]) -> dict[str, Any]:
    """`{"source.ip": x}` -> `{"source": {"ip": x}}`, recursively; nested input is kept."""
    if not _has_dotted(doc):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = expand_dotted(value)
        if "." in key:
            *parents, leaf = key.split(".")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise EventError(f"field {key!r} conflicts with a non-object value")
            _merge(node, leaf, value)
        else:
            _merge(out, key, value)
    return out


def _has_dotted(doc: dict[str, Any]) -> bool:
    if "." in "".join(doc):  # all keys of this level in one C call
        return True
    # a plain loop: any() over a generator is measurably slower on this hot path
    for value in doc.values():  # noqa: SIM110
        if type(value) is dict and _has_dotted(value):
            return True
    return False


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    if key in node and isinstance(node[key], dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge(node[key], k, v)
    else:
        node[key] = value


def get_field(doc: dict[str, Any], dotted: str) -> Any:
    """Value at a dotted ECS path in a nested document, or None."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        if part in node:
            node = node[part]
        elif dotted in node:  # tolerate a flat key left in place
            return node[dotted]
        else:
            return None
    return node


_ABSENT: Any = object()


def field_getter(dotted: str) -> Callable[[dict[str, Any]], Any]:
    """`get_field(doc, dotted)` with the path split once: the nested lookup is tried
    directly and anything unusual (a missing key, a flat dotted key, a list on the way)
    falls back to `get_field`, so the result is always the same."""
    parts = dotted.split(".")
    if len(parts) == 2:  # the usual ECS depth (source.ip, user.name): no loop
        a, b = parts

        def get2(doc: dict[str, Any]) -> Any:
            # `get_field`'s answer step by step, without raising: most events lack most
            # group fields, and a caught KeyError and the fallback cost ten times a lookup
            node = doc.get(a, _ABSENT)
            if node is _ABSENT:
                return doc.get(dotted)
            if type(node) is dict:
                v = node.get(b, _ABSENT)
                return node.get(dotted) if v is _ABSENT else v
            return get_field(doc, dotted)

        return get2

    def get(doc: dict[str, Any]) -> Any:
        node: Any = doc
        for p in parts:
            if type(node) is not dict:
                return get_field(doc, dotted)
            node = node.get(p, _ABSENT)
            if node is _ABSENT:  # a flat key, or nothing: as `get_field` reads it
                return get_field(doc, dotted)
        return node

    return get


def set_field(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def parse_time(value: Any) -> datetime:
    """ISO-8601 string, epoch seconds (int/float) or datetime -> aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            dt = datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError) as exc:  # 1e20, nan, beyond year 9999
            raise EventError(f"@timestamp {value!r} is out of range") from exc
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise EventError(f"@timestamp {value!r} is not ISO-8601") from exc
    else:
        raise EventError(f"@timestamp has type {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # storage is UTC; a naive time is taken as UTC
    try:
        return dt.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise EventError(f"@timestamp {value!r} is out of range") from exc


def format_time(dt: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: the one form stored."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def now_iso() -> str:
    """The current time in the stored form (`2026-01-02T03:04:05.678Z`)."""
    return format_time(datetime.now(UTC))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_millis(value: Any) -> int:
    """Epoch milliseconds, exact (integer arithmetic: float timestamps can land on
    .999 and truncate to the previous millisecond)."""
    return ((_canonical_time(value) or parse_time(value)) - _EPOCH) // _MS


_DATASET = re.compile(r"[a-z0-9_][a-z0-9_.]{0,99}\Z")
# valid datasets seen, each with the family it decides when the kind does not
_good_datasets: dict[str, str] = {}


def _canonical_time(ts: Any) -> datetime | None:
    """The instant, if `ts` is already `YYYY-MM-DDTHH:MM:SS.mmmZ` and a real one (the
    common case: no reformatting, same validation)."""
    if type(ts) is not str or len(ts) != 24 or ts[-1] != "Z" or ts[19] != ".":
        return None
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None


def normalize(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate and complete one document at the boundary. Returns the (possibly new)
    nested document with `@timestamp` (UTC, ms), `event.id`, `event.kind`,
    `event.dataset` and `ecs.version` set. Raises EventError naming the bad field."""
    if not isinstance(doc, dict):
        raise EventError(f"an event must be a JSON object, got {type(doc).__name__}")
    doc = expand_dotted(doc)
    _complete(doc, None)  # serialises too: a document that cannot be stored is invalid
    return doc


class Prepared(NamedTuple):
    """A normalized document ready for a backend: its family, the fields stores index
    (read once, during validation) and its JSON."""

    family: str
    id: str
    millis: int  # @timestamp, epoch milliseconds
    dataset: str
    kind: str
    host_name: Any
    source_ip: Any  # the first address when the field holds several
    destination_ip: Any
    message: str | None
    json: bytes
    doc: dict[str, Any]


# A dotted key in compact JSON: a dot, then to the closing quote of that string, then `:`
# (a value's closing quote is never followed by `:`). An escaped quote could hide one, so a
# text with a backslash before a quote goes the slow way too (two C scans: faster than one
# alternation). Other escapes (a Windows path's backslashes) hide nothing.
_DOTTED_JSON = re.compile(rb'\.[^"]*":')
_ECS_SUFFIX = b',"ecs":{"version":"' + ECS_VERSION.encode() + b'"}}'


def prepare(doc: dict[str, Any]) -> Prepared:
    """`normalize`, plus what the stores need: family, indexed fields and the JSON. The
    JSON is needed anyway, so it also serves to look for dotted keys: one C pass over the
    text instead of a Python walk over every nested object."""
    if not isinstance(doc, dict):
        raise EventError(f"an event must be a JSON object, got {type(doc).__name__}")
    text: bytes | None = _json(doc)
    # find, not `in`: bytes.__contains__ first tries its argument as an int and formats
    # the TypeError it gets (~1.8 K instructions a document)
    if text.find(b'\\"') >= 0 or _DOTTED_JSON.search(text):  # type: ignore[union-attr, arg-type]
        expanded = expand_dotted(doc)
        if expanded is not doc:
            doc, text = expanded, None
    return _complete(doc, text)


_tuple_new = tuple.__new__


def _complete(doc: dict[str, Any], text: bytes | None) -> Prepared:
    """The checks and defaults of `normalize` on a document whose keys are expanded; `text`
    is its JSON before them, if known."""
    rewrote = False  # a field inside the document: its JSON must be made again
    ts = doc.get("@timestamp")
    if ts is None:
        raise EventError("missing @timestamp")
    dt = _canonical_time(ts)  # the common case: already as stored
    if dt is None:
        dt = parse_time(ts)
        doc["@timestamp"] = format_time(dt)
        rewrote = True
    event = doc.get("event")
    if event is None:
        event = doc["event"] = {}
        rewrote = True
    elif type(event) is not dict:
        raise EventError("event must be an object")
    dataset = event.get("dataset")
    if type(dataset) is not str or dataset not in _good_datasets:  # (a list is unhashable)
        if not isinstance(dataset, str) or not _DATASET.match(dataset):
            raise EventError("event.dataset must be lowercase letters, digits, '_' and '.', "
                             f"got {dataset!r}")
        _good_datasets[dataset] = _family(None, dataset)
    kind = event.get("kind")
    if kind is None:
        kind = event["kind"] = "event"
        rewrote = True
    elif type(kind) is not str or kind not in EVENT_KINDS:
        raise EventError(f"event.kind {kind!r} is not an ECS kind")
    host_name = source_ip = destination_ip = None
    sub = doc.get("host")
    if type(sub) is dict:
        _check_address("host", sub)
        host_name = sub.get("name")
    sub = doc.get("source")
    if type(sub) is dict:
        source_ip = _check_address("source", sub)
    sub = doc.get("destination")
    if type(sub) is dict:
        destination_ip = _check_address("destination", sub)
    for obj in _OTHER_ADDRESS_OBJECTS:
        sub = doc.get(obj)
        if type(sub) is dict:
            _check_address(obj, sub)
    message = doc.get("message")
    if message is not None and type(message) is not str:
        raise EventError("message must be a string")
    event_id = event.get("id")
    if event_id is None:
        event_id = event["id"] = content_id(doc)
        rewrote = True
    elif type(event_id) is not str or not event_id or len(event_id) > 256:
        raise EventError("event.id must be a non-empty string of at most 256 characters")
    if "ecs" not in doc:
        doc["ecs"] = {"version": ECS_VERSION}
        if text is not None and not rewrote:  # `ecs` is the last key: append it to the text
            text = text[:-1] + _ECS_SUFFIX
    if text is None or rewrote:
        text = _json(doc)
    # _family, from what is known of the kind and the dataset by now
    family = _FAMILY_OF_KIND.get(kind) or _good_datasets[dataset]
    # a C call: `Prepared(...)` would run the namedtuple's Python-level __new__
    return _tuple_new(Prepared, (family, event_id, (dt - _EPOCH) // _MS, dataset, kind,
                                 host_name, source_ip, destination_ip, message, text, doc))


_inet_pton = socket.inet_pton
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6


def _check_address(obj: str, sub: dict[str, Any]) -> Any:
    """Raise unless `<obj>.ip` holds addresses and `<obj>.port` a port; return the (first)
    address."""
    port = sub.get("port")
    if port is not None and (type(port) is not int or not 0 <= port <= 65535):
        raise EventError(f"{obj}.port must be an integer 0-65535, got {port!r}")
    value = sub.get("ip")
    if value is None:
        return None
    if type(value) is str:  # the common case, without the loop
        try:  # inet_pton is strict and runs in C: the hot path of every flow event
            _inet_pton(_AF_INET6 if ":" in value else _AF_INET, value)
        except OSError as exc:
            raise EventError(f"{obj}.ip is not an IP address: {value!r}") from exc
        return value
    for v in value if type(value) is list else (value,):
        if type(v) is not str:
            raise EventError(f"{obj}.ip is not an IP address: {v!r}")
        try:
            _inet_pton(_AF_INET6 if ":" in v else _AF_INET, v)
        except OSError as exc:
            raise EventError(f"{obj}.ip is not an IP address: {v!r}") from exc
    return value[0] if type(value) is list and value else value


def make_event(dataset: str, timestamp: Any, source_key: Any, fields: dict[str, Any],
               kind: str = "event", *, dotted: bool = True,
               known_id: str | None = None) -> dict[str, Any]:
    """Build an event whose id derives from (dataset, source_key): the identity of the
    source record (file+offset, pcap+flow key, host+pid+start time...). `dotted=False`:
    the caller vouches that no key of `fields` holds a dot, so the walk looking for
    dotted keys to expand is skipped. `known_id`: that id, when the caller has made it
    already (a hunt's records carry theirs: hashing it again was ~8 % of building an
    event)."""
    doc = expand_dotted(dict(fields)) if dotted else dict(fields)
    doc["@timestamp"] = timestamp if isinstance(timestamp, str) else format_time(
        parse_time(timestamp))
    event = doc.setdefault("event", {})
    event["dataset"] = dataset
    event.setdefault("kind", kind)
    event["id"] = known_id or stable_id(dataset, source_key)
    return doc
