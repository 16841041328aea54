"""Small inline-SVG charts for the report page: no plotting library, no script.

Each function returns one ``<svg>`` element as text, sized by its ``viewBox``
so that it scales to the width of its container. Every label is escaped.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

WIDTH, HEIGHT = 640, 300
_SMALL = (420, 250)  # three across a laptop screen
_MARGIN = {"left": 64, "right": 16, "top": 30, "bottom": 46}
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw), default=raw)
    first = math.floor(lo / step + 1e-9)
    ticks = [round(first * step, 12)]
    k = first
    while ticks[-1] < hi - step * 1e-9:  # the last tick covers ``hi``
        k += 1
        ticks.append(round(k * step, 12))
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4g}"


class _Frame:
    """Maps data coordinates to the plot area of one chart."""

    def __init__(self, x_range, y_range, width=WIDTH, height=HEIGHT):
        self.width, self.height = width, height
        self.x_ticks = nice_ticks(*x_range)
        self.y_ticks = nice_ticks(*y_range)
        self.x0, self.x1 = self.x_ticks[0], self.x_ticks[-1]
        self.y0, self.y1 = self.y_ticks[0], self.y_ticks[-1]
        self.left = _MARGIN["left"]
        self.right = width - _MARGIN["right"]
        self.top = _MARGIN["top"]
        self.bottom = height - _MARGIN["bottom"]

    def x(self, v):
        span = (self.x1 - self.x0) or 1.0
        return self.left + (np.asarray(v, dtype=float) - self.x0) / span * (self.right - self.left)

    def y(self, v):
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (np.asarray(v, dtype=float) - self.y0) / span * (
            self.bottom - self.top
        )

    def axes(self, xlabel: str, ylabel: str) -> str:
        parts = [
            f'<rect x="{self.left}" y="{self.top}" width="{self.right - self.left}" '
            f'height="{self.bottom - self.top}" fill="#fff" stroke="#ccc"/>'
        ]
        for t in self.x_ticks:
            x = float(self.x(t))
            parts.append(
                f'<line x1="{x:.1f}" y1="{self.bottom}" x2="{x:.1f}" y2="{self.bottom + 4}" '
                f'stroke="#555"/><text x="{x:.1f}" y="{self.bottom + 17}" '
                f'text-anchor="middle">{escape(_fmt(t))}</text>'
            )
        for t in self.y_ticks:
            y = float(self.y(t))
            parts.append(
                f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}" '
                f'stroke="#eee"/><text x="{self.left - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{escape(_fmt(t))}</text>'
            )
        mid_x = (self.left + self.right) / 2
        mid_y = (self.top + self.bottom) / 2
        parts.append(
            f'<text x="{mid_x:.1f}" y="{self.height - 8}" text-anchor="middle">'
            f"{escape(xlabel)}</text>"
            f'<text x="14" y="{mid_y:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 14 {mid_y:.1f})">{escape(ylabel)}</text>'
        )
        return "".join(parts)


def _svg(body: str, title: str, width=WIDTH, height=HEIGHT, label: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label or title)}" {_FONT}>'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _legend(items: list[tuple[str, str]], x: float, y: float) -> str:
    """Legend entries in one row, in the top margin."""
    parts = []
    for name, color in items:
        parts.append(
            f'<rect x="{x:.0f}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14:.0f}" y="{y}">{escape(name)}</text>'
        )
        x += 30 + 6.6 * len(name)
    return "".join(parts)


def stacked_bar(counts: list[tuple[str, int, str]], title: str) -> str:
    """One horizontal bar split by outcome (the counts are in the table beside it)."""
    width, height = 420, 44
    total = sum(c for _, c, _ in counts) or 1
    x, parts = 0.0, []
    for name, count, color in counts:
        w = width * count / total
        if w > 0:
            parts.append(
                f'<rect x="{x:.2f}" y="4" width="{w:.2f}" height="36" fill="{color}">'
                f"<title>{escape(name)}: {count:,}</title></rect>"
            )
        x += w
    return _svg("".join(parts), title, width, height)


def histogram(
    pool: np.ndarray, kept: np.ndarray, title: str, xlabel: str, colors=("#999", "#0072B2")
) -> str:
    """Share of rows per bin: the pool filled, the kept set as a line."""
    pool = pool[np.isfinite(pool)]
    kept = kept[np.isfinite(kept)]
    if not len(pool):
        return _svg('<text x="20" y="40">no values</text>', title, *_SMALL)
    lo, hi = float(pool.min()), float(pool.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, 31)
    share_pool = np.histogram(pool, edges)[0] / len(pool)
    share_kept = np.histogram(kept, edges)[0] / len(kept) if len(kept) else np.zeros(30)
    top = float(max(share_pool.max(), share_kept.max(), 1e-9))
    frame = _Frame((lo, hi), (0.0, top), *_SMALL)
    parts = [frame.axes(xlabel, "share of rows")]
    xs, ys = frame.x(edges), frame.y(share_pool)
    base = float(frame.y(0.0))
    for k in range(30):
        if share_pool[k] > 0:
            parts.append(
                f'<rect x="{xs[k]:.1f}" y="{ys[k]:.1f}" width="{xs[k + 1] - xs[k]:.1f}" '
                f'height="{base - ys[k]:.1f}" fill="{colors[0]}" fill-opacity="0.55"/>'
            )
    if len(kept):
        yk = frame.y(share_kept)
        points = []
        for k in range(30):
            points += [f"{xs[k]:.1f},{yk[k]:.1f}", f"{xs[k + 1]:.1f},{yk[k]:.1f}"]
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colors[1]}" '
            'stroke-width="2"/>'
        )
    legend = [(f"pool ({len(pool):,})", colors[0]), (f"kept ({len(kept):,})", colors[1])]
    parts.append(_legend(legend, frame.left, 16))
    return _svg("".join(parts), title, *_SMALL)


def line_chart(
    x: np.ndarray,
    series: list[tuple[str, np.ndarray, str]],
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    marks: list[tuple[float, str, str]] = (),
    hline: tuple[float, str] | None = None,
) -> str:
    """Lines with dots; vertical marks (value, label, colour) and a horizontal line."""
    x = np.asarray(x, dtype=float)
    ys = [np.asarray(y, dtype=float) for _, y, _ in series]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys] + [np.zeros(1)])
    top = float(finite.max())
    if hline is not None:
        top = max(top, hline[0])
    xs_all = np.concatenate([x, [m[0] for m in marks]]) if len(marks) else x
    frame = _Frame((float(xs_all.min()), float(xs_all.max())), (0.0, top * 1.05 or 1.0))
    parts = [frame.axes(xlabel, ylabel)]
    if hline is not None:
        y = float(frame.y(hline[0]))
        parts.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.right}" y2="{y:.1f}" '
            f'stroke="#333" stroke-dasharray="5 4"/><text x="{frame.right - 4}" '
            f'y="{y - 5:.1f}" text-anchor="end">{escape(hline[1])}</text>'
        )
    for k, (value, label, color) in enumerate(marks):
        xm = float(frame.x(value))
        parts.append(
            f'<line x1="{xm:.1f}" y1="{frame.top}" x2="{xm:.1f}" y2="{frame.bottom}" '
            f'stroke="{color}" stroke-width="2"/><text x="{xm + 4:.1f}" '
            f'y="{frame.top + 14 + 14 * k}" fill="{color}">{escape(label)}</text>'
        )
    for (_, _, color), y in zip(series, ys, strict=True):
        ok = np.isfinite(y)
        px, py = frame.x(x[ok]), frame.y(y[ok])
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [
            f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>'
            for a, b in zip(px, py, strict=True)
        ]
    legend = [(name, color) for name, _, color in series]
    parts.append(_legend(legend, frame.left, 16))
    return _svg("".join(parts), title)


def scatter(
    xy: np.ndarray,
    groups: list[tuple[str, np.ndarray, str]],
    title: str,
    *,
    labels: list[str] | None = None,
) -> str:
    """Points by group (drawn in order, later on top); optional per-point titles."""
    width, height = WIDTH, 440
    if len(xy):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
    else:
        lo, hi = np.zeros(2), np.ones(2)
    frame = _Frame((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), width, height)
    parts = [frame.axes("PC 1", "PC 2")]
    px, py = frame.x(xy[:, 0]), frame.y(xy[:, 1])
    legend = []
    for name, mask, color in groups:
        idx = np.flatnonzero(mask)
        legend.append((f"{name} ({len(idx):,})", color))
        parts.append(f'<g fill="{color}" fill-opacity="0.75">')
        for i in idx:
            tip = f"<title>{escape(labels[i])}</title>" if labels is not None else ""
            parts.append(f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="2.6">{tip}</circle>')
        parts.append("</g>")
    parts.append(_legend(legend, frame.left, 16))
    return _svg("".join(parts), title, width, height)
