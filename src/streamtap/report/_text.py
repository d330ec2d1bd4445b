"""The plain-text report: one latency table and one traffic table per grouping.

Every name from the input goes through `printable`: the tables cannot carry terminal controls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._aggregate import MAX_GROUPS, OTHER, Aggregator, GroupStats
from ._inputs import LineCounts
from ._values import fmt_utc, printable


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _fmt_pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _fmt_counter(c: Mapping[str, int], most: int = 8) -> str:
    """`ok 90, error 3`: the `most` commonest keys (names from the input made printable)."""
    items = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{printable(k, 60)} {v:,}" for k, v in items[:most])
    if len(items) > most:
        text += f", {len(items) - most:,} more"
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """Plain-text table; `align` has one letter per column, `l` or `r`."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i])
            for i, c in enumerate(cells)
        ).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


LATENCY_HEADERS = (
    "",
    "streams",
    "TTFT p50 s",
    "TTFT p95 s",
    "TTFT p99 s",
    "TPOT p50 ms",
    "out tok/s p50",
    "gap p95 ms",
)
TRAFFIC_HEADERS = (
    "",
    "streams",
    "errors",
    "retried",
    "tokens in",
    "tokens out",
    "resumed (by strategy)",
    "outcomes",
)


def latency_row(name: str, g: GroupStats) -> list[str]:
    return [
        printable(name, 100),
        f"{g.count:,}",
        _fmt_s(g.ttft.percentile(50)),
        _fmt_s(g.ttft.percentile(95)),
        _fmt_s(g.ttft.percentile(99)),
        _fmt_ms(g.tpot.percentile(50)),
        _fmt_rate(g.tps.percentile(50)),
        _fmt_ms(g.gap_p95.percentile(50)),
    ]


def traffic_row(name: str, g: GroupStats) -> list[str]:
    resumed = f"{g.retried:,}"
    if g.resumed:
        resumed += f" ({_fmt_counter(g.resumed)})"
    return [
        printable(name, 100),
        f"{g.count:,}",
        _fmt_pct(g.errors, g.count),
        _fmt_pct(g.retried, g.count),
        f"{g.input_tokens:,}",
        f"{g.output_tokens:,}",
        resumed,
        _fmt_counter(g.outcomes),
    ]


def sorted_groups(groups: Mapping[str, GroupStats]) -> list[tuple[str, GroupStats]]:
    """Largest group first, then by name."""
    return sorted(groups.items(), key=lambda kv: (-kv[1].count, kv[0]))


def group_rows(
    groups: Mapping[str, GroupStats], overall: GroupStats
) -> tuple[list[list[str]], list[list[str]], bool]:
    """The latency rows, the traffic rows, and whether they end with an "all" row."""
    items = sorted_groups(groups)
    latency = [latency_row(k, g) for k, g in items]
    traffic = [traffic_row(k, g) for k, g in items]
    total = len(items) > 1
    if total:
        latency.append(latency_row("all", overall))
        traffic.append(traffic_row("all", overall))
    return latency, traffic, total


def line_kinds(c: LineCounts) -> list[str]:
    """`12 summaries`, `1 malformed`, ...: what the lines were (the time filter when used)."""
    kinds = [
        f"{c.summaries:,} summaries",
        f"{c.malformed:,} malformed",
        f"{c.invalid:,} invalid summaries",
        f"{c.other_json:,} other JSON",
        f"{c.non_json:,} not JSON",
    ]
    if c.filtered:
        kinds.append(f"{c.filtered:,} outside the time range")
    return kinds


def out_of_range_note(c: LineCounts) -> str:
    """The summaries that had a value ignored, or nothing."""
    if not c.out_of_range:
        return ""
    return f"{c.out_of_range:,} summaries with values out of range (those values ignored)"


def _fmt_time(t: float | None) -> str:
    return "?" if t is None else fmt_utc(t) + " UTC"


def _header(agg: Aggregator) -> list[str]:
    c = agg.counts
    first, last = agg.timeseries.first, agg.timeseries.last
    span = f", {_fmt_time(first)} to {_fmt_time(last)}" if first is not None else ""
    note = out_of_range_note(c)
    return [
        f"streamtap report: {c.summaries:,} streams{span}",
        f"lines: {c.lines:,} read, " + ", ".join(line_kinds(c)) + (f"; {note}" if note else ""),
        "percentiles: nearest-rank. TTFT = time to first token, TPOT = time per output token,"
        " gap p95 = median over streams of each stream's p95 inter-chunk gap.",
    ]


def _grouping(label: str, groups: Mapping[str, GroupStats], overall: GroupStats) -> list[str]:
    latency, traffic, _total = group_rows(groups, overall)
    parts = [
        f"\nLatency by {label}\n" + table([label, *LATENCY_HEADERS[1:]], latency, "lrrrrrrr"),
        f"\nTraffic and reliability by {label}\n"
        + table([label, *TRAFFIC_HEADERS[1:]], traffic, "lrrrrrll"),
    ]
    if OTHER in groups:
        parts.append(f"{OTHER}: every {label} past the first {MAX_GROUPS:,}, added up")
    return parts


def render_text(agg: Aggregator, by: str = "all") -> str:
    """The report as text tables; `by`: group by "model", "endpoint", "operation", "both"
    (model and endpoint) or "all"."""
    parts = _header(agg)
    for label, groups in agg.groupings(by):
        parts.extend(_grouping(label, groups, agg.overall))
    return "\n".join(parts) + "\n"
