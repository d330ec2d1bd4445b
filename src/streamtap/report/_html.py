"""The `streamtap report --html` page: one self-contained file, charts drawn as inline SVG.

No JavaScript, no fonts, no network: the charts come from `_svg`, the tables from the same rows
as the text report. Every text goes through `html_safe`: HTML-escaped, with control and
bidirectional characters shown as escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ._aggregate import (
    MAX_GROUPS,
    OTHER,
    PERCENTILE_METHOD,
    Aggregator,
    Bucket,
    Distribution,
    GroupStats,
)
from ._inputs import LineCounts
from ._svg import Series, fmt_num, fmt_width, histogram_svg, timeseries_svg
from ._text import group_rows, line_kinds, out_of_range_note, sorted_groups
from ._values import fmt_utc, html_safe

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


def _legend(items: Sequence[tuple[str, str, str]]) -> str:
    """(name, colour, kind) with kind `line`, `dash` or `bar`."""
    out = ['<ul class="legend">']
    for name, color, kind in items:
        out.append(
            f'<li><span class="key {kind}" style="--c:{color}"></span>{html_safe(name)}</li>'
        )
    out.append("</ul>")
    return "".join(out)


def _figure(title: str, svg: str, legend: str = "", note: str = "") -> str:
    return (
        f"<figure><figcaption>{html_safe(title)}</figcaption>{legend}{svg}"
        + (f'<p class="fignote">{html_safe(note)}</p>' if note else "")
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


def _cell(tag: str, text: str, numeric: bool) -> str:
    kind = "num" if numeric else "txt"
    return f'<{tag} class="{kind}">{html_safe(text)}</{tag}>'


def _html_table(
    caption: str, key: str, head: Sequence[str], rows: Sequence[list[str]], n_num: int, total: bool
) -> str:
    """`rows` (first cell the row's name); the first `n_num` other columns are numbers."""
    out = [f"<table><caption>{html_safe(caption)}</caption><thead><tr>"]
    out.append(f'<th scope="col">{html_safe(key)}</th>')
    out.extend(
        f'<th scope="col" class="{"num" if i < n_num else "txt"}">{html_safe(h)}</th>'
        for i, h in enumerate(head)
    )
    out.append("</tr></thead><tbody>")
    for i_row, row in enumerate(rows):
        cls = ' class="total"' if total and i_row == len(rows) - 1 else ""
        out.append(f'<tr{cls}><th scope="row">{html_safe(row[0])}</th>')
        out.extend(_cell("td", c, i < n_num) for i, c in enumerate(row[1:]))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _tables(label: str, groups: Mapping[str, GroupStats], overall: GroupStats) -> str:
    latency, traffic, total = group_rows(groups, overall)
    return _html_table(f"Latency by {label}", label, _LAT_HEAD, latency, 7, total) + _html_table(
        f"Traffic and reliability by {label}", label, _TRAFFIC_HEAD, traffic, 5, total
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
            f'<div class="kpi"><div class="v">{html_safe(v)}</div>'
            f'<div class="l">{html_safe(lbl)}</div></div>'
            for v, lbl in items
        )
        + "</div>"
    )


