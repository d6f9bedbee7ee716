"""Compliance self-assessment: the technical requirements of 等保 2.0 level 3
(GB/T 22239-2019, clause 8.1) and of 密评 level 3 (GB/T 39786-2021, clause 8) that can be
evidenced automatically, each judged from what the fleet reported and the store holds —
never from answers typed in.

Sources of evidence:
- asset documents (`event.kind: asset`) the `asset_sweep` playbook writes: listening
  sockets, services, packages, sshd, time sync, last patch, login policy, SM3 digests;
- the store: the audit family (retention, chain verification, signed checkpoints), users
  and their roles (三权分立), host metrics (monitoring coverage), TLS sessions seen in
  traffic (`network.tls`), DR drill reports (`govsoc.dr_drill`);
- the configuration (`retention_days`) and the keystore file (SM4-sealed keys).

Each control ends `pass`, `fail`, `not_applicable` (nothing it applies to) or
`not_evidenced` (what would prove it was not collected), with its evidence and what to do.
Clause numbers are those of the standards' level-3 chapters as we read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from soc_core import ecs
from soc_core.store import Selection, StoreError

STANDARDS = {"djcp-l3": "GB/T 22239-2019 (等保 2.0 第三级)",
             "mp": "GB/T 39786-2021 (密评 第三级)"}
STATUSES = ("pass", "fail", "not_applicable", "not_evidenced")
ADMIN_ROLES = ("sysadmin", "secadmin", "auditor")
MIN_RETENTION_DAYS = 180
# plaintext remote administration: telnet, rlogin/rsh/rexec, FTP, TFTP, VNC without TLS
PLAINTEXT_ADMIN = {21: "ftp", 23: "telnet", 69: "tftp", 512: "rexec", 513: "rlogin",
                   514: "rsh", 5900: "vnc"}
# services that 等保 asks to close unless needed (高危端口)
HIGH_RISK = {**PLAINTEXT_ADMIN, 111: "rpcbind", 135: "msrpc", 137: "netbios-ns",
             139: "netbios-ssn", 445: "smb", 2049: "nfs", 161: "snmp", 11211: "memcached"}
MALWARE_PACKAGES = ("clamav", "clamav-daemon", "clamav-freshclam", "rkhunter", "chkrootkit")
AUDIT_DAEMONS = ("auditd", "rsyslogd", "rsyslog", "syslog-ng", "systemd-journald",
                 "journald")
LOOPBACK = ("127.", "::1")


@dataclass
class Evidence:
    kind: str  # query | document | config | probe | file
    source: str  # where it came from (a query, a document id, a config key, a file)
    detail: Any = None


@dataclass
class Finding:
    id: str
    standard: str
    clause: str
    area: str
    title: str
    status: str
    summary: str
    evidence: list[Evidence] = field(default_factory=list)
    remediation: str = ""
    hosts: list[str] = field(default_factory=list)  # the hosts that fail
    summary_zh: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Facts:
    """What the checks read, loaded once: the active assets and lazily the rest."""

    def __init__(self, store: Any, cfg: Any, *, now: datetime | None = None,
                 keystore_path: Path | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.now = now or datetime.now(UTC)
        self.keystore_path = keystore_path
        self.assets = [d for d in store.scan(Selection(family="assets"))
                       if _asset(d).get("state", "active") != "gone"]
        self._cache: dict[str, Any] = {}

    def once(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]


def _asset(doc: dict[str, Any]) -> dict[str, Any]:
    return (doc.get("govsoc") or {}).get("asset") or {}


def host_name(doc: dict[str, Any]) -> str:
    h = doc.get("host") or {}
    return str(h.get("name") or h.get("hostname") or doc["event"]["id"])


def _listening(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _asset(doc).get("listening") or [] if isinstance(s, dict)]


def _swept(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assets an Ansible sweep reached (those carry host facts; discovered-only assets
    do not)."""
    return [d for d in docs if _asset(d).get("run_id") or _asset(d).get("packages")]


# -- the checks ---------------------------------------------------------------------------
Check = Callable[[Facts], tuple[str, str, list[Evidence], list[str]]]
CONTROLS: list[tuple[dict[str, str], Check]] = []


