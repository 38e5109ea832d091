"""Small inline SVG charts for the report: lines, bars and a scatter. No assets, no scripts.

Each function returns one <svg> element sized by its viewBox, so the page scales it. Colours
come from CSS classes (s0, s1, ...) defined in the report's <style>.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 270
# The title on the first line, the legend on the second (left-aligned, so a long title never
# runs into it), then the plot.
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 44, 40


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < high - step * 1e-9:  # the last tick covers the highest value
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


class _Frame:
    def __init__(self, xs: Sequence[float], ys: Sequence[float], y_from_zero: bool = True) -> None:
        x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y_from_zero:
            y_lo = min(0.0, y_lo)
        self.xt = nice_ticks(x_lo, x_hi)
        self.yt = nice_ticks(y_lo, y_hi)
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0 or 1) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return (
            HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0 or 1) * (HEIGHT - TOP - BOTTOM)
        )

    def axes(self, title: str, x_label: str, y_label: str) -> list[str]:
        parts = [f'<text class="title" x="{LEFT}" y="16">{escape(title)}</text>']
        for t in self.yt:
            y = self.y(t)
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            )
            parts.append(
                f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" '
                f'text-anchor="end">{_fmt(t)}</text>'
            )
        for t in self.xt:
            x = self.x(t)
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                f'text-anchor="middle">{_fmt(t)}</text>'
            )
        parts.append(
            f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" '
            f'text-anchor="middle">{escape(x_label)}</text>'
        )
        parts.append(
            f'<text class="label" transform="translate(12,{(TOP + HEIGHT - BOTTOM) / 2}) '
            f'rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
        )
        return parts


def _svg(parts: list[str], title: str) -> str:
    body = "".join(parts)
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _legend(labels: Sequence[str]) -> list[str]:
    parts = []
    x = float(LEFT)
    for i, label in enumerate(labels):
        parts.append(f'<rect class="s{i}" x="{x:.0f}" y="22" width="10" height="10"/>')
        parts.append(f'<text class="tick" x="{x + 14:.0f}" y="31">{escape(label)}</text>')
        x += 14 + 6 * len(label) + 18
    return parts


def line_chart(
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    y_max: float | None = None,
    x_max: float | None = None,
) -> str:
    """Lines over a shared x axis. `y_max` and `x_max` extend the axes to at least those
    values, so that two charts of two runs share their scales and compare at a glance."""
    xs = [x for s in series for x, _ in s.points] + ([0.0, x_max] if x_max else [])
    ys = [y for s in series for _, y in s.points] + ([y_max] if y_max else [])
    frame = _Frame(xs, ys)
    parts = frame.axes(title, x_label, y_label)
    for i, s in enumerate(series):
        if not s.points:
            continue
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        parts.append(f'<polyline class="l{i}" fill="none" points="{path}"{dash}/>')
    parts += _legend([s.label for s in series])
    return _svg(parts, title)


def bar_chart(
    title: str, bars: Sequence[tuple[float, float, float]], x_label: str, y_label: str
) -> str:
    """Bars as (x from, x to, height): a histogram."""
    xs = [v for lo, hi, _ in bars for v in (lo, hi)]
    frame = _Frame(xs, [h for _, _, h in bars])
    parts = frame.axes(title, x_label, y_label)
    for lo, hi, h in bars:
        x0, x1, y = frame.x(lo), frame.x(hi), frame.y(h)
        parts.append(
            f'<rect class="s0" x="{x0:.1f}" y="{y:.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
            f'height="{max(0.0, frame.y(0) - y):.1f}"/>'
        )
    return _svg(parts, title)


def scatter(title: str, points: Sequence[tuple[float, float]], x_label: str, y_label: str) -> str:
    """Dots, with the diagonal y = x (a perfect promise) dashed."""
    top = max([max(x, y) for x, y in points], default=1.0)
    frame = _Frame([0.0, top], [0.0, top])
    parts = frame.axes(title, x_label, y_label)
    parts.append(
        f'<line class="l1" stroke-dasharray="5 4" x1="{frame.x(0):.1f}" y1="{frame.y(0):.1f}" '
        f'x2="{frame.x(frame.x1):.1f}" y2="{frame.y(frame.x1):.1f}"/>'
    )
    for x, y in points:
        parts.append(f'<circle class="s0" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2"/>')
    return _svg(parts, title)


def labelled_bars(
    title: str, bars: Sequence[tuple[str, float]], y_label: str, y_max: float | None = None
) -> str:
    """One bar per category, named under it, with its value above it."""
    heights = [h for _, h in bars] + ([y_max] if y_max else [])
    frame = _Frame([0.0, float(len(bars))], heights)
    parts = frame.axes(title, "", y_label)[:1]  # the title; the x axis is the names
    for t in frame.yt:
        y = frame.y(t)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>'
        )
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(bars))
    for i, (label, h) in enumerate(bars):
        x = LEFT + i * slot
        y = frame.y(h)
        parts.append(
            f'<rect class="s{i % 3}" x="{x + slot * 0.15:.1f}" y="{y:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{max(0.0, frame.y(0) - y):.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x + slot / 2:.1f}" y="{y - 4:.1f}" '
            f'text-anchor="middle">{h:,.0f}</text>'
        )
        parts.append(
            f'<text class="label" x="{x + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _svg(parts, title)
