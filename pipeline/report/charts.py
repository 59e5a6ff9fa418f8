"""Charts as inline SVG strings (no JavaScript, no network): line/scatter on linear or log axes,
horizontal bars and histograms (with marked thresholds). Each function returns a self-contained
``<svg>`` element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
AXIS = "#555"
GRID = "#e6e6e6"
COLOURS = {"matches": "#e4572e", "selected": "#2e86ab", "downloaded": "#3bb273"}


@dataclass(frozen=True)
class Series:
    """One line of an xy chart."""

    name: str
    points: list[tuple[float, float]]
    colour: str
    dashed: bool = False


def fmt_number(v: float) -> str:
    """Compact tick label: 1, 10, 1k, 2.5M, 0.25."""
    if v == 0:
        return "0"
    a = abs(v)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            s = f"{v / div:.1f}".rstrip("0").rstrip(".")
            return s + suffix
    if a >= 1:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten covering [lo, hi]."""
    a, b = math.floor(math.log10(max(lo, 1e-12))), math.ceil(math.log10(max(hi, 1e-12)))
    return [10.0**e for e in range(a, b + 1)]


class _Axis:
    """Maps data values to pixels on a linear or log scale."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool):
        self.log = log
        if log:
            lo, hi = (
                10 ** math.floor(math.log10(max(lo, 1e-12))),
                10 ** math.ceil(math.log10(max(hi, 1e-12))),
            )
        if hi <= lo:
            hi = lo + 1
        self.lo, self.hi, self.p0, self.p1 = lo, hi, p0, p1

    def __call__(self, v: float) -> float:
        if self.log:
            t = (math.log10(max(v, self.lo)) - math.log10(self.lo)) / (
                math.log10(self.hi) - math.log10(self.lo)
            )
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.p0 + t * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        return log_ticks(self.lo, self.hi) if self.log else nice_ticks(self.lo, self.hi)


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" style="{FONT};font-size:12px">'
        f"<title>{escape(title)}</title>"
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="600" '
        f'fill="#222">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def _axes(
    x: _Axis, y: _Axis, x_label: str, y_label: str, top: int, bottom: int, left: int, right: int
):
    parts = []
    for t in y.ticks():
        py = y(t)
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" fill="{AXIS}">{fmt_number(t)}</text>'
        )
    for t in x.ticks():
        px = x(t)
        parts.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="middle" fill="{AXIS}">{fmt_number(t)}</text>'
        )
    parts.append(f'<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="{AXIS}"/>')
    parts.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle" fill="#333">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text transform="translate({left - 48},{(top + bottom) / 2}) rotate(-90)" text-anchor="middle" '
        f'fill="#333">{escape(y_label)}</text>'
    )
    return parts


def _legend(series: list[Series], x: float, y: float) -> list[str]:
    parts = []
    for i, s in enumerate(series):
        yy = y + i * 18
        dash = ' stroke-dasharray="5,4"' if s.dashed else ""
        parts.append(
            f'<line x1="{x}" x2="{x + 22}" y1="{yy}" y2="{yy}" stroke="{s.colour}" stroke-width="2.5"{dash}/>'
        )
        parts.append(f'<text x="{x + 28}" y="{yy + 4}" fill="#222">{escape(s.name)}</text>')
    return parts


def xy_chart(
    series: list[Series],
    title: str,
    x_label: str,
    y_label: str,
    x_log: bool = False,
    y_log: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 560,
    height: int = 360,
    legend_at: str = "right",
) -> str:
    """Lines through each series' points, with gridlines, tick labels, axis labels and a legend."""
    left, right, top, bottom = 70, width - 18, 32, height - 50
    pts = [p for s in series for p in s.points]
    if not pts:
        return _frame(
            width,
            height,
            title,
            [
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no data</text>'
            ],
        )
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x = _Axis(*(x_range or (min(xs), max(xs))), left, right, x_log)
    y = _Axis(*(y_range or (0 if not y_log else min(ys), max(ys))), bottom, top, y_log)
    parts = _axes(x, y, x_label, y_label, top, bottom, left, right)
    for s in series:
        d = " ".join(
            f"{'M' if i == 0 else 'L'}{x(px):.1f},{y(py):.1f}"
            for i, (px, py) in enumerate(s.points)
        )
        dash = ' stroke-dasharray="6,4"' if s.dashed else ""
        parts.append(
            f'<path d="{d}" fill="none" stroke="{s.colour}" stroke-width="2.2"{dash} stroke-linejoin="round"/>'
        )
    lx = right - 150 if legend_at == "right" else left + 14
    parts += _legend(series, lx, top + 14)
    return _frame(width, height, title, parts)