def control(id_: str, standard: str, clause: str, area: str, title: str,
            remediation: str) -> Callable[[Check], Check]:
    def deco(fn: Check) -> Check:
        CONTROLS.append(({"id": id_, "standard": standard, "clause": clause, "area": area,
                          "title": title, "remediation": remediation}, fn))
        return fn
    return deco


def _per_host(facts: Facts, bad: Callable[[dict[str, Any]], str | None], query: str,
              what_ok: str) -> tuple[str, str, list[Evidence], list[str]]:
    """Judge every swept host: `bad(doc)` says why a host fails, or None."""
    docs = _swept(facts.assets)
    if not docs:
        return ("not_evidenced", ("no host has been swept (run the asset_sweep playbook)",
                                  "尚无主机巡检记录（请运行 asset_sweep 剧本）"),
                [Evidence("query", query, "0 assets")], [])
    failing = {}
    for d in docs:
        why = bad(d)
        if why:
            failing[host_name(d)] = why
    ev = [Evidence("query", query, f"{len(docs)} swept assets")]
    ev += [Evidence("document", f"asset {host_name(d)} ({d['event']['id']})",
                    failing[host_name(d)]) for d in docs if host_name(d) in failing]
    if failing:
        shown = sorted(failing.items())[:5]
        return ("fail", (f"{len(failing)} of {len(docs)} hosts: "
                         + "; ".join(f"{h}: {w}" for h, w in shown),
                         f"{len(docs)} 台主机中 {len(failing)} 台不符合："
                         + "；".join(f"{h}（{w}）" for h, w in shown)),
                ev, sorted(failing))
    return "pass", (f"all {len(docs)} hosts {what_ok}", f"全部 {len(docs)} 台主机符合"), ev, []


ASSET_QUERY = "family=assets (asset_sweep facts)"
NO_ASSETS = ("no assets registered", "尚无登记的资产")


# 安全管理中心 ------------------------------------------------------------------------------
@control("djcp-3.5.1", "djcp-l3", "GB/T 22239-2019 8.1.5.1-8.1.5.3", "安全管理中心",
         "三权分立：系统管理员、审计管理员、安全管理员分离",
         "为 sysadmin、secadmin、auditor 各指定至少一名用户，且任何用户不得同时持有其中两个角色"
         "（govsoc user grant）。")
def three_admins(facts: Facts):
    query = "family=state dataset=govsoc.state.user"
    users = [((d.get("govsoc") or {}).get("identity") or {})
             for d in facts.store.scan(Selection(family="state", dataset="govsoc.state.user"))]
    users = [u for u in users if u and not u.get("disabled")]
    if not users:
        return "not_evidenced", ("no platform users are registered", "平台尚无用户"), [
            Evidence("query", query, "0 users")], []
    holders = {r: sorted(u["name"] for u in users if r in (u.get("roles") or []))
               for r in ADMIN_ROLES}
    both = sorted(u["name"] for u in users
                  if len(set(u.get("roles") or []) & set(ADMIN_ROLES)) > 1)
    ev = [Evidence("query", query, {r: holders[r] for r in ADMIN_ROLES})]
    if both:
        return ("fail", ("users hold more than one administrator role: " + ", ".join(both),
                         "以下用户同时持有多个管理员角色：" + "、".join(both)),
                ev, [])
    missing = [r for r in ADMIN_ROLES if not holders[r]]
    if missing:
        return "fail", ("no user holds: " + ", ".join(missing),
                        "以下角色无人担任：" + "、".join(missing)), ev, []
    return "pass", ("each administrator role is held, by different users",
                    "三类管理员角色均已设置且由不同用户担任"), ev, []


@control("djcp-3.5.4d", "djcp-l3", "GB/T 22239-2019 8.1.5.4 d)", "安全管理中心",
         "审计数据集中收集，留存时间不少于 180 天（网络安全法 第二十一条）",
         "将 retention_days 设为 180 或更长，并确保各组件的审计记录汇入事件存储。")
