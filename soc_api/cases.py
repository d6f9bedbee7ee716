"""Cases (网络安全事件): alerts grouped into one incident that is classified, worked on
and closed, kept in the store's `state` family (`govsoc.state.case`) so every API worker
sees the same case at once.

Classification per GB/T 20986-2023《信息安全技术 网络安全事件分类分级指南》: its ten
top-level categories (`CATEGORIES`; 2023 went from 7 to 10) and four levels, 特别重大 (I),
重大 (II), 较大 (III), 一般 (IV). Our category keys are our own slugs, not the codes of
the standard's appendix B (we could not read that appendix).

Reporting time limits follow from the level: 《国家网络安全事件报告管理办法》 (CAC, in force
2025-11-01), art. 4: 较大 and above are reported; an operator of critical information
infrastructure within 1 h to its protection department and the public security organs,
which pass 重大/特别重大 on to the national CAC and the Ministry of Public Security within
30 min; central and state organs within 2 h to their own cyberspace office (then 1 h
onward); other operators within 4 h to the provincial CAC (the onward step for those is
assumed to be 1 h like the central organs'). A government cloud is usually critical
information infrastructure, so `cii` is the default profile (`cases.reporting_profile`);
`cases.report_deadlines` replaces the whole table. The clock starts when the case is
opened (when the SOC knew); 一般 events need no external report by default.

Concurrency: every change is read-modify-write of the case document guarded by the
store's compare-and-set (`write_if`); a writer that loses re-reads and re-applies
its change, so two clients never overwrite each other's change.

Department isolation: a case's departments are the union of its alerts' departments; a
principal sees a case only if it may see every one of them, and cannot link an alert
of a department it does not hold.
"""

from __future__ import annotations

import ipaddress
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from soc_api import tenancy
from soc_api.identity import Principal
from soc_core import ecs
from soc_core import query as q
from soc_core.store import EventStore, Selection, VersionConflict, parse_duration

DATASET = "govsoc.state.case"
STATUSES = ("open", "acknowledged", "closed")
# GB/T 20986-2023 §5.2, the ten categories (our key -> the standard's name)
CATEGORIES = {
    "malware": "恶意程序事件",
    "cyber_attack": "网络攻击事件",
    "data_security": "数据安全事件",
    "content_security": "信息内容安全事件",
    "equipment_failure": "设备设施故障事件",
    "violation": "违规操作事件",
    "security_hazard": "安全隐患事件",
    "abnormal_behavior": "异常行为事件",
    "force_majeure": "不可抗力事件",
    "other": "其他事件",
}
LEVELS = {"I": "特别重大", "II": "重大", "III": "较大", "IV": "一般"}
_LEVEL_NAMES = {v: k for k, v in LEVELS.items()} | {v + "事件": k for k, v in LEVELS.items()}
_CII, _CAC_MPS = "保护工作部门、公安机关", "国家网信部门、国务院公安部门"
# profile -> level -> [(to whom, within how long of the case opening)]
REPORTING_PROFILES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "cii": {"I": [(_CII, "1h"), (_CAC_MPS, "90m")], "II": [(_CII, "1h"), (_CAC_MPS, "90m")],
            "III": [(_CII, "1h")], "IV": []},
    "central": {"I": [("本部门网信工作机构", "2h"), ("国家网信部门", "3h")],
                "II": [("本部门网信工作机构", "2h"), ("国家网信部门", "3h")],
                "III": [("本部门网信工作机构", "2h")], "IV": []},
    "other": {"I": [("属地省级网信部门", "4h"), ("国家网信部门", "5h")],
              "II": [("属地省级网信部门", "4h"), ("国家网信部门", "5h")],
              "III": [("属地省级网信部门", "4h")], "IV": []},
}
TASK_STATUSES = ("open", "done")
OBSERVABLE_TYPES = ("ip", "domain", "url", "email", "user", "host", "file", "process",
                    "md5", "sha1", "sha256", "sm3")
