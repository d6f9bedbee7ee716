"""The console's one message catalogue: every string a page or script shows, in zh-CN (the
default) and en. Templates call `t(key)`; scripts get the page's language as a JSON island
(`catalogue(lang)`), so no string lives in a template or a script file."""

from __future__ import annotations

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"

# key -> (zh-CN, en)
MESSAGES: dict[str, tuple[str, str]] = {
    "app.name": ("政务云安全运营中心", "govsoc security operations"),
    "app.skip": ("跳到正文", "Skip to content"),
    "nav.overview": ("态势感知", "Situational awareness"),
    "nav.bigscreen": ("大屏", "Wall screen"),
    "nav.alerts": ("告警队列", "Alert queue"),
    "nav.events": ("事件检索", "Event search"),
    "nav.logout": ("退出", "Log out"),
    "nav.lang": ("English", "中文"),
    "nav.user": ("当前用户", "Signed in as"),
    "nav.zone": ("时区", "Time zone"),
    "nav.zone_apply": ("应用", "Apply"),
    # login
    "login.title": ("登录", "Log in"),
    "login.username": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.totp": ("动态口令（已启用双因素时填写）", "TOTP code (if enrolled)"),
    "login.submit": ("登录", "Log in"),
    "login.failed": ("用户名、密码或动态口令错误", "Invalid user name, password or code"),
    "login.locked": ("连续登录失败，账户已锁定，请稍后再试", "Account locked after repeated "
                     "failed logins; try again later"),
    "login.totp_required": ("请输入动态口令", "Enter your TOTP code"),
    "login.rate": ("登录过于频繁，请一分钟后再试", "Too many logins; wait a minute"),
    "login.change_title": ("首次登录请修改密码", "Change your password (first login)"),
    "login.current": ("当前密码", "Current password"),
    "login.new": ("新密码", "New password"),
    "login.new2": ("确认新密码", "Repeat the new password"),
    "login.mismatch": ("两次输入的新密码不一致", "The new passwords differ"),
    "login.change": ("修改密码", "Change password"),
    "login.changed": ("密码已修改，请使用新密码重新登录", "Password changed: log in again "
                      "with the new one"),
    "login.enrol_title": ("管理员须启用双因素认证", "Administrators must enrol a second "
                          "factor"),
    "login.enrol_secret": ("在验证器应用中添加此密钥", "Add this key to your authenticator "
                           "app"),
    "login.enrol_code": ("验证器显示的动态口令", "The code the app shows"),
    "login.enrol_confirm": ("确认启用", "Confirm"),
    "login.enrolled": ("双因素认证已启用，请重新登录", "Second factor enrolled: log in "
                       "again"),
    "login.error": ("操作失败", "Failed"),
    # overview
    "ov.title": ("态势感知总览", "Situational awareness overview"),
    "ov.index": ("安全指数", "Security index"),
    "ov.index_how": ("计算方法", "How it is computed"),
    "ov.index_formula": ("指数 = 100 − 告警负荷 A（≤60）− 暴露面 E（≤25）− 补丁滞后 P（≤15）",
                         "index = 100 − alert load A (≤60) − exposure E (≤25) − patch lag "
                         "P (≤15)"),
    "ov.part_alerts": ("告警负荷 A", "Alert load A"),
    "ov.part_alerts_how": ("未处置告警按级别加权（严重10、高5、中2、低0.5），超过24/72小时"
                           "乘1.5/2，已确认减半",
                           "Open alerts weighted by level (critical 10, high 5, medium 2, "
                           "low 0.5), ×1.5 after 24 h and ×2 after 72 h, halved when "
                           "acknowledged"),
    "ov.part_exposure": ("暴露面 E", "Exposure E"),
    "ov.part_exposure_how": ("每个存在未处置初始访问告警的内部地址扣5分",
                             "5 per internal address with an open initial-access alert"),
    "ov.part_patch": ("补丁滞后 P", "Patch lag P"),
    "ov.part_patch_how": ("15 × 补丁滞后超过30天的资产占比", "15 × share of assets whose "
                          "patch lag exceeds 30 days"),
    "ov.band.good": ("良好", "good"),
    "ov.band.attention": ("关注", "attention"),
    "ov.band.at_risk": ("风险", "at risk"),
    "ov.band.severe": ("严重", "severe"),
    "ov.open_alerts": ("未处置告警", "Open alerts"),
    "ov.trend": ("告警趋势", "Alerts over time"),
    "ov.range.24h": ("24小时", "24 h"),
    "ov.range.7d": ("7天", "7 d"),
    "ov.range.30d": ("30天", "30 d"),
    "ov.by_level": ("按级别", "By level"),
    "ov.by_tactic": ("按ATT&CK战术", "By ATT&CK tactic"),
    "ov.by_department": ("按委办局", "By department"),
    "ov.top_sources": ("主要攻击源", "Top sources"),
    "ov.top_targets": ("主要攻击目标", "Top targets"),
    "ov.newest": ("最新告警", "Newest alerts"),
    "ov.health": ("采集与检测引擎状态", "Collector and engine health"),
    "ov.health.collectors": ("采集器", "Collectors"),
    "ov.health.engine": ("检测引擎", "Detection engine"),
    "ov.health.rules": ("规则", "rules"),
    "ov.health.rule_errors": ("出错规则", "rules with errors"),
    "ov.health.none": ("最近一小时无采集器上报", "No collector reported in the last hour"),
    "ov.health.store": ("事件存储", "Event store"),
    "ov.updated": ("更新于", "Updated"),
    "ov.refresh_failed": ("刷新失败，稍后重试", "Refresh failed; retrying"),
    "ov.count": ("数量", "Count"),
    "ov.none": ("无", "none"),
    "ov.unassigned": ("未归属", "unassigned"),
    "bs.title": ("网络安全态势大屏", "Security situation wall screen"),
    # levels and statuses
    "level.critical": ("严重", "critical"),
    "level.high": ("高危", "high"),
    "level.medium": ("中危", "medium"),
    "level.low": ("低危", "low"),
    "level.informational": ("信息", "informational"),
    "status.open": ("待处置", "open"),
    "status.acknowledged": ("已确认", "acknowledged"),
    "status.closed": ("已关闭", "closed"),
    "reason.resolved": ("已解决", "resolved"),
    "reason.false_positive": ("误报", "false positive"),
    "reason.true_positive": ("真实攻击", "true positive"),
    "reason.duplicate": ("重复", "duplicate"),
    "reason.benign": ("良性", "benign"),
    # alert queue
    "aq.title": ("告警队列", "Alert queue"),
    "aq.status": ("状态", "Status"),
    "aq.level": ("级别", "Level"),
    "aq.any": ("全部", "any"),
    "aq.query": ("查询", "Query"),
    "aq.range": ("时间范围", "Time range"),
    "aq.range.all": ("全部时间", "all time"),
    "aq.sort": ("排序", "Sort"),
    "aq.sort.newest": ("最新在前", "newest first"),
    "aq.sort.oldest": ("最早在前", "oldest first"),
    "aq.apply": ("筛选", "Filter"),
    "aq.time": ("时间", "Time"),
    "aq.rule": ("规则", "Rule"),
    "aq.host": ("主机/目标", "Host / target"),
    "aq.source": ("来源", "Source"),
    "aq.department": ("委办局", "Department"),
    "aq.assignee": ("处置人", "Assignee"),
    "aq.select": ("选择", "Select"),
    "aq.select_all": ("全选", "Select all"),
    "aq.empty": ("没有符合条件的告警", "No alerts match"),
    "aq.more": ("加载更多", "Load more"),
    "aq.keys": ("快捷键：j/k 下一条/上一条，x 选择，a 确认，c 关闭，m 指派给我，Enter 详情",
                "Keys: j/k next/previous, x select, a acknowledge, c close, m assign to me, "
                "Enter details"),
    "aq.ack": ("确认", "Acknowledge"),
    "aq.close": ("关闭", "Close"),
    "aq.close_reason": ("关闭原因", "Close reason"),
    "aq.note": ("备注", "Note"),
    "aq.cancel": ("取消", "Cancel"),
    "aq.bulk": ("已选 {n} 条", "{n} selected"),
    "aq.done": ("已更新", "Updated"),
    "aq.failed": ("操作失败：", "Action failed: "),
    "aq.new": ("新告警 {n} 条", "{n} new alerts"),
    "aq.shown": ("显示 {n} 条", "{n} shown"),
    # alert detail
    "ad.title": ("告警详情", "Alert"),
    "ad.rule": ("规则", "Rule"),
    "ad.description": ("说明", "Description"),
    "ad.technique": ("ATT&CK 技术", "ATT&CK technique"),
    "ad.tactic": ("ATT&CK 战术", "ATT&CK tactic"),
    "ad.first_seen": ("首次发现", "First seen"),
    "ad.last_seen": ("最近发现", "Last seen"),
    "ad.count": ("事件数", "Events"),
    "ad.events": ("匹配事件", "Matched events"),
    "ad.notes": ("处置记录", "Notes"),
    "ad.no_notes": ("暂无记录", "No notes yet"),
    "ad.add_note": ("添加备注", "Add note"),
    "ad.context": ("资产与委办局", "Asset and department"),
    "ad.back": ("返回队列", "Back to the queue"),
    "ad.close_reason": ("关闭原因", "Close reason"),
    # event search
    "ev.title": ("事件检索", "Event search"),
    "ev.query": ("查询语句（如 source.ip:10.1.0.5 AND event.dataset:network.flow）",
                 "Query (e.g. source.ip:10.1.0.5 AND event.dataset:network.flow)"),
    "ev.from": ("开始", "From"),
    "ev.to": ("结束", "To"),
    "ev.search": ("检索", "Search"),
    "ev.hits": ("命中 {n} 条", "{n} hits"),
    "ev.histogram": ("事件分布", "Events over time"),
    "ev.fields": ("字段", "Fields"),
    "ev.top": ("高频取值", "Top values"),
    "ev.doc": ("文档", "Document"),
    "ev.empty": ("无匹配事件", "No events match"),
    "ev.bad_query": ("查询有误：", "Bad query: "),
    "ev.message": ("消息", "Message"),
    "ev.dataset": ("数据集", "Dataset"),
    "ev.shown": ("显示前 {n} 条", "First {n} shown"),
    # errors
    "err.title": ("无法显示此页", "This page cannot be shown"),
    "err.not_found": ("不存在或无权查看", "Not found, or not yours to see"),
    "err.forbidden": ("您的角色无权访问此页", "Your roles do not allow this page"),
    "err.home": ("返回首页", "Back to the overview"),
}


def text(key: str, lang: str) -> str:
    """The string of `key` in `lang`; a missing key shows as itself (and fails the test
    that checks every key used by a template or script)."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


def catalogue(lang: str, prefix: tuple[str, ...] = ()) -> dict[str, str]:
    """The strings of `lang` whose keys start with one of `prefix` (all when empty)."""
    return {k: text(k, lang) for k in MESSAGES if not prefix or k.startswith(prefix)}
