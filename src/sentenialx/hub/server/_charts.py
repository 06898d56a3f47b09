"""Inline SVG charts: line charts (training curves, a metric across versions) and lineage graphs.

Drawn on the server as plain SVG text: no script, no build step, no image
request, crisp at any size (``viewBox`` and ``width: 100%``), and readable by a
screen reader (``role="img"``, ``<title>``). Every label goes through
:func:`html.escape`, so names from the hub cannot inject markup. Colours are
presentation attributes, which the page's Content-Security-Policy allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d",
           "#4d7c0f")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    v = start
    while v <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10000 or a < 0.001:
        return f"{v:.2g}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.4g}"


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str, x_label: str = "",
               x_categories: Sequence[str] | None = None, width: int = 640,
               height: int = 280, css_class: str = "chart") -> str:
    """An SVG line chart of one or more series of ``(x, y)`` points.

    With ``x_categories``, x values are indexes into it and its labels are the ticks
    (a metric across versions).
    """
    pts_all = [p for pts in series.values() for p in pts]
    ml, mr, mt, mb = 58, 14, 30, 44
    pw, ph = width - ml - mr, height - mt - mb
    out = [f'<svg class="{escape(css_class)}" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"'
           f' data-series="{len(series)}" data-points="{len(pts_all)}"'
           ' preserveAspectRatio="xMidYMid meet">',
           f"<title>{escape(title)}</title>"]
    if not pts_all:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle"'
                   ' fill="#6b7280" font-size="14">no data</text></svg>')
        return "".join(out)
    xs = [p[0] for p in pts_all]
    ys = [p[1] for p in pts_all]
    if x_categories is not None:
        x_lo, x_hi = -0.5, max(len(x_categories) - 0.5, 0.5)
    else:
        x_lo, x_hi = min(xs), max(xs)
        if x_lo == x_hi:
            x_lo, x_hi = x_lo - 1, x_hi + 1
    yt = nice_ticks(min(ys), max(ys))
    y_lo, y_hi = min(yt[0], min(ys)), max(yt[-1], max(ys))
    if y_lo == y_hi:
        y_lo, y_hi = y_lo - 1, y_hi + 1

    def sx(x: float) -> float:
        return ml + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y_lo) / (y_hi - y_lo) * ph

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#ffffff"'
               ' stroke="#d1d5db"/>')
    for t in yt:
        if y_lo <= t <= y_hi:
            y = sy(t)
            out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}"'
                       ' stroke="#e5e7eb"/>')
            out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
                       f' fill="#374151">{escape(_fmt(t))}</text>')
    if x_categories is not None:
        every = max(1, math.ceil(len(x_categories) / 10))
        for i, label in enumerate(x_categories):
            if i % every:
                continue
            x = sx(i)
            out.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle"'
                       f' font-size="11" fill="#374151">{escape(label)}</text>')
    else:
        for t in nice_ticks(x_lo, x_hi, 6):
            if x_lo <= t <= x_hi:
                x = sx(t)
                out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}"'
                           ' stroke="#f3f4f6"/>')
                out.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle"'
                           f' font-size="11" fill="#374151">{escape(_fmt(t))}</text>')
    if x_label:
        out.append(f'<text x="{ml + pw / 2}" y="{height - 8}" text-anchor="middle"'
                   f' font-size="12" fill="#111827">{escape(x_label)}</text>')
    lx = ml
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted(pts)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline class="series" data-name="{escape(name)}" points="{path}"'
                   f' fill="none" stroke="{color}" stroke-width="2"'
                   ' stroke-linejoin="round" stroke-linecap="round"/>')
        if len(pts) <= 60:
            for x, y in pts:
                label = x_categories[int(x)] if x_categories is not None and 0 <= int(x) < len(
                    x_categories) else _fmt(x)
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
                           f"<title>{escape(name)} @ {escape(label)}: {escape(_fmt(y))}</title>"
                           "</circle>")
        out.append(f'<rect x="{lx}" y="10" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="19" font-size="12" fill="#111827">'
                   f"{escape(name)}</text>")
        lx += 24 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Node:
    """One box of a lineage graph."""

    key: str
    label: str
    sublabel: str = ""
    href: str | None = None
    depth: int = 0
    current: bool = False
    missing: bool = False


def lineage_graph(nodes: Sequence[Node], edges: Sequence[tuple[str, str, str]], *,
                  title: str = "Lineage") -> str:
    """A left-to-right graph: parents on the left, derived versions on the right.

    ``edges`` are ``(parent_key, child_key, role)``.
    """
    if not nodes:
        return ""
    bw, bh, gx, gy, pad = 190, 46, 70, 18, 10
    depths = sorted({n.depth for n in nodes})
    col = {d: i for i, d in enumerate(depths)}
    rows: dict[int, list[Node]] = {}
    for n in nodes:
        rows.setdefault(col[n.depth], []).append(n)
    tallest = max(len(v) for v in rows.values())
    width = pad * 2 + len(depths) * bw + (len(depths) - 1) * gx
    height = pad * 2 + tallest * bh + (tallest - 1) * gy
    pos: dict[str, tuple[float, float]] = {}
    for c, members in rows.items():
        off = (height - (len(members) * bh + (len(members) - 1) * gy)) / 2
        for r, n in enumerate(members):
            pos[n.key] = (pad + c * (bw + gx), off + r * (bh + gy))
    out = [f'<svg class="lineage" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"'
           f' data-nodes="{len(nodes)}" data-edges="{len(edges)}" width="{width}"'
           f' height="{height}">',
           f"<title>{escape(title)}</title>",
           '<defs><marker id="sx-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
           ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"'
           ' fill="#6b7280"/></marker></defs>']
    for parent, child, role in edges:
        if parent not in pos or child not in pos:
            continue
        (x1, y1), (x2, y2) = pos[parent], pos[child]
        ax, ay, bx, by = x1 + bw, y1 + bh / 2, x2, y2 + bh / 2
        mx = (ax + bx) / 2
        out.append(f'<path class="edge" d="M{ax:.1f},{ay:.1f} C{mx:.1f},{ay:.1f} {mx:.1f},'
                   f'{by:.1f} {bx - 2:.1f},{by:.1f}" fill="none" stroke="#6b7280"'
                   ' stroke-width="1.5" marker-end="url(#sx-arrow)"/>')
        if role:
            out.append(f'<text x="{mx:.1f}" y="{(ay + by) / 2 - 4:.1f}" text-anchor="middle"'
                       f' font-size="11" fill="#374151">{escape(role)}</text>')
    for n in nodes:
        x, y = pos[n.key]
        fill = "#dbeafe" if n.current else ("#f3f4f6" if n.missing else "#ffffff")
        stroke = "#2563eb" if n.current else "#9ca3af"
        box = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw}" height="{bh}" rx="6" fill="{fill}"'
               f' stroke="{stroke}" stroke-width="{2 if n.current else 1}"/>'
               f'<text x="{x + bw / 2:.1f}" y="{y + 19:.1f}" text-anchor="middle" font-size="13"'
               f' font-weight="600" fill="#111827">{escape(_clip(n.label, 26))}</text>'
               f'<text x="{x + bw / 2:.1f}" y="{y + 36:.1f}" text-anchor="middle" font-size="11"'
               f' fill="#4b5563">{escape(_clip(n.sublabel, 30))}</text>')
        if n.href and not n.current:
            out.append(f'<a class="node" href="{escape(n.href)}"><title>{escape(n.label)}</title>'
                       f"{box}</a>")
        else:
            out.append(f'<g class="node{" current" if n.current else ""}"><title>'
                       f"{escape(n.label)}</title>{box}</g>")
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
