"""Notification channels from `govsoc.toml` (`[notify.channels.<name>]`): the three robot
webhooks and e-mail, each sending one `Message` or raising `DeliveryError`.

    [notify.channels.soc_dingtalk]
    type = "dingtalk"          # dingtalk | wecom | feishu | email
    url = "https://oapi.dingtalk.com/robot/send?access_token=..."   # a secret: never shown
    secret = "SEC..."          # 加签 secret (dingtalk, feishu); optional
    kinds = ["alert", "approval", "playbook"]   # what it receives (default: all)
    min_level = "high"         # alerts at or above (default: notify.min_level, "high")
    departments = ["wjw"]      # only alerts of these departments (default: all)
    rate_per_minute = 20       # the vendor's limit (DingTalk/WeCom 20, Feishu 100)
    max_attempts = 20          # with the default backoff: about an hour of outage

    [notify.channels.wecom_soc]
    type = "wecom"
    key = "..."                # the webhook key (url defaults to WeCom's send endpoint)

    [notify.channels.mail]
    type = "email"
    host = "smtp.example.gov.cn"; port = 587
    security = "starttls"      # starttls | ssl | none
    username = "..."; password = "..."   # only over TLS
    from = "soc@example.gov.cn"; to = ["duty@example.gov.cn"]
    ca_file = "/etc/govsoc/smtp-ca.pem"  # optional: trust this CA instead of the system's

Every key can come from the environment instead (`GOVSOC_NOTIFY_CHANNELS_<NAME>_SECRET`),
which is where secrets belong. Secrets (webhook URLs and keys, HMAC secrets, passwords)
never reach a log, an error text or `public()`: errors name the failure, not the request.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from soc_core.config import Config, ConfigError
from soc_core.notify.signing import dingtalk_query, feishu_sign

__all__ = ["KINDS", "LEVELS", "Channel", "DeliveryError", "EmailChannel", "Message",
           "WebhookChannel", "channels_from_config", "level_at_least"]

LEVELS = ("informational", "low", "medium", "high", "critical")
KINDS = ("alert", "approval", "playbook", "report")
_NAME = re.compile(r"^[a-z0-9_]{1,40}$")  # also an environment variable's part
_LEVEL_ZH = {"critical": "严重", "high": "高危", "medium": "中危", "low": "低危",
             "informational": "提示"}


class _RedactURLs(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook URL is a credential (DingTalk's
    access_token, WeCom's key, Feishu's hook token), so only scheme and host are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(f"{a.scheme}://{a.netloc.decode(errors='replace')}/***"
                                if isinstance(a, httpx.URL) else a for a in record.args)
        return True


if not any(isinstance(f, _RedactURLs) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_RedactURLs())


def level_at_least(level: str, minimum: str) -> bool:
    try:
        return LEVELS.index(level) >= LEVELS.index(minimum)
    except ValueError:
        return False


@dataclass(frozen=True)
class Message:
    """One notification. `id` is deterministic (the alert id, the run id and its state), so
    the same news queued twice is one message."""

    id: str
    kind: str  # alert | approval | playbook | test
    title: str
    text: str
    level: str = "informational"
    departments: tuple[str, ...] = ()
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    # e-mail only: files attached (paths on this machine, read when sent) and recipients
    # instead of the channel's `to` (a report schedule names its own)
    attachments: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()

    def heading(self) -> str:
        tag = _LEVEL_ZH.get(self.level, self.level) if self.kind == "alert" else \
            {"approval": "待审批", "playbook": "剧本结果", "test": "测试",
             "report": "报告"}.get(self.kind, "")
        return f"[govsoc {tag}] {self.title}"


class DeliveryError(Exception):
    """A message not delivered. `retry`: worth another attempt later (receiver down, rate
    limited); False when only a configuration change can help (bad signature, bad key).
    The text never holds a secret."""

    def __init__(self, text: str, *, retry: bool = True, retry_after: float | None = None):
        super().__init__(text)
        self.retry = retry
        self.retry_after = retry_after


@dataclass
class Channel:
    name: str
    type: str
    kinds: frozenset[str] = frozenset(KINDS)
    min_level: str = "high"
    departments: frozenset[str] = frozenset()
    rate_per_minute: float = 20.0
    burst: int = 5
    max_attempts: int = 20
    timeout: float = 10.0

    def wants(self, msg: Message) -> bool:
        if msg.kind == "test":
            return True
        if msg.kind not in self.kinds:
            return False
        if msg.kind == "alert" and not level_at_least(msg.level, self.min_level):
            return False
        return not self.departments or bool(self.departments & set(msg.departments))

    def secrets(self) -> list[str]:
        """Every secret value this channel holds, to scrub from any text it produces."""
        return []

    def target(self) -> str:
        """Where it sends, without credentials."""
        return ""

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "target": self.target(),
                "kinds": sorted(self.kinds), "min_level": self.min_level,
                "departments": sorted(self.departments),
                "rate_per_minute": self.rate_per_minute, "max_attempts": self.max_attempts}

    def send(self, msg: Message) -> None:
        raise NotImplementedError

    def scrub(self, text: str) -> str:
        for s in self.secrets():
            if s:
                text = text.replace(s, "***")
        return text[:300]


# vendor error codes that mean "too many messages now": retried after a pause
_RATE_CODES = {"dingtalk": {130101, 130102}, "wecom": {45009, 45033}, "feishu": {9499, 11232}}


@dataclass
class WebhookChannel(Channel):
    url: str = ""
    secret: str = ""
    key: str = ""  # wecom
    ca_file: str = ""

    def secrets(self) -> list[str]:
        out = [self.url, self.secret, self.key]
        query = urlsplit(self.url).query
        out += [part.split("=", 1)[-1] for part in query.split("&") if part]
        out += [p for p in urlsplit(self.url).path.split("/") if len(p) >= 16]  # feishu token
        return [s for s in out if s]

    def target(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""

    def request(self, msg: Message, now: float) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body of the vendor's request for `msg` at time `now`."""
        title, text = msg.heading(), msg.text
        if self.type == "dingtalk":
            url = self.url
            if self.secret:
                url += ("&" if "?" in url else "?") + dingtalk_query(self.secret,
                                                                     int(now * 1000))
            return url, {"msgtype": "markdown",
                         "markdown": {"title": title[:100], "text": f"#### {title}\n\n{text}"}}
        if self.type == "wecom":
            url = self.url if not self.key else \
                self.url + ("&" if "?" in self.url else "?") + f"key={self.key}"
            content = f"### {title}\n{text}".encode()[:4000].decode(errors="ignore")
            return url, {"msgtype": "markdown", "markdown": {"content": content}}
        # feishu
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": f"{title}\n{text}"}}
        if self.secret:
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(self.secret, ts), **body}
        return self.url, body

    def send(self, msg: Message) -> None:
        url, body = self.request(msg, time.time())
        try:
            with httpx.Client(timeout=self.timeout, verify=self._verify(),
                              follow_redirects=False, trust_env=False) as client:
                r = client.post(url, json=body)
        except httpx.HTTPError as exc:  # no URL in the text: it holds the credential
            raise DeliveryError(f"{type(exc).__name__}: {self.scrub(str(exc))}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise DeliveryError(f"HTTP {r.status_code} from the receiver",
                                retry_after=_retry_after(r.headers.get("retry-after")))
        if r.status_code >= 400:
            raise DeliveryError(f"HTTP {r.status_code} from the receiver", retry=False)
        try:
            answer = r.json()
        except ValueError:
            raise DeliveryError("the receiver answered something other than JSON") from None
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code in (0, None):
            return
        why = self.scrub(str(answer.get("errmsg") or answer.get("msg") or ""))
        retry = code in _RATE_CODES.get(self.type, ())
        raise DeliveryError(f"{self.type} refused the message: code {code} {why}".strip(),
                            retry=retry)

    def _verify(self) -> Any:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


