"""Windows EVTX files (Security, System, Sysmon...) to ECS, as Winlogbeat writes them:
`winlog.*` (channel, event_id, record_id, provider, computer, event_data...) plus the
ECS fields its security/sysmon pipelines set (`event.category/type/outcome/action`,
`user.*`, `source.*`, `destination.*`, `process.*`, `file.*`, `dns.*`), so Sigma's
Windows rules apply through the `ecs_windows` field mapping.

Parsing uses the `evtx` package (Rust); damaged records are counted, the rest imported.
"""

from __future__ import annotations

import ipaddress
import os
import re
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from hashlib import blake2b
from types import MappingProxyType
from typing import Any

import orjson

from collectors.logs.records import LogStats
from soc_core.ecs import format_time, make_event, parse_time
from soc_core.records import SourceRecord, UnmatchedRecords

_LEVELS = {0: "information", 1: "critical", 2: "error", 3: "warning", 4: "information",
           5: "verbose"}
_DATASETS = {"security": "system.security", "system": "system.system",
             "application": "system.application",
             "microsoft-windows-sysmon/operational": "windows.sysmon_operational",
             "microsoft-windows-powershell/operational": "windows.powershell_operational"}
_LOGON_TYPES = {2: "Interactive", 3: "Network", 4: "Batch", 5: "Service", 7: "Unlock",
                8: "NetworkCleartext", 9: "NewCredentials", 10: "RemoteInteractive",
                11: "CachedInteractive"}
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
# Security event id -> (action, category, type, outcome)
_SECURITY: dict[int, tuple[str, list[str], list[str], str | None]] = {
    4624: ("logged-in", ["authentication"], ["start"], "success"),
    4625: ("logon-failed", ["authentication"], ["start"], "failure"),
    4634: ("logged-out", ["authentication"], ["end"], "success"),
    4647: ("logged-out", ["authentication"], ["end"], "success"),
    4648: ("logged-in-explicit", ["authentication"], ["start"], "success"),
    4672: ("logged-in-special", ["iam"], ["admin"], "success"),
    4673: ("privileged-service-called", ["iam"], ["admin"], None),
    4688: ("created-process", ["process"], ["start"], "success"),
    4689: ("exited-process", ["process"], ["end"], "success"),
    4720: ("added-user-account", ["iam"], ["user", "creation"], "success"),
    4726: ("deleted-user-account", ["iam"], ["user", "deletion"], "success"),
    4732: ("added-member-to-group", ["iam"], ["group", "change"], "success"),
    4740: ("locked-out-user-account", ["iam"], ["user", "change"], "success"),
    4768: ("kerberos-authentication-ticket-requested", ["authentication"], ["start"], None),
    4769: ("kerberos-service-ticket-requested", ["authentication"], ["start"], None),
    4776: ("credential-validated", ["authentication"], ["start"], None),
    1102: ("audit-log-cleared", ["iam"], ["admin"], "success"),
    5152: ("windows-firewall-packet-drop", ["network"], ["denied"], "failure"),
    5156: ("windows-firewall-connection-allowed", ["network"], ["allowed", "connection"],
           "success"),
    5157: ("windows-firewall-connection-blocked", ["network"], ["denied", "connection"],
           "failure"),
}
# Sysmon event id -> (action, category, type)
_SYSMON: dict[int, tuple[str, list[str], list[str]]] = {
    1: ("Process Create (rule: ProcessCreate)", ["process"], ["start"]),
    3: ("Network connection detected (rule: NetworkConnect)", ["network"], ["connection",
                                                                            "start"]),
    5: ("Process terminated (rule: ProcessTerminate)", ["process"], ["end"]),
    7: ("Image loaded (rule: ImageLoad)", ["process"], ["change"]),
    11: ("File created (rule: FileCreate)", ["file"], ["creation"]),
    13: ("Registry value set (rule: RegistryEvent)", ["configuration", "registry"],
         ["change"]),
    22: ("Dns query (rule: DnsQuery)", ["network"], ["connection", "protocol", "info"]),
}
# System event id -> (action, category, type)
_SYSTEM: dict[int, tuple[str, list[str], list[str]]] = {
    7045: ("service-installed", ["configuration", "process"], ["creation"]),
    7036: ("service-state-changed", ["process"], ["change"]),
    104: ("audit-log-cleared", ["iam"], ["admin"]),
    6005: ("event-log-started", ["host"], ["start"]),
    6006: ("event-log-stopped", ["host"], ["end"]),
}


_FILE_HEADER = 4096
_CHUNK = 65536


class EvtxError(ValueError):
    """A file that is not an EVTX log."""


def _text(v: Any) -> Any:
    """Element values come as `{"#text": ..., "#attributes": ...}` or scalars."""
    if isinstance(v, dict):
        return v.get("#text")
    return v


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _int(v: Any) -> int | None:
    if type(v) is int:  # what the parser gives for numbers: as int(str(v)) reads it
        return v
    if v is None:
        return None
    s = str(v).strip()
    try:
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return None


_IPS: dict[str, str | None] = {}  # text -> its address (a log repeats a few): bounded


def _ip(v: Any) -> str | None:
    s = _str(v).strip()
    try:
        return _IPS[s]
    except KeyError:
        pass
    t = s[7:] if s.startswith("::ffff:") and "." in s else s
    try:
        found: str | None = str(ipaddress.ip_address(t))
    except ValueError:
        found = None
    if len(_IPS) < 10_000:
        _IPS[s] = found
    return found


