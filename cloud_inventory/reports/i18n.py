"""Report text in zh-CN (default) and en."""

from __future__ import annotations

LANGS = ("zh-CN", "en")

TEXT: dict[str, dict[str, str]] = {
    "assets": {"zh-CN": "资产登记表", "en": "Asset register"},
    "exposure": {"zh-CN": "暴露面报告", "en": "Exposure surface"},
    "idle": {"zh-CN": "僵尸与低负载系统", "en": "Idle and low-load systems"},
    "dr": {"zh-CN": "容灾演练报告", "en": "Disaster-recovery drills"},
    "compliance": {"zh-CN": "等保 2.0 与密评合规自评估", "en": "等保 2.0 / 密评 self-assessment"},
    "weekly": {"zh-CN": "安全运营周报", "en": "Weekly SOC summary"},
    "generated": {"zh-CN": "生成时间", "en": "Generated"},
    "period": {"zh-CN": "统计区间", "en": "Period"},
    "platform": {"zh-CN": "政务云安全运营中心 govsoc", "en": "govsoc government-cloud SOC"},
    "summary": {"zh-CN": "概要", "en": "Summary"},
    "signature": {"zh-CN": "签名与验证", "en": "Signature and verification"},
    "sig_text": {"zh-CN": "本报告由平台 SM2 密钥签名（SM3 摘要，默认区分标识 1234567812345678），"
                          "签名为同名 .sig 文件（DER）。审计人员可仅用 OpenSSL 3 验证：",
                 "en": "This report is signed with the platform's SM2 key (SM3, default "
                       "distinguishing ID 1234567812345678); the signature is the .sig file "
                       "of the same name (DER). Auditors verify it with OpenSSL 3 alone:"},
    "key": {"zh-CN": "平台公钥", "en": "Platform key"},
    "fingerprint": {"zh-CN": "公钥 SM3 指纹", "en": "Public key SM3 fingerprint"},
    # assets
    "by_department": {"zh-CN": "按责任部门统计", "en": "By owner department"},
    "by_os": {"zh-CN": "按操作系统统计", "en": "By operating system"},
    "register": {"zh-CN": "资产清单", "en": "Register"},
    "register_cut": {"zh-CN": "显示 {shown} 项，共 {total} 项；完整清单：govsoc inventory list",
                     "en": "{shown} of {total} shown; the full list: govsoc inventory list"},
    "djcp_n": {"zh-CN": "等保{n}级", "en": "等保 level {n}"},
    "djcp_unrated": {"zh-CN": "未定级", "en": "等保 level not set"},
    "imp_high": {"zh-CN": "高", "en": "high"},
    "imp_medium": {"zh-CN": "中", "en": "medium"},
    "imp_low": {"zh-CN": "低", "en": "low"},
    "unset": {"zh-CN": "未设置", "en": "not set"},
    "name": {"zh-CN": "名称", "en": "Name"},
    "address": {"zh-CN": "地址", "en": "Addresses"},
    "os": {"zh-CN": "操作系统", "en": "OS"},
    "department": {"zh-CN": "责任部门", "en": "Department"},
    "importance": {"zh-CN": "重要程度", "en": "Importance"},
    "djcp_level": {"zh-CN": "等保级别", "en": "等保 level"},
    "ports": {"zh-CN": "监听端口", "en": "Listening ports"},
    "last_seen": {"zh-CN": "最近发现", "en": "Last seen"},
    "total_assets": {"zh-CN": "资产总数", "en": "Assets"},
    "unassigned": {"zh-CN": "未分配", "en": "unassigned"},
    # exposure
    "findings": {"zh-CN": "发现项", "en": "Findings"},
    "by_port": {"zh-CN": "按端口统计", "en": "By port"},
    "host": {"zh-CN": "主机", "en": "Host"},
    "service": {"zh-CN": "服务", "en": "Service"},
    "bound": {"zh-CN": "绑定地址", "en": "Bound to"},
    "why": {"zh-CN": "问题", "en": "Issue"},
    "zone": {"zh-CN": "来源区域", "en": "Zone"},
    "zone_violation": {"zh-CN": "跨区访问违规", "en": "zone violation"},
    "plaintext_management": {"zh-CN": "明文管理协议", "en": "plaintext management"},
    "http_admin": {"zh-CN": "明文 HTTP 管理界面", "en": "HTTP admin console"},
    "internet_facing": {"zh-CN": "面向互联网", "en": "internet-facing"},
    # idle
    "inbound": {"zh-CN": "入站会话", "en": "Inbound sessions"},
    "cpu": {"zh-CN": "CPU 均值 / 峰值", "en": "CPU mean / peak"},
    "zombie": {"zh-CN": "僵尸系统", "en": "zombie"},
    "busy": {"zh-CN": "在用", "en": "busy"},
    "unmeasured": {"zh-CN": "无监测数据", "en": "unmeasured"},
    "utilisation": {"zh-CN": "各部门云资源利用率", "en": "Utilisation per department"},
    "verdict": {"zh-CN": "结论", "en": "Verdict"},
    "low_load": {"zh-CN": "低负载", "en": "low load"},
    "idle_note": {"zh-CN": "判定：统计区间内无入站会话且平均 CPU 低于阈值为疑似僵尸系统；"
                           "有会话但 CPU 低于阈值为低负载。"
                           "处置：标记 → 通知责任部门 → 审批后停机。",
                  "en": "Idle: no inbound sessions and mean CPU below the threshold over the "
                        "period; low load: sessions but CPU below it. Action: tag, notify the "
                        "owner department, stop after approval."},
    # dr
    "drills": {"zh-CN": "演练记录", "en": "Drills"},
    "rto_trend": {"zh-CN": "RTO 趋势（秒）", "en": "RTO trend (s)"},
    "when": {"zh-CN": "时间", "en": "When"},
    "primary": {"zh-CN": "主节点", "en": "Primary"},
    "standby": {"zh-CN": "备节点", "en": "Standby"},
    "outcome": {"zh-CN": "结果", "en": "Outcome"},
    "encrypted": {"zh-CN": "SM4 加密", "en": "SM4-encrypted"},
    "success": {"zh-CN": "成功", "en": "success"},
    "failure": {"zh-CN": "失败", "en": "failure"},
    "yes": {"zh-CN": "是", "en": "yes"},
    "no": {"zh-CN": "否", "en": "no"},
    "none_found": {"zh-CN": "无", "en": "none"},
    # compliance
    "djcp-l3": {"zh-CN": "等保 2.0 第三级（GB/T 22239-2019）技术要求",
                "en": "等保 2.0 level 3 (GB/T 22239-2019) technical requirements"},
    "mp": {"zh-CN": "商用密码应用安全性评估（GB/T 39786-2021 第三级）",
           "en": "密评 (GB/T 39786-2021 level 3)"},
    "control": {"zh-CN": "控制项", "en": "Control"},
    "clause": {"zh-CN": "条款", "en": "Clause"},
    "area": {"zh-CN": "层面", "en": "Area"},
    "status": {"zh-CN": "结论", "en": "Status"},
    "evidence": {"zh-CN": "证据", "en": "Evidence"},
    "remediation": {"zh-CN": "整改建议", "en": "Remediation"},
    "pass": {"zh-CN": "符合", "en": "pass"},
    "fail": {"zh-CN": "不符合", "en": "fail"},
    "not_applicable": {"zh-CN": "不适用", "en": "not applicable"},
    "not_evidenced": {"zh-CN": "无证据", "en": "not evidenced"},
    "details": {"zh-CN": "控制项详情", "en": "Control details"},
    # weekly
    "alerts": {"zh-CN": "告警", "en": "Alerts"},
    "alerts_total": {"zh-CN": "新增告警", "en": "New alerts"},
    "open": {"zh-CN": "未处理", "en": "Open"},
    "mtta": {"zh-CN": "平均响应时间 MTTA", "en": "MTTA"},
    "mttr": {"zh-CN": "平均处置时间 MTTR", "en": "MTTR"},
    "top_rules": {"zh-CN": "高频规则", "en": "Top rules"},
    "trend": {"zh-CN": "每日告警趋势", "en": "Alerts per day"},
    "by_severity": {"zh-CN": "按严重程度统计", "en": "By severity"},
    "rule": {"zh-CN": "规则", "en": "Rule"},
    "count": {"zh-CN": "数量", "en": "Count"},
    "not_recorded": {"zh-CN": "未记录", "en": "not recorded"},
    "events_total": {"zh-CN": "事件总数", "en": "Events"},
    "minutes": {"zh-CN": "分钟", "en": "min"},
}


def t(key: str, lang: str) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    return entry.get(lang) or entry["zh-CN"]
