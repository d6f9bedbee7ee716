"""Syslog lines as rsyslog and `journalctl` write them, to `system.syslog` events.

Accepted headers: BSD (`Nov 23 12:00:01 host prog[pid]: msg`, also with fractional
seconds as `journalctl -o short-precise` prints), RFC 3339 (`2026-11-23T12:00:01.5+08:00
host prog[pid]: msg`, rsyslog's high-precision format and `journalctl -o short-iso`),
RFC 5424 (`<34>1 2026-11-23T12:00:01Z host app 1234 ID - msg`), each with an optional
`<PRI>` prefix; and `journalctl -o json` entries, one a line. BSD timestamps have no
year or zone: the zone is the machine's (as Filebeat assumes) and the year the one that
puts the time closest before now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

from collectors.logs.records import LogStats, Source
from soc_core.ecs import make_event

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_PRI = r"(?:<(?P<pri>\d{1,3})>)?"
_TAG = r"(?:(?P<prog>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?:\s?)?"
_BSD = re.compile(_PRI + r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) "
                  r"(?P<hms>\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) (?P<host>\S+) "
                  + _TAG + r"(?P<msg>.*)$")
_ISO = re.compile(_PRI + r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"
                  r"(?:Z|[+-]\d{2}:?\d{2})) (?P<host>\S+) " + _TAG + r"(?P<msg>.*)$")
_5424 = re.compile(r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<prog>\S+) (?P<pid>\S+) "
                   r"(?P<msgid>\S+) (?P<sd>-|(?:\[.*?\])+) ?(?P<msg>.*)$")
_SEVERITY = ("emergency", "alert", "critical", "error", "warning", "notice",
             "informational", "debug")


@dataclass
class SyslogLine:
    timestamp: datetime
    host: str
    program: str | None
    pid: int | None
    message: str
    priority: int | None = None


def _iso(ts: str) -> datetime:
    """RFC 3339 -> UTC; ValueError for anything else (or a time outside years 1-9999)."""
    if ts.endswith("Z"):
        ts = ts[:-1] + "+00:00"
    if "." in ts:  # Python takes at most 6 fractional digits
        head, _, rest = ts.partition(".")
        m = re.match(r"\d+", rest)
        if m is None:
            raise ValueError("no digits after the decimal point")
        digits = m.group(0)
        ts = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    try:
        return datetime.fromisoformat(ts).astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(str(exc)) from None


def _small(value: Any) -> bool:
    """A syslog priority or facility: at most three digits."""
    return str(value if value is not None else "").isdigit() and len(str(value)) <= 3


def _pid(text: Any) -> int | None:
    """A process id, or None when the field is not one (damage: 50 digits)."""
    text = str(text or "")
    return int(text) if text.isdigit() and len(text) <= 10 else None


def parse_header(line: str, *, now: datetime | None = None,
                 tz: tzinfo | None = None) -> SyslogLine | None:
    """The parts of one syslog line, or None if it is not one."""
    m = _5424.match(line)
    if m:
        try:
            ts = _iso(m["ts"])
        except ValueError:
            return None
        pid = m["pid"]
        return SyslogLine(ts, m["host"], None if m["prog"] == "-" else m["prog"],
                          _pid(pid), m["msg"], int(m["pri"]))
    m = _ISO.match(line)
    if m:
        try:
            ts = _iso(m["ts"])
        except ValueError:
            return None
    else:
        m = _BSD.match(line)
        if not m or m["mon"] not in _MONTHS:
            return None
        ts = _bsd_time(m["mon"], int(m["day"]), m["hms"], now or datetime.now(UTC), tz)
        if ts is None:
            return None
    pri = m["pri"]
    return SyslogLine(ts, m["host"], m["prog"], _pid(m["pid"]), m["msg"],
                      int(pri) if pri else None)


def parse_journal_json(line: str) -> SyslogLine | None:
    """One entry of `journalctl -o json` (one JSON object a line), or None."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entry, dict) or "__REALTIME_TIMESTAMP" not in entry:
        return None
    try:
        ts = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
    except (TypeError, ValueError, OverflowError, OSError):  # beyond what a clock can say
        return None
    msg = entry.get("MESSAGE", "")
    if isinstance(msg, list):  # journald writes non-UTF-8 messages as a byte array
        msg = bytes(b & 0xFF for b in msg if isinstance(b, int)).decode("utf-8", "replace")
    pid = entry.get("SYSLOG_PID") or entry.get("_PID")
    pri = None
    if _small(entry.get("PRIORITY")):
        pri = int(entry["PRIORITY"]) + 8 * int(entry.get("SYSLOG_FACILITY") or 0) \
            if _small(entry.get("SYSLOG_FACILITY", "0")) else int(entry["PRIORITY"])
    return SyslogLine(ts, str(entry.get("_HOSTNAME", "")),
                      entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM"),
                      _pid(pid), str(msg), pri)


