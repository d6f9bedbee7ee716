"""The report kinds: each builder reads the store (and the config) and returns a `Document`.

    assets      asset register, by department and OS
    exposure    plaintext management protocols, high-risk ports, management/database ports
                on every address, from the listening sockets the sweeps and probes saw
    idle        hosts without inbound sessions and with low CPU over N days
    dr          DR drills (`govsoc.dr_drill`): RPO/RTO, verification, encryption
    compliance  the 等保 level-3 and 密评 self-assessment (`cloud_inventory.compliance`)
    weekly      the SOC week: alerts, MTTA/MTTR, top rules, daily trend
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from cloud_inventory import compliance
from cloud_inventory.reports import charts
from cloud_inventory.reports.document import Document, Section, Table
from cloud_inventory.reports.i18n import t
from soc_core import ecs
from soc_core.config import viewer_zone
from soc_core.store import Selection

KINDS = ("assets", "exposure", "idle", "dr", "compliance", "weekly")
REPORT_KINDS = KINDS
MAX_ROWS = 5000  # rows a table shows; the full list is `govsoc inventory list`
EVIDENCE_LINES = 12  # evidence items a control shows in a report


class Ctx:
    def __init__(self, store: Any, cfg: Any, lang: str, now: datetime | None) -> None:
        self.store, self.cfg, self.lang = store, cfg, lang
        self.now = now or datetime.now(UTC)
        self.zone = viewer_zone(cfg)

    def t(self, key: str) -> str:
        return t(key, self.lang)

    def when(self, value: Any) -> str:
        if not value:
            return ""
        try:
            return ecs.parse_time(value).astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
        except (ecs.EventError, ValueError):
            return str(value)

    def doc(self, kind: str, period: str = "") -> Document:
        return Document(kind=kind, lang=self.lang, title=self.t(kind), generated=self.now,
                        period=period)

    def period(self, days: int) -> str:
        start = (self.now - timedelta(days=days)).astimezone(self.zone)
        return f"{start:%Y-%m-%d %H:%M} — {self.now.astimezone(self.zone):%Y-%m-%d %H:%M}"


def _assets(store: Any) -> list[dict[str, Any]]:
    return [d for d in store.scan(Selection(family="assets"), page_size=2000)
            if _a(d).get("state", "active") != "gone"]


def _a(doc: dict[str, Any]) -> dict[str, Any]:
    return (doc.get("govsoc") or {}).get("asset") or {}


def _department(doc: dict[str, Any], c: Ctx) -> str:
    org = doc.get("organization") or {}
    return str(org.get("name") or org.get("id") or c.t("unassigned"))


def _os(doc: dict[str, Any]) -> str:
    """Name and version ("Debian GNU/Linux 12"): one line in a register cell."""
    osd = (doc.get("host") or {}).get("os") or {}
    short = " ".join(str(osd[k]) for k in ("name", "version") if osd.get(k))
    return short or str(osd.get("full") or "")


def _ips(doc: dict[str, Any]) -> list[str]:
    ip = (doc.get("host") or {}).get("ip") or []
    return [str(x) for x in (ip if isinstance(ip, list) else [ip])]


# -- builders ------------------------------------------------------------------------------
def assets_report(c: Ctx) -> Document:
    docs = sorted(_assets(c.store), key=compliance.host_name)
    d = c.doc("assets")
    by_dept = Counter(_department(x, c) for x in docs)
    by_os = Counter(str(((x.get("host") or {}).get("os") or {}).get("full")
                        or ((x.get("host") or {}).get("os") or {}).get("name") or "?")
                    for x in docs)
    d.figures = [(c.t("total_assets"), str(len(docs))),
                 (c.t("department"), str(len(by_dept)))]
    d.sections.append(Section(c.t("by_department"),
                              chart=charts.bar_chart(by_dept.most_common())))
    d.sections.append(Section(c.t("by_os"), chart=charts.bar_chart(by_os.most_common(),
                                                                     colour=charts.PALETTE[1])))
    # by owner department (in the chart's order, none last), then one table per 等保 level
    # and importance (highest first), named in its heading (a PDF bookmark) and atop each
    # page its rows run onto. Three cells a row: the PDF engine's cost is per cell, and a
    # register runs to thousands of rows (five cells a row took 1.5x as long; a line break
    # inside a cell costs more than a cell)
    order = {dept: (dept == c.t("unassigned"), i)
             for i, (dept, _) in enumerate(by_dept.most_common())}
    shown = sorted(docs, key=lambda x: (order[_department(x, c)], _rank(x)))[:MAX_ROWS]
    columns = [f"{c.t('name')} ({c.t('address')})", c.t("os"), c.t("ports")]
    d.sections.append(Section(c.t("register"), text=[] if len(shown) == len(docs) else [
        c.t("register_cut").format(shown=len(shown), total=len(docs))]))
    for dept, members in groupby(shown, key=lambda x: _department(x, c)):
        d.sections.append(Section(f"{dept} ({by_dept[dept]})", level=3, running=True))
        for _, group in groupby(members, key=_rank):
            group = list(group)
            d.sections.append(Section(
                f"{_level_text(_a(group[0]), c)} ({len(group)})", level=4, running=True,
                table=Table(columns, [_register_row(x) for x in group], widths=(40, 28, 32))))
    return d


IMPORTANCE = ("high", "medium", "low")


def _level(a: dict[str, Any]) -> int | None:
    level = a.get("djcp_level")
    return int(level) if isinstance(level, int) or str(level).isdigit() else None


def _rank(x: dict[str, Any]) -> tuple[int, int, str]:
    """Higher 等保 levels first, then higher importance; other values, then unset, last."""
    a = _a(x)
    level, imp = _level(a), a.get("importance")
    return (-level if level is not None else 1,
            IMPORTANCE.index(imp) if imp in IMPORTANCE else len(IMPORTANCE) + (not imp),
            str(imp or ""))


def _level_text(a: dict[str, Any], c: Ctx) -> str:
    level, imp = _level(a), a.get("importance")
    return " · ".join([
        c.t("djcp_n").format(n=level) if level is not None else c.t("djcp_unrated"),
        f"{c.t('importance')} "
        f"{c.t('imp_' + imp) if imp in IMPORTANCE else str(imp or c.t('unset'))}"])


def _register_row(x: dict[str, Any]) -> list[str]:
    a = _a(x)
    ports = a.get("listening_ports") or sorted({s.get("port") for s in a.get("listening")
                                                or [] if isinstance(s, dict)})
    return [f"{compliance.host_name(x)} ({_first(_ips(x), 3)})", _os(x),
            _first([str(p) for p in ports], 12)]


def _first(items: list[str], n: int) -> str:
    """The first `n` of a list, and how many more (all of them: `govsoc inventory show`)."""
    more = f" +{len(items) - n}" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def exposure_report(c: Ctx) -> Document:
    """The inventory's exposure findings (`cloud_inventory.exposure`): zones reaching what
    they should not, plaintext management, HTTP admin consoles, internet-facing services."""
    from cloud_inventory.config import inventory_config
    from cloud_inventory.exposure import exposure_surface

    days = int(c.cfg.get("reports.exposure_days", 7))
    findings = exposure_surface(c.store, since=c.now - timedelta(days=days), until=c.now,
                        conf=inventory_config(c.cfg))
    d = c.doc("exposure", c.period(days))
    hosts = {f.get("host") or f["ip"] for f in findings}
    d.figures = [(c.t("findings"), str(len(findings))), (c.t("host"), str(len(hosts)))] + [
        (c.t(k), str(sum(1 for f in findings if f["kind"] == k))) for k in EXPOSURE_KINDS]
    d.sections.append(Section(c.t("by_port"), chart=charts.bar_chart(
        Counter(f"{f.get('service') or ''} {f['protocol']}/{f['port']}" for f in findings)
        .most_common(), colour=charts.PALETTE[3])))
    rows, classes = [], []
    for f in findings[:MAX_ROWS]:
        rows.append([c.t(f["kind"]), f.get("host") or "", f["ip"],
                     f"{f.get('service') or ''} {f['protocol']}/{f['port']}",
                     str(f.get("zone") or ""), str(f.get("department") or ""),
                     _short(f.get("evidence"), 300)])
        classes.append("fail" if f["severity"] == "high" else "not_evidenced")
    d.sections.append(Section(c.t("findings"), table=Table(
        [c.t(k) for k in ("why", "host", "address", "service", "zone", "department",
                          "evidence")], rows, classes, widths=(14, 12, 11, 12, 8, 9, 34))
        if rows else None, text=[] if rows else [c.t("none_found")]))
    return d


EXPOSURE_KINDS = ("zone_violation", "plaintext_management", "http_admin", "internet_facing")
IDLE_VERDICTS = ("zombie", "low_load", "busy", "unmeasured")


def idle_report(c: Ctx) -> Document:
    """The inventory's idle systems (`cloud_inventory.idle`) and utilisation per
    department (云资源利用率)."""
    from cloud_inventory.config import inventory_config
    from cloud_inventory.idle import idle_systems

    found = idle_systems(c.store, until=c.now, conf=inventory_config(c.cfg))
    window = found["window"]
    d = c.doc("idle", c.period(int(window["days"])))
    systems = found["systems"]
    n = Counter(s["verdict"] for s in systems)
    d.figures = [(c.t("total_assets"), str(len(systems)))] + [
        (c.t(v), str(n[v])) for v in IDLE_VERDICTS]
    d.sections.append(Section(c.t("summary"), text=[
        c.t("idle_note") + f" (CPU < {100 * float(window['cpu_threshold']):.0f}%)"],
        chart=charts.bar_chart([(c.t(v), n[v]) for v in IDLE_VERDICTS])))
    util = found["departments"]
    d.sections.append(Section(c.t("utilisation"), chart=charts.bar_chart(
        [(str(u.get("name") or k), 100 * (u["cpu_mean"] or 0)) for k, u in
         sorted(util.items())], unit="%", colour=charts.PALETTE[2]), table=Table(
        [c.t(k) for k in ("department", "total_assets", "cpu", "zombie", "low_load",
                          "inbound")],
        [[str(u.get("name") or k), str(u["assets"]),
          "" if u["cpu_mean"] is None else f"{100 * u['cpu_mean']:.1f}%", str(u["zombie"]),
          str(u["low_load"]), str(u["inbound_sessions"])] for k, u in sorted(util.items())],
        widths=(26, 14, 14, 14, 14, 18))))
    order = {v: i for i, v in enumerate(IDLE_VERDICTS)}
    rows, classes = [], []
    for s in sorted(systems, key=lambda s: (order[s["verdict"]], str(s["host"])))[:MAX_ROWS]:
        cpu = s["evidence"].get("cpu")
        rows.append([str(s["host"]), str(s.get("department_name") or s.get("department") or ""),
                     str(s["evidence"]["inbound_sessions"]),
                     "" if not cpu else f"{100 * cpu['mean']:.1f}% / {100 * cpu['peak']:.1f}%",
                     c.t(s["verdict"])])
        classes.append({"zombie": "fail", "low_load": "not_evidenced", "busy": "pass"}.get(
            s["verdict"], ""))
    d.sections.append(Section(c.t("register"), table=Table(
        [c.t(k) for k in ("host", "department", "inbound", "cpu", "verdict")], rows, classes,
        widths=(26, 22, 16, 18, 18))))
    return d


def dr_report(c: Ctx) -> Document:
    drills = c.store.search(Selection(dataset="govsoc.dr_drill"), size=200,
                            descending=True).hits
    d = c.doc("dr")
    ok = [x for x in drills if x["event"].get("outcome") == "success"]
    drs = [((x.get("govsoc") or {}).get("dr") or {}) for x in ok]
    rto = [float(r["rto_s"]) for r in drs if r.get("rto_s") is not None]
    rpo = [float(r["rpo_s"]) for r in drs if r.get("rpo_s") is not None]
    d.figures = [(c.t("drills"), str(len(drills))), (c.t("success"), str(len(ok))),
                 ("RTO max", f"{max(rto):.1f} s" if rto else "—"),
                 ("RPO max", f"{max(rpo):.1f} s" if rpo else "—")]
    trend = [(c.when(x["@timestamp"])[5:10],
              float(((x.get("govsoc") or {}).get("dr") or {}).get("rto_s") or 0))
             for x in reversed(ok)]
    d.sections.append(Section(c.t("rto_trend"), chart=charts.line_chart(trend, unit="s")))
    rows, classes = [], []
    for x in drills:
        r = (x.get("govsoc") or {}).get("dr") or {}
        outcome = x["event"].get("outcome", "failure")
        rows.append([c.when(x["@timestamp"]), str(r.get("primary") or ""),
                     str(r.get("standby") or ""),
                     "" if r.get("rpo_s") is None else f"{float(r['rpo_s']):.1f}",
                     "" if r.get("rto_s") is None else f"{float(r['rto_s']):.1f}",
                     c.t("yes" if r.get("encrypted") else "no"), c.t(outcome)])
        classes.append("pass" if outcome == "success" else "fail")
    d.sections.append(Section(c.t("drills"), table=Table(
        [c.t("when"), c.t("primary"), c.t("standby"), "RPO (s)", "RTO (s)", c.t("encrypted"),
         c.t("outcome")], rows, classes, widths=(18, 16, 16, 11, 11, 14, 14)) if rows
        else None,
        text=[] if rows else [c.t("none_found")]))
    return d


def compliance_report(c: Ctx, standard: str | None = None) -> Document:
    findings = compliance.check_compliance(c.store, c.cfg, standard=standard, now=c.now)
    d = c.doc("compliance")
    counts = compliance.summary(findings)
    d.figures = [(c.t(s), str(counts[s])) for s in compliance.STATUSES]
    for std in compliance.STANDARDS:
        part = [f for f in findings if f.standard == std]
        if not part:
            continue
        n = compliance.summary(part)
        d.sections.append(Section(c.t(std), chart=charts.stacked_bar(
            [(s, c.t(s), n[s]) for s in compliance.STATUSES]), table=Table(
            [c.t("clause"), c.t("area"), c.t("control"), c.t("status")],
            [[f.clause, f.area, f.title, c.t(f.status)] for f in part],
            [f.status for f in part], nowrap=(1,), widths=(27, 14, 47, 12))))
    d.sections.append(Section(c.t("details")))
    for f in findings:
        said = f.summary_zh if c.lang == "zh-CN" else f.summary
        text = [f"{c.t('status')}: {c.t(f.status)} — {said}"]
        for e in f.evidence[:EVIDENCE_LINES]:
            text.append(f"{c.t('evidence')} [{e.kind}] {e.source}: {_short(e.detail)}")
        if len(f.evidence) > EVIDENCE_LINES:  # the full list: govsoc compliance check --json
            text.append(f"… +{len(f.evidence) - EVIDENCE_LINES}")
        if f.status in ("fail", "not_evidenced"):
            text.append(f"{c.t('remediation')}: {f.remediation}")
        d.sections.append(Section(f"{f.clause} {f.title}", text=text, level=3))
    return d


def _short(value: Any, limit: int = 400) -> str:
    if isinstance(value, dict):
        text = "; ".join(f"{k}: {_short(v, 120)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(_short(v, 80) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def weekly_report(c: Ctx) -> Document:
    start = c.now - timedelta(days=7)
    sel = Selection(family="alerts", start=start)
    d = c.doc("weekly", c.period(7))
    total = c.store.count(sel)
    events = c.store.count(Selection(family="events", start=start))
    acks, fixes, open_n = [], [], 0
    for i, al in enumerate(c.store.scan(sel, page_size=2000)):
        if i >= 200_000:
            break
        a = (al.get("govsoc") or {}).get("alert") or {}
        if a.get("status", "open") == "open":
            open_n += 1
        created = _ms(a.get("created") or a.get("first_seen"))
        if created is None:
            continue
        notes = [n.get("at") for n in a.get("notes") or [] if isinstance(n, dict)]
        ack = _ms(a.get("acknowledged_at") or (notes[0] if notes else None))
        if ack is not None and ack >= created:
            acks.append(ack - created)
        closed = _ms(a.get("closed_at"))
        if closed is not None and closed >= created:
            fixes.append(closed - created)

    def mean_min(values: list[int]) -> str:
        if not values:
            return c.t("not_recorded")
        return f"{sum(values) / len(values) / 60000:.1f} {c.t('minutes')}"

    d.figures = [(c.t("alerts_total"), str(total)), (c.t("open"), str(open_n)),
                 (c.t("mtta"), mean_min(acks)), (c.t("mttr"), mean_min(fixes)),
                 (c.t("events_total"), str(events))]
    days = c.store.histogram("1d", sel)
    d.sections.append(Section(c.t("trend"), chart=charts.line_chart(
        [(b[5:10], n) for b, n in days])))
    sev = c.store.terms("event.severity", sel, size=10)
    d.sections.append(Section(c.t("by_severity"), chart=charts.bar_chart(
        [(str(k), n) for k, n in sorted(sev, key=lambda p: -float(p[0] or 0))],
        colour=charts.PALETTE[3])))
    top = c.store.terms("rule.name", sel, size=10)
    d.sections.append(Section(c.t("top_rules"), chart=charts.bar_chart(
        [(str(k), n) for k, n in top]), table=Table(
        [c.t("rule"), c.t("count")], [[str(k), str(n)] for k, n in top], widths=(85, 15))
        if top else None))
    return d


def _ms(value: Any) -> int | None:
    if not value:
        return None
    try:
        return ecs.to_millis(value)
    except (ecs.EventError, ValueError, TypeError):
        return None


BUILDERS: dict[str, Callable[[Ctx], Document]] = {
    "assets": assets_report, "exposure": exposure_report, "idle": idle_report,
    "dr": dr_report, "compliance": compliance_report, "weekly": weekly_report,
}


def build(kind: str, store: Any, cfg: Any, *, lang: str = "zh-CN",
          now: datetime | None = None) -> Document:
    if kind not in BUILDERS:
        raise ValueError(f"unknown report kind {kind!r}: one of {', '.join(KINDS)}")
    return BUILDERS[kind](Ctx(store, cfg, lang, now))
