"""The `streamtap report --html` page: one self-contained file, charts drawn as inline SVG.

No JavaScript, no fonts, no network: the charts are SVG built here, with a `<title>` and `<desc>`
each, axis labels with units, and a native tooltip (`<title>`) on every bar and point. Every text
goes through `_e`: HTML-escaped, with control and bidirectional characters shown as escapes.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Callable

from ._report import (
    MAX_GROUPS,
    OTHER,
    PERCENTILE_METHOD,
    Aggregator,
    Bucket,
    Distribution,
    GroupStats,
    fmt_utc,
    latency_row,
    printable,
    traffic_row,
    utc,
)

# Colour-blind-friendly palette (Okabe & Ito), then a few extra shades.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#8C8C8C",
)
RED = "#D55E00"
ORANGE = "#E69F00"
BLUE = "#0072B2"
GREY = "#C9CED6"

W = 560  # viewBox width of every chart
H_TIME, H_HIST = 230, 180  # viewBox heights
ML, MR, MT, MB = 62, 22, 16, 46  # margins: left, right, top, bottom
NBINS = 30


def _e(text: object) -> str:
    return html.escape(printable(str(text), 400), quote=True)


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


def _fmt_num(v: float | None, digits: int = 3) -> str:
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
        f'<svg class="chart" data-chart="{_e(chart_id)}" viewBox="0 0 {W} {h}" role="img" '
        f'aria-labelledby="{_e(chart_id)}-t {_e(chart_id)}-d" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{_e(chart_id)}-t">{_e(title)}</title>',
        f'<desc id="{_e(chart_id)}-d">{_e(desc)}</desc>',
    ]


def _y_axis(fr: _Frame, label: str, fmt: Callable[[float], str] | None = None) -> list[str]:
    step = fr.yticks[1] - fr.yticks[0] if len(fr.yticks) > 1 else 1.0
    out = []
    for t in fr.yticks:
        y = fr.y(t)
        out.append(
            f'<line class="grid" x1="{fr.x0}" x2="{fr.x1}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{fr.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(fmt(t) if fmt else _fmt_tick(t, step))}</text>"
        )
    mid = (fr.y0 + fr.y1) / 2
    out.append(
        f'<text class="axis-label" transform="translate(14 {mid:.1f}) rotate(-90)" '
        f'text-anchor="middle">{_e(label)}</text>'
    )
    out.append(f'<line class="axis" x1="{fr.x0}" x2="{fr.x1}" y1="{fr.y0}" y2="{fr.y0}"/>')
    return out


def _x_label(label: str, h: int) -> str:
    return (
        f'<text class="axis-label" x="{(ML + W - MR) / 2:.1f}" y="{h - 8}" '
        f'text-anchor="middle">{_e(label)}</text>'
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
    hi_disp = hi * scale
    xticks = nice_ticks(hi_disp, 6)
    top = xticks[-1]
    width = top / NBINS
    edges = [i * width / scale for i in range(NBINS + 1)]
    counts = [
        bisect_right(values, edges[i + 1]) - (bisect_right(values, edges[i]) if i else 0)
        for i in range(NBINS)
    ]
    over = len(values) - bisect_right(values, edges[-1])
    fr = _Frame(max(counts) or 1, h)
    desc = (
        f"Histogram of {len(values)} values, {NBINS} bins of {width:g} {unit} from 0 to "
        f"{top:g} {unit}" + (f"; {over} larger values not shown." if over else ".")
    )
    out = _svg_open(chart_id, title, desc, h)
    out += _y_axis(fr, "streams")
    bw = (fr.x1 - fr.x0) / NBINS
    for i, c in enumerate(counts):
        if not c:
            continue
        x = fr.x0 + i * bw
        y = fr.y(c)
        lo_v, hi_v = i * width, (i + 1) * width
        out.append(
            f'<rect class="bar" x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bw - 1, 0.5):.1f}" '
            f'height="{fr.y0 - y:.1f}" fill="{color}">'
            f"<title>{lo_v:g}-{hi_v:g} {_e(unit)}: {c} streams</title></rect>"
        )
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    for t in xticks:
        x = fr.x0 + (fr.x1 - fr.x0) * t / top
        out.append(
            f'<line class="tickmark" x1="{x:.1f}" x2="{x:.1f}" y1="{fr.y0}" y2="{fr.y0 + 4}"/>'
            f'<text class="tick" x="{x:.1f}" y="{fr.y0 + 16}" text-anchor="middle">'
            f"{_e(_fmt_tick(t, xstep))}</text>"
        )
    if over:
        out.append(
            f'<text class="note" x="{fr.x1}" y="{MT + 10}" text-anchor="end">'
            f"+{over:,} above {top:g} {_e(unit)}</text>"
        )
    out.append(_x_label(x_label, h))
    out.append("</svg>")
    return "".join(out)


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
    fmt: Callable[[float], str] = _fmt_num,
) -> str:
    """Lines (and optional bars) over time; bucket i covers [starts[i], starts[i] + width)."""
    all_vals = [v for s in [*lines, *([bars] if bars else [])] for v in s.values if v is not None]
    h = H_TIME
    if not starts or not all_vals:
        return _no_data(chart_id, title, h)
    t0, t1 = starts[0], starts[-1] + width
    span = t1 - t0
    fr = _Frame(max(all_vals) or 1.0, h)

    def x(t: float) -> float:
        return fr.x0 + (fr.x1 - fr.x0) * (t - t0) / span

    names = ", ".join(s.name for s in [*([bars] if bars else []), *lines])
    desc = f"{names} per {_fmt_width(width)} bucket, {len(starts)} buckets, time in UTC."
    out = _svg_open(chart_id, title, desc, h)
    out += _y_axis(fr, y_label)
    if bars is not None:
        bw = (fr.x1 - fr.x0) * width / span
        for t, v in zip(starts, bars.values):
            if not v:
                continue
            y = fr.y(v)
            out.append(
                f'<rect class="bar" x="{x(t) + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bw - 1, 0.5):.1f}" height="{fr.y0 - y:.1f}" fill="{bars.color}">'
                f"<title>{_e(_fmt_time(t, 0))} UTC: {_e(fmt(v))} {_e(bars.name)}</title></rect>"
            )
    for s in lines:
        segment: list[str] = []
        segments: list[list[str]] = []
        points: list[str] = []
        for t, v in zip(starts, s.values):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            cx, cy = x(t + width / 2), fr.y(v)
            segment.append(f"{cx:.1f},{cy:.1f}")
            points.append(
                f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="2.2" fill="{s.color}">'
                f"<title>{_e(_fmt_time(t, 0))} UTC: {_e(s.name)} {_e(fmt(v))}</title></circle>"
            )
        if segment:
            segments.append(segment)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for seg in segments:
            out.append(
                f'<polyline class="series" fill="none" stroke="{s.color}" stroke-width="2"{dash} '
                f'points="{" ".join(seg)}"/>'
            )
        if len(points) <= 150:
            out.extend(points)
    for tick in _time_ticks(t0, t1):
        xt = x(tick)
        label = _fmt_time(tick, span)
        # keep the label inside the chart at the right edge
        anchor = "end" if xt + 3.2 * len(label) > W - 2 else "middle"
        out.append(
            f'<line class="tickmark" x1="{xt:.1f}" x2="{xt:.1f}" y1="{fr.y0}" y2="{fr.y0 + 4}"/>'
            f'<text class="tick" x="{xt:.1f}" y="{fr.y0 + 16}" text-anchor="{anchor}">'
            f"{_e(label)}</text>"
        )
    out.append(_x_label(f"time (UTC), {_fmt_width(width)} buckets", h))
    out.append("</svg>")
    return "".join(out)


def _fmt_width(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _legend(items: Sequence[tuple[str, str, str]]) -> str:
    """(name, colour, kind) with kind `line`, `dash` or `bar`."""
    out = ['<ul class="legend">']
    for name, color, kind in items:
        out.append(f'<li><span class="key {kind}" style="--c:{color}"></span>{_e(name)}</li>')
    out.append("</ul>")
    return "".join(out)


def _figure(title: str, svg: str, legend: str = "", note: str = "") -> str:
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>{legend}{svg}"
        + (f'<p class="fignote">{_e(note)}</p>' if note else "")
        + "</figure>"
    )


# -- tables --------------------------------------------------------------------------------------

_LAT_HEAD = (
    "streams",
    "TTFT p50 (s)",
    "TTFT p95 (s)",
    "TTFT p99 (s)",
    "TPOT p50 (ms)",
    "output tokens/s p50",
    "inter-chunk gap p95 (ms)",
)
_TRAFFIC_HEAD = (
    "streams",
    "error rate",
    "retry rate",
    "tokens in",
    "tokens out",
    "resumed (by strategy)",
    "outcomes",
)


def _html_table(
    caption: str, key: str, head: Sequence[str], rows: Sequence[list[str]], n_num: int, total: bool
) -> str:
    out = [f"<table><caption>{_e(caption)}</caption><thead><tr>"]
    out.append(f'<th scope="col">{_e(key)}</th>')
    out.extend(
        f'<th scope="col" class="{"num" if i < n_num else "txt"}">{_e(h)}</th>'
        for i, h in enumerate(head)
    )
    out.append("</tr></thead><tbody>")
    for i_row, row in enumerate(rows):
        cls = ' class="total"' if total and i_row == len(rows) - 1 else ""
        out.append(f'<tr{cls}><th scope="row">{_e(row[0])}</th>')
        out.extend(
            f'<td class="{"num" if i < n_num else "txt"}">{_e(c)}</td>'
            for i, c in enumerate(row[1:])
        )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _tables(label: str, groups: dict[str, GroupStats], overall: GroupStats) -> str:
    items = sorted(groups.items(), key=lambda kv: (-kv[1].count, kv[0]))
    lat = [latency_row(k, g) for k, g in items]
    trf = [traffic_row(k, g) for k, g in items]
    if len(items) > 1:
        lat.append(latency_row("all", overall))
        trf.append(traffic_row("all", overall))
    total = len(items) > 1
    return _html_table(f"Latency by {label}", label, _LAT_HEAD, lat, 7, total) + _html_table(
        f"Traffic and reliability by {label}", label, _TRAFFIC_HEAD, trf, 5, total
    )


# -- page ----------------------------------------------------------------------------------------

CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--bg:#f5f6f8;--card:#fff;--line:#e3e6eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:24px;margin:0 0 2px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 16px}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:16px 0 4px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.kpi .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.kpi .l{color:var(--muted);font-size:12px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;
 padding:10px 12px 6px}
figcaption{font-weight:600;font-size:14px}
.fignote{color:var(--muted);font-size:12px;margin:0 0 4px}
svg.chart{display:block;width:100%;height:auto}
svg .grid{stroke:#edf0f3;stroke-width:1}
svg .axis,svg .tickmark{stroke:#8a93a3;stroke-width:1}
svg .tick{fill:#5b6475;font-size:11px;font-variant-numeric:tabular-nums}
svg .axis-label{fill:#3a4252;font-size:12px}
svg .note,svg .nodata{fill:#5b6475;font-size:11px}
svg .bar:hover,svg .pt:hover{opacity:.75}
.legend{list-style:none;margin:2px 0 0;padding:0;display:flex;gap:14px;flex-wrap:wrap;
 color:var(--muted);font-size:12px}
.legend .key{display:inline-block;width:16px;height:0;margin-right:5px;vertical-align:middle;
 border-top:3px solid var(--c)}
.legend .key.dash{border-top-style:dashed}
.legend .key.bar{height:10px;border:0;background:var(--c)}
.model{margin:0 0 14px}
table{border-collapse:collapse;width:100%;background:var(--card);margin:0 0 16px;
 border:1px solid var(--line);font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:0 0 6px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);white-space:nowrap}
thead th{background:#eef1f5;font-size:12px;text-align:right;color:#3a4252}
thead th:first-child,thead th.txt{text-align:left}
tbody th{text-align:left;font-weight:500}
td.num{text-align:right}
td.txt{text-align:left;white-space:normal;color:#3a4252}
tr.total th,tr.total td{font-weight:600;background:#fafbfc}
footer{color:var(--muted);font-size:12px;margin-top:24px}
code{font-size:12px}
"""