def central_audit(facts: Facts):
    days = int(facts.cfg.get("retention_days", MIN_RETENTION_DAYS))
    ev = [Evidence("config", "retention_days", days)]
    n = facts.store.count(Selection(family="audit"))
    ev.append(Evidence("query", "family=audit", f"{n} audit records held centrally"))
    if days < MIN_RETENTION_DAYS:
        return "fail", (f"retention is {days} days, below {MIN_RETENTION_DAYS}",
                        f"留存期为 {days} 天，低于 {MIN_RETENTION_DAYS} 天"), ev, []
    if not n:
        return "not_evidenced", ("the store holds no audit records yet",
                                 "事件存储中尚无审计记录"), ev, []
    oldest = facts.store.search(Selection(family="audit"), size=1).hits
    if oldest:
        ev.append(Evidence("document", f"oldest audit record {oldest[0]['event']['id']}",
                           oldest[0]["@timestamp"]))
    return "pass", (f"{n} records kept centrally, retention {days} days",
                    f"集中保存审计记录 {n} 条，留存期 {days} 天"), ev, []


@control("djcp-3.5.4c", "djcp-l3", "GB/T 22239-2019 8.1.5.4 c)", "安全管理中心",
         "对服务器等运行状况进行集中监测（监测覆盖率）",
         "在未被监测的主机上部署 govsoc 主机采集器（govsoc collect host）。")
def monitoring(facts: Facts):
    if not facts.assets:
        return "not_evidenced", NO_ASSETS, [Evidence("query", ASSET_QUERY, 0)], []
    since = facts.now - timedelta(days=1)
    sel = Selection(family="metrics", start=since)
    reporting = {str(v) for v, _ in facts.store.terms("host.name", sel, size=10_000)}
    names = {host_name(d): {host_name(d), str((d.get("host") or {}).get("hostname"))}
             for d in facts.assets}
    silent = sorted(n for n, alias in names.items() if not alias & reporting)
    ev = [Evidence("query", "family=metrics @timestamp>=now-1d terms(host.name)",
                   f"{len(reporting)} hosts reporting metrics")]
    covered = len(names) - len(silent)
    pct = 100.0 * covered / len(names)
    if silent:
        ev.append(Evidence("query", ASSET_QUERY, {"unmonitored": silent[:50]}))
        return ("fail", (f"coverage {pct:.0f}% ({covered}/{len(names)}); unmonitored: "
                         + ", ".join(silent[:5]),
                         f"监测覆盖率 {pct:.0f}%（{covered}/{len(names)}），未监测："
                         + "、".join(silent[:5])), ev, silent)
    return "pass", (f"coverage 100% ({covered} hosts report metrics)",
                    f"监测覆盖率 100%（{covered} 台主机上报指标）"), ev, []


def _patch_days(facts: Facts) -> int:
    return int(facts.cfg.get("compliance.patch_max_days", 30))


@control("djcp-3.4.4e", "djcp-l3", "GB/T 22239-2019 8.1.4.4 e) / 8.1.5.4 e)", "安全管理中心",
         "补丁集中管理，及时修补已知漏洞（补丁滞后）",
         "运行 patch 剧本（govsoc playbook run patch）安装安全更新，并复核补丁滞后时间。")
def patch_lag(facts: Facts):
    limit = _patch_days(facts)

    def bad(d):
        last = _asset(d).get("last_patch")
        if not last:
            return "no package installation time reported"
        try:
            when = ecs.parse_time(last)
        except ecs.EventError:
            return f"unreadable last patch time {last!r}"
        age = (facts.now - when).days
        return f"last patched {age} days ago (> {limit})" if age > limit else None

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.last_patch",
                     f"were patched within {limit} days")


@control("djcp-3.4.5", "djcp-l3", "GB/T 22239-2019 8.1.4.5 / 8.1.5.4 e)", "安全管理中心",
         "恶意代码防范",
         "安装并启用防恶意代码软件（如 clamav-daemon 与 freshclam），并纳入集中管理。")
def malware(facts: Facts):
    def bad(d):
        pkgs = {p.get("name") for p in _asset(d).get("packages") or [] if isinstance(p, dict)}
        procs = {s.get("process") for s in _listening(d)} | {
            s.get("name") for s in _asset(d).get("services") or [] if isinstance(s, dict)}
        if pkgs & set(MALWARE_PACKAGES) or procs & {"clamd", "freshclam"}:
            return None
        return "no anti-malware package (" + ", ".join(MALWARE_PACKAGES[:2]) + ") installed"

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.packages",
                     "have anti-malware software")


