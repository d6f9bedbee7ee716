"""Making, signing and keeping reports.

`make_report` builds a kind, renders it, writes `<reports dir>/<name>` and its detached SM2
signature `<name>.sig`, exports the platform public key beside them
(`platform-sm2.pub.pem`) and indexes the report in the store (`event.dataset:
govsoc.state.report`, one document a report) so every API worker lists the same reports.
The reports directory is `reports.dir`, else `<data_dir>/reports`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_inventory import signing
from cloud_inventory.reports import kinds, render
from cloud_inventory.reports.i18n import LANGS
from soc_core.ecs import format_time
from soc_core.store import Selection

DATASET = "govsoc.state.report"
NAME_RE = re.compile(r"^[a-z]+-\d{8}T\d{6}Z\.(zh-CN|en)\.(pdf|html)$")


class ReportError(ValueError):
    """A report that cannot be made as asked (unknown kind, format, language)."""


@dataclass(frozen=True)
class Made:
    name: str
    path: Path
    signature: Path
    public_key: Path
    kind: str
    format: str
    lang: str
    sm3: str
    key_id: str
    version: int
    fingerprint: str
    size: int


def reports_dir(cfg: Any) -> Path:
    return Path(cfg.get("reports.dir") or (Path(cfg.data_dir) / "reports"))


def keystore_for(cfg: Any) -> Any:
    from crypto_svc import Keystore

    ks = Keystore.from_config(cfg)
    ks.path.parent.mkdir(parents=True, exist_ok=True)  # the platform key's lock file goes there
    return ks


def make_report(kind: str, store: Any, cfg: Any, *, fmt: str = "pdf", lang: str = "zh-CN",
                out_dir: str | Path | None = None, keystore: Any = None,
                now: datetime | None = None) -> Made:
    if kind not in kinds.KINDS:
        raise ReportError(f"unknown report kind {kind!r}: one of {', '.join(kinds.KINDS)}")
    if fmt not in render.FORMATS:
        raise ReportError(f"unknown format {fmt!r}: pdf or html")
    if lang not in LANGS:
        raise ReportError(f"unknown language {lang!r}: one of {', '.join(LANGS)}")
    keystore = keystore or keystore_for(cfg)
    now = now or datetime.now(UTC)
    # the key is known before rendering: its id and fingerprint are printed in the report
    _, version, public, key_id = signing.signing_key(keystore)
    fp = signing.fingerprint(public)
    name = f"{kind}-{now:%Y%m%dT%H%M%SZ}.{lang}.{fmt}"
    doc = kinds.build(kind, store, cfg, lang=lang, now=now)
    html = render.to_html(doc, filename=name, key_id=key_id, key_version=version,
                          fingerprint=fp, cfg=cfg)
    data = render.to_pdf(html) if fmt == "pdf" else html.encode("utf-8")
    folder = Path(out_dir) if out_dir else reports_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    signed = signing.sign_file(path, keystore)
    pub = signing.export_public_key(keystore, folder)
    made = Made(name, path, path.with_name(name + signing.SIG_SUFFIX), pub, kind, fmt, lang,
                signed.sm3, signed.key_id, signed.version, signed.fingerprint, len(data))
    _index(store, made, now)
    return made


def _index(store: Any, made: Made, now: datetime) -> None:
    doc = {"@timestamp": format_time(now),
           "event": {"kind": "state", "dataset": DATASET, "id": "report:" + made.name},
           "message": f"report {made.name}",
           "govsoc": {"report": {"name": made.name, "kind": made.kind, "format": made.format,
                                 "lang": made.lang, "sm3": made.sm3, "size": made.size,
                                 "key_id": made.key_id, "key_version": made.version,
                                 "fingerprint": made.fingerprint,
                                 "folder": str(made.path.parent)}}}
    result = store.write([doc], refresh=True)
    if result.rejected:
        raise ReportError(f"report index not stored: {result.rejected[0].reason}")


def list_reports(store: Any, *, kind: str | None = None, limit: int = 200) -> list[dict]:
    sel = Selection(family="state", dataset=DATASET)
    out = []
    for d in store.scan(sel, descending=True):
        r = dict((d.get("govsoc") or {}).get("report") or {})
        if kind and r.get("kind") != kind:
            continue
        r["created"] = d["@timestamp"]
        out.append(r)
        if len(out) >= limit:
            break
    return out


def report_entry(store: Any, name: str) -> dict[str, Any] | None:
    if not NAME_RE.match(name or ""):
        return None
    d = store.get("state", "report:" + name)
    if d is None:
        return None
    r = dict((d.get("govsoc") or {}).get("report") or {})
    r["created"] = d["@timestamp"]
    return r


def report_files(entry: dict[str, Any]) -> tuple[Path, Path, Path]:
    """(report, signature, public key) paths of an indexed report."""
    folder = Path(entry["folder"])
    path = folder / entry["name"]
    return path, folder / (entry["name"] + signing.SIG_SUFFIX), folder / signing.PUBLIC_KEY_FILE