def _bsd_time(mon: str, day: int, hms: str, now: datetime, tz: tzinfo | None) -> datetime | None:
    h, mi, s = hms.split(":")
    sec, _, frac = s.partition(".")
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    for year in (now.year, now.year - 1):
        try:
            local = datetime(year, _MONTHS[mon], day, int(h), int(mi), int(sec), micro)
        except ValueError:
            continue  # Feb 29 in a year without it
        # tz None: the machine's local zone, as a naive time means to astimezone()
        ts = (local.replace(tzinfo=tz) if tz else local.astimezone()).astimezone(UTC)
        if ts <= now + timedelta(days=1):
            return ts
    return None


def base_fields(sl: SyslogLine, src: Source, module: str) -> dict[str, Any]:
    """The fields Filebeat's system module sets on every line."""
    fields: dict[str, Any] = {
        "message": sl.message,
        "host": {"hostname": sl.host},
        "event": {"module": module},
        "log": {"file": {"path": src.path}, "offset": src.offset},
    }
    if sl.program:
        proc: dict[str, Any] = {"name": sl.program}
        if sl.pid is not None:
            proc["pid"] = sl.pid
        fields["process"] = proc
    if sl.priority is not None and sl.priority < 192:
        fields["log"]["syslog"] = {
            "priority": sl.priority,
            "facility": {"code": sl.priority // 8},
            "severity": {"code": sl.priority % 8, "name": _SEVERITY[sl.priority % 8]},
        }
    return fields


def is_banner(line: str) -> bool:
    """journalctl's `-- Logs begin at ... --`, `-- Boot 1a2b... --`, `-- No entries --`."""
    return line.startswith("-- ") or not line.strip()


class SyslogParser:
    """Any syslog line -> one `system.syslog` event."""

    dataset = "system.syslog"
    module = "system"
    held_offset = None

    def __init__(self, *, now: datetime | None = None, tz: tzinfo | None = None) -> None:
        self.now = now
        self.tz = tz

    def feed(self, line: str, src: Source, stats: LogStats) -> list[dict[str, Any]]:
        if is_banner(line):
            stats.ignored["banner line"] += 1
            return []
        if line.startswith("{"):
            sl = parse_journal_json(line)
            if sl is None:
                stats.bad("not a journalctl -o json entry", src.where)
                return []
        else:
            sl = parse_header(line, now=self.now, tz=self.tz)
        if sl is None:
            stats.bad("not a syslog line", src.where)
            return []
        fields = base_fields(sl, src, self.module)
        self.enrich(sl, fields)
        return [make_event(self.dataset, sl.timestamp, (src.identity, src.offset), fields)]

    def enrich(self, sl: SyslogLine, fields: dict[str, Any]) -> None:
        """Hook for parsers that read more out of the message."""

    def flush(self, stats: LogStats) -> list[dict[str, Any]]:
        return []