# 安全计算环境 ------------------------------------------------------------------------------
def _auth(d: dict[str, Any]) -> dict[str, Any] | None:
    auth = _asset(d).get("auth")
    return auth if isinstance(auth, dict) else None


@control("djcp-3.4.1a", "djcp-l3", "GB/T 22239-2019 8.1.4.1 a)", "安全计算环境",
         "口令复杂度与定期更换",
         "在 /etc/security/pwquality.conf 设置 minlen ≥ 8、minclass ≥ 3，"
         "在 /etc/login.defs 设置 PASS_MAX_DAYS ≤ 90。")
def password_policy(facts: Facts):
    def bad(d):
        auth = _auth(d)
        if auth is None:
            return "login policy not reported by the sweep"
        problems = []
        if int(auth.get("minlen") or 0) < 8:
            problems.append(f"minlen {auth.get('minlen') or 'unset'}")
        if int(auth.get("minclass") or 0) < 3:
            problems.append(f"minclass {auth.get('minclass') or 'unset'}")
        if not 0 < int(auth.get("pass_max_days") or 99999) <= 90:
            problems.append(f"PASS_MAX_DAYS {auth.get('pass_max_days')}")
        return ", ".join(problems) or None

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.auth",
                     "enforce password complexity and expiry")


@control("djcp-3.4.1b", "djcp-l3", "GB/T 22239-2019 8.1.4.1 b)", "安全计算环境",
         "登录失败处理（锁定）",
         "在 PAM 中启用 pam_faillock（deny ≤ 5，unlock_time ≥ 600）。")
def lockout(facts: Facts):
    def bad(d):
        auth = _auth(d)
        if auth is None:
            return "login policy not reported by the sweep"
        deny = int(auth.get("faillock_deny") or 0)
        return None if 0 < deny <= 5 else f"no account lockout (deny={deny or 'unset'})"

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.auth.faillock_deny",
                     "lock accounts after repeated failures")


def _open_ports(d: dict[str, Any], ports: dict[int, str]) -> list[str]:
    return sorted({f"{ports[s['port']]}/{s.get('protocol', 'tcp')}:{s['port']}"
                   f" ({s.get('process') or '?'})"
                   for s in _listening(d) if s.get("port") in ports
                   and not str(s.get("address", "")).startswith(LOOPBACK)})


@control("djcp-3.4.1c", "djcp-l3", "GB/T 22239-2019 8.1.4.1 c)", "安全计算环境",
         "远程管理仅通过加密通道（禁用 telnet、FTP、rsh 等明文协议）",
         "停用并卸载 telnetd、ftpd、rsh 等明文远程管理服务，仅保留 SSH（或 TLCP）远程管理。")
def remote_admin(facts: Facts):
    def bad(d):
        plain = _open_ports(d, PLAINTEXT_ADMIN)
        return "plaintext remote administration listening: " + ", ".join(plain) if plain \
            else None

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.listening",
                     "offer remote administration only over encrypted channels")


@control("djcp-3.4.4b", "djcp-l3", "GB/T 22239-2019 8.1.4.4 b)", "安全计算环境",
         "关闭不需要的系统服务和高危端口",
         "关闭列出的高危端口对应的服务，或以主机防火墙限制其访问来源。")
def high_risk_ports(facts: Facts):
    def bad(d):
        found = _open_ports(d, HIGH_RISK)
        return "high-risk ports open: " + ", ".join(found) if found else None

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.listening",
                     "have no high-risk ports open")


@control("djcp-3.4.3a", "djcp-l3", "GB/T 22239-2019 8.1.4.3 a)", "安全计算环境",
         "启用安全审计功能（主机审计/日志服务运行）",
         "启用 auditd 或 rsyslog/journald，并由 govsoc 采集器集中收集。")
def host_audit(facts: Facts):
    def bad(d):
        a = _asset(d)
        names = {str(s.get("name", "")).removesuffix(".service") for s in a.get("services") or []
                 if isinstance(s, dict)}
        names |= {p.get("name") for p in a.get("packages") or [] if isinstance(p, dict)
                  and p.get("name") in ("auditd", "rsyslog", "syslog-ng")}
        return None if names & set(AUDIT_DAEMONS) else "no audit or log daemon running"

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.services",
                     "run an audit or log daemon")