def _kpis(g: GroupStats) -> str:
    ttft50 = g.ttft.percentile(50)
    ttft95 = g.ttft.percentile(95)
    tps = g.tps.percentile(50)
    items = [
        (f"{g.count:,}", "streams"),
        (f"{100 * g.error_rate:.1f}%", "error rate"),
        (f"{100 * g.retry_rate:.1f}%", "retry rate"),
        ("-" if ttft50 is None else f"{ttft50:.2f} s", "TTFT p50"),
        ("-" if ttft95 is None else f"{ttft95:.2f} s", "TTFT p95"),
        ("-" if tps is None else f"{tps:.0f}/s", "output tokens/s p50"),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><div class="v">{_e(v)}</div><div class="l">{_e(lbl)}</div></div>'
            for v, lbl in items
        )
        + "</div>"
    )


def _hist_hi(dist: Distribution) -> float:
    """The x range of a histogram: up to the p99, so that a few outliers do not flatten it."""
    return dist.percentile(99) or 1.0


def _time_section(agg: Aggregator) -> str:
    width, points = agg.timeseries.series()
    if not points:
        return (
            '<p class="sub">No time series: the summaries carry neither '
            "<code>streamtap.started_at</code> nor <code>timestamp</code>.</p>"
        )
    starts = [k for k, _ in points]
    buckets: list[Bucket] = [b for _, b in points]
    per = _fmt_width(width)
    ttft = timeseries_svg(
        "ttft-over-time",
        "Time to first token over time",
        starts,
        width,
        "time to first token (s)",
        [
            Series("p50", [b.ttft.percentile(50) for b in buckets], BLUE),
            Series("p95", [b.ttft.percentile(95) for b in buckets], RED, dashed=True),
        ],
    )
    tps = timeseries_svg(
        "throughput-over-time",
        "Throughput over time",
        starts,
        width,
        "output tokens/s per stream",
        [Series("median output tokens/s", [b.tps.percentile(50) for b in buckets], BLUE)],
    )
    traffic = timeseries_svg(
        "errors-over-time",
        "Streams, errors and retries over time",
        starts,
        width,
        f"streams per {per}",
        [
            Series("errors", [float(b.errors) for b in buckets], RED),
            Series("retried", [float(b.retried) for b in buckets], ORANGE, dashed=True),
        ],
        bars=Series("streams", [float(b.count) for b in buckets], GREY),
        fmt=lambda v: f"{v:,.0f}",
    )
    tokens = timeseries_svg(
        "tokens-over-time",
        "Output tokens over time",
        starts,
        width,
        f"output tokens per {per}",
        [],
        bars=Series("output tokens", [float(b.output_tokens) for b in buckets], BLUE),
        fmt=lambda v: f"{v:,.0f}",
    )
    return (
        '<div class="grid2">'
        + "".join(
            [
                _figure(
                    "Time to first token, p50 and p95 (s)",
                    ttft,
                    _legend([("p50", BLUE, "line"), ("p95", RED, "dash")]),
                ),
                _figure(
                    "Throughput: median output tokens per second per stream",
                    tps,
                    _legend([("median output tokens/s", BLUE, "line")]),
                ),
                _figure(
                    f"Streams, errors and retried streams per {per}",
                    traffic,
                    _legend(
                        [
                            ("streams", GREY, "bar"),
                            ("errors", RED, "line"),
                            ("retried", ORANGE, "dash"),
                        ]
                    ),
                ),
                _figure(
                    f"Output tokens per {per}",
                    tokens,
                    _legend([("output tokens", BLUE, "bar")]),
                ),
            ]
        )
        + "</div>"
    )


