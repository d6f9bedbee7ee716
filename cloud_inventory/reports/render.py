"""A `Document` as HTML (Jinja2, inline CSS and SVG) and as PDF (WeasyPrint, which embeds
the subset of the Noto CJK fonts the text uses: fonts-noto-cjk)."""

from __future__ import annotations

import functools
import gc
from importlib.resources import files
from typing import Any

from cloud_inventory.reports.document import Document
from cloud_inventory.reports.i18n import t
from soc_core.config import viewer_zone
from soc_core.gcpause import cyclic_gc_paused

FORMATS = ("pdf", "html")


@functools.cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    text = files("cloud_inventory.reports").joinpath("templates/report.html.j2").read_text(
        encoding="utf-8")
    return env.from_string(text)


def to_html(doc: Document, *, filename: str, key_id: str, key_version: int,
            fingerprint: str, cfg: Any = None) -> str:
    generated = doc.generated.astimezone(viewer_zone(cfg)).strftime("%Y-%m-%d %H:%M %Z")
    return _template().render(doc=doc, t=lambda k: t(k, doc.lang), generated=generated,
                              filename=filename, key_id=key_id, key_version=key_version,
                              fingerprint=fingerprint)


def to_pdf(html: str) -> bytes:
    import logging

    from weasyprint import HTML

    # WeasyPrint logs each CSS property it ignores: noise in a CLI run
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    # WeasyPrint keeps its whole box tree to the end of the render, and the cycle collector
    # re-walked it as it grew: a fifth of the 1,000-asset register's render. Paused, then
    # one collection frees the render's cycles (~450,000 objects) now, not at some later
    # caller's expense.
    with cyclic_gc_paused():
        pdf = HTML(string=html).write_pdf()
    gc.collect()
    return pdf
