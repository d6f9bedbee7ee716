"""Log importers and tailers: Linux auth/syslog/auditd text logs and Windows EVTX.

Public API (the `govsoc collect logs|evtx` commands call these):

    parser_for(fmt)                      "auth" | "auditd" | "syslog" -> a line parser
    LogReader(path, parser, sink, positions=..., checkpoint=...).import_once()
    LogReader(...).follow(stop_event)    tail with rotation until stop is set
    read_evtx(path, sink) -> LogStats   one EVTX file, mapped as Winlogbeat does
"""

from __future__ import annotations

from collectors.logs.auditd import AuditdParser
from collectors.logs.auth import AuthParser
from collectors.logs.records import LineParser, LogStats, Source
from collectors.logs.syslog import SyslogParser
from collectors.logs.tail import LogReader, Positions

FORMATS = {"auth": AuthParser, "auditd": AuditdParser, "syslog": SyslogParser}


def parser_for(fmt: str) -> LineParser:
    try:
        return FORMATS[fmt]()
    except KeyError:
        raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}") from None


def read_evtx(path, sink, **kwargs) -> LogStats:
    """One EVTX file into ECS events (imported on use: the parser is only needed here)."""
    from collectors.logs.evtx import read_evtx as read

    return read(path, sink, **kwargs)


__all__ = ["FORMATS", "LineParser", "LogReader", "Positions", "LogStats", "Source",
           "parser_for", "read_evtx"]
