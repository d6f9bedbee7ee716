"""auditd `audit.log` to `auditd.log` events: the records of one audit event (same
serial: SYSCALL, EXECVE, CWD, PATH, PROCTITLE... up to EOE) joined into one document;
standalone records (USER_LOGIN, USER_AUTH, USER_CMD, ADD_USER...) are one event each.

Fields follow Filebeat's auditd module (`auditd.log.*`, `event.action` the lower-cased
record type, `user.id`/`user.audit.id`, `process.*`), plus the joined EXECVE arguments
as `process.args` / `process.command_line` as Auditbeat writes them.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any

from collectors.logs.records import LogStats, Source
from soc_core.ecs import make_event

_LINE = re.compile(r"^(?:node=(?P<node>\S+) )?type=(?P<type>\w+) "
                   r"msg=audit\((?P<sec>\d+)\.(?P<ms>\d{1,6}):(?P<serial>\d+)\):\s?(?P<rest>.*)$")
_KV = re.compile(r"""(\w[\w-]*)=("[^"]*"|'[^']*'|\S*)""")
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
# USER_* and friends: category/type by record type
_CATEGORY = {
    "USER_LOGIN": (["authentication", "session"], ["start"]),
    "USER_LOGOUT": (["session"], ["end"]),
    "USER_AUTH": (["authentication"], ["info"]),
    "USER_ACCT": (["authentication"], ["info"]),
    "USER_START": (["session"], ["start"]),
    "USER_END": (["session"], ["end"]),
    "USER_CMD": (["process"], ["start"]),
    "CRED_ACQ": (["authentication"], ["info"]),
    "CRED_DISP": (["authentication"], ["info"]),
    "CRED_REFR": (["authentication"], ["info"]),
    "ADD_USER": (["iam"], ["user", "creation"]),
    "DEL_USER": (["iam"], ["user", "deletion"]),
    "ADD_GROUP": (["iam"], ["group", "creation"]),
    "DEL_GROUP": (["iam"], ["group", "deletion"]),
    "USER_CHAUTHTOK": (["iam"], ["user", "change"]),
    "USER_MGMT": (["iam"], ["user", "change"]),
    "SERVICE_START": (["process"], ["start"]),
    "SERVICE_STOP": (["process"], ["end"]),
}


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def _decode_hex(v: str) -> str:
    """auditd writes strings with spaces or odd bytes as bare hex (a0=2F62696E...)."""
    if _HEX.match(v):
        return bytes.fromhex(v).decode("utf-8", "replace")
    return v


def parse_kv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _KV.findall(text):
        out[k] = v
    return out


class _Pending:
    __slots__ = ("first", "lines", "records", "serial", "ts")

    def __init__(self, serial: str, ts: datetime, first: Source) -> None:
        self.serial = serial
        self.ts = ts
        self.first = first
        self.records: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.lines: list[str] = []