_ATTACHMENT_TYPES = {".pdf": ("application", "pdf"), ".html": ("text", "html"),
                     ".pem": ("application", "x-pem-file")}


@dataclass
class EmailChannel(Channel):
    host: str = ""
    port: int = 0
    security: str = "starttls"
    username: str = ""
    password: str = ""
    sender: str = ""
    to: tuple[str, ...] = ()
    ca_file: str = ""

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def target(self) -> str:
        return f"smtp://{self.host}:{self.port} ({self.security}) -> {', '.join(self.to)}"

    def build(self, msg: Message) -> EmailMessage:
        m = EmailMessage()
        m["Subject"] = msg.heading()
        m["From"] = self.sender
        m["To"] = ", ".join(msg.recipients or self.to)
        m["Date"] = formatdate(localtime=False)
        # deterministic: a message sent again after a crash is recognisably the same one
        m["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9.-]', '.', msg.id)}@govsoc>"
        m.set_content(msg.text)
        for path in msg.attachments:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:  # the file went away: no retry brings it back
                raise DeliveryError(f"attachment {Path(path).name} cannot be read: "
                                    f"{exc.strerror}", retry=False) from None
            kind = _ATTACHMENT_TYPES.get(Path(path).suffix.lower(),
                                         ("application", "octet-stream"))
            m.add_attachment(data, maintype=kind[0], subtype=kind[1],
                             filename=Path(path).name)
        return m

    def send(self, msg: Message) -> None:
        mail = self.build(msg)
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port,
                                                      timeout=self.timeout, context=ctx)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=ctx)
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login refused ({exc.smtp_code})", retry=False) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("SMTP server refused every recipient", retry=False) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP error {exc.smtp_code}",
                                retry=exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {self.scrub(str(exc))}") from None


