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


@dataclass
class Section:
    heading: str
    text: list[str] = field(default_factory=list)
    chart: str = ""  # inline SVG
    table: Table | None = None
    level: int = 2


@dataclass
class Document:
    kind: str
    lang: str
    title: str
    generated: datetime
    period: str = ""
    figures: list[tuple[str, str]] = field(default_factory=list)  # key figures up front
    sections: list[Section] = field(default_factory=list)