def _time_section(agg: Aggregator) -> str:
    width, points = agg.timeseries.series()
    if not points:
        return (
            '<p class="sub">No time series: the summaries carry neither '
            "<code>streamtap.started_at</code> nor <code>timestamp</code>.</p>"
        )
    starts = [k for k, _ in points]
    buckets: list[Bucket] = [b for _, b in points]
    figures = [
        _latency_over_time(starts, width, buckets),
        _throughput_over_time(starts, width, buckets),
        _traffic_over_time(starts, width, buckets),
        _tokens_over_time(starts, width, buckets),
    ]
    return '<div class="grid2">' + "".join(figures) + "</div>"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _latency_over_time(starts: list[int], width: int, buckets: list[Bucket]) -> str:
    svg = timeseries_svg(
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
    legend = _legend([("p50", BLUE, "line"), ("p95", RED, "dash")])
    return _figure("Time to first token, p50 and p95 (s)", svg, legend)


def _throughput_over_time(starts: list[int], width: int, buckets: list[Bucket]) -> str:
    name = "median output tokens/s"
    svg = timeseries_svg(
        "throughput-over-time",
        "Throughput over time",
        starts,
        width,
        "output tokens/s per stream",
        [Series(name, [b.tps.percentile(50) for b in buckets], BLUE)],
    )
    legend = _legend([(name, BLUE, "line")])
    return _figure("Throughput: median output tokens per second per stream", svg, legend)


def _traffic_over_time(starts: list[int], width: int, buckets: list[Bucket]) -> str:
    per = fmt_width(width)
    svg = timeseries_svg(
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
        fmt=_count,
    )
    legend = _legend(
        [("streams", GREY, "bar"), ("errors", RED, "line"), ("retried", ORANGE, "dash")]
    )
    return _figure(f"Streams, errors and retried streams per {per}", svg, legend)


def _tokens_over_time(starts: list[int], width: int, buckets: list[Bucket]) -> str:
    per = fmt_width(width)
    svg = timeseries_svg(
        "tokens-over-time",
        "Output tokens over time",
        starts,
        width,
        f"output tokens per {per}",
        [],
        bars=Series("output tokens", [float(b.output_tokens) for b in buckets], BLUE),
        fmt=_count,
    )
    legend = _legend([("output tokens", BLUE, "bar")])
    return _figure(f"Output tokens per {per}", svg, legend)


def _slug(text: str, i: int) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return f"{i}-{keep[:40]}"


def _distribution_section(agg: Aggregator) -> str:
    items = sorted_groups(agg.by_model)
    if not items:
        return '<p class="sub">No streams.</p>'
    out = []
    for i, (model, g) in enumerate(items):
        color = PALETTE[i % len(PALETTE)]
        slug = _slug(model, i)
        t50, t95, p50 = g.ttft.percentile(50), g.ttft.percentile(95), g.tpot.percentile(50)
        ttft_note = f"p50 {fmt_num(t50)} s, p95 {fmt_num(t95)} s"
        tpot_note = "p50 " + ("-" if p50 is None else f"{p50 * 1000:.3g}") + " ms"
        out.append(f'<section class="model" aria-label="{html_safe(model)}"><div class="grid2">')
        out.append(_histogram(f"ttft-hist-{slug}", _TTFT, model, g.ttft, color, ttft_note))
        out.append(_histogram(f"tpot-hist-{slug}", _TPOT, model, g.tpot, color, tpot_note))
        out.append("</div></section>")
    return "".join(out)


class _Metric(NamedTuple):
    """How a histogram shows a metric: its name, and its display unit and scale."""

    name: str
    unit: str
    scale: float


_TTFT = _Metric("time to first token", "s", 1.0)
_TPOT = _Metric("time per output token", "ms", 1000.0)


def _histogram(
    chart_id: str, metric: _Metric, model: str, dist: Distribution, color: str, note: str
) -> str:
    """The figure of one model's histogram of `metric`; `note`: its percentiles."""
    values = dist.sorted_values()
    label = f"{metric.name} ({metric.unit})"
    svg = histogram_svg(
        chart_id,
        f"Distribution of {metric.name} for {model}",
        values,
        # up to the p99, so that a few outliers do not flatten the histogram
        dist.percentile(99) or 1.0,
        label,
        metric.scale,
        metric.unit,
        color,
    )
    return _figure(f"{model}: {label}", svg, note=f"{len(values):,} streams; {note}")


def _footer(agg: Aggregator) -> str:
    c: LineCounts = agg.counts
    note = out_of_range_note(c)
    other = OTHER in agg.by_model or OTHER in agg.by_endpoint or OTHER in agg.by_operation
    return (
        "<footer><p>"
        f"Percentiles: {PERCENTILE_METHOD} (the value at rank ceil(p/100 &middot; n) of the "
        "sorted values). TTFT: <code>streamtap.time_to_first_token</code>. TPOT: "
        "<code>streamtap.time_per_output_token</code>. Inter-chunk gap p95: median over "
        "streams of <code>streamtap.gap.p95</code>. Error rate: outcome <code>error</code>. "
        "Retry rate: streams with <code>streamtap.retries</code> &gt; 0.</p>"
        f"<p>Input: {c.lines:,} lines; "
        + "; ".join(line_kinds(c))
        + (f"; {note}" if note else "")
        + (
            f". {html_safe(OTHER)}: the models, endpoints or operations past the first "
            f"{MAX_GROUPS:,}, added up"
            if other
            else ""
        )
        + ".</p></footer>"
    )


def render_html(agg: Aggregator, title: str = "streamtap report") -> str:
    """The whole page as one string: self-contained HTML with inline SVG charts."""
    ts = agg.timeseries
    if ts.first is not None and ts.last is not None:
        span = f"{fmt_utc(ts.first, False)} to {fmt_utc(ts.last, False)} UTC"
    else:
        span = "no timestamps"
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html_safe(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{html_safe(title)}</h1>",
        f'<p class="sub">{agg.counts.summaries:,} streams, {html_safe(span)}. '
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
        "<h2>By operation</h2>",
        _tables("operation", agg.by_operation, agg.overall),
        _footer(agg),
        "</main></body></html>\n",
    ]
    return "".join(parts)
