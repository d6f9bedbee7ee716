"""Signed reports: asset register, exposure, idle systems, DR drills, the 等保/密评
self-assessment and the weekly SOC summary, as HTML or PDF (zh-CN, en), each with a detached
SM2 signature by the platform key (`cloud_inventory.signing`).

    make_report(kind, store, cfg, fmt="pdf", lang="zh-CN", out_dir=None) -> Made
    list_reports(store, kind=None), report_entry(store, name), report_files(entry),
    reports_dir(cfg)    where reports are kept (`reports.dir`, else <data_dir>/reports)
    mail_report(cfg, made, recipients, channel=None) -> bool   queue the signed report
                        (document, signature, public key attached) for an e-mail channel
    MailError
    KINDS (REPORT_KINDS), FORMATS, LANGS, ReportError
"""

from soc_core.lazy import lazy_exports

_WHERE = {
    "make_report": "archive", "list_reports": "archive", "report_entry": "archive",
    "report_files": "archive", "reports_dir": "archive", "Made": "archive",
    "ReportError": "archive", "KINDS": "kinds", "REPORT_KINDS": "kinds",
    "FORMATS": "render", "LANGS": "i18n", "mail_report": "mail", "MailError": "mail",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
