"""Charts as inline SVG, drawn here: no JavaScript and no image files, so the same markup
shows in a browser and in the PDF (WeasyPrint draws SVG itself) and is covered by the
report's signature."""

from __future__ import annotations

from html import escape

FONT = "Noto Sans CJK SC"
PALETTE = ("#1f5fa8", "#d9822b", "#2e8b57", "#b03a2e", "#7d5ba6", "#5f6b7a")
STATUS_COLOURS = {"pass": "#2e8b57", "fail": "#b03a2e", "not_applicable": "#9aa5b1",
                  "not_evidenced": "#d9822b"}


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def bar_chart(items: list[tuple[str, float]], *, width: int = 640, bar: int = 18,
              unit: str = "", colour: str = PALETTE[0], limit: int = 15) -> str:
    """Horizontal bars, one a label, longest first as given; at most `limit`."""
    items = items[:limit]
    if not items:
        return ""
    label_w, gap = 170, 6
    top = max((v for _, v in items), default=0) or 1
    height = len(items) * (bar + gap) + gap
    span = width - label_w - 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="11" role="img">']
    for i, (label, value) in enumerate(items):
        y = gap + i * (bar + gap)
        w = max(1.0, span * value / top)
        text = label if len(label) <= 24 else label[:23] + "…"
        out.append(f'<text x="{label_w - 6}" y="{y + bar - 5}" text-anchor="end">'
                   f'{escape(text)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" '
                   f'fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 5}">'
                   f'{_num(value)}{escape(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart(points: list[tuple[str, float]], *, width: int = 640, height: int = 180,
               unit: str = "", colour: str = PALETTE[0]) -> str:
    """A line over labelled points (a time series, oldest first)."""
    if not points:
        return ""
    left, right, top_pad, bottom = 50, 15, 12, 30
    top = max(v for _, v in points) or 1
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    step = plot_w / max(1, len(points) - 1)
    xy = [(left + i * step, top_pad + plot_h * (1 - v / top)) for i, (_, v) in
          enumerate(points)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="10" role="img">',
           f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - right}" '
           f'y2="{top_pad + plot_h}" stroke="#888"/>',
           f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" '
           f'stroke="#888"/>',
           f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end">'
           f'{_num(top)}{escape(unit)}</text>',
           f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>']
    if len(xy) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                   f'stroke-width="2"/>')
    every = max(1, len(points) // 8)
    for i, ((label, _), (x, y)) in enumerate(zip(points, xy, strict=True)):
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        if i % every == 0:
            out.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">'
                       f'{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def stacked_bar(parts: list[tuple[str, str, float]], *, width: int = 640,
                height: int = 28) -> str:
    """One bar split into (key, label, value) parts, e.g. control outcomes."""
    total = sum(v for _, _, v in parts)
    if not total:
        return ""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 22}" '
           f'viewBox="0 0 {width} {height + 22}" font-family="{FONT}" font-size="11" '
           f'role="img">']
    x = 0.0
    legend_x = 0
    for i, (key, label, value) in enumerate(parts):
        colour = STATUS_COLOURS.get(key, PALETTE[i % len(PALETTE)])
        w = width * value / total
        if w:
            out.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" '
                       f'fill="{colour}"/>')
        x += w
        out.append(f'<rect x="{legend_x}" y="{height + 8}" width="10" height="10" '
                   f'fill="{colour}"/><text x="{legend_x + 14}" y="{height + 17}">'
                   f'{escape(label)} {_num(value)}</text>')
        legend_x += 150
    out.append("</svg>")
    return "".join(out)
