"""The aggregates of `streamtap report`: counters and exact percentiles per group and over time.

Per group (model, endpoint, operation, everything) the report keeps counters and one
`array('d')` per latency metric (8 bytes a value, so millions of streams are fine), which makes
every percentile exact. The number of groups and of time buckets is bounded: past MAX_GROUPS,
groups are added up in one OTHER group, and the time buckets grow wider instead of more
numerous.

Percentiles use the **nearest-rank** method: the p-th percentile of n sorted values is the
value at 1-based rank ceil(p/100 * n). It is always an observed value, so TTFT values 0.01,
0.02, ..., 1.00 give p50 = 0.50, p95 = 0.95, p99 = 0.99 exactly.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ._inputs import UNKNOWN, LineParser, Summary

PERCENTILE_METHOD = "nearest-rank"
# Rows per table: further models (endpoints) are added up in one "(other)" row.
MAX_GROUPS = 500
OTHER = "(other)"


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty).

    The value at 1-based rank ceil(p/100 * n); p = 0 gives the minimum, p = 100 the maximum.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    # round() first so that 95 * 100 / 100 stays 95 despite binary floating point.
    rank = math.ceil(round(p * n / 100.0, 9))
    return sorted_values[min(max(rank, 1), n) - 1]


class Distribution:
    """All values of one metric for one group, sorted lazily for exact percentiles."""

    __slots__ = ("_sorted", "_values")

    def __init__(self) -> None:
        self._values: array[float] = array("d")
        self._sorted = True

    def add(self, value: float) -> None:
        values = self._values
        if values and value < values[-1]:
            self._sorted = False
        values.append(value)

    def extend(self, other: Distribution) -> None:
        if len(other):
            self._values.extend(other._values)
            self._sorted = False

    def __len__(self) -> int:
        return len(self._values)

    def sorted_values(self) -> array[float]:
        if not self._sorted:
            self._values = array("d", sorted(self._values))
            self._sorted = True
        return self._values

    def percentile(self, p: float) -> float | None:
        return percentile(self.sorted_values(), p)

    def stats(self) -> dict[str, Any]:
        """n, min, mean, p50, p90, p95, p99, max (None values when empty)."""
        v = self.sorted_values()
        n = len(v)
        return {
            "n": n,
            "min": v[0] if n else None,
            "mean": math.fsum(v) / n if n else None,
            "p50": percentile(v, 50),
            "p90": percentile(v, 90),
            "p95": percentile(v, 95),
            "p99": percentile(v, 99),
            "max": v[-1] if n else None,
        }


class GroupStats:
    """Counters and distributions for one model, one endpoint, or everything."""

    def __init__(self) -> None:
        self.count = 0
        self.outcomes: Counter[str] = Counter()
        self.error_types: Counter[str] = Counter()
        self.retried = 0
        self.retries = 0
        self.resumed: Counter[str] = Counter()
        self.input_tokens = 0
        self.output_tokens = 0
        self.reasoning_tokens = 0
        self.cached_tokens = 0
        self.ttft = Distribution()
        self.ttfc = Distribution()
        self.duration = Distribution()
        self.tpot = Distribution()
        self.tps = Distribution()
        self.gap_p95 = Distribution()

    def add(self, s: Summary) -> None:
        self.count += 1
        self.outcomes[s.outcome] += 1
        if s.outcome == "error":
            self.error_types[s.error_type or UNKNOWN] += 1
        if s.retries > 0:
            self.retried += 1
            self.retries += s.retries
            self.resumed[s.strategy] += 1
        if s.input_tokens is not None:
            self.input_tokens += s.input_tokens
        if s.output_tokens is not None:
            self.output_tokens += s.output_tokens
        if s.reasoning_tokens is not None:
            self.reasoning_tokens += s.reasoning_tokens
        if s.cached_tokens is not None:
            self.cached_tokens += s.cached_tokens
        for dist, value in (
            (self.ttft, s.ttft),
            (self.ttfc, s.ttfc),
            (self.duration, s.duration),
            (self.tpot, s.tpot),
            (self.tps, s.tps),
            (self.gap_p95, s.gap_p95),
        ):
            if value is not None:
                dist.add(value)

    @property
    def errors(self) -> int:
        return self.outcomes.get("error", 0)

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def retry_rate(self) -> float:
        return self.retried / self.count if self.count else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "error_types": dict(self.error_types.most_common()),
            "retried": self.retried,
            "retry_rate": self.retry_rate,
            "retries": self.retries,
            "resumed": dict(self.resumed.most_common()),
            "outcomes": dict(self.outcomes.most_common()),
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "reasoning": self.reasoning_tokens,
                "cached": self.cached_tokens,
            },
            "time_to_first_token": self.ttft.stats(),
            "time_to_first_chunk": self.ttfc.stats(),
            "duration": self.duration.stats(),
            "time_per_output_token": self.tpot.stats(),
            "output_tokens_per_second": self.tps.stats(),
            # The distribution of the per-stream `streamtap.gap.p95` values: its p50 is the
            # "inter-chunk gap p95" of the tables.
            "gap_p95": self.gap_p95.stats(),
        }


class Bucket:
    """One time-series bucket."""

    __slots__ = ("count", "errors", "output_tokens", "retried", "tps", "ttft")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.retried = 0
        self.output_tokens = 0
        self.ttft = Distribution()
        self.tps = Distribution()

    def add(self, s: Summary) -> None:
        self.count += 1
        if s.outcome == "error":
            self.errors += 1
        if s.retries > 0:
            self.retried += 1
        if s.output_tokens is not None:
            self.output_tokens += s.output_tokens
        if s.ttft is not None:
            self.ttft.add(s.ttft)
        if s.tps is not None:
            self.tps.add(s.tps)

    def merge(self, other: Bucket) -> None:
        self.count += other.count
        self.errors += other.errors
        self.retried += other.retried
        self.output_tokens += other.output_tokens
        self.ttft.extend(other.ttft)
        self.tps.extend(other.tps)


# Bucket widths in seconds; each one a multiple of the one before, so buckets merge cleanly.
# Past a week the width doubles (`bucket_width`): any span fits in a bounded number of buckets.
WIDTHS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400, 604800)


def bucket_width(level: int) -> int:
    if level < len(WIDTHS):
        return WIDTHS[level]
    return WIDTHS[-1] << (level - len(WIDTHS) + 1)


class TimeSeries:
    """Buckets by event start time whose width grows (by merging) as the time span grows.

    At most `max_buckets` buckets are kept while reading, and `series()` returns at most
    `max_points` of them: memory and output stay bounded whatever the span (start times are
    within MIN_TIME and MAX_TIME, so the width never needs more than about 2**20 weeks).
    """

    def __init__(self, max_buckets: int = 2048) -> None:
        self.max_buckets = max_buckets
        self._level = 0
        self.buckets: dict[int, Bucket] = {}
        self.first: float | None = None
        self.last: float | None = None

    @property
    def width(self) -> int:
        return bucket_width(self._level)

    def add(self, t: float, s: Summary) -> None:
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t
        width = self.width
        key = int(t // width) * width
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket()
            if len(self.buckets) > self.max_buckets:
                self._coarsen()
                key = int(t // self.width) * self.width
                bucket = self.buckets[key]
        bucket.add(s)

    def _coarsen(self, until_at_most: int | None = None) -> None:
        limit = max(1, self.max_buckets if until_at_most is None else until_at_most)
        while True:
            self._level += 1
            width = self.width
            merged: dict[int, Bucket] = {}
            for key, bucket in self.buckets.items():
                k = (key // width) * width
                into = merged.get(k)
                if into is None:
                    merged[k] = bucket
                else:
                    into.merge(bucket)
            self.buckets = merged
            if self._span_buckets() <= limit:
                break

    def _span_buckets(self) -> int:
        if not self.buckets:
            return 0
        return (max(self.buckets) - min(self.buckets)) // self.width + 1

    def series(self, max_points: int = 120) -> tuple[int, list[tuple[int, Bucket]]]:
        """(bucket width, every bucket from the first to the last, empty ones included)."""
        if self._span_buckets() > max_points:
            self._coarsen(max_points)
        if not self.buckets:
            return self.width, []
        width = self.width
        start, end = min(self.buckets), max(self.buckets)
        return width, [(k, self.buckets.get(k) or Bucket()) for k in range(start, end + 1, width)]

    def to_json(self, max_points: int = 120) -> dict[str, Any]:
        width, points = self.series(max_points)
        return {
            "bucket_seconds": width,
            "buckets": [
                {
                    "start": key,
                    "count": b.count,
                    "errors": b.errors,
                    "retried": b.retried,
                    "output_tokens": b.output_tokens,
                    "ttft_p50": b.ttft.percentile(50),
                    "ttft_p95": b.ttft.percentile(95),
                    "output_tokens_per_second_p50": b.tps.percentile(50),
                }
                for key, b in points
            ],
        }


class Aggregator:
    """Feed it log lines (or summary dicts); read the aggregates with `to_json()`.

    `since` and `until` (epoch seconds) keep only the streams started in [since, until).
    `counts` says what the lines were, `examples` quotes a few malformed ones; `overall`,
    `by_model`, `by_endpoint`, `by_operation` and `timeseries` hold the aggregates.
    """

    def __init__(self, *, since: float | None = None, until: float | None = None) -> None:
        self.since = since
        self.until = until
        self._parser = LineParser()
        self.counts = self._parser.counts
        self.examples = self._parser.examples
        self.overall = GroupStats()
        self.by_model: dict[str, GroupStats] = {}
        self.by_endpoint: dict[str, GroupStats] = {}
        self.by_operation: dict[str, GroupStats] = {}
        self.timeseries = TimeSeries()

    def feed_line(self, line: str, source: str = "<input>", lineno: int = 0) -> None:
        """Classify one log line and keep it if it is a valid summary event."""
        event = self._parser.parse(line, source, lineno)
        if event is not None:
            self.add_summary(event)

    def add_summary(self, event: Mapping[str, Any]) -> bool:
        """Add one summary event (a dict as in docs/events.md); False if it was filtered out."""
        s = Summary(event)
        if not self._in_range(s.time):
            self.counts.filtered += 1
            return False
        self.counts.summaries += 1
        if s.out_of_range:
            self.counts.out_of_range += 1
        self.overall.add(s)
        _group(self.by_model, s.model).add(s)
        _group(self.by_endpoint, s.endpoint).add(s)
        _group(self.by_operation, s.operation).add(s)
        if s.time is not None:
            self.timeseries.add(s.time, s)
        return True

    def _in_range(self, t: float | None) -> bool:
        """Within [since, until); a stream without a time is out of any range set."""
        since, until = self.since, self.until
        if since is None and until is None:
            return True
        return t is not None and (since is None or t >= since) and (until is None or t < until)

    def to_json(self, by: str = "all") -> dict[str, Any]:
        """The aggregates as JSON-ready data; `by`: "model", "endpoint", "operation", "both"
        (model and endpoint) or "all"."""
        out: dict[str, Any] = {
            "percentile_method": PERCENTILE_METHOD,
            "lines": self.counts.to_json(),
            "malformed_examples": list(self.examples),
            "first_time": self.timeseries.first,
            "last_time": self.timeseries.last,
            "overall": self.overall.to_json(),
        }
        for label, groups in self.groupings(by):
            out[f"by_{label}"] = {k: g.to_json() for k, g in sorted(groups.items())}
        out["timeseries"] = self.timeseries.to_json()
        return out

    def groupings(self, by: str) -> list[tuple[str, dict[str, GroupStats]]]:
        """(label, groups) for `by`: "model", "endpoint", "operation", "both" or "all"."""
        chosen = {"both": ("model", "endpoint"), "all": ("model", "endpoint", "operation")}
        groups = {
            "model": self.by_model,
            "endpoint": self.by_endpoint,
            "operation": self.by_operation,
        }
        return [(label, groups[label]) for label in chosen.get(by, (by,)) if label in groups]


def _group(groups: dict[str, GroupStats], key: str) -> GroupStats:
    """The group for `key`; past MAX_GROUPS groups, the shared OTHER one."""
    group = groups.get(key)
    if group is None:
        if len(groups) >= MAX_GROUPS:
            key = OTHER
            group = groups.get(key)
        if group is None:
            group = groups[key] = GroupStats()
    return group
