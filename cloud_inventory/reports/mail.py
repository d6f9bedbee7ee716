"""E-mailing a signed report: the document, its detached SM2 signature and the platform's
public key as attachments, queued in the notification outbox for one e-mail channel of
`[notify.channels]` (soc_core.notify), so the `notify` service delivers it with its retries
and a mail server that is down loses nothing. The message says how to check the signature
with the OpenSSL 3 command line alone.

    [[reports.schedule]]
    kind = "weekly"
    cron = "0 8 * * 1"
    mail_to = ["cio@example.gov.cn", "audit@example.gov.cn"]
    mail_channel = "mail"     # an e-mail channel; default: the only one configured
"""

from __future__ import annotations

import re
from typing import Any

from cloud_inventory.signing import DISTID
from soc_core.notify import EmailChannel, Message, Outbox, channels_from_config, outbox_path

ADDRESS = re.compile(r"^[^@\s,;<>]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


class MailError(ValueError):
    """A report mail that cannot be queued (no such e-mail channel, a bad address)."""


def check_recipients(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > 50:
        raise MailError(f"{where}: a list of 1-50 e-mail addresses")
    bad = [a for a in value if not isinstance(a, str) or not ADDRESS.match(a)]
    if bad:
        raise MailError(f"{where}: not an e-mail address: {str(bad[0])[:80]!r}")
    return tuple(value)


def email_channel(cfg: Any, name: str | None) -> EmailChannel:
    """The named e-mail channel, or the only one when none is named."""
    mail = {n: c for n, c in channels_from_config(cfg).items() if isinstance(c, EmailChannel)}
    if name is None and len(mail) == 1:
        return next(iter(mail.values()))
    if name is None:
        raise MailError(f"name the e-mail channel (mail_channel): "
                        f"{', '.join(sorted(mail)) or 'none configured'}")
    if name not in mail:
        raise MailError(f"no e-mail channel {name!r} in [notify.channels]")
    return mail[name]


def mail_report(cfg: Any, made: Any, recipients: tuple[str, ...], *,
                channel: str | None = None, outbox: Outbox | None = None) -> bool:
    """Queue `made` (a signed report, cloud_inventory.reports.Made) for `recipients`; False
    when this report was queued before (the message id is the report's name)."""
    ch = email_channel(cfg, channel)
    box = outbox or Outbox(outbox_path(cfg))
    text = (f"{made.name}：政务云安全运营中心自动生成的报告（{made.kind}，{made.format}），"
            f"附件含 SM2 分离签名（{made.signature.name}）与平台公钥（{made.public_key.name}）。\n"
            f"SM3 摘要: {made.sm3}\n\n"
            "用 OpenSSL 3 验证签名 / verify with the OpenSSL 3 command line:\n"
            f"  openssl dgst -sm3 -sigopt distid:{DISTID} -verify {made.public_key.name} "
            f"-signature {made.signature.name} {made.path.name}\n")
    msg = Message(id=f"report:{made.name}", kind="report", title=made.name, text=text,
                  attachments=(str(made.path), str(made.signature), str(made.public_key)),
                  recipients=recipients)
    try:
        return box.enqueue(msg, [ch])
    finally:
        if outbox is None:
            box.close()