@control("djcp-3.4.3b", "djcp-l3", "GB/T 22239-2019 8.1.4.3 b)", "安全计算环境",
         "审计记录时间准确（时间同步）",
         "启用 chrony 或 systemd-timesyncd，与统一时间源同步。")
def time_sync(facts: Facts):
    def bad(d):
        ts = _asset(d).get("time_sync") or {}
        return None if ts.get("running") else "no time synchronisation daemon running"

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.time_sync",
                     "synchronise their clocks")


# 安全区域边界 ------------------------------------------------------------------------------
@control("djcp-3.3.2", "djcp-l3", "GB/T 22239-2019 8.1.3.1 / 8.1.3.2", "安全区域边界",
         "边界防护与访问控制：管理与数据库端口不被不应到达的区域访问，服务不直接面向互联网",
         "在边界与主机防火墙上按区域收紧访问控制规则（默认拒绝），仅放行管理区访问管理与数据库端口；"
         "确需对外的服务经由受控的接入区发布。")
def boundary(facts: Facts):
    from cloud_inventory.config import inventory_config
    from cloud_inventory.exposure import exposure_surface

    days = int(facts.cfg.get("reports.exposure_days", 7))
    found = exposure_surface(facts.store, since=facts.now - timedelta(days=days), until=facts.now,
                     conf=inventory_config(facts.cfg))
    bad = [f for f in found if f["kind"] in ("zone_violation", "internet_facing")]
    ev = [Evidence("query", f"cloud_inventory.exposure over {days} days (network.flow, "
                   "swept and probed listening sockets)",
                   {k: sum(1 for f in found if f["kind"] == k) for k in
                    ("zone_violation", "internet_facing", "plaintext_management",
                     "http_admin")})]
    ev += [Evidence("probe", f"{f['kind']} {f.get('host') or f['ip']} "
                    f"{f['protocol']}/{f['port']}", f.get("evidence")) for f in bad[:50]]
    if not facts.assets:
        return "not_evidenced", NO_ASSETS, ev, []
    hosts = sorted({str(f.get("host") or f["ip"]) for f in bad})
    if bad:
        shown = "; ".join(f"{f['kind']} {f.get('host') or f['ip']}:{f['port']}"
                          f"{' from ' + str(f['zone']) if f.get('zone') else ''}"
                          for f in bad[:5])
        return ("fail", (f"{len(bad)} boundary findings on {len(hosts)} hosts: " + shown,
                         f"{len(hosts)} 台主机存在 {len(bad)} 项边界问题：" + shown), ev, hosts)
    return "pass", ("no zone reaches a port it should not, nothing faces the internet",
                    "未发现越区访问管理/数据库端口，也无直接面向互联网的服务"), ev, []


# 密评 ------------------------------------------------------------------------------------
def _sm_suite(name: str) -> bool:
    return "SM4" in name.upper() or "SM1" in name.upper()


@control("mp-8.2", "mp", "GB/T 39786-2021 8.2 b) c)", "网络和通信安全",
         "通信使用国密算法（TLS/TLCP 采用 SM2/SM3/SM4 密码套件）",
         "在对外服务与跨区通信上启用 TLCP 或 TLS 1.3 的 TLS_SM4_GCM_SM3 套件，停用非国密套件。")
def sm_tls(facts: Facts):
    sel = Selection(dataset="network.tls", start=facts.now - timedelta(days=30))
    suites = facts.store.terms("tls.cipher", sel, size=100)
    ev = [Evidence("query", "dataset=network.tls @timestamp>=now-30d terms(tls.cipher)",
                   {str(k): n for k, n in suites})]
    if not suites:
        return "not_evidenced", ("no TLS sessions seen in traffic in 30 days",
                                 "近 30 天流量中未见 TLS/TLCP 会话"), ev, []
    sm = sum(n for k, n in suites if _sm_suite(str(k)))
    total = sum(n for _, n in suites)
    if sm == total:
        return "pass", (f"all {total} TLS sessions used SM cipher suites",
                        f"全部 {total} 个 TLS/TLCP 会话使用国密套件"), ev, []
    others = [str(k) for k, _ in suites if not _sm_suite(str(k))][:5]
    return ("fail", (f"{total - sm} of {total} TLS sessions used non-SM suites: "
                     + ", ".join(others),
                     f"{total} 个会话中 {total - sm} 个使用非国密套件：" + "、".join(others)),
            ev, [])