def _port(v: Any) -> int | None:
    p = _int(v)
    return p if p is not None and 0 <= p <= 65535 else None


def _basename(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


_SCALARS = frozenset({str, int, float, bool})


def _flatten_event_data(data: Any) -> dict[str, str]:
    """EventData as Winlogbeat writes it: name -> string (unnamed values: param1...)."""
    if not isinstance(data, dict):
        return {}
    # the common case, every value a string or a number (as `_str` writes them): one pass
    # in C that leaves out what is no scalar (then the lengths differ), strings as they are
    out = {k: v if type(v) is str else str(v) for k, v in data.items() if type(v) in _SCALARS}
    if len(out) == len(data) and "#attributes" not in data:
        return out
    out = {k: v for k, v in data.items() if type(v) is str and k != "#attributes"}
    if len(out) == len(data) - ("#attributes" in data):
        return out
    out = {}
    for k, v in data.items():
        if k == "#attributes":
            continue
        if isinstance(v, list):
            out[k] = ", ".join(_str(_text(x)) for x in v)
        elif isinstance(v, dict):
            t = _text(v)
            if isinstance(t, list):
                # several unnamed <Data> elements (MSSQL, Application Error, ...): each as
                # Winlogbeat names it (param1...), and all of them under their own name,
                # joined, which SigmaHQ's rules search as the event's whole data (`Data`)
                values = [_str(_text(x)) for x in t]
                if k == "Data":
                    for i, value in enumerate(values, 1):
                        out.setdefault(f"param{i}", value)
                out[k] = ", ".join(values)
            elif t is not None:
                out[k] = _str(t)
        elif v is not None:
            out[k] = _str(v)
    return out


def map_record(rec: dict[str, Any], source_key: Any = None) -> dict[str, Any]:
    """One parsed record (the JSON form `evtx` returns: {"Event": {"System": ...,
    "EventData": ...}}) -> an ECS event. Raises KeyError/ValueError for a record without
    the System block."""
    return _complete(_Parts(rec), source_key)


class _Parts:
    """What every event of a record needs, read (and checked) once: the values the event's
    identity derives from, its flattened EventData and UserData, and the record's `winlog`
    block, made when first asked for (a hunt builds the events of the few records a rule
    keeps; every other record needs only what its rules read)."""

    __slots__ = ("event_id", "event_code", "channel", "computer", "record_id", "stored",
                 "data", "user", "provider", "level", "dataset", "values", "_system",
                 "_names", "_winlog")

    def __init__(self, rec: dict[str, Any],
                 flat: tuple[dict[str, str], dict[str, str] | None] | None = None) -> None:
        # every record of a hunt comes through here: the values' usual types (what the
        # parser gives: ints and strings) are taken as they are, the rest as `_text`,
        # `_str` and `_int` read them. `flat`: the record's EventData and UserData
        # flattened already (a prefilter's reading of them)
        event = rec["Event"]
        system = event["System"]
        get = system.get
        provider = get("Provider", _NONE).get("#attributes", _NONE)
        v = get("EventID")
        event_id = v if type(v) is int else _int(_text(v))
        if event_id is None:
            raise ValueError("record has no EventID")
        v = get("Channel")
        channel = v if type(v) is str else _str(_text(v))
        v = get("Computer")
        computer = v if type(v) is str else _str(_text(v))
        v = get("EventRecordID")
        record_id = str(v) if type(v) is int else _str(_text(v))
        self.stored = _stored_time(system["TimeCreated"]["#attributes"]["SystemTime"])
        if flat is not None:
            self.data, self.user = flat
        else:
            self.data = _flatten_event_data(event.get("EventData"))
            user_data = event.get("UserData")
            self.user = _flatten_event_data(next(iter(
                (v for k, v in user_data.items() if k != "#attributes")), {})) \
                if isinstance(user_data, dict) else None
        self.provider = name = provider.get("Name", "")
        v = get("Level")
        self.level = (v if type(v) is int else _int(_text(v))) or 0
        self.event_id, self.event_code = event_id, code = event_id, str(event_id)
        self.channel, self.computer, self.record_id = channel, computer, record_id
        self.values = (channel, code, name, computer, record_id)
        self.dataset = _dataset_of(channel)
        self._system, self._names, self._winlog = system, (provider, name), None
        # what making the block could refuse (a value of an unexpected shape) is refused
        # now, as map_record refuses it: such a record's block is made at once
        guid, ex, sec = provider.get("Guid"), get("Execution"), get("Security")
        if ((guid and type(guid) is not str)
                or (ex and (type(ex) is not dict
                            or ((a := ex.get("#attributes", {})) and type(a) is not dict)))
                or (sec and isinstance(sec, dict)
                    and type(sec.get("#attributes", {})) is not dict)):
            self._winlog = self._make_winlog()

    @property
    def winlog(self) -> dict[str, Any]:
        w = self._winlog
        if w is None:
            w = self._winlog = self._make_winlog()
        return w

    def _make_winlog(self) -> dict[str, Any]:
        get = self._system.get
        provider, name = self._names
        winlog: dict[str, Any] = {
            "api": "wineventlog",
            "channel": self.channel,
            "event_id": self.event_code,
            "record_id": self.record_id,
            "computer_name": self.computer,
            "provider_name": name,
        }
        if provider.get("Guid"):
            winlog["provider_guid"] = "{" + provider["Guid"].strip("{}") + "}"
        execution = (get("Execution") or {}).get("#attributes", {})
        if execution:
            pid, tid = execution.get("ProcessID"), execution.get("ThreadID")
            winlog["process"] = {"pid": pid if type(pid) is int else _int(pid),
                                 "thread": {"id": tid if type(tid) is int else _int(tid)}}
        for src, dst in (("Task", "task"), ("Opcode", "opcode")):
            v = get(src)
            if type(v) is int:
                winlog[dst] = str(v)
            elif (t := _text(v)) is not None:
                winlog[dst] = _str(t)
        v = get("Version")
        if type(v) is int:
            winlog["version"] = v
        elif (t := _text(v)) is not None:
            winlog["version"] = _int(t)
        keywords = _text(get("Keywords"))
        if keywords:
            winlog["keywords"] = [keywords if type(keywords) is str else _str(keywords)]
        security = get("Security")
        if security and isinstance(security, dict):
            sid = security.get("#attributes", {}).get("UserID")
            if sid:
                winlog["user"] = {"identifier": sid}
        if self.data:
            winlog["event_data"] = self.data
        if self.user is not None:
            winlog["user_data"] = self.user
        return winlog

    def system_values(self) -> tuple[str, ...]:
        """The winlog block's channel, event_id, provider_name, computer_name, record_id."""
        return self.values


def _complete(p: _Parts, source_key: Any = None, *, plain: bool = False,
              known_id: str | None = None) -> dict[str, Any]:
    """The ECS event of a record's parts (the Winlogbeat pipelines' fields added).
    `plain`: no data name holds a dot (every other key is this module's own), so the
    event needs no dotted-key expansion. `known_id`: the event's id (`_record_id`), when
    the caller has it."""
    event_id, data = p.event_id, p.data
    fields: dict[str, Any] = {
        "event": {"code": str(event_id), "provider": p.provider, "module": "windows"},
        "winlog": p.winlog,
        "host": {"name": p.computer},
        "log": {"level": _LEVELS.get(p.level, str(p.level))},
    }
    chan = p.channel.lower()
    if chan == "security":
        fields["event"]["module"] = "security"
        _security(event_id, data, fields)
    elif chan == "microsoft-windows-sysmon/operational":
        fields["event"]["module"] = "sysmon"
        _sysmon(event_id, data, fields)
    elif chan == "system":
        fields["event"]["module"] = "system"
        if event_id in _SYSTEM:
            act, cat, typ = _SYSTEM[event_id]
            fields["event"].update(action=act, category=cat, type=typ)
        if event_id == 7045 and data.get("ServiceName"):
            fields["service"] = {"name": data["ServiceName"]}
            if data.get("ImagePath"):
                fields["file"] = {"path": data["ImagePath"]}
    key = source_key if source_key is not None else ("evtx", p.computer, p.channel,
                                                     p.record_id)
    return make_event(p.dataset, p.stored, key, fields, dotted=not plain, known_id=known_id)


_EVENT_DATA = "winlog.event_data."
_USER_DATA = "winlog.user_data."
_SYSTEM_PATHS = {"winlog.channel": "channel", "winlog.event_id": "event_id",
                 "winlog.provider_name": "provider_name",
                 "winlog.computer_name": "computer_name", "winlog.record_id": "record_id"}


_SYSTEM_KEYS = tuple(_SYSTEM_PATHS)
_SYSTEM_LEAVES = tuple(_SYSTEM_PATHS.values())  # the order of `_Parts.values`
_SYSTEM_AT = {path: i for i, path in enumerate(_SYSTEM_KEYS)}
# the caches below are keyed by what records share (a channel, a computer, an event id's
# data names): bounded, past the cap their values are made each time
_CAP = 10_000
_NONE: Any = MappingProxyType({})  # an absent block's (read only) attributes
_DATASET_OF: dict[str, str] = {}  # channel -> dataset


def _dataset_of(channel: str) -> str:
    dataset = _DATASET_OF.get(channel)
    if dataset is None:
        dataset = _DATASETS.get(channel.lower(), "windows.eventlog")
        if len(_DATASET_OF) < _CAP:
            _DATASET_OF[channel] = dataset
    return dataset


class _Layout:
    """What the records whose EventData (or UserData) names are `names`, in that order,
    share (an event id's records share theirs): the names' winlog paths, whether one holds
    a dot, and per field set asked for the names a prefilter text keeps."""

    __slots__ = ("names", "paths", "plain", "scans")

    def __init__(self, prefix: str, names: tuple[str, ...]) -> None:
        self.names = names
        self.paths = tuple(prefix + n for n in names)
        self.plain = "." not in "".join(names)
        self.scans: dict[frozenset[str], tuple[str, ...]] = {}

    def scanned(self, fields: frozenset[str], names: tuple[str, ...]) -> tuple[str, ...]:
        """The names (`self`'s) among `fields` (made once per field set)."""
        found = tuple(n for n, path in zip(names, self.paths, strict=True) if path in fields)
        if len(self.scans) < _CAP:
            self.scans[fields] = found
        return found


_EVENT_DATA_LAYOUTS: dict[tuple[str, ...], _Layout] = {}
_USER_DATA_LAYOUTS: dict[tuple[str, ...], _Layout] = {}


def _layout(names: tuple[str, ...], prefix: str) -> _Layout:
    layouts = _EVENT_DATA_LAYOUTS if prefix == _EVENT_DATA else _USER_DATA_LAYOUTS
    found = _Layout(prefix, names)
    if len(layouts) < _CAP:
        layouts[names] = found
    return found


_SYSTEM_SCANS: dict[frozenset[str], tuple[tuple[str, int], ...]] = {}


def _system_scan(fields: frozenset[str]) -> tuple[tuple[str, int], ...]:
    """(leaf, index into `_Parts.values`) of the system paths among `fields`."""
    found = tuple((leaf, i) for i, (path, leaf) in enumerate(_SYSTEM_PATHS.items())
                  if path in fields)
    if len(_SYSTEM_SCANS) < _CAP:
        _SYSTEM_SCANS[fields] = found
    return found


_SYSTEM_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_is_system_time = _SYSTEM_TIME.fullmatch
_from_iso = datetime.fromisoformat
_HASHERS: dict[tuple[str, str], Any] = {}  # (channel, computer) -> the id's hash so far


def _record_id(p: _Parts) -> str:
    """`stable_id(p.dataset, ("evtx", computer, channel, record id))`, the event's id
    (`_complete`'s source key): the text `stable_id` hashes for a tuple part is the
    tuple's `str`, whose start (all but the record id) is hashed once per channel and
    computer."""
    key = (p.channel, p.computer)
    h = _HASHERS.get(key)
    if h is None:
        h = blake2b(f"{p.dataset}\x1f('evtx', {p.computer!r}, {p.channel!r}, ".encode(),
                    digest_size=16)
        if len(_HASHERS) < _CAP:
            _HASHERS[key] = h
    h = h.copy()
    h.update(f"{p.record_id!r})\x1f".encode())
    return h.hexdigest()


def _stored_time(s: Any) -> str:
    """`format_time(parse_time(s))` (refusing what it refuses, as it does): the parser
    writes SystemTime as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, whose stored form (milliseconds,
    truncated) is its first 23 characters and a Z, once it is known to be a date."""
    if type(s) is str and _is_system_time(s):
        try:
            _from_iso(s)
            return s[:23] + "Z"
        except ValueError:  # a month 13: parse_time says so
            pass
    return format_time(parse_time(s))


class EvtxRecord(SourceRecord):
    """One record for a sink that builds events on demand (`govsoc hunt`): the `winlog`
    block is read and checked now (a record `map_record` refuses is refused here too),
    the ECS fields Winlogbeat's pipelines add only when `event()` is called. `get`
    answers the channel, event id, provider, computer, record id and every EventData and
    UserData field (where Sigma's Windows rules look) without building the event; an
    EVTX event never has a `message`."""

    __slots__ = ("_parts", "_plain", "_data", "_user")
    COVERED = frozenset({*_SYSTEM_PATHS, "message"})
    COVERED_PREFIXES = (_EVENT_DATA, _USER_DATA)
    SHAPED = frozenset(_SYSTEM_KEYS[:3])  # channel, event id, provider: `_Parts.values[:3]`

    def __init__(self, rec: dict[str, Any]) -> None:
        p = self._parts = _Parts(rec)
        # SourceRecord's attributes, set here: one call less for every record of a hunt
        self.dataset, self.id, self.timestamp, self._event, self.candidates = (
            p.dataset, _record_id(p), p.stored, None, None)
        self.matched = ()
        names = tuple(p.data)
        lay = self._data = _EVENT_DATA_LAYOUTS.get(names) or _layout(names, _EVENT_DATA)
        plain = lay.plain
        user = p.user
        if user is None:
            self._user = None
        else:
            names = tuple(user)
            ulay = self._user = _USER_DATA_LAYOUTS.get(names) or _layout(names, _USER_DATA)
            plain = plain and ulay.plain
        # a data name holding a dot is nested by the event's dotted-key expansion: such a
        # record is answered from its event
        self._plain = plain
        if not plain:
            self.event()  # and its errors surface now, as map_record's would

    def build(self) -> dict[str, Any]:
        return _complete(self._parts, plain=self._plain, known_id=self.id)

    def shape(self) -> Any:
        # the layouts are one object per names tuple (while their caches are below the
        # cap: past it, equal layouts are other objects and only make more shapes); the
        # dataset follows from the channel
        if not self._plain:
            return None
        v = self._parts.values
        return (v[0], v[1], v[2], self._data, self._user)

    @classmethod
    def shape_layout(cls, shape: Any) -> tuple[tuple[Any, ...], tuple[str, ...],
                                                tuple[str, ...] | None,
                                                tuple[str, ...]] | None:
        if shape is None:
            return None
        channel, code, provider, data, user = shape
        paths = _SYSTEM_KEYS + data.paths + (() if user is None else user.paths)
        return ((channel, code, provider), data.names, None if user is None else user.names,
                paths)

    def get(self, path: str) -> Any:
        if self._plain:
            if path.startswith(_EVENT_DATA):
                return self._parts.data.get(path[18:])
            if path.startswith(_USER_DATA):
                return (self._parts.user or {}).get(path[17:])
            at = _SYSTEM_AT.get(path)
            if at is not None:
                return self._parts.values[at]
            if path == "message":
                return None
        return super().get(path)

    def fill(self, into: dict[str, Any]) -> bool:
        if not self._plain:
            return False
        # one update per block, the loops in C: this runs for every record of a hunt (a
        # layout's paths are its block's names, in order)
        p = self._parts
        into.update(zip(_SYSTEM_KEYS, p.values, strict=True))
        into.update(zip(self._data.paths, p.data.values(), strict=True))
        user = p.user
        if user:
            into.update(zip(self._user.paths, user.values(), strict=True))
        return True

    def scan_text(self) -> str:
        return self.scan_json().decode()

    def scan_json(self, fields: frozenset[str] | None = None) -> bytes:
        if not self._plain:
            return orjson.dumps(self.event())
        p = self._parts
        data = p.data
        user = p.user or {}
        if fields is None:
            return (orjson.dumps(dict(zip(_SYSTEM_LEAVES, p.values, strict=True)))
                    + orjson.dumps(data) + orjson.dumps(user))
        # only the fields asked for: the automaton scanning this text walks every byte
        system = _SYSTEM_SCANS.get(fields)
        if system is None:
            system = _system_scan(fields)
        values = p.values
        out = orjson.dumps({leaf: values[i] for leaf, i in system}) if system else b"{}"
        lay = self._data
        names = lay.scans.get(fields)
        if names is None:
            names = lay.scanned(fields, tuple(data))
        out += orjson.dumps({n: data[n] for n in names}) if names else b"{}"
        if user:
            lay = self._user
            names = lay.scans.get(fields)
            if names is None:
                names = lay.scanned(fields, tuple(user))
            return out + (orjson.dumps({n: user[n] for n in names}) if names else b"{}")
        return out + b"{}"


def _user(fields: dict[str, Any], name: str | None, domain: str | None, sid: str | None
          ) -> None:
    user: dict[str, Any] = {}
    if name and name != "-":
        user["name"] = name
    if domain and domain != "-":
        user["domain"] = domain
    if sid and sid not in ("-", "S-1-0-0"):
        user["id"] = sid
    if user:
        fields["user"] = user
        if "name" in user:
            fields.setdefault("related", {})["user"] = [user["name"]]


def _security(eid: int, d: dict[str, str], f: dict[str, Any]) -> None:
    ev = f["event"]
    if eid in _SECURITY:
        act, cat, typ, outcome = _SECURITY[eid]
        ev.update(action=act, category=cat, type=typ)
        if outcome:
            ev["outcome"] = outcome
    winlog = f["winlog"]
    if "TargetUserName" in d:
        _user(f, d.get("TargetUserName"), d.get("TargetDomainName"), d.get("TargetUserSid"))
    elif "SubjectUserName" in d:
        _user(f, d.get("SubjectUserName"), d.get("SubjectDomainName"), d.get("SubjectUserSid"))
    if eid in (4624, 4625, 4634, 4647, 4648, 4672) and d.get("LogonType"):
        lt = _int(d["LogonType"])
        if lt in _LOGON_TYPES:
            winlog["logon"] = {"type": _LOGON_TYPES[lt]}
    if d.get("TargetLogonId"):
        winlog.setdefault("logon", {})["id"] = d["TargetLogonId"]
    src: dict[str, Any] = {}
    if ip := _ip(d.get("IpAddress")):
        src["ip"] = ip
        if (port := _port(d.get("IpPort"))) is not None and port:
            src["port"] = port
    ws = d.get("WorkstationName") or d.get("Workstation")
    if ws and ws != "-":
        src["domain"] = ws
    if eid == 4776:
        ev["outcome"] = "success" if _int(d.get("Status")) == 0 else "failure"
    if eid == 4625 and d.get("Status"):
        failure = {"status": d["Status"]}
        if d.get("SubStatus"):
            failure["sub_status"] = d["SubStatus"]
        winlog["logon"] = {**winlog.get("logon", {}), "failure": failure}
    if eid in (4688, 4689):
        proc: dict[str, Any] = {}
        exe = d.get("NewProcessName") or d.get("ProcessName")
        if exe:
            proc["executable"] = exe
            proc["name"] = _basename(exe)
        pid = _int(d.get("NewProcessId") if eid == 4688 else d.get("ProcessId"))
        if pid is not None:
            proc["pid"] = pid
        if d.get("CommandLine"):
            proc["command_line"] = d["CommandLine"]
        if eid == 4688:
            parent: dict[str, Any] = {}
            if (ppid := _int(d.get("ProcessId"))) is not None:
                parent["pid"] = ppid
            if d.get("ParentProcessName"):
                parent["executable"] = d["ParentProcessName"]
                parent["name"] = _basename(d["ParentProcessName"])
            if parent:
                proc["parent"] = parent
            if "SubjectUserName" in d:
                _user(f, d.get("SubjectUserName"), d.get("SubjectDomainName"),
                      d.get("SubjectUserSid"))
        f["process"] = proc
    elif d.get("ProcessName") and d["ProcessName"] != "-":
        proc = {"executable": d["ProcessName"], "name": _basename(d["ProcessName"])}
        if (pid := _int(d.get("ProcessId"))) is not None:
            proc["pid"] = pid
        f["process"] = proc
    if eid in (5152, 5156, 5157):
        src = {}
        dst: dict[str, Any] = {}
        if ip := _ip(d.get("SourceAddress")):
            src["ip"] = ip
        if (p := _port(d.get("SourcePort"))) is not None:
            src["port"] = p
        if ip := _ip(d.get("DestAddress")):
            dst["ip"] = ip
        if (p := _port(d.get("DestPort"))) is not None:
            dst["port"] = p
        if dst:
            f["destination"] = dst
        proto = _PROTOCOLS.get(_int(d.get("Protocol")) or -1)
        direction = {"%%14592": "inbound", "%%14593": "outbound"}.get(d.get("Direction", ""))
        net: dict[str, Any] = {}
        if proto:
            net["transport"] = proto
        if direction:
            net["direction"] = direction
        if net:
            f["network"] = net
        app = d.get("Application")
        if app and app != "-":
            f["process"] = {"executable": app, "name": _basename(app)}
            if (pid := _int(d.get("ProcessId") or d.get("ProcessID"))) is not None:
                f["process"]["pid"] = pid
    if src:
        f["source"] = src
        if "ip" in src:
            f.setdefault("related", {})["ip"] = [src["ip"]]


def _split_user(v: str | None) -> tuple[str | None, str | None]:
    if not v:
        return None, None
    if "\\" in v:
        dom, name = v.split("\\", 1)
        return name, dom
    return v, None


def _hashes(v: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (v or "").split(","):
        k, _, h = part.partition("=")
        if h:
            out[k.strip().lower()] = h.strip().lower()
    return out


def _sysmon(eid: int, d: dict[str, str], f: dict[str, Any]) -> None:
    ev = f["event"]
    if eid in _SYSMON:
        act, cat, typ = _SYSMON[eid]
        ev.update(action=act, category=cat, type=typ)
    # every Sysmon event a hunt keeps comes through here: each field looked up once
    get = d.get
    proc: dict[str, Any] = {}
    if v := get("Image"):
        proc["executable"] = v
        proc["name"] = _basename(v)
    if (pid := _int(get("ProcessId"))) is not None:
        proc["pid"] = pid
    if v := get("ProcessGuid"):
        proc["entity_id"] = v
    if v := get("CommandLine"):
        proc["command_line"] = v
    if v := get("CurrentDirectory"):
        proc["working_directory"] = v
    parent: dict[str, Any] = {}
    if v := get("ParentImage"):
        parent["executable"] = v
        parent["name"] = _basename(v)
    if (ppid := _int(get("ParentProcessId"))) is not None:
        parent["pid"] = ppid
    if v := get("ParentCommandLine"):
        parent["command_line"] = v
    if v := get("ParentProcessGuid"):
        parent["entity_id"] = v
    if parent:
        proc["parent"] = parent
    if eid in (1, 7) and (h := _hashes(get("Hashes"))):
        target = proc if eid == 1 else f.setdefault("file", {})
        target["hash"] = {k: v for k, v in h.items() if k in ("md5", "sha1", "sha256")}
        f.setdefault("related", {})["hash"] = sorted(h.values())  # (Hashes non-empty)
    if eid == 1 and (v := get("OriginalFileName")):
        proc["pe"] = {"original_file_name": v}
    if proc:
        f["process"] = proc
    name, dom = _split_user(get("User"))
    _user(f, name, dom, None)
    if eid == 3:
        src: dict[str, Any] = {}
        dst: dict[str, Any] = {}
        if ip := _ip(d.get("SourceIp")):
            src["ip"] = ip
        if (p := _port(d.get("SourcePort"))) is not None:
            src["port"] = p
        if d.get("SourceHostname"):
            src["domain"] = d["SourceHostname"]
        if ip := _ip(d.get("DestinationIp")):
            dst["ip"] = ip
        if (p := _port(d.get("DestinationPort"))) is not None:
            dst["port"] = p
        if d.get("DestinationHostname"):
            dst["domain"] = d["DestinationHostname"]
        f["source"], f["destination"] = src, dst
        net: dict[str, Any] = {}
        if d.get("Protocol"):
            net["transport"] = d["Protocol"].lower()
        if d.get("Initiated"):
            net["direction"] = "outbound" if d["Initiated"].lower() == "true" else "inbound"
        f["network"] = net
        f["related"] = {**f.get("related", {}), "ip": [x["ip"] for x in (src, dst) if "ip" in x]}
    elif eid == 11 and d.get("TargetFilename"):
        path = d["TargetFilename"]
        f["file"] = {"path": path, "name": _basename(path)}
    elif eid == 7 and d.get("ImageLoaded"):
        f.setdefault("file", {}).update(path=d["ImageLoaded"], name=_basename(d["ImageLoaded"]))
    elif eid == 13 and d.get("TargetObject"):
        f["registry"] = {"path": d["TargetObject"]}
        if d.get("Details"):
            f["registry"]["data"] = {"strings": [d["Details"]]}
    elif eid == 22 and d.get("QueryName"):
        f["dns"] = {"question": {"name": d["QueryName"]}}
        if d.get("QueryResults"):
            ips = [x for x in (_ip(r) for r in d["QueryResults"].split(";") if r) if x]
            if ips:
                f["dns"]["resolved_ip"] = ips


def iter_records(path: str, stats: LogStats) -> Iterator[tuple[dict[str, Any], int]]:
    """Parsed records of one file; damaged ones are counted in `stats` with a reason."""
    from evtx import PyEvtxParser

    parser = _checked_open(path, stats, lambda p: PyEvtxParser(p, number_of_threads=1,
                                                               skip_errors=True))
    yield from _records(path, stats, parser)


def _checked_open(path: str, stats: LogStats, opener: Callable[[str], Any]) -> Any:
    """`opener` of the file once it is known to be EVTX (a cut file and its damaged
    chunks counted in `stats`; those chunks left out of what `opener` reads)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_FILE_HEADER)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise EvtxError(f"{path}: {exc.strerror}") from exc
    if head[:8] != b"ElfFile\x00":
        raise EvtxError(f"{path}: not an EVTX file (bad signature)")
    if len(head) >= 44:
        (chunks,) = struct.unpack_from("<H", head, 42)
        whole = max(0, size - _FILE_HEADER) // _CHUNK
        if whole < chunks:
            # the parser silently drops a cut chunk: say so
            stats.bad(f"file truncated: {whole} of {chunks} chunks complete, the records of "
                      "the cut chunk are lost", path)
    clean = _without_damaged_chunks(path, stats)
    try:
        parser = opener(clean or path)
    except (OSError, RuntimeError) as exc:
        raise EvtxError(f"{path}: not a readable EVTX file: {exc}") from exc
    finally:
        if clean:  # the parser has opened it: the name is no longer needed
            os.unlink(clean)
    return parser


def _read_prefiltered(path: str, sink: Callable[[Any], Any], stats: LogStats,
                      prefilter: Any) -> LogStats:
    # the prefilter reads and checks the file itself, as `_checked_open` does
    try:
        damage = prefilter.open(path, _DATASETS)
    except OSError as exc:
        raise EvtxError(f"{path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise EvtxError(f"{path}: {exc}") from exc
    for reason, chunk, records in damage:
        where = path if chunk is None else f"{path} chunk {chunk}"
        for _ in range(records):
            stats.bad(reason, where)
    events = stats.events
    while (batch := prefilter.batch()) is not None:
        for item in batch:
            tag = item[0]
            if tag == 2:  # records no rule can match, their ids made by the prefilter
                _, dataset, ids, earliest, latest = item
                stats.lines += len(ids)
                events[dataset] += len(ids)
                sink(UnmatchedRecords(dataset, ids, earliest, latest))
                continue
            if tag == 3:
                stats.bad(f"damaged record skipped: {str(item[1])[:160]}", path)
                continue
            stats.lines += 1
            try:
                if tag == 4:
                    doc: Any = _Unmatched(*item[2:])
                elif tag == 1:
                    doc = _PlannedRecord(*item[2:])
                else:
                    doc = EvtxRecord(orjson.loads(item[2]))
            except orjson.JSONDecodeError as exc:
                stats.bad(f"bad JSON: {exc}", f"{path} record {item[1]}")
                continue
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                stats.bad(f"unmappable record: {type(exc).__name__}: {exc}",
                          f"{path} record {item[1]}")
                continue
            events[doc.dataset] += 1
            sink(doc)
    return stats


def _records(path: str, stats: LogStats, parser: Any
             ) -> Iterator[tuple[dict[str, Any], int]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = parser.records_json()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except RuntimeError as exc:  # unrecoverable damage: the rest is unreadable
                stats.bad(f"EVTX damage stops the file: {str(exc)[:160]}", path)
                break
            if caught:
                for w in caught:
                    stats.bad(f"damaged record skipped: {str(w.message)[:160]}", path)
                caught.clear()
            stats.lines += 1
            try:
                yield orjson.loads(rec["data"]), int(rec["event_record_id"])
            except (orjson.JSONDecodeError, KeyError, ValueError) as exc:
                stats.bad(f"bad JSON: {exc}", f"{path} record {rec.get('event_record_id')}")
        for w in caught:
            stats.bad(f"damaged record skipped: {str(w.message)[:160]}", path)


def _chunk_damage(chunk: bytes) -> tuple[str, int] | None:
    """(reason, records in it) when a chunk's CRC32s do not match its bytes, else None.
    The parser does not check them: a flipped bit would be imported as a mangled field."""
    if chunk[:8] != b"ElfChnk\x00":
        return None  # not a chunk at all: the parser reports that itself, with its reason
    first, last = struct.unpack_from("<QQ", chunk, 8)
    (free,) = struct.unpack_from("<I", chunk, 48)
    (records_crc,) = struct.unpack_from("<I", chunk, 52)
    (header_crc,) = struct.unpack_from("<I", chunk, 124)
    # over views of the chunk: its records (most of its 64 KiB) are not copied to be summed
    view = memoryview(chunk)
    header_ok = zlib.crc32(view[128:512], zlib.crc32(view[:120])) == header_crc
    if header_ok and 512 <= free <= _CHUNK and zlib.crc32(view[512:free]) == records_crc:
        return None
    if header_ok and first <= last and last - first < _CHUNK // 24:
        count = last - first + 1
        what = "records checksum"
    else:  # the header itself is damaged: count the records that are there
        count = _walk_records(chunk)
        what = "header checksum"
    return what, count


def _walk_records(chunk: bytes) -> int:
    """Records in a chunk found by their own framing (signature, size, size copy)."""
    n, at = 0, 512
    while at + 28 <= len(chunk) and chunk[at:at + 4] == b"\x2a\x2a\x00\x00":
        (size,) = struct.unpack_from("<I", chunk, at + 4)
        if size < 28 or at + size > len(chunk) or \
                struct.unpack_from("<I", chunk, at + size - 4)[0] != size:
            break
        n += 1
        at += size
    return n


def _without_damaged_chunks(path: str, stats: LogStats) -> str | None:
    """Check every chunk's CRC32s; when some fail, count their records as damaged (with the
    reason) and return a temporary copy of the file without those chunks, else None."""
    damaged: list[int] = []
    try:
        with open(path, "rb") as fh:
            head = bytearray(fh.read(_FILE_HEADER))
            index = 0
            while True:
                chunk = fh.read(_CHUNK)
                if len(chunk) < _CHUNK:
                    break
                found = _chunk_damage(chunk)
                if found:
                    what, count = found
                    damaged.append(index)
                    reason = (f"chunk fails its {what} (CRC32): its records are not "
                              "imported")
                    for _ in range(max(count, 1)):
                        stats.bad(reason, f"{path} chunk {index}")
                index += 1
            if not damaged:
                return None
            fd, clean = tempfile.mkstemp(prefix="govsoc-evtx-", suffix=".evtx")
            with os.fdopen(fd, "wb") as out:
                kept = index - len(damaged)
                struct.pack_into("<H", head, 42, kept)
                struct.pack_into("<I", head, 124, zlib.crc32(bytes(head[:120])))
                out.write(head)
                fh.seek(_FILE_HEADER)
                for i in range(index):
                    chunk = fh.read(_CHUNK)
                    if i not in damaged:
                        out.write(chunk)
                out.write(fh.read())  # a cut last chunk: the parser reports it as before
            return clean
    except OSError as exc:
        raise EvtxError(f"{path}: {exc.strerror}") from exc


def _identity(channel: str, computer: str, record_id: str) -> tuple[str, str]:
    """The dataset and id of a record's event from its channel, computer and record id."""
    dataset = _dataset_of(channel)
    return dataset, _record_id(_IdParts(dataset, channel, computer, record_id))  # type: ignore[arg-type]


class _IdParts:
    __slots__ = ("dataset", "channel", "computer", "record_id")

    def __init__(self, dataset: str, channel: str, computer: str, record_id: str) -> None:
        self.dataset, self.channel, self.computer, self.record_id = (
            dataset, channel, computer, record_id)


class _Unmatched(SourceRecord):
    """A record a prefilter found no rule for, whose id it left to Python (its text is
    not simple): what the hunt's bookkeeping reads (its dataset, id and time)."""

    __slots__ = ()

    def __init__(self, parts: tuple[str, str, str], stored: str) -> None:
        self.dataset, self.id = _identity(*parts)
        self.timestamp, self._event, self.candidates, self.matched = stored, None, (), ()


class _Fields:
    """A planned record's field values (what `EvtxRecord` reads from its `_Parts`)."""

    __slots__ = ("values", "data", "user")

    def __init__(self, values: tuple[str, ...], data: dict[str, str],
                 user: dict[str, str] | None) -> None:
        self.values, self.data, self.user = values, data, user


class _PlannedRecord(EvtxRecord):
    """A plain record whose fields the native prefilter read (`detections.prefilter`),
    with its candidate rules: the fields as `EvtxRecord` holds them, the event built when
    asked for as `EvtxRecord` builds it, from the record's System block (as `orjson`
    reads it) and those fields, or from the record's JSON."""

    __slots__ = ("_source",)

    def __init__(self, source: dict[str, Any] | str, rules: tuple[list[int], list[int]],
                 made: tuple[str, str] | None,
                 parts: tuple[str, str, str] | None, stored: str,
                 fields: tuple[tuple[str, ...], dict[str, str], dict[str, str] | None]
                 ) -> None:
        values, data, user = fields
        self._parts = _Fields(values, data, user)  # type: ignore[assignment]
        self.dataset, self.id = made or _identity(*parts)  # type: ignore[misc]
        self.timestamp, self._event = stored, None
        self.candidates, self.matched = rules  # to evaluate, found true
        names = tuple(data)
        self._data = _EVENT_DATA_LAYOUTS.get(names) or _layout(names, _EVENT_DATA)
        if user is None:
            self._user = None
        else:
            names = tuple(user)
            self._user = _USER_DATA_LAYOUTS.get(names) or _layout(names, _USER_DATA)
        self._plain = True  # no dotted name: the prefilter plans no other record
        self._source = source

    def build(self) -> dict[str, Any]:
        source = self._source
        if type(source) is str:
            parts = _Parts(orjson.loads(source))
        else:
            # the fields read are the EventData and UserData as `_Parts` flattens them:
            # the JSON is not read twice
            fields = self._parts
            parts = _Parts({"Event": {"System": source}},
                           (fields.data, fields.user))  # type: ignore[attr-defined]
        return _complete(parts, plain=True, known_id=self.id)


def read_evtx(path: str, sink: Callable[[Any], Any], stats: LogStats | None = None, *,
              lazy: bool = False, prefilter: Any = None) -> LogStats:
    """Map every record of one EVTX file and hand it to `sink`; with `lazy`, hand it
    `EvtxRecord`s, whose events are built when asked for. A `prefilter` (lazy only:
    `detections.prefilter`'s) reads the file instead of the `evtx` package and names
    each record's candidate rules; records with none reach `sink` as their dataset, ids
    and times alone, consecutive ones together (`soc_core.records.UnmatchedRecords`)."""
    stats = stats or LogStats()
    if lazy and prefilter is not None:
        return _read_prefiltered(path, sink, stats, prefilter)
    for rec, rid in iter_records(path, stats):
        try:
            doc: Any = EvtxRecord(rec) if lazy else map_record(rec)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            # a field of an unexpected shape (a number where an object belongs)
            stats.bad(f"unmappable record: {type(exc).__name__}: {exc}", f"{path} record {rid}")
            continue
        stats.events[doc.dataset if lazy else doc["event"]["dataset"]] += 1
        sink(doc)
    return stats