_HEX_LEN = {"md5": 32, "sha1": 40, "sha256": 64, "sm3": 64}
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                     r"[a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}$")
_DEPT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CASE_ID = re.compile(r"^case-[0-9a-f]{16}$")
MAX_ALERTS, MAX_ITEMS, MAX_TEXT = 1000, 500, 4000
RETRIES = 30


class CaseError(ValueError):
    """A request about cases that cannot be done; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Change:
    """What one update did: the timeline entries it adds and a summary for the audit."""

    action: str
    detail: str


def now_iso(clock: Callable[[], float]) -> str:
    return ecs.format_time(datetime.fromtimestamp(clock(), UTC))


def _text(value: Any, what: str, limit: int = MAX_TEXT, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CaseError(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise CaseError(f"{what} is longer than {limit} characters")
    return value.strip()


def level_of(value: Any) -> str | None:
    """'I'..'IV', or the level's Chinese name -> 'I'..'IV'; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip()
        if v.upper() in LEVELS:
            return v.upper()
        if v in _LEVEL_NAMES:
            return _LEVEL_NAMES[v]
    raise CaseError(f"level must be one of {', '.join(LEVELS)} "
                    f"({', '.join(LEVELS.values())}), got {value!r}")


def category_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value in CATEGORIES:
            return value
        for key, name in CATEGORIES.items():
            if value == name:
                return key
    raise CaseError(f"category must be one of {', '.join(CATEGORIES)} (GB/T 20986-2023), "
                    f"got {value!r}")


def observable(kind: Any, value: Any) -> tuple[str, str]:
    """A typed observable, checked and normalised (IPs compressed, domains and hashes in
    lower case), so the same indicator is never listed twice."""
    if kind not in OBSERVABLE_TYPES:
        raise CaseError(f"observable type must be one of {', '.join(OBSERVABLE_TYPES)}, "
                        f"got {kind!r}")
    v = _text(value, "observable value", 2048, required=True)
    assert v is not None
    if kind == "ip":
        try:
            return kind, str(ipaddress.ip_address(v))
        except ValueError:
            raise CaseError(f"not an IP address: {v[:100]!r}") from None
    if kind == "domain":
        d = v.lower().rstrip(".")
        if not _DOMAIN.match(d):
            raise CaseError(f"not a domain name: {v[:100]!r}")
        return kind, d
    if kind in _HEX_LEN:
        h = v.lower()
        if len(h) != _HEX_LEN[kind] or not all(c in "0123456789abcdef" for c in h):
            raise CaseError(f"a {kind} hash is {_HEX_LEN[kind]} hex digits, got {v[:100]!r}")
        return kind, h
    if kind == "url" and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", v):
        raise CaseError(f"not a URL: {v[:100]!r}")
    if kind == "email" and not _EMAIL.match(v):
        raise CaseError(f"not an e-mail address: {v[:100]!r}")
    return kind, v


# how a report was made (the 办法 asks for a written report; a phone call first is usual)
REPORT_METHODS = ("platform", "document", "email", "phone", "fax", "in_person")


def reporting_table(cfg: Any) -> dict[str, list[tuple[str, str]]]:
    """The reporting steps by level from the configuration (see the module's text)."""
    get = cfg.get if cfg is not None else (lambda key, default=None: default)
    custom = get("cases.report_deadlines", None)
    if custom:
        table = {lvl: [(str(to), str(within)) for to, within in custom.get(lvl, [])]
                 for lvl in LEVELS}
    else:
        profile = str(get("cases.reporting_profile", "cii"))
        if profile not in REPORTING_PROFILES:
            raise CaseError(f"cases.reporting_profile {profile!r}: use "
                            f"{', '.join(REPORTING_PROFILES)}", 500)
        table = REPORTING_PROFILES[profile]
    for steps in table.values():
        for _, within in steps:
            parse_duration(within)  # a bad duration is a configuration error, said at once
    return table


