"""A report before it is rendered: title, key figures and sections of text, tables and
charts. Builders (`kinds`) make one; `render` turns it into HTML and PDF."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    row_class: list[str] = field(default_factory=list)  # CSS class a row (e.g. a status)
    nowrap: tuple[int, ...] = ()  # columns kept on one line (short CJK terms)
    # relative column widths: the table is laid out with fixed widths, which spares the
    # PDF engine measuring every cell's content twice (a 1,000-row register: ~2x faster)
    widths: tuple[int, ...] = ()

    def percent(self) -> list[float]:
        w = list(self.widths) if len(self.widths) == len(self.columns) else \
            [1] * len(self.columns)
        return [round(100 * x / sum(w), 2) for x in w]


@dataclass
class Section:
    heading: str
    text: list[str] = field(default_factory=list)
    chart: str = ""  # inline SVG
    table: Table | None = None
    level: int = 2  # heading level: 2 to 4
    running: bool = False  # its heading shown atop each page its content runs onto


@dataclass
class Document:
    kind: str
    lang: str
    title: str
    generated: datetime
    period: str = ""
    figures: list[tuple[str, str]] = field(default_factory=list)  # key figures up front
    sections: list[Section] = field(default_factory=list)