@control("mp-8.3e", "mp", "GB/T 39786-2021 8.3 e)", "设备和计算安全",
         "日志记录完整性（SM3 哈希链与 SM2 签名检查点）",
         "查明并修复审计链校验发现的问题（govsoc audit verify），配置主密钥以签名检查点。")
def audit_chain(facts: Facts):
    from soc_core.audit import verify

    verifier = facts.once("verifier", lambda: _platform_verifier(facts))
    report = verify(facts.store, verifier=verifier)
    ev = [Evidence("probe", "soc_core.audit.verify (govsoc audit verify)",
                   {"records": report.records, "chains": len(report.chains),
                    "checkpoints": sum(c["checkpoints"] for c in report.chains.values()),
                    "problems": [str(p) for p in report.problems[:10]],
                    "warnings": report.warnings})]
    if not report.records:
        return "not_evidenced", ("no audit records to verify", "尚无可校验的审计记录"), ev, []
    if not report.ok:
        return ("fail", (f"{len(report.problems)} problems in the audit chain: "
                         + str(report.problems[0]),
                         f"审计链发现 {len(report.problems)} 处问题：" + str(report.problems[0])),
                ev, [])
    if not any(c["checkpoints"] for c in report.chains.values()):
        return ("fail", ("the chain holds no SM2-signed checkpoint",
                         "审计链中没有 SM2 签名的检查点"), ev, [])
    return "pass", (f"{report.records} records verified (SM3 chain, SM2 checkpoints)",
                    f"{report.records} 条审计记录校验通过（SM3 哈希链、SM2 检查点）"), ev, []


def _platform_verifier(facts: Facts) -> Any:
    from crypto_svc import platform_verifier

    ks = _keystore(facts)
    return platform_verifier(ks) if ks is not None else None


def _keystore(facts: Facts) -> Any:
    from crypto_svc import Keystore, KeystoreError

    try:
        ks = Keystore(facts.keystore_path, None) if facts.keystore_path else \
            _public_keystore(facts.cfg)
    except KeystoreError:
        return None
    return ks if ks.path.exists() else None


def _public_keystore(cfg: Any) -> Any:
    """The configured keystore, opened for its public parts only (no master secret)."""
    from crypto_svc import Keystore

    path = cfg.get("crypto.keystore") or (Path(cfg.data_dir) / "keystore.json")
    return Keystore(path, None)


@control("mp-8.3f", "mp", "GB/T 39786-2021 8.3 f)", "设备和计算安全",
         "重要可执行程序完整性（SM3 基线）",
         "由 asset_sweep 为关键程序建立 SM3 基线；对比两次巡检发现的未经变更的改动须调查。")
def sm3_baseline(facts: Facts):
    def bad(d):
        digests = _asset(d).get("integrity_sm3")
        if not isinstance(digests, list) or not digests:
            return "no SM3 baseline of its executables"
        return None

    return _per_host(facts, bad, ASSET_QUERY + " govsoc.asset.integrity_sm3",
                     "have an SM3 baseline of their key executables")


@control("mp-8.4h", "mp", "GB/T 39786-2021 8.4 h)", "应用和数据安全",
         "不可否认性：SM2 数字签名（审计检查点、报告）",
         "配置主密钥（GOVSOC_MASTER_KEY_FILE），使平台密钥为审计检查点与报告签名。")
