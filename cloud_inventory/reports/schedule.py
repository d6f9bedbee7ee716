"""Scheduled reports in `govsoc up`: the service `reports` (entry point
`govsoc.services`) makes each configured report when its cron expression matches, in the
viewer's time zone (config `timezone`).

    [[reports.schedule]]
    kind = "weekly"            # assets | exposure | idle | dr | compliance | weekly
    cron = "0 8 * * 1"         # minute hour day-of-month month day-of-week (0 = Sunday)
    format = "pdf"             # pdf | html
    lang = "zh-CN"             # zh-CN | en
    mail_to = ["cio@example.gov.cn"]   # optional: e-mailed, signature attached
    mail_channel = "mail"      # optional: which e-mail channel (default: the only one)

Without a `reports.schedule`, the weekly SOC summary is made on Mondays at 08:00 and the
compliance self-assessment on the first of each month at 03:00.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("govsoc.reports")
DEFAULT = [{"kind": "weekly", "cron": "0 8 * * 1"},
           {"kind": "compliance", "cron": "0 3 1 * *"}]
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


class ScheduleError(ValueError):
    """A schedule entry that cannot be understood."""


def _field(text: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = lo, hi
            elif "-" in base:
                a, b = base.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(base)
        except ValueError:
            raise ScheduleError(f"bad cron field {text!r}") from None
        # day of week: Sunday is 0 and may be written 7
        if step < 1 or start < lo or end > (7 if hi == 6 else hi) or start > end:
            raise ScheduleError(f"cron field {text!r} is out of range {lo}-{hi}")
        out.update(v % 7 if hi == 6 else v for v in range(start, end + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    minute: frozenset[int]
    hour: frozenset[int]
    day: frozenset[int]
    month: frozenset[int]
    weekday: frozenset[int]
    day_any: bool
    weekday_any: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = str(text).split()
        if len(parts) != 5:
            raise ScheduleError(f"cron {text!r} needs 5 fields: minute hour day month weekday")
        fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True)]
        return cls(*fields, day_any=parts[2] == "*", weekday_any=parts[4] == "*")

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minute or t.hour not in self.hour or t.month not in self.month:
            return False
        dom, dow = t.day in self.day, (t.isoweekday() % 7) in self.weekday
        # cron's rule: when both day fields are restricted, either may match
        if not self.day_any and not self.weekday_any:
            return dom or dow
        return dom and dow


@dataclass(frozen=True)
class Entry:
    kind: str
    cron: Cron
    format: str = "pdf"
    lang: str = "zh-CN"
    mail_to: tuple[str, ...] = ()
    mail_channel: str | None = None


def entries(cfg: Any) -> list[Entry]:
    from cloud_inventory.reports.i18n import LANGS
    from cloud_inventory.reports.kinds import KINDS
    from cloud_inventory.reports.mail import MailError, check_recipients

    raw = cfg.get("reports.schedule")
    raw = DEFAULT if raw is None else raw
    if not isinstance(raw, list):
        raise ScheduleError("reports.schedule must be a list of tables")
    out = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or e.get("kind") not in KINDS:
            raise ScheduleError(f"reports.schedule[{i}]: kind must be one of {', '.join(KINDS)}")
        fmt = e.get("format", "pdf")
        lang = e.get("lang", cfg.get("language", "zh-CN"))
        if fmt not in ("pdf", "html") or lang not in LANGS:
            raise ScheduleError(f"reports.schedule[{i}]: format pdf|html, lang zh-CN|en")
        mail_to: tuple[str, ...] = ()
        if "mail_to" in e:
            try:
                mail_to = check_recipients(e["mail_to"], f"reports.schedule[{i}].mail_to")
            except MailError as exc:
                raise ScheduleError(str(exc)) from None
        channel = e.get("mail_channel")
        if channel is not None and not isinstance(channel, str):
            raise ScheduleError(f"reports.schedule[{i}].mail_channel: a channel name")
        out.append(Entry(e["kind"], Cron.parse(e.get("cron", "")), fmt, lang, mail_to,
                         channel))
    return out


def due(items: list[Entry], now_local: datetime, done: set[tuple[int, str]]) -> list[Entry]:
    """The entries whose cron matches this minute and that have not run in it."""
    stamp = int(now_local.timestamp() // 60)
    out = []
    for i, e in enumerate(items):
        key = (stamp, f"{i}")
        if key not in done and e.cron.matches(now_local):
            done.add(key)
            out.append(e)
    return out


def run(store_url: str, stop: threading.Event, demo: bool = False) -> None:
    """The `reports` service of `govsoc up`."""
    from cloud_inventory.reports.archive import make_report
    from cloud_inventory.reports.mail import mail_report
    from soc_core.config import load_config, viewer_zone
    from soc_core.store import open_store

    cfg = load_config()
    items = entries(cfg)
    zone = viewer_zone(cfg)
    done: set[tuple[int, str]] = set()
    while not stop.is_set():
        now = datetime.now(UTC)
        for e in due(items, now.astimezone(zone), done):
            try:
                with open_store(store_url) as store:
                    made = make_report(e.kind, store, cfg, fmt=e.format, lang=e.lang, now=now)
                log.info("report %s made and signed", made.name)
                if e.mail_to:
                    mail_report(cfg, made, e.mail_to, channel=e.mail_channel)
                    log.info("report %s queued for %d recipients", made.name,
                             len(e.mail_to))
            except Exception as exc:  # noqa: BLE001 - one failed report must not stop the rest
                log.warning("scheduled report %s failed: %s", e.kind, type(exc).__name__)
        done = {k for k in done if k[0] >= int(now.timestamp() // 60) - 2}
        stop.wait(20)