_DEFAULT_RATE = {"dingtalk": 20.0, "wecom": 20.0, "feishu": 100.0, "email": 30.0}
_DEFAULT_URL = {"wecom": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}


def channels_from_config(cfg: Config) -> dict[str, Channel]:
    """The configured channels by name; ConfigError names the first bad one (its name and
    key, never a value)."""
    raw = cfg.get("notify.channels") or {}
    if not isinstance(raw, dict):
        raise ConfigError("notify.channels must be a table of channels")
    default_level = str(cfg.get("notify.min_level", "high"))
    if default_level not in LEVELS:
        raise ConfigError(f"notify.min_level must be one of {', '.join(LEVELS)}")
    out: dict[str, Channel] = {}
    for name in sorted(raw):
        if not _NAME.match(name):
            raise ConfigError(f"notify channel name {name!r}: use a-z, 0-9 and _")
        out[name] = _channel(cfg, name, default_level)
    return out


def _channel(cfg: Config, name: str, default_level: str) -> Channel:
    where = f"notify.channels.{name}"

    def get(key: str, default: Any = None) -> Any:
        return cfg.get(f"{where}.{key}", default)

    kind = str(get("type", ""))
    if kind not in ("dingtalk", "wecom", "feishu", "email"):
        raise ConfigError(f"{where}.type must be dingtalk, wecom, feishu or email")
    kinds = get("kinds", list(KINDS))
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ConfigError(f"{where}.kinds: a list of {', '.join(KINDS)}")
    level = str(get("min_level", default_level))
    if level not in LEVELS:
        raise ConfigError(f"{where}.min_level must be one of {', '.join(LEVELS)}")
    depts = get("departments", [])
    try:
        common: dict[str, Any] = dict(
            name=name, type=kind, kinds=frozenset(kinds), min_level=level,
            departments=frozenset([depts] if isinstance(depts, str) else depts),
            rate_per_minute=float(get("rate_per_minute", _DEFAULT_RATE[kind])),
            burst=int(get("burst", 5)), max_attempts=int(get("max_attempts", 20)),
            timeout=float(get("timeout", 10.0)))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: rate_per_minute, burst, max_attempts and timeout "
                          "are numbers") from None
    if common["rate_per_minute"] <= 0 or common["burst"] < 1 or common["max_attempts"] < 1:
        raise ConfigError(f"{where}: rate_per_minute, burst and max_attempts must be positive")
    if kind == "email":
        security = str(get("security", "starttls"))
        if security not in ("starttls", "ssl", "none"):
            raise ConfigError(f"{where}.security must be starttls, ssl or none")
        to = get("to", [])
        to = [to] if isinstance(to, str) else list(to)
        host, sender = str(get("host", "")), str(get("from", ""))
        if not host or not sender or not to:
            raise ConfigError(f"{where}: host, from and to are required")
        username = str(get("username", "") or "")
        if username and security == "none":
            raise ConfigError(f"{where}: a password is only sent over TLS (security "
                              "starttls or ssl)")
        port = int(get("port", {"ssl": 465, "starttls": 587, "none": 25}[security]))
        return EmailChannel(**common, host=host, port=port, security=security,
                            username=username, password=str(get("password", "") or ""),
                            sender=sender, to=tuple(str(t) for t in to),
                            ca_file=str(get("ca_file", "") or ""))
    url = str(get("url", _DEFAULT_URL.get(kind, "")) or "")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"{where}.url must be an http(s) URL")
    key = str(get("key", "") or "")
    if kind == "wecom" and not key and "key=" not in url:
        raise ConfigError(f"{where}.key is required (the webhook key)")
    return WebhookChannel(**common, url=url, secret=str(get("secret", "") or ""), key=key,
                          ca_file=str(get("ca_file", "") or ""))
