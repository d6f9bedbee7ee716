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
    # five cells a row: the PDF engine's cost is per cell, and a register runs to
    # thousands of rows (name with addresses, level with importance share a cell)
    rows = []
    for x in docs[:MAX_ROWS]:
        a = _a(x)
        ports = a.get("listening_ports") or sorted({s.get("port") for s in a.get("listening")
                                                    or [] if isinstance(s, dict)})
        level = " / ".join(str(v) for v in (a.get("djcp_level"), a.get("importance")) if v)
        rows.append([f"{compliance.host_name(x)} ({', '.join(_ips(x)[:3])})",
                     str(((x.get("host") or {}).get("os") or {}).get("full") or ""),
                     _department(x, c), level, ", ".join(str(p) for p in ports[:12])])
    d.sections.append(Section(c.t("register"), table=Table(
        [f"{c.t('name')} ({c.t('address')})", c.t("os"), c.t("department"),
         f"{c.t('djcp_level')} / {c.t('importance')}", c.t("ports")], rows,
        widths=(30, 22, 14, 14, 20))))
    return d


def exposure_findings(docs: list[dict[str, Any]], c: Ctx) -> list[list[str]]:
    rows = []
    for x in docs:
        for s in _a(x).get("listening") or []:
            if not isinstance(s, dict):
                continue
            port, addr = s.get("port"), str(s.get("address", ""))
            if addr.startswith(compliance.LOOPBACK):
                continue
            if port in compliance.PLAINTEXT_ADMIN:
                why, svc = c.t("plaintext"), compliance.PLAINTEXT_ADMIN[port]
            elif port in compliance.EXPOSED_WHEN_WILDCARD and addr in compliance.WILDCARD:
                why, svc = c.t("wildcard"), compliance.EXPOSED_WHEN_WILDCARD[port]
            elif port in compliance.HIGH_RISK:
                why, svc = c.t("high_risk"), compliance.HIGH_RISK[port]
            else:
                continue
            rows.append([compliance.host_name(x), _department(x, c),
                         f"{svc} {s.get('protocol', 'tcp')}/{port}", addr or "*",
                         str(s.get("process") or ""), why])
    return sorted(rows)


def exposure_report(c: Ctx) -> Document:
    docs = _assets(c.store)
    d = c.doc("exposure")
    rows = exposure_findings(docs, c)
    hosts = {r[0] for r in rows}
    d.figures = [(c.t("total_assets"), str(len(docs))), (c.t("findings"), str(len(rows))),
                 (c.t("host"), str(len(hosts)))]
    by_port = Counter(r[2] for r in rows)
    d.sections.append(Section(c.t("by_port"), chart=charts.bar_chart(
        by_port.most_common(), colour=charts.PALETTE[3])))
    d.sections.append(Section(c.t("findings"), table=Table(
        [c.t(k) for k in ("host", "department", "service", "bound", "service", "why")],
        rows[:MAX_ROWS], widths=(16, 14, 16, 14, 12, 28)) if rows else None,
        text=[] if rows else [c.t("none_found")]))
    return d


def idle_report(c: Ctx) -> Document:
    days = int(c.cfg.get("reports.idle_days", 7))
    cpu_max = float(c.cfg.get("reports.idle_cpu", 0.05))
    start = c.now - timedelta(days=days)
    docs = _assets(c.store)
    inbound = dict(c.store.terms("destination.ip", Selection(dataset="network.flow",
                                                              start=start), size=100_000))
    cpu: dict[str, list[float]] = {}
    for i, m in enumerate(c.store.scan(Selection(family="metrics", dataset="system.cpu",
                                                 start=start), page_size=5000)):
        if i >= 500_000:  # a bound on what one report reads
            break
        v = ((m.get("host") or {}).get("cpu") or {}).get("usage")
        if isinstance(v, int | float):
            agg = cpu.setdefault(str((m.get("host") or {}).get("name")), [0.0, 0])
            agg[0] += v
            agg[1] += 1
    d = c.doc("idle", c.period(days))
    rows, classes, verdicts = [], [], Counter()
    for x in sorted(docs, key=compliance.host_name):
        name = compliance.host_name(x)
        sessions = sum(int(inbound.get(ip, 0)) for ip in _ips(x))
        agg = cpu.get(name) or cpu.get(str((x.get("host") or {}).get("hostname")))
        mean = agg[0] / agg[1] if agg and agg[1] else None
        if mean is None:
            verdict = "no_data"
        elif mean < cpu_max:
            verdict = "idle_yes" if sessions == 0 else "low_load"
        else:
            verdict = "in_use"
        verdicts[verdict] += 1
        rows.append([name, _department(x, c), str(sessions),
                     "" if mean is None else f"{100 * mean:.1f}%", c.t(verdict)])
        classes.append(verdict)
    d.figures = [(c.t("total_assets"), str(len(docs))),
                 (c.t("idle_yes"), str(verdicts["idle_yes"])),
                 (c.t("low_load"), str(verdicts["low_load"]))]
    d.sections.append(Section(c.t("summary"), text=[c.t("idle_note")], chart=charts.bar_chart(
        [(c.t(k), verdicts[k]) for k in ("idle_yes", "low_load", "in_use", "no_data")])))
    order = {"idle_yes": 0, "low_load": 1, "no_data": 2, "in_use": 3}
    paired = sorted(zip(rows, classes, strict=True), key=lambda p: (order[p[1]], p[0][0]))
    d.sections.append(Section(c.t("register"), table=Table(
        [c.t(k) for k in ("host", "department", "inbound", "cpu", "verdict")],
        [p[0] for p in paired][:MAX_ROWS], [p[1] for p in paired][:MAX_ROWS],
        widths=(26, 22, 16, 16, 20))))
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
        text = [f"{c.t('status')}: {c.t(f.status)} — {f.summary}"]
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