def hbar_chart(
    items: list[tuple[str, float]],
    title: str,
    colour: str = "#2e86ab",
    width: int = 560,
    value_fmt=fmt_number,
) -> str:
    """Horizontal bars, one per (label, value), largest first as given."""
    row, top, label_w = 22, 34, 210
    height = top + row * max(len(items), 1) + 14
    if not items:
        return _frame(
            width,
            height + 20,
            title,
            [
                f'<text x="{width / 2}" y="{top + 20}" text-anchor="middle" fill="#888">no data</text>'
            ],
        )
    vmax = max(v for _, v in items) or 1
    bar_w = width - label_w - 70
    parts = []
    for i, (label, value) in enumerate(items):
        y0 = top + i * row
        w = max(1.0, bar_w * value / vmax)
        short = label if len(label) <= 32 else label[:31] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y0 + 15}" text-anchor="end" fill="#222"><title>{escape(label)}</title>{escape(short)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y0 + 3}" width="{w:.1f}" height="{row - 6}" rx="2" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y0 + 15}" fill="{AXIS}">{value_fmt(value)}</text>'
        )
    return _frame(width, height, title, parts)


def histogram_chart(
    bins: list[dict],
    title: str,
    x_label: str,
    y_label: str = "images",
    colour: str = "#3bb273",
    width: int = 560,
    height: int = 300,
    markers: tuple[tuple[float, str], ...] = (),
) -> str:
    """Vertical bars over ``{lo, hi, count}`` bins (of equal width), labelled at a few bin edges;
    each marker ``(value, label)`` is a dashed vertical line at that value."""
    left, right, top, bottom = 64, width - 18, 32, height - 50
    if not bins:
        return _frame(
            width,
            height,
            title,
            [
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no data</text>'
            ],
        )
    y = _Axis(0, max(b["count"] for b in bins), bottom, top, False)
    parts = []
    for t in y.ticks():
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="{AXIS}">{fmt_number(t)}</text>'
        )
    bw = (right - left) / len(bins)
    every = max(1, len(bins) // 6)
    # wide ranges (pixels, bytes) read better as whole numbers
    label = (lambda v: fmt_number(round(v))) if bins[-1]["hi"] - bins[0]["lo"] > 20 else fmt_number
    for i, b in enumerate(bins):
        x0 = left + i * bw
        parts.append(
            f'<rect x="{x0 + 1:.1f}" y="{y(b["count"]):.1f}" width="{bw - 2:.1f}" height="{bottom - y(b["count"]):.1f}" '
            f'fill="{colour}"><title>{label(b["lo"])}–{label(b["hi"])}: {b["count"]}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x0:.1f}" y="{bottom + 16}" text-anchor="middle" fill="{AXIS}">{label(b["lo"])}</text>'
            )
    parts.append(
        f'<text x="{right:.1f}" y="{bottom + 16}" text-anchor="middle" fill="{AXIS}">{label(bins[-1]["hi"])}</text>'
    )
    parts.append(f'<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="{AXIS}"/>')
    parts.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle" fill="#333">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text transform="translate({left - 46},{(top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#333">{escape(y_label)}</text>'
    )
    x = _Axis(bins[0]["lo"], bins[-1]["hi"], left, right, False)
    for i, (value, text) in enumerate(markers):
        px = min(max(x(value), left), right)
        anchor = "end" if px > (left + right) / 2 else "start"
        dx = -4 if anchor == "end" else 4
        parts.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" stroke="#c0392b" '
            f'stroke-width="2" stroke-dasharray="5,4"/>'
        )
        parts.append(
            f'<text x="{px + dx:.1f}" y="{top + 12 + 14 * i}" text-anchor="{anchor}" '
            f'fill="#c0392b">{escape(text)}</text>'
        )
    return _frame(width, height, title, parts)
