"""Turning a version's attachments into page content: reports (sanitised) and training logs.

A report is untrusted text: anyone with write access wrote it. It is rendered
with markdown-it-py and then cleaned by nh3 (ammonia) with an allowlist of tags,
attributes and URL schemes, so no script, event handler, ``javascript:`` URL,
style or frame from a report reaches the page. The page's Content-Security-Policy
(script only with a per-response nonce) is a second wall behind the first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
    "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}
_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
    "code": {"class"},
}
X_KEYS = ("step", "global_step", "iteration", "iter", "epoch")
_SKIP_KEYS = {"step", "global_step", "iteration", "iter", "epoch", "time", "timestamp", "ts",
              "wall_time", "lr_step"}
MAX_SERIES = 8
MAX_POINTS = 2000


def render_markdown(text: str, *, resolve_src: Callable[[str], str | None] | None = None) -> str:
    """Markdown to sanitised HTML.

    ``resolve_src`` maps a relative image source (``chart.png``) to a URL on this
    server, or None to drop it; absolute image URLs are dropped (the page loads
    nothing from elsewhere).
    """
    import nh3
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")
    raw = md.render(text)

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if tag == "img" and attr == "src":
            if ":" in value.split("/", 1)[0] or value.startswith("//"):
                return value if value.startswith("data:image/") else None
            return resolve_src(value) if resolve_src else None
        if tag == "code" and attr == "class":
            return value if value.startswith("language-") else None
        return value

    return nh3.clean(
        raw, tags=_TAGS, attributes=_ATTRS, attribute_filter=attribute_filter,
        url_schemes={"http", "https", "mailto", "data"}, link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def parse_log(data: bytes) -> tuple[dict[str, list[tuple[float, float]]], int]:
    """Series from a JSON-lines training log: ``{key: [(step, value), ...]}`` and bad lines.

    The x value is the first of ``step``, ``global_step``, ``iteration``, ``epoch``
    found on a line (else the line number); every other finite number is a series.
    Long logs are thinned to at most :data:`MAX_POINTS` points per series.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    bad = 0
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            rec: Any = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(rec, dict):
            bad += 1
            continue
        x: float = float(n)
        for k in X_KEYS:
            v = rec.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                x = float(v)
                break
        for k, v in rec.items():
            if k in _SKIP_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v):
                continue
            if k not in series and len(series) >= MAX_SERIES:
                continue
            series.setdefault(str(k), []).append((x, float(v)))
    for k, pts in series.items():
        if len(pts) > MAX_POINTS:
            stride = math.ceil(len(pts) / MAX_POINTS)
            series[k] = pts[::stride] + ([pts[-1]] if (len(pts) - 1) % stride else [])
    return series, bad


def group_series(series: dict[str, list[tuple[float, float]]]
                 ) -> list[tuple[str, dict[str, list[tuple[float, float]]]]]:
    """Charts to draw: losses together, accuracies together, anything else on its own."""
    loss = {k: v for k, v in series.items() if "loss" in k.lower()}
    acc = {k: v for k, v in series.items() if "acc" in k.lower() and k not in loss}
    out = []
    if loss:
        out.append(("Loss", loss))
    if acc:
        out.append(("Accuracy", acc))
    for k, v in series.items():
        if k not in loss and k not in acc:
            out.append((k, {k: v}))
    return out


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """``{"val": {"acc": 0.9}}`` -> ``{"val.acc": 0.9}``, numbers only."""
    out: dict[str, float] = {}
    if not isinstance(metrics, dict):
        return out
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_metrics(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    return out