class AuditdParser:
    dataset = "auditd.log"

    def __init__(self) -> None:
        self._open: _Pending | None = None

    @property
    def held_offset(self) -> int | None:
        return self._open.first.offset if self._open else None

    def feed(self, line: str, src: Source, stats: LogStats) -> list[dict[str, Any]]:
        if not line.strip():
            stats.ignored["blank line"] += 1
            return []
        m = _LINE.match(line)
        if not m:
            stats.bad("not an audit record (type=... msg=audit(...))", src.where)
            return []
        body, _, enriched = m["rest"].partition("\x1d")  # ENRICHED format: names after GS
        kv = parse_kv(body)
        names = {k: _unquote(v) for k, v in parse_kv(enriched).items()}
        serial = m["serial"]
        out: list[dict[str, Any]] = []
        if self._open is not None and self._open.serial != serial:
            out.append(self._emit(self._open))
            self._open = None
        if m["type"] == "EOE":
            if self._open is not None:
                out.append(self._emit(self._open))
                self._open = None
            return out
        if self._open is None:
            ts = datetime.fromtimestamp(int(m["sec"]) + int(m["ms"].ljust(3, "0")[:3]) / 1000,
                                        UTC)
            self._open = _Pending(serial, ts, src)
        self._open.records.append((m["type"], kv, names))
        self._open.lines.append(line)
        if m["node"]:
            kv.setdefault("node", m["node"])
        return out

    def flush(self, stats: LogStats) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        doc = self._emit(self._open)
        self._open = None
        return [doc]

    # -- mapping ---------------------------------------------------------------------
    def _emit(self, p: _Pending) -> dict[str, Any]:
        types = [t for t, _, _ in p.records]
        primary_type, primary, names = p.records[0]
        for t, kv, nm in p.records:
            if t == "SYSCALL":
                primary_type, primary, names = t, kv, nm
                break
        log: dict[str, Any] = {"record_type": primary_type, "sequence": int(p.serial)}
        f: dict[str, Any] = {
            "event": {"module": "auditd", "action": primary_type.lower(),
                      "original": "\n".join(p.lines)},
            "auditd": {"log": log},
            "log": {"file": {"path": p.first.path}, "offset": p.first.offset},
            "message": p.lines[0],
        }
        if len(types) > 1:
            log["records"] = types
        ev = f["event"]
        if "node" in primary:
            f["host"] = {"name": primary["node"]}
        inner = parse_kv(_unquote(primary["msg"])) if "msg" in primary else {}
        for k, v in {**primary, **inner}.items():
            if k not in ("msg", "a0", "a1", "a2", "a3", "node"):
                log[k] = _unquote(v)
        process: dict[str, Any] = {}
        user: dict[str, Any] = {}
        self._identity(primary, names, process, user)
        if inner:
            self._standalone(primary_type, inner, f, process, user)
        for t, kv, _ in p.records:
            if t == "EXECVE":
                args = self._execve(kv)
                if args:
                    process["args"] = args
                    process["args_count"] = len(args)
                    process["command_line"] = " ".join(args)
            elif t == "PROCTITLE" and "proctitle" in kv:
                raw = _unquote(kv["proctitle"])
                title = (bytes.fromhex(raw).replace(b"\x00", b" ").decode("utf-8", "replace")
                         if _HEX.match(raw) else raw)
                process["title"] = title
            elif t == "CWD" and "cwd" in kv:
                process["working_directory"] = _decode_hex(_unquote(kv["cwd"]))
            elif t == "PATH" and "name" in kv and kv.get("nametype") != "PARENT":
                f.setdefault("file", {"path": _decode_hex(_unquote(kv["name"]))})
        if primary_type == "SYSCALL":
            if "success" in primary:
                ev["outcome"] = "success" if primary["success"] == "yes" else "failure"
            if "EXECVE" in types:
                ev.update(category=["process"], type=["start"])
        if process:
            f["process"] = process
        if user:
            f["user"] = user
        return make_event(self.dataset, p.ts, (p.first.identity, p.first.offset), f)

    @staticmethod
    def _identity(kv: dict[str, str], names: dict[str, str], process: dict[str, Any],
                  user: dict[str, Any]) -> None:
        if kv.get("pid", "").isdigit():
            process["pid"] = int(kv["pid"])
        if kv.get("ppid", "").isdigit():
            process["parent"] = {"pid": int(kv["ppid"])}
        if "exe" in kv:
            process["executable"] = _decode_hex(_unquote(kv["exe"]))
        if "comm" in kv:
            process["name"] = _decode_hex(_unquote(kv["comm"]))
        if "uid" in kv:
            user["id"] = kv["uid"]
        if names.get("UID"):
            user["name"] = names["UID"]
        if kv.get("auid") not in (None, "4294967295", "-1"):
            audit: dict[str, Any] = {"id": kv["auid"]}
            if names.get("AUID"):
                audit["name"] = names["AUID"]
            user["audit"] = audit
        if "euid" in kv:
            user["effective"] = {"id": kv["euid"]}

    @staticmethod
    def _standalone(rtype: str, inner: dict[str, str], f: dict[str, Any],
                    process: dict[str, Any], user: dict[str, Any]) -> None:
        ev = f["event"]
        if rtype in _CATEGORY:
            ev["category"], ev["type"] = _CATEGORY[rtype]
        res = _unquote(inner.get("res", ""))
        if res:
            ev["outcome"] = "success" if res in ("success", "1", "yes") else "failure"
        acct = inner.get("acct") or inner.get("id")
        if acct:
            name = _decode_hex(_unquote(acct))
            if rtype in ("ADD_USER", "DEL_USER", "USER_MGMT", "USER_CHAUTHTOK"):
                user["target"] = {"name": name}
            else:
                user["name"] = name
        if "exe" in inner:
            process["executable"] = _decode_hex(_unquote(inner["exe"]))
        if rtype == "USER_CMD" and "cmd" in inner:
            process["command_line"] = _decode_hex(_unquote(inner["cmd"]))
        addr = _unquote(inner.get("addr", ""))
        try:
            f["source"] = {"ip": str(ipaddress.ip_address(addr))}
        except ValueError:
            pass
        host = _unquote(inner.get("hostname", ""))
        if host and host != "?" and "source" in f and host != f["source"]["ip"]:
            f["source"]["domain"] = host

    @staticmethod
    def _execve(kv: dict[str, str]) -> list[str]:
        try:
            argc = int(kv.get("argc", "0"))
        except ValueError:
            argc = 0
        args = []
        for i in range(argc):
            v = kv.get(f"a{i}")
            if v is None:
                break  # very long argument lists are split (a1_len=...); keep what we have
            args.append(v[1:-1] if v.startswith('"') else _decode_hex(v))
        return args