def _slug(text: str, i: int) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return f"{i}-{keep[:40]}"


def _distribution_section(agg: Aggregator) -> str:
    items = sorted(agg.by_model.items(), key=lambda kv: (-kv[1].count, kv[0]))
    if not items:
        return '<p class="sub">No streams.</p>'
    out = []
    for i, (model, g) in enumerate(items):
        color = PALETTE[i % len(PALETTE)]
        slug = _slug(model, i)
        ttft = g.ttft.sorted_values()
        tpot = g.tpot.sorted_values()
        t50, t95 = g.ttft.percentile(50), g.ttft.percentile(95)
        p50 = g.tpot.percentile(50)
        out.append(f'<section class="model" aria-label="{_e(model)}"><div class="grid2">')
        out.append(
            _figure(
                f"{model}: time to first token (s)",
                histogram_svg(
                    f"ttft-hist-{slug}",
                    f"Distribution of time to first token for {model}",
                    ttft,
                    _hist_hi(g.ttft),
                    "time to first token (s)",
                    1.0,
                    "s",
                    color,
                ),
                note=f"{len(ttft):,} streams; p50 {_fmt_num(t50)} s, p95 {_fmt_num(t95)} s",
            )
        )
        out.append(
            _figure(
                f"{model}: time per output token (ms)",
                histogram_svg(
                    f"tpot-hist-{slug}",
                    f"Distribution of time per output token for {model}",
                    tpot,
                    _hist_hi(g.tpot),
                    "time per output token (ms)",
                    1000.0,
                    "ms",
                    color,
                ),
                note=f"{len(tpot):,} streams; p50 "
                + ("-" if p50 is None else f"{p50 * 1000:.3g}")
                + " ms",
            )
        )
        out.append("</div></section>")
    return "".join(out)


