"""The charts of the HTML report, drawn as inline SVG: histograms and time series.

Each chart has a `<title>` and a `<desc>`, axis labels with units, and a native tooltip
(`<title>`) on every bar and point. Every text goes through `html_safe`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Callable

from ._values import fmt_utc, html_safe, utc

W = 560  # viewBox width of every chart
H_TIME, H_HIST = 230, 180  # viewBox heights
ML, MR, MT, MB = 62, 22, 16, 46  # margins: left, right, top, bottom
NBINS = 30


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def nice_ticks(hi: float, target: int = 5) -> list[float]:
    """Ticks 0, step, ..., >= hi with a 1/2/2.5/5 x 10^k step."""
    if not hi > 0:
        hi = 1.0
    hi = max(hi, 1e-6)  # ticks are rounded to 10 decimals: smaller steps would all be 0
    step = _nice_step(hi, target)
    n = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _fmt_tick(v: float, step: float) -> str:
    if step >= 1 or v == 0:
        return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1
    return f"{v:.{decimals}f}"


def fmt_num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"


class _Frame:
    """Plot area geometry and the y scale."""

    def __init__(self, y_max: float, h: int) -> None:
        self.h = h
        self.x0, self.x1 = ML, W - MR
        self.y0, self.y1 = h - MB, MT  # y0 is the bottom
        self.yticks = nice_ticks(y_max, 4 if h < 200 else 5)
        self.y_top = self.yticks[-1]

    def y(self, v: float) -> float:
        return self.y0 - (self.y0 - self.y1) * (v / self.y_top if self.y_top else 0.0)


def _svg_open(chart_id: str, title: str, desc: str, h: int) -> list[str]:
    return [
        f'<svg class="chart" data-chart="{html_safe(chart_id)}" viewBox="0 0 {W} {h}" role="img" '
        f'aria-labelledby="{html_safe(chart_id)}-t {html_safe(chart_id)}-d" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{html_safe(chart_id)}-t">{html_safe(title)}</title>',
        f'<desc id="{html_safe(chart_id)}-d">{html_safe(desc)}</desc>',
    ]


def _y_axis(fr: _Frame, label: str, fmt: Callable[[float], str] | None = None) -> list[str]:
    step = fr.yticks[1] - fr.yticks[0] if len(fr.yticks) > 1 else 1.0
    out = []
    for t in fr.yticks:
        y = fr.y(t)
        out.append(
            f'<line class="grid" x1="{fr.x0}" x2="{fr.x1}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{fr.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{html_safe(fmt(t) if fmt else _fmt_tick(t, step))}</text>"
        )
    mid = (fr.y0 + fr.y1) / 2
    out.append(
        f'<text class="axis-label" transform="translate(14 {mid:.1f}) rotate(-90)" '
        f'text-anchor="middle">{html_safe(label)}</text>'
    )
    out.append(f'<line class="axis" x1="{fr.x0}" x2="{fr.x1}" y1="{fr.y0}" y2="{fr.y0}"/>')
    return out


def _x_label(label: str, h: int) -> str:
    return (
        f'<text class="axis-label" x="{(ML + W - MR) / 2:.1f}" y="{h - 8}" '
        f'text-anchor="middle">{html_safe(label)}</text>'
    )


def _no_data(chart_id: str, title: str, h: int) -> str:
    parts = _svg_open(chart_id, title, "No data for this chart.", h)
    parts.append(
        f'<text class="nodata" x="{W / 2}" y="{h / 2}" text-anchor="middle">no data</text></svg>'
    )
    return "".join(parts)


# -- histogram -----------------------------------------------------------------------------------


def histogram_svg(
    chart_id: str,
    title: str,
    values: Sequence[float],
    hi: float,
    x_label: str,
    scale: float,
    unit: str,
    color: str,
) -> str:
    """Histogram of sorted `values` over [0, hi] (in display units after `* scale`)."""
    h = H_HIST
    if not values:
        return _no_data(chart_id, title, h)
    xticks = nice_ticks(hi * scale, 6)
    top = xticks[-1]
    width = top / NBINS
    edges = [i * width / scale for i in range(NBINS + 1)]
    counts = _bin_counts(values, edges)
    over = len(values) - bisect_right(values, edges[-1])
    fr = _Frame(max(counts) or 1, h)
    desc = (
        f"Histogram of {len(values)} values, {NBINS} bins of {width:g} {unit} from 0 to "
        f"{top:g} {unit}" + (f"; {over} larger values not shown." if over else ".")
    )
    out = _svg_open(chart_id, title, desc, h)
    out += _y_axis(fr, "streams")
    out += _histogram_bars(fr, counts, width, unit, color)
    out += _value_axis(fr, xticks)
    if over:
        out.append(
            f'<text class="note" x="{fr.x1}" y="{MT + 10}" text-anchor="end">'
            f"+{over:,} above {top:g} {html_safe(unit)}</text>"
        )
    out.append(_x_label(x_label, h))
    out.append("</svg>")
    return "".join(out)


def _bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """How many sorted `values` fall in each bin (the first bin includes 0 and below)."""
    return [
        bisect_right(values, edges[i + 1]) - (bisect_right(values, edges[i]) if i else 0)
        for i in range(len(edges) - 1)
    ]


def _histogram_bars(
    fr: _Frame, counts: Sequence[int], width: float, unit: str, color: str
) -> list[str]:
    bw = (fr.x1 - fr.x0) / len(counts)
    out = []
    for i, c in enumerate(counts):
        if not c:
            continue
        x = fr.x0 + i * bw
        y = fr.y(c)
        lo_v, hi_v = i * width, (i + 1) * width
        out.append(
            f'<rect class="bar" x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bw - 1, 0.5):.1f}" '
            f'height="{fr.y0 - y:.1f}" fill="{color}">'
            f"<title>{lo_v:g}-{hi_v:g} {html_safe(unit)}: {c} streams</title></rect>"
        )
    return out


def _value_axis(fr: _Frame, xticks: Sequence[float]) -> list[str]:
    """The x ticks of a histogram, from 0 to the last tick."""
    top = xticks[-1]
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    return [_x_tick(fr, fr.x0 + (fr.x1 - fr.x0) * t / top, _fmt_tick(t, xstep)) for t in xticks]


def _x_tick(fr: _Frame, x: float, label: str, anchor: str = "middle") -> str:
    return (
        f'<line class="tickmark" x1="{x:.1f}" x2="{x:.1f}" y1="{fr.y0}" y2="{fr.y0 + 4}"/>'
        f'<text class="tick" x="{x:.1f}" y="{fr.y0 + 16}" text-anchor="{anchor}">'
        f"{html_safe(label)}</text>"
    )


# -- time series ---------------------------------------------------------------------------------

_DAY = 86400
_TIME_STEPS: tuple[int, ...] = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_TIME_STEPS += (_DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY, 91 * _DAY, 182 * _DAY)
_YEAR = 365 * _DAY  # longer steps: 1/2/5 x 10^k years, ticks on New Year's days


def _time_step(span: float, target: int) -> int:
    step = next((s for s in _TIME_STEPS if span / s <= target), None)
    if step is not None:
        return step
    years = span / _YEAR / target
    mag = 10 ** max(0, math.floor(math.log10(years))) if years >= 1 else 1
    m = next((m for m in (1, 2, 5, 10) if years <= m * mag), 10)
    return int(m * mag * _YEAR)


def _time_ticks(t0: float, t1: float, target: int = 6) -> list[float]:
    """At most `target` + 1 ticks over any span (a minute to the 10,000 years of MAX_TIME)."""
    span = max(t1 - t0, 1.0)
    step = _time_step(span, target)
    if step >= _YEAR:  # on New Year's days, every `step` years
        years = step // _YEAR
        first = -(-max(utc(t0).year, 1) // years) * years
        epoch = utc(0)
        return [
            (epoch.replace(year=y) - epoch).total_seconds()
            for y in range(max(first, 1), utc(t1).year + 1, years)
            if t0 <= (epoch.replace(year=y) - epoch).total_seconds() <= t1
        ]
    first = math.ceil(t0 / step) * step
    return [float(t) for t in range(int(first), int(t1) + 1, step)]


def _fmt_time(t: float, span: float) -> str:
    if span <= 86400:
        return fmt_utc(t, seconds=False)[11:]
    if span <= 7 * 86400:
        return fmt_utc(t, seconds=False)[5:]
    if span <= 5 * _YEAR:
        return fmt_utc(t)[:10]
    return f"{utc(t).year:04d}"


class Series:
    def __init__(
        self, name: str, values: Sequence[float | None], color: str, dashed: bool = False
    ) -> None:
        self.name = name
        self.values = values
        self.color = color
        self.dashed = dashed


def timeseries_svg(
    chart_id: str,
    title: str,
    starts: Sequence[int],
    width: int,
    y_label: str,
    lines: Sequence[Series],
    bars: Series | None = None,
    fmt: Callable[[float], str] = fmt_num,
) -> str:
    """Lines (and optional bars) over time; bucket i covers [starts[i], starts[i] + width)."""
    every = [*([bars] if bars else []), *lines]
    all_vals = [v for s in every for v in s.values if v is not None]
    h = H_TIME
    if not starts or not all_vals:
        return _no_data(chart_id, title, h)
    fr = _Frame(max(all_vals) or 1.0, h)
    scale = _TimeScale(fr, starts[0], starts[-1] + width)
    names = ", ".join(s.name for s in every)
    desc = f"{names} per {fmt_width(width)} bucket, {len(starts)} buckets, time in UTC."
    out = _svg_open(chart_id, title, desc, h)
    out += _y_axis(fr, y_label)
    if bars is not None:
        out += _bars_over_time(scale, starts, width, bars, fmt)
    for s in lines:
        out += _line_over_time(scale, starts, width, s, fmt)
    out += _time_axis(scale)
    out.append(_x_label(f"time (UTC), {fmt_width(width)} buckets", h))
    out.append("</svg>")
    return "".join(out)


class _TimeScale:
    """The x scale of a time chart: [t0, t1] onto the plot area."""

    def __init__(self, fr: _Frame, t0: float, t1: float) -> None:
        self.fr = fr
        self.t0, self.t1 = t0, t1
        self.span = t1 - t0

    def x(self, t: float) -> float:
        fr = self.fr
        return fr.x0 + (fr.x1 - fr.x0) * (t - self.t0) / self.span


def _bars_over_time(
    scale: _TimeScale, starts: Sequence[int], width: int, bars: Series, fmt: Callable[[float], str]
) -> list[str]:
    fr = scale.fr
    bw = (fr.x1 - fr.x0) * width / scale.span
    out = []
    for t, v in zip(starts, bars.values):
        if not v:
            continue
        y = fr.y(v)
        out.append(
            f'<rect class="bar" x="{scale.x(t) + 0.5:.1f}" y="{y:.1f}" '
            f'width="{max(bw - 1, 0.5):.1f}" height="{fr.y0 - y:.1f}" fill="{bars.color}">'
            f"<title>{html_safe(_fmt_time(t, 0))} UTC: {html_safe(fmt(v))} "
            f"{html_safe(bars.name)}</title></rect>"
        )
    return out


def _line_over_time(
    scale: _TimeScale, starts: Sequence[int], width: int, s: Series, fmt: Callable[[float], str]
) -> list[str]:
    """A polyline per run of known values (a gap where a bucket has none), and the points."""
    segment: list[str] = []
    segments: list[list[str]] = []
    points: list[str] = []
    for t, v in zip(starts, s.values):
        if v is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        cx, cy = scale.x(t + width / 2), scale.fr.y(v)
        segment.append(f"{cx:.1f},{cy:.1f}")
        points.append(
            f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="2.2" fill="{s.color}">'
            f"<title>{html_safe(_fmt_time(t, 0))} UTC: {html_safe(s.name)} "
            f"{html_safe(fmt(v))}</title></circle>"
        )
    if segment:
        segments.append(segment)
    dash = ' stroke-dasharray="5 3"' if s.dashed else ""
    out = [
        f'<polyline class="series" fill="none" stroke="{s.color}" stroke-width="2"{dash} '
        f'points="{" ".join(seg)}"/>'
        for seg in segments
    ]
    if len(points) <= 150:  # more would be a smear of dots; the line says it all
        out.extend(points)
    return out


def _time_axis(scale: _TimeScale) -> list[str]:
    out = []
    for tick in _time_ticks(scale.t0, scale.t1):
        xt = scale.x(tick)
        label = _fmt_time(tick, scale.span)
        # keep the label inside the chart at the right edge
        anchor = "end" if xt + 3.2 * len(label) > W - 2 else "middle"
        out.append(_x_tick(scale.fr, xt, label, anchor))
    return out


def fmt_width(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