def non_repudiation(facts: Facts):
    ks = _keystore(facts)
    keys = []
    if ks is not None:
        from cloud_inventory.signing import platform_public_keys

        keys = platform_public_keys(ks)
    ev = [Evidence("file", str(ks.path) if ks else "keystore (absent)",
                   [f"{k} v{v} SM2" for k, v, _ in keys])]
    signed = facts.store.count(Selection(family="audit",
                                         query="event.action:\"audit.checkpoint\""))
    ev.append(Evidence("query", "family=audit event.action:audit.checkpoint",
                       f"{signed} checkpoints"))
    if not keys:
        return "fail", ("no SM2 platform key: nothing is signed",
                        "无 SM2 平台密钥：没有任何签名"), ev, []
    if not signed:
        return "not_evidenced", ("an SM2 platform key exists but no checkpoint is signed yet",
                                 "已有 SM2 平台密钥，但尚无签名的检查点"), ev, []
    return "pass", (f"SM2 platform key in use; {signed} signed checkpoints",
                    f"SM2 平台密钥在用，已签名检查点 {signed} 个"), ev, []


@control("mp-8.4e", "mp", "GB/T 39786-2021 8.4 e)", "应用和数据安全",
         "重要数据存储机密性（SM4 加密存储：密钥库、备份）",
         "密钥库保持 SM4-GCM 封装；DR 演练与备份使用 dr_sm4_key_file 加密。")
def sm4_at_rest(facts: Facts):
    ks = _keystore(facts)
    ev: list[Evidence] = []
    problems = []
    if ks is None:
        ev.append(Evidence("file", "keystore", "absent"))
    else:
        doc = json.loads(ks.path.read_text(encoding="utf-8"))
        versions = [v for k in doc.get("keys", {}).values() for v in k.get("versions", [])]
        sealed = [v for v in versions if v.get("sealed") or v.get("destroyed")]
        ev.append(Evidence("file", str(ks.path), {
            "format": doc.get("format"), "kdf": (doc.get("kdf") or {}).get("name"),
            "versions": len(versions), "sealed_sm4_gcm": len(sealed)}))
        if len(sealed) != len(versions):
            problems.append((f"{len(versions) - len(sealed)} key versions not sealed",
                             f"{len(versions) - len(sealed)} 个密钥版本未封装"))
    drills = facts.store.search(Selection(dataset="govsoc.dr_drill"), size=5,
                                descending=True).hits
    if drills:
        enc = [bool(((d.get("govsoc") or {}).get("dr") or {}).get("encrypted"))
               for d in drills]
        ev.append(Evidence("query", "dataset=govsoc.dr_drill (latest 5)",
                           {d["event"]["id"]: e for d, e in zip(drills, enc, strict=True)}))
        if not enc[0]:
            problems.append(("the latest DR backup was not SM4-encrypted",
                             "最近一次容灾备份未经 SM4 加密"))
    if problems:
        return "fail", ("; ".join(p[0] for p in problems),
                        "；".join(p[1] for p in problems)), ev, []
    if ks is None and not drills:
        return "not_evidenced", ("no keystore and no backup to judge",
                                 "无密钥库也无备份可供判断"), ev, []
    return "pass", ("keys sealed with SM4-GCM" + (
        ", latest backup SM4-encrypted" if drills else ""),
        "密钥以 SM4-GCM 封装存储" + ("，最近一次备份已 SM4 加密" if drills else "")), ev, []


# -- running -------------------------------------------------------------------------------
def check_compliance(store: Any, cfg: Any, *, standard: str | None = None,
                     now: datetime | None = None,
                     keystore_path: Path | None = None) -> list[Finding]:
    """Every control of `standard` ("djcp-l3", "mp"; None: both), judged now."""
    if standard is not None and standard not in STANDARDS:
        raise ValueError(f"unknown standard {standard!r}: one of {', '.join(STANDARDS)}")
    facts = Facts(store, cfg, now=now, keystore_path=keystore_path)
    out = []
    for meta, fn in CONTROLS:
        if standard and meta["standard"] != standard:
            continue
        try:
            status, summary, ev, hosts = fn(facts)
        except StoreError as exc:  # the store could not answer: say so, never guess
            status, summary, ev, hosts = ("not_evidenced", f"store error: {exc}", [], [])
        en, zh = summary if isinstance(summary, tuple) else (summary, summary)
        out.append(Finding(status=status, summary=en, summary_zh=zh, evidence=ev, hosts=hosts,
                           **meta))
    return out


def summary(findings: list[Finding]) -> dict[str, int]:
    return {s: sum(1 for f in findings if f.status == s) for s in STATUSES}