def deadlines(level: str | None, opened: str, table: dict[str, list[tuple[str, str]]],
              reported: dict[str, str] | None = None, now: float | None = None
              ) -> list[dict[str, Any]]:
    """The reports a case of this level owes, each with its due time and whether it was
    made (`reported`: recipient -> when) or is overdue."""
    if level is None:
        return []
    start = ecs.parse_time(opened)
    out = []
    for to, within in table.get(level, []):
        due = start + parse_duration(within)
        made = (reported or {}).get(to)
        late = (ecs.parse_time(made) > due) if made else (
            now is not None and now > due.timestamp())
        out.append({"to": to, "within": within, "due": ecs.format_time(due),
                    "reported_at": made, "overdue": late})
    return out


def case_departments(case: dict[str, Any]) -> list[str]:
    return list(case.get("govsoc", {}).get("departments") or [])


def may_see(principal: Principal, departments: Iterable[str]) -> bool:
    """Every one of the departments is the principal's (a case with none: only `*`)."""
    if principal.all_departments:
        return True
    depts = set(departments)
    return bool(depts) and depts <= set(principal.departments)


class Cases:
    """The case operations; `clock` gives the time (tests pass a fixed one)."""

    def __init__(self, store: EventStore, cfg: Any = None, *, departments: Iterable[str] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cfg = cfg
        self.known_departments = sorted(set(departments))
        self.clock = clock
        self.table = reporting_table(cfg)
        self.conflicts = 0  # writes that lost a race and were applied again

    # -- reading ---------------------------------------------------------------------------
    def _load(self, principal: Principal, case_id: str) -> dict[str, Any]:
        return self._load_versioned(principal, case_id)[0]

    def _load_versioned(self, principal: Principal, case_id: str) -> tuple[dict[str, Any], Any]:
        doc, token = (self.store.read_versioned("state", case_id) if CASE_ID.match(case_id or "")
                      else (None, None))
        if doc is None or doc.get("event", {}).get("dataset") != DATASET \
                or not may_see(principal, case_departments(doc)):
            raise CaseError(f"no such case {case_id[:80]!r}", 404)
        return doc, token

    def get(self, principal: Principal, case_id: str) -> dict[str, Any]:
        return self.view(self._load(principal, case_id))

    def view(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The case as the API shows it: its fields, departments and reporting deadlines."""
        case = dict(doc["govsoc"]["case"])
        case["id"] = doc["event"]["id"]
        case["departments"] = case_departments(doc)
        case["version"] = doc["govsoc"]["version"]
        case["category_name"] = CATEGORIES.get(case.get("category") or "")
        case["level_name"] = LEVELS.get(case.get("level") or "")
        reported: dict[str, str] = {}
        for r in case.get("reports", []):
            reported.setdefault(r["to"], r["at"])  # the first report is the one in time
        case["reporting"] = deadlines(case.get("level"), case["created"], self.table,
                                      reported, self.clock())
        return case

    def scope(self, principal: Principal) -> q.Node | None:
        """The cases the principal may see, as a store query: one of its departments and
        none of the configured departments it does not hold."""
        if principal.all_departments:
            return None
        mine = set(principal.departments)
        if not mine:
            return q.Not(q.Exists("event.id"))
        node: q.Node = q.Or(tuple(q.Term("govsoc.departments", d, True) for d in sorted(mine)))
        others = [d for d in self.known_departments if d not in mine]
        if others:
            node = q.And((node, q.Not(q.Or(tuple(q.Term("govsoc.departments", d, True)
                                                  for d in others)))))
        return node

    def selection(self, principal: Principal, *, status: str | None = None,
                  level: str | None = None, category: str | None = None,
                  assignee: str | None = None, department: str | None = None,
                  alert: str | None = None, text: str | None = None,
                  start: str | None = None, end: str | None = None) -> Selection:
        filters: dict[str, Any] = {}
        if status is not None:
            if status not in STATUSES:
                raise CaseError(f"status must be one of {', '.join(STATUSES)}")
            filters["govsoc.case.status"] = status
        if level is not None:
            filters["govsoc.case.level"] = level_of(level)
        if category is not None:
            filters["govsoc.case.category"] = category_of(category)
        if assignee is not None:
            filters["govsoc.case.assignee"] = assignee
        if department is not None:
            filters["govsoc.departments"] = department
        if alert is not None:
            filters["govsoc.case.alert_ids"] = alert
        try:
            user = q.parse(text) if text else None
            scoped = self.scope(principal)
            query = scoped if user is None else (user if scoped is None
                                                 else q.And((scoped, user)))
            return Selection(family="state", dataset=DATASET, filters=filters or None,
                             query=query, start=start, end=end)
        except (q.QueryError, ValueError, RecursionError) as exc:
            msg = "query nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise CaseError(msg.splitlines()[0][:300]) from None

    def list(self, principal: Principal, sel: Selection, *, size: int = 50,
             after: list[Any] | None = None) -> tuple[list[dict[str, Any]], int, Any]:
        page = self.store.search(sel, size=size, after=after, descending=True)
        # the timeline has its own route: a list stays small
        items = [{k: v for k, v in self.view(d).items() if k != "timeline"}
                 for d in page.hits if may_see(principal, case_departments(d))]
        return items, self.store.count(sel), page.cursor

    # -- changing --------------------------------------------------------------------------
    def _update(self, principal: Principal, case_id: str,
                change: Callable[[dict[str, Any], str], list[Change]]) -> dict[str, Any]:
        """Read, apply `change(case, now)`, write back if nobody wrote in between; else
        re-read and apply again. The timeline gets the entries the change returns."""
        for attempt in range(RETRIES):
            current, token = self._load_versioned(principal, case_id)
            new = _copy(current)
            case = new["govsoc"]["case"]
            now = now_iso(self.clock)
            entries = change(case, now)
            if not entries:
                return current  # nothing to do (e.g. the alert was linked already)
            for e in entries:
                case["timeline"].append({"at": now, "by": principal.name,
                                         "action": e.action, "detail": e.detail[:500]})
            case["updated"] = now
            _set_departments(new)
            if not may_see(principal, case_departments(new)):
                raise CaseError("that would put the case in a department you do not hold",
                                403)
            new["govsoc"]["version"] = current["govsoc"]["version"] + 1
            try:
                self.store.write_if(new, token, refresh=True)
            except VersionConflict:
                self.conflicts += 1
                time.sleep(random.uniform(0.002, 0.02) * min(attempt + 1, 5))
                continue
            return new
        raise CaseError("the case is being changed by others right now; try again", 409)

    def _alerts(self, principal: Principal, ids: Any) -> list[dict[str, Any]]:
        if not isinstance(ids, list) or not ids or len(ids) > MAX_ALERTS or \
                not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids):
            raise CaseError(f"alert ids: a list of 1 to {MAX_ALERTS} ids")
        out = []
        for aid in dict.fromkeys(ids):
            doc = self.store.get("alerts", aid)
            if doc is None or not tenancy.visible(principal, doc):
                raise CaseError(f"no such alert {aid[:80]!r}", 404)
            if not may_see(principal, tenancy.departments_of(doc)):
                raise CaseError(f"alert {aid[:80]!r} involves a department you do not hold",
                                403)
            out.append(doc)
        return out

    def _owner(self, alert_id: str, but: str) -> str | None:
        """The case (other than `but`, not merged away) an alert is linked to already."""
        sel = Selection(family="state", dataset=DATASET,
                        filters={"govsoc.case.alert_ids": alert_id})
        for d in self.store.search(sel, size=5).hits:
            if d["event"]["id"] != but and not d["govsoc"]["case"].get("merged_into"):
                return d["event"]["id"]
        return None

    def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        title = _text(body.get("title"), "title", 300, required=True)
        alert_ids = body.get("alerts") or []
        alerts = self._alerts(principal, alert_ids) if alert_ids else []
        for a in alerts:
            owner = self._owner(a["event"]["id"], "")
            if owner:
                raise CaseError(f"alert {a['event']['id']!r} is in case {owner} already", 409)
        department = body.get("department")
        # the case keeps the departments it was opened for, even when its alerts go
        extra = sorted({d for a in alerts for d in tenancy.departments_of(a)})
        if not alerts and department is None and not principal.all_departments:
            raise CaseError("a case without alerts needs a department")
        if department is not None:
            if not isinstance(department, str) or not _DEPT.match(department) or \
                    not may_see(principal, [department]) or \
                    (self.known_departments and department not in self.known_departments):
                raise CaseError(f"unknown department {str(department)[:64]!r}", 400)
            extra = sorted(set(extra) | {department})
        now = now_iso(self.clock)
        case_id = "case-" + secrets.token_hex(8)
        case: dict[str, Any] = {
            "title": title, "description": _text(body.get("description"), "description"),
            "status": "open", "category": category_of(body.get("category")),
            "level": level_of(body.get("level")), "assignee": None,
            "created": now, "created_by": principal.name, "updated": now,
            "acknowledged_at": None, "closed_at": None, "closed_by": None,
            "resolution": None, "merged_into": None, "merged_from": [],
            "extra_departments": extra, "alerts": [], "alert_ids": [], "tasks": [],
            "observables": [], "reports": [], "timeline": [
                {"at": now, "by": principal.name, "action": "created", "detail": title}]}
        for a in alerts:
            _link(case, a, now, principal.name)
            case["timeline"].append({"at": now, "by": principal.name, "action": "alert.linked",
                                     "detail": a["event"]["id"]})
        assignee = body.get("assignee")
        if assignee is not None:
            case["assignee"] = _text(assignee, "assignee", 64)
            case["acknowledged_at"] = now
        doc = {"@timestamp": now, "message": title,
               "event": {"kind": "state", "dataset": DATASET, "id": case_id},
               "govsoc": {"version": 1, "case": case}}
        _set_departments(doc)
        if not may_see(principal, case_departments(doc)):
            raise CaseError("that would put the case in a department you do not hold", 403)
        self.store.write_if(doc, None, refresh=True)
        return doc

    def patch(self, principal: Principal, case_id: str, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"title", "description", "category", "level", "assignee", "status",
                   "reported"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise CaseError(f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(allowed))}")
        if not body:
            raise CaseError("nothing to change")
        values: dict[str, Any] = {}
        if "title" in body:
            values["title"] = _text(body["title"], "title", 300, required=True)
        if "description" in body:
            values["description"] = _text(body["description"], "description")
        if "category" in body:
            values["category"] = category_of(body["category"])
        if "level" in body:
            values["level"] = level_of(body["level"])
        if "assignee" in body:
            values["assignee"] = _text(body["assignee"], "assignee", 64)
        if "status" in body:
            if body["status"] not in ("open", "acknowledged"):
                raise CaseError("status: open or acknowledged (close with POST "
                                "/cases/{id}/close)")
            values["status"] = body["status"]
        report = None
        if "reported" in body:
            r = body["reported"]
            if not isinstance(r, dict) or not isinstance(r.get("to"), str):
                raise CaseError('reported: {"to": recipient, "at": ISO time (default now)}')
            at = r.get("at")
            try:
                at = ecs.format_time(ecs.parse_time(at)) if at is not None else None
            except (ecs.EventError, ValueError):
                raise CaseError(f"reported.at: bad time {str(at)[:40]!r}") from None
            how = r.get("how")
            if how is not None and how not in REPORT_METHODS:
                raise CaseError(f"reported.how: one of {', '.join(REPORT_METHODS)}")
            unknown_keys = sorted(set(r) - {"to", "at", "how", "ref"})
            if unknown_keys:
                raise CaseError(f"reported: unknown field {unknown_keys[0]!r}")
            report = (_text(r["to"], "reported.to", 200, required=True), at, how,
                      _text(r.get("ref"), "reported.ref", 200) if r.get("ref") else None)

        def change(case: dict[str, Any], now: str) -> list[Change]:
            out = []
            for key, value in values.items():
                if case.get(key) == value:
                    continue
                if key == "status" and value == "open" and case["status"] == "closed":
                    case["closed_at"] = case["closed_by"] = None
                    out.append(Change("reopened", f"resolution was {case['resolution']}"))
                    case["resolution"] = None
                elif key == "status" and case["status"] == "closed":
                    raise CaseError("a closed case is reopened with status open first", 409)
                else:
                    out.append(Change(f"{key}.changed", f"{case.get(key)} -> {value}"))
                case[key] = value
                if key in ("status", "assignee") and value not in (None, "open") and \
                        not case.get("acknowledged_at"):
                    case["acknowledged_at"] = now
            if report is not None:
                made = {"to": report[0], "at": report[1] or now, "by": principal.name}
                if report[2]:
                    made["how"] = report[2]
                if report[3]:
                    made["ref"] = report[3]
                case["reports"].append(made)
                out.append(Change("reported", " · ".join(v for v in (report[0], report[2],
                                                                     report[3]) if v)))
            return out

        return self._update(principal, case_id, change)

    def link(self, principal: Principal, case_id: str, ids: Any) -> dict[str, Any]:
        alerts = self._alerts(principal, ids)
        for a in alerts:
            owner = self._owner(a["event"]["id"], case_id)
            if owner:
                raise CaseError(f"alert {a['event']['id']!r} is in case {owner} already", 409)

        def change(case: dict[str, Any], now: str) -> list[Change]:
            if len(case["alert_ids"]) + len(alerts) > MAX_ALERTS:
                raise CaseError(f"a case holds at most {MAX_ALERTS} alerts", 409)
            return [Change("alert.linked", a["event"]["id"]) for a in alerts
                    if _link(case, a, now, principal.name)]

        return self._update(principal, case_id, change)

    def unlink(self, principal: Principal, case_id: str, alert_id: str) -> dict[str, Any]:
        def change(case: dict[str, Any], now: str) -> list[Change]:
            if alert_id not in case["alert_ids"]:
                raise CaseError(f"alert {alert_id[:80]!r} is not in this case", 404)
            case["alert_ids"].remove(alert_id)
            case["alerts"] = [a for a in case["alerts"] if a["id"] != alert_id]
            return [Change("alert.unlinked", alert_id)]

        return self._update(principal, case_id, change)

    def add_task(self, principal: Principal, case_id: str, body: dict[str, Any]
                 ) -> tuple[dict[str, Any], str]:
        title = _text(body.get("title"), "task title", 300, required=True)
        assignee = _text(body.get("assignee"), "assignee", 64)
        task_id = "task-" + secrets.token_hex(4)

        def change(case: dict[str, Any], now: str) -> list[Change]:
            if len(case["tasks"]) >= MAX_ITEMS:
                raise CaseError(f"a case holds at most {MAX_ITEMS} tasks", 409)
            case["tasks"].append({"id": task_id, "title": title, "status": "open",
                                  "assignee": assignee, "created": now,
                                  "created_by": principal.name, "done_at": None})
            return [Change("task.added", f"{task_id}: {title}")]

        return self._update(principal, case_id, change), task_id

    def update_task(self, principal: Principal, case_id: str, task_id: str,
                    body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - {"title", "status", "assignee"})
        if unknown or not body:
            raise CaseError("task fields: title, status (open|done), assignee")
        if "status" in body and body["status"] not in TASK_STATUSES:
            raise CaseError(f"task status must be one of {', '.join(TASK_STATUSES)}")
        values = {k: (_text(v, f"task {k}", 300, required=(k != "assignee"))
                      if k != "status" else v) for k, v in body.items()}

        def change(case: dict[str, Any], now: str) -> list[Change]:
            task = next((t for t in case["tasks"] if t["id"] == task_id), None)
            if task is None:
                raise CaseError(f"no such task {task_id[:40]!r}", 404)
            out = []
            for key, value in values.items():
                if task.get(key) != value:
                    out.append(Change(f"task.{key}", f"{task_id}: {task.get(key)} -> {value}"))
                    task[key] = value
                    if key == "status":
                        task["done_at"] = now if value == "done" else None
            return out

        return self._update(principal, case_id, change)

    def add_observables(self, principal: Principal, case_id: str, body: dict[str, Any]
                        ) -> dict[str, Any]:
        items = body.get("items", [body] if "type" in body else None)
        if not isinstance(items, list) or not items or len(items) > MAX_ITEMS or \
                not all(isinstance(i, dict) for i in items):
            raise CaseError('observables: {"type", "value", "note"?} or {"items": [...]}')
        parsed = []
        for i in items:
            kind, value = observable(i.get("type"), i.get("value"))
            parsed.append((kind, value, _text(i.get("note"), "note", 1000)))

        def change(case: dict[str, Any], now: str) -> list[Change]:
            have = {(o["type"], o["value"]) for o in case["observables"]}
            out = []
            for kind, value, note in parsed:
                if (kind, value) in have:
                    continue
                if len(case["observables"]) >= MAX_ITEMS:
                    raise CaseError(f"a case holds at most {MAX_ITEMS} observables", 409)
                have.add((kind, value))
                case["observables"].append({"type": kind, "value": value, "note": note,
                                            "added": now, "by": principal.name})
                out.append(Change("observable.added", f"{kind}: {value}"))
            return out

        return self._update(principal, case_id, change)

    def close(self, principal: Principal, case_id: str, resolution: Any) -> dict[str, Any]:
        text = _text(resolution, "resolution", 2000, required=True)

        def change(case: dict[str, Any], now: str) -> list[Change]:
            if case["status"] == "closed":
                raise CaseError("the case is closed already", 409)
            _close(case, now, principal.name, text)
            return [Change("closed", text or "")]

        return self._update(principal, case_id, change)

    def merge(self, principal: Principal, case_id: str, sources: Any) -> dict[str, Any]:
        """Move the sources' alerts, tasks, observables, reports and timelines into the
        case, then close each source as merged. The target is written first: a crash in
        between leaves a source open beside the merged case, never a lost item."""
        if not isinstance(sources, list) or not sources or len(sources) > 50 or \
                not all(isinstance(s, str) for s in sources) or case_id in sources:
            raise CaseError('merge: {"from": [1 to 50 other case ids]}')
        docs = [self._load(principal, s) for s in dict.fromkeys(sources)]
        for d in docs:
            if d["govsoc"]["case"].get("merged_into"):
                raise CaseError(f"case {d['event']['id']} was merged already", 409)

        def change(case: dict[str, Any], now: str) -> list[Change]:
            if case["status"] == "closed":
                raise CaseError("reopen the case before merging into it", 409)
            out = []
            for d in docs:
                src, sid = d["govsoc"]["case"], d["event"]["id"]
                if sid in case["merged_from"]:
                    continue
                for a in src["alerts"]:
                    if a["id"] not in case["alert_ids"]:
                        case["alert_ids"].append(a["id"])
                        case["alerts"].append(a)
                have = {(o["type"], o["value"]) for o in case["observables"]}
                case["observables"] += [o for o in src["observables"]
                                        if (o["type"], o["value"]) not in have]
                case["tasks"] += src["tasks"]
                case["reports"] += src["reports"]
                case["extra_departments"] = sorted(set(case["extra_departments"]) |
                                                   set(src.get("extra_departments", [])))
                case["timeline"] += [{**e, "detail": f"[{sid}] {e['detail']}"}
                                     for e in src["timeline"]]
                case["timeline"].sort(key=lambda e: e["at"])
                case["merged_from"].append(sid)
                if src["created"] < case["created"]:
                    case["created"] = src["created"]  # the incident was known since then
                out.append(Change("merged", sid))
            return out

        merged = self._update(principal, case_id, change)
        for d in docs:
            def close_source(case: dict[str, Any], now: str) -> list[Change]:
                if case.get("merged_into"):
                    return []
                case["merged_into"] = case_id
                if case["status"] != "closed":
                    _close(case, now, principal.name, f"merged into {case_id}")
                return [Change("merged.into", case_id)]

            self._update(principal, d["event"]["id"], close_source)
        return merged

    # -- timeline and metrics --------------------------------------------------------------
    def timeline(self, principal: Principal, case_id: str) -> list[dict[str, Any]]:
        """Every change, and each linked alert's first and last seen, in time order."""
        doc = self._load(principal, case_id)
        case = doc["govsoc"]["case"]
        out = [{**e, "kind": "change"} for e in case["timeline"]]
        for link in case["alerts"]:
            alert = self.store.get("alerts", link["id"])
            info = ((alert or {}).get("govsoc") or {}).get("alert") or {}
            first = info.get("first_seen") or link.get("first_seen")
            last = info.get("last_seen") or link.get("last_seen")
            rule = ((alert or {}).get("rule") or {}).get("name") or link.get("rule")
            for at, what in ((first, "alert.first_seen"), (last, "alert.last_seen")):
                if at:
                    out.append({"at": at, "by": None, "action": what,
                                "detail": f"{link['id']}: {rule}", "kind": "alert",
                                "alert_id": link["id"]})
        order = {"alert.first_seen": 0, "change": 1, "alert.last_seen": 2}
        out.sort(key=lambda e: (e["at"], order.get(e["action"], order["change"])))
        return out

    def metrics(self, principal: Principal, sel: Selection) -> dict[str, Any]:
        """MTTA (opened -> first acknowledgement or assignment) and MTTR (opened -> closed)
        in seconds, per department and overall; cases merged into others are left out
        (their alerts are counted in the case they were merged into)."""
        groups: dict[str, dict[str, list[float]]] = {}
        for d in self.store.scan(sel, page_size=1000):
            if not may_see(principal, case_departments(d)):
                continue
            case = d["govsoc"]["case"]
            if case.get("merged_into"):
                continue
            opened = ecs.to_millis(case["created"])
            ack = case.get("acknowledged_at")
            closed = case.get("closed_at")
            for key in ["*", *(case_departments(d) or ["-"])]:
                g = groups.setdefault(key, {"tta": [], "ttr": [], "n": []})
                g["n"].append(1)
                if ack:
                    g["tta"].append((ecs.to_millis(ack) - opened) / 1000)
                if closed:
                    g["ttr"].append((ecs.to_millis(closed) - opened) / 1000)

        def summary(g: dict[str, list[float]]) -> dict[str, Any]:
            return {"cases": len(g["n"]), "acknowledged": len(g["tta"]),
                    "closed": len(g["ttr"]),
                    "mtta_seconds": sum(g["tta"]) / len(g["tta"]) if g["tta"] else None,
                    "mttr_seconds": sum(g["ttr"]) / len(g["ttr"]) if g["ttr"] else None}

        overall = groups.pop("*", {"tta": [], "ttr": [], "n": []})
        return {"overall": summary(overall),
                "departments": {k: summary(v) for k, v in sorted(groups.items())}}


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(doc))


def _link(case: dict[str, Any], alert: dict[str, Any], now: str, by: str) -> bool:
    aid = alert["event"]["id"]
    if aid in case["alert_ids"]:
        return False
    info = (alert.get("govsoc") or {}).get("alert") or {}
    case["alert_ids"].append(aid)
    case["alerts"].append({
        "id": aid, "rule": (alert.get("rule") or {}).get("name"),
        "first_seen": info.get("first_seen") or alert.get("@timestamp"),
        "last_seen": info.get("last_seen") or alert.get("@timestamp"),
        "departments": sorted(tenancy.departments_of(alert)), "linked_at": now,
        "linked_by": by})
    return True


def _close(case: dict[str, Any], now: str, by: str, resolution: str | None) -> None:
    case.update(status="closed", closed_at=now, closed_by=by, resolution=resolution)
    if not case.get("acknowledged_at"):
        case["acknowledged_at"] = now  # closing is the latest possible response


def _set_departments(doc: dict[str, Any]) -> None:
    """The case's departments: its alerts' and the one it was opened for."""
    case = doc["govsoc"]["case"]
    depts = sorted({d for a in case["alerts"] for d in a["departments"]} |
                   set(case.get("extra_departments") or []))
    doc["govsoc"]["departments"] = depts
    if len(depts) == 1:
        doc["organization"] = {"id": depts[0]}
    else:
        doc.pop("organization", None)