def render_html(agg: Aggregator, title: str = "streamtap report") -> str:
    """The whole page as one string."""
    c = agg.counts
    ts = agg.timeseries
    if ts.first is not None and ts.last is not None:
        span = f"{fmt_utc(ts.first, False)} to {fmt_utc(ts.last, False)} UTC"
    else:
        span = "no timestamps"
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{c.summaries:,} streams, {_e(span)}. '
        f"{len(agg.by_model)} model(s), {len(agg.by_endpoint)} endpoint(s).</p>",
        _kpis(agg.overall),
        "<h2>By model</h2>",
        _tables("model", agg.by_model, agg.overall),
        "<h2>Over time</h2>",
        _time_section(agg),
        "<h2>Latency distributions by model</h2>",
        _distribution_section(agg),
        "<h2>By endpoint</h2>",
        _tables("endpoint", agg.by_endpoint, agg.overall),
        "<footer><p>",
        f"Percentiles: {PERCENTILE_METHOD} (the value at rank ceil(p/100 &middot; n) of the "
        "sorted values). TTFT: <code>streamtap.time_to_first_token</code>. TPOT: "
        "<code>streamtap.time_per_output_token</code>. Inter-chunk gap p95: median over "
        "streams of <code>streamtap.gap.p95</code>. Error rate: outcome <code>error</code>. "
        "Retry rate: streams with <code>streamtap.retries</code> &gt; 0.</p>",
        f"<p>Input: {c.lines:,} lines; {c.summaries:,} summaries; {c.malformed:,} malformed; "
        f"{c.invalid:,} invalid summaries; {c.other_json:,} other JSON; "
        f"{c.non_json:,} not JSON"
        + (f"; {c.filtered:,} outside the time range" if c.filtered else "")
        + (
            f"; {c.out_of_range:,} summaries with values out of range (those values ignored)"
            if c.out_of_range
            else ""
        )
        + (
            f". {_e(OTHER)}: the models or endpoints past the first {MAX_GROUPS:,}, added up"
            if OTHER in agg.by_model or OTHER in agg.by_endpoint
            else ""
        )
        + ".</p></footer>",
        "</main></body></html>\n",
    ]
    return "".join(parts)
