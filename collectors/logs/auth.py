"""`auth.log` / `secure` (and their journald text exports) to `system.auth` events, with
the fields Filebeat's system/auth pipeline extracts: sshd logins, sudo, su, useradd,
groupadd and PAM session/authentication lines."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from collectors.logs.syslog import SyslogLine, SyslogParser

_SSH_LOGIN = re.compile(
    r"^(?P<event>Accepted|Failed) (?P<method>[\w-]+) for (?:invalid user )?(?P<user>\S*) "
    r"from (?P<ip>\S+) port (?P<port>\d+)(?: ssh2)?(?:: (?P<sig>.*))?$")
_SSH_INVALID = re.compile(r"^Invalid user (?P<user>.*?) from (?P<ip>\S+)(?: port (?P<port>\d+))?$")
_SSH_NOID = re.compile(r"^Did not receive identification string from (?P<ip>\S+)")
_SUDO = re.compile(
    r"^\s*(?P<user>\S+) : (?:(?P<error>[^;]+?) ; )?TTY=(?P<tty>\S+) ; PWD=(?P<pwd>.+?) ; "
    r"USER=(?P<target>\S+) ; (?:GROUP=\S+ ; )?(?:ENV=.*? ; )?COMMAND=(?P<cmd>.*)$")
_SU_TO = re.compile(r"^(?P<failed>FAILED SU )?\(to (?P<target>\S+)\) (?P<user>\S+) on (?P<tty>\S+)")
_USERADD = re.compile(r"^new user: name=(?P<user>[^,]+), UID=(?P<uid>\d+), GID=(?P<gid>\d+), "
                      r"home=(?P<home>[^,]*), shell=(?P<shell>[^,]*)")
_GROUPADD = re.compile(r"^new group: name=(?P<group>[^,]+), GID=(?P<gid>\d+)")
_PAM_SESSION = re.compile(r"^pam_unix\((?P<svc>[\w-]+):session\): session (?P<what>opened|closed) "
                          r"for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?(?: by (?P<by>[^\s(]*))?")
_PAM_AUTHFAIL = re.compile(r"^pam_unix\((?P<svc>[\w-]+):auth\): authentication failure;(?P<kv>.*)$")


def _ip(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class AuthParser(SyslogParser):
    dataset = "system.auth"

    def enrich(self, sl: SyslogLine, f: dict[str, Any]) -> None:
        prog = (sl.program or "").lower()
        msg = sl.message
        ev = f["event"]
        if prog == "sshd" and self._ssh(msg, f, ev):
            pass
        elif prog == "sudo" and (m := _SUDO.match(msg)):
            f["user"] = {"name": m["user"], "effective": {"name": m["target"]}}
            sudo = {"tty": m["tty"], "pwd": m["pwd"], "user": m["target"], "command": m["cmd"]}
            if m["error"]:
                sudo["error"] = m["error"].strip()
            f["system"] = {"auth": {"sudo": sudo}}
            ev.update(category=["process"], type=["info"], action="sudo",
                      outcome="failure" if m["error"] else "success")
        elif prog == "su" and (m := _SU_TO.match(msg)):
            f["user"] = {"name": m["user"], "effective": {"name": m["target"]}}
            ev.update(category=["authentication"], type=["info"], action="su",
                      outcome="failure" if m["failed"] else "success")
        elif (m := _USERADD.match(msg)):
            f["user"] = {"name": m["user"], "id": m["uid"]}
            f["group"] = {"id": m["gid"]}
            f["system"] = {"auth": {"useradd": {"home": m["home"], "shell": m["shell"]}}}
            ev.update(category=["iam"], type=["user", "creation"], action="useradd",
                      outcome="success")
        elif (m := _GROUPADD.match(msg)):
            f["group"] = {"name": m["group"], "id": m["gid"]}
            ev.update(category=["iam"], type=["group", "creation"], action="groupadd",
                      outcome="success")
        elif (m := _PAM_SESSION.match(msg)):
            user: dict[str, Any] = {"name": m["user"]}
            if m["by"]:  # su/sudo: `by` is who asked, `user` whom they became
                user = {"name": m["by"], "effective": {"name": m["user"]}}
            f["user"] = user
            ev.update(category=["session"], type=["start" if m["what"] == "opened" else "end"],
                      action=f"{m['svc']}_session_{m['what']}")
        elif (m := _PAM_AUTHFAIL.match(msg)):
            kv = dict(re.findall(r"(\w+)=(\S*)", m["kv"]))
            if kv.get("user"):
                f["user"] = {"name": kv["user"]}
            if ip := _ip(kv.get("rhost")):
                f["source"] = {"ip": ip}
            ev.update(category=["authentication"], type=["info"],
                      action=f"{m['svc']}_authentication_failure", outcome="failure")
        related: dict[str, list[str]] = {}
        names = [n for n in (f.get("user", {}).get("name"),
                             f.get("user", {}).get("effective", {}).get("name")) if n]
        if names:
            related["user"] = sorted(set(names))
        if ip := f.get("source", {}).get("ip"):
            related["ip"] = [ip]
        if related:
            f["related"] = related

    def _ssh(self, msg: str, f: dict[str, Any], ev: dict[str, Any]) -> bool:
        if m := _SSH_LOGIN.match(msg):
            ssh: dict[str, Any] = {"event": m["event"], "method": m["method"]}
            if m["sig"]:
                ssh["signature"] = m["sig"]
            f["system"] = {"auth": {"ssh": ssh}}
            f["user"] = {"name": m["user"]}
            self._source(f, m["ip"], m["port"])
            ok = m["event"] == "Accepted"
            # as Filebeat's system/auth pipeline sets them
            ev.update(category=["authentication", "session"] if ok else ["authentication"],
                      type=["info"], action="ssh_login", outcome="success" if ok else "failure")
            return True
        if m := _SSH_INVALID.match(msg):
            f["system"] = {"auth": {"ssh": {"event": "Invalid"}}}
            f["user"] = {"name": m["user"]}
            self._source(f, m["ip"], m["port"])
            ev.update(category=["authentication"], type=["info"], action="ssh_login",
                      outcome="failure")
            return True
        if m := _SSH_NOID.match(msg):
            if ip := _ip(m["ip"]):
                f["system"] = {"auth": {"ssh": {"dropped_ip": ip}}}
            ev.update(category=["network"], type=["connection", "denied"],
                      action="ssh_dropped_connection")
            return True
        return False

    @staticmethod
    def _source(f: dict[str, Any], host: str, port: str | None) -> None:
        src: dict[str, Any] = {}
        ip = _ip(host)
        if ip:
            src["ip"] = ip
        else:
            src["domain"] = host
        if port and 0 <= int(port) <= 65535:
            src["port"] = int(port)
        f["source"] = src
