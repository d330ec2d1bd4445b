"""`streamtap report`: aggregate `streamtap.stream.summary` events from log files.

Reads JSON log lines as real log files hold them: pure JSON lines, JSON after a prefix
(`2026-11-21 20:59:01 INFO {...}`), other JSON events and plain text mixed in, plain or gzipped
(told apart by the magic bytes, not the file name), or standard input (`-`). Nothing in the
input is fatal: malformed lines are counted and a few are shown.

Input is streamed line by line. Per group (model, endpoint) the report keeps counters and one
`array('d')` per latency metric (8 bytes a value, so millions of streams are fine), which makes
every percentile exact.

Log files are input from anywhere: every value is checked before use. Numbers out of range
(negative or absurd latencies, a 400-digit integer, a start time outside years 1 to 9999) are
ignored and counted; JSON nested too deeply to decode is a malformed line; the number of groups
and of time buckets is bounded (the bucket width grows instead); and every string from the input
is shown with its control characters escaped (`printable`), so a log line cannot move the
terminal's cursor, retitle it or reverse the text around it.

Percentiles use the **nearest-rank** method: the p-th percentile of n sorted values is the
value at 1-based rank ceil(p/100 * n). It is always an observed value, so TTFT values 0.01,
0.02, ..., 1.00 give p50 = 0.50, p95 = 0.95, p99 = 0.99 exactly.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import re
import sys
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any

SUMMARY_EVENT = "streamtap.stream.summary"
# A summary without these cannot be placed in a table; it is counted as invalid.
REQUIRED_FIELDS = ("gen_ai.request.model", "streamtap.outcome")
PERCENTILE_METHOD = "nearest-rank"
UNKNOWN = "(unknown)"
# Resumed streams whose summary names no strategy (plain retries before the first chunk).
NO_STRATEGY = "none"

_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 64 * 1024 * 1024  # bytes of (decompressed) input between progress lines
_MAX_EXAMPLES = 5  # malformed lines quoted in the report
_MAX_BRACES = 4  # '{' positions tried per line before giving up
# Wrappers that carry the event as a string: Docker's json-file driver ("log"), log shippers.
_WRAPPER_KEYS = ("log", "message", "msg", "line")
# Largest latency (s) or rate (1/s) taken from a summary, and largest token count or retry
# count: beyond them a value is a corrupt field, and it would only break the scales.
MAX_METRIC = 1e12
MAX_COUNT = 2**53
# Rows per table: further models (endpoints) are added up in one "(other)" row.
MAX_GROUPS = 500
OTHER = "(other)"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Start times a summary may have: what a datetime can show (years 1 to 9999). A bucket may
# start before MIN_TIME: `utc` clamps what it shows.
MIN_TIME = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH).total_seconds()
MAX_TIME = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc) - _EPOCH).total_seconds()


def _num(value: Any) -> float | None:
    """A finite number, or None for null / missing / anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return f if math.isfinite(f) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC datetime; never raises (clamped to years 1 to 9999)."""
    if not MIN_TIME <= t <= MAX_TIME:  # also NaN
        t = MIN_TIME if t < 0 else MAX_TIME
    return _EPOCH + timedelta(seconds=t)


def fmt_utc(t: float, seconds: bool = True) -> str:
    """`YYYY-MM-DD HH:MM[:SS]` (formatted by hand: strftime pads years below 1000 unevenly)."""
    d = utc(t)
    text = f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}"
    return text + f":{d.second:02d}" if seconds else text


# Characters that would act on a terminal or reorder text instead of being shown: C0 and C1
# controls, DEL, bidirectional marks, overrides and isolates, line and paragraph separators,
# the byte order mark, and lone surrogates (which cannot even be encoded).
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ufeff\ud800-\udfff]"
)


def _escape_char(m: re.Match[str]) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def printable(text: str, limit: int = 200) -> str:
    """`text` safe to show: at most `limit` characters, control characters escaped (`\\x1b`)."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _UNPRINTABLE.sub(_escape_char, text)


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


class Summary:
    """The fields of one summary event the report uses, checked and normalised once."""

    __slots__ = (
        "cached_tokens",
        "duration",
        "endpoint",
        "error_type",
        "gap_p95",
        "input_tokens",
        "model",
        "out_of_range",
        "outcome",
        "output_tokens",
        "reasoning_tokens",
        "retries",
        "strategy",
        "time",
        "tpot",
        "tps",
        "ttfc",
        "ttft",
    )

    def __init__(self, ev: Mapping[str, Any]) -> None:
        self.out_of_range = 0  # numbers of the right type but an impossible value (ignored)
        self.model: str = ev["gen_ai.request.model"]
        self.outcome: str = ev["streamtap.outcome"]
        address = ev.get("server.address")
        port = self._count(ev.get("server.port"), 65535)
        if isinstance(address, str) and address:
            self.endpoint = f"{address}:{port}" if port is not None else address
        else:
            self.endpoint = UNKNOWN
        err = ev.get("error.type")
        self.error_type: str | None = err if isinstance(err, str) and err else None
        self.ttft = self._metric(ev.get("streamtap.time_to_first_token"))
        self.ttfc = self._metric(ev.get("gen_ai.response.time_to_first_chunk"))
        self.duration = self._metric(ev.get("streamtap.duration"))
        self.tpot = self._metric(ev.get("streamtap.time_per_output_token"))
        self.tps = self._metric(ev.get("streamtap.output_tokens_per_second"))
        self.gap_p95 = self._metric(ev.get("streamtap.gap.p95"))
        self.input_tokens = self._count(ev.get("gen_ai.usage.input_tokens"))
        self.output_tokens = self._count(ev.get("gen_ai.usage.output_tokens"))
        self.reasoning_tokens = self._count(ev.get("streamtap.usage.reasoning_tokens"))
        self.cached_tokens = self._count(ev.get("streamtap.usage.cached_tokens"))
        self.retries = self._count(ev.get("streamtap.retries")) or 0
        strategy = ev.get("streamtap.resume.strategy")
        self.strategy: str = strategy if isinstance(strategy, str) and strategy else NO_STRATEGY
        self.time = self._time(ev)

    def _time(self, ev: Mapping[str, Any]) -> float | None:
        started = ev.get("streamtap.started_at")
        if _is_number(started) and _num(started) is None:  # NaN, or too large for a float
            self.out_of_range += 1
        t = event_time(ev)
        if t is not None and not MIN_TIME <= t <= MAX_TIME:
            self.out_of_range += 1
            return None
        return t

    def _metric(self, value: Any) -> float | None:
        """A latency or rate: a number in [0, MAX_METRIC]; None when missing or unusable."""
        if not _is_number(value):
            return None  # missing, or of the wrong type: unknown
        f = _num(value)
        if f is None or not 0.0 <= f <= MAX_METRIC:
            self.out_of_range += 1
            return None
        return f

    def _count(self, value: Any, limit: int = MAX_COUNT) -> int | None:
        """Tokens, retries, a port: an integer in [0, limit]; None when missing or unusable."""
        n = _int(value)
        if n is None:
            return None
        if not 0 <= n <= limit:
            self.out_of_range += 1
            return None
        return n


def event_time(ev: Mapping[str, Any]) -> float | None:
    """Seconds since the epoch: `streamtap.started_at`, else the log record's `timestamp`.

    Not range-checked here: see `Summary` (MIN_TIME, MAX_TIME).
    """
    started = _num(ev.get("streamtap.started_at"))
    if started is not None:
        return started
    ts = ev.get("timestamp")
    if isinstance(ts, str):
        return parse_iso(ts)
    return _num(ts)


_FRACTION = re.compile(r"\.(\d+)")


def parse_iso(text: str) -> float | None:
    """ISO 8601 date or date-time (`Z` allowed; naive means UTC) to epoch seconds."""
    s = text.strip()
    if len(s) > 64:  # no date-time is that long; do not run the regex over a huge field
        return None
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        # Python < 3.11 takes only 3 or 6 fractional digits: pad or cut to 6.
        fixed = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], s, count=1)
        try:
            dt = datetime.fromisoformat(fixed)
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH).total_seconds()  # (timestamp() fails near years 1 and 9999)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_arg(text: str, now: float | None = None) -> float:
    """`--since` / `--until`: epoch seconds, ISO 8601, or an age such as `90m`, `6h`, `7d`."""
    s = text.strip()
    parsed: float | None = None
    unit = _UNITS.get(s[-1:].lower())
    if unit is not None:
        try:
            parsed = (time.time() if now is None else now) - float(s[:-1]) * unit
        except ValueError:
            pass
    if parsed is None:
        try:
            parsed = float(s)
        except ValueError:
            parsed = parse_iso(s)
    if parsed is None or not math.isfinite(parsed):
        raise argparse.ArgumentTypeError(
            f"not a time: {printable(repr(text), 80)} "
            "(use ISO 8601, epoch seconds, or an age like 30m, 6h, 7d)"
        )
    return min(max(parsed, MIN_TIME), MAX_TIME)  # every stream's time is in that range


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


class LineCounts:
    """What the input lines were."""

    __slots__ = (
        "filtered",
        "invalid",
        "lines",
        "malformed",
        "non_json",
        "other_json",
        "out_of_range",
        "summaries",
    )

    def __init__(self) -> None:
        self.lines = 0  # every line read, blank ones included
        self.summaries = 0  # valid summary events kept (after --since/--until)
        self.filtered = 0  # valid summaries outside --since/--until (or with no time)
        self.malformed = 0  # looked like JSON but did not parse (or nested too deeply)
        self.invalid = 0  # summary events missing a required field
        self.other_json = 0  # JSON objects that are not summary events
        self.non_json = 0  # everything else: plain text, blank lines
        self.out_of_range = 0  # kept summaries with a value out of range (that value ignored)

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def _looks_like_json(text: str) -> bool:
    """`{"...`, `{}` or `{ "...`: an object that was meant to be JSON."""
    i = 1
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    return i >= n or text[i] in '"}'


def _is_summary(obj: Mapping[str, Any]) -> bool:
    return (
        obj.get("event") == SUMMARY_EVENT
        or obj.get("message") == SUMMARY_EVENT
        or obj.get("msg") == SUMMARY_EVENT
    )


class Aggregator:
    """Feed it lines (or summary dicts); read the aggregates with `to_json()`."""

    def __init__(self, *, since: float | None = None, until: float | None = None) -> None:
        self.since = since
        self.until = until
        self.counts = LineCounts()
        self.overall = GroupStats()
        self.by_model: dict[str, GroupStats] = {}
        self.by_endpoint: dict[str, GroupStats] = {}
        self.timeseries = TimeSeries()
        self.examples: list[dict[str, Any]] = []
        self._decoder = json.JSONDecoder()
        self._too_deep = False

    # -- input ---------------------------------------------------------------------------------

    def feed_line(self, line: str, source: str = "<input>", lineno: int = 0) -> None:
        """Classify one log line and keep it if it is a valid summary event."""
        counts = self.counts
        counts.lines += 1
        brace = line.find("{")
        if brace < 0:
            counts.non_json += 1
            return
        self._too_deep = False
        obj = self._decode(line, brace)
        if obj is None:
            if self._too_deep:
                counts.malformed += 1
                self._example(source, lineno, "JSON nested too deeply", line)
            elif SUMMARY_EVENT in line or _looks_like_json(line[brace:]):
                counts.malformed += 1
                self._example(source, lineno, "not valid JSON (truncated?)", line)
            else:
                counts.non_json += 1
            return
        if not _is_summary(obj):
            inner = self._unwrap(obj)
            if inner is None:
                counts.other_json += 1
                return
            obj = inner
        missing = [f for f in REQUIRED_FIELDS if not isinstance(obj.get(f), str) or not obj.get(f)]
        if missing:
            counts.invalid += 1
            self._example(source, lineno, "summary without " + ", ".join(missing), line)
            return
        self.add_summary(obj)

    def _decode(self, line: str, brace: int) -> dict[str, Any] | None:
        text = line.rstrip()
        for _ in range(_MAX_BRACES):
            try:
                obj, _end = self._decoder.raw_decode(text, brace)
            except ValueError:  # (also integers past Python's digit limit)
                obj = None
            except RecursionError:  # deeper than the interpreter's stack: no retry helps
                self._too_deep = True
                return None
            if isinstance(obj, dict):
                return obj
            brace = text.find("{", brace + 1)
            if brace < 0:
                break
        return None

    def _unwrap(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The summary inside `{"log": "...{json}..."}`-style wrappers, if there is one."""
        for key in _WRAPPER_KEYS:
            value = obj.get(key)
            if isinstance(value, str) and SUMMARY_EVENT in value:
                brace = value.find("{")
                if brace >= 0:
                    inner = self._decode(value, brace)
                    if inner is not None and _is_summary(inner):
                        return inner
        return None

    def _example(self, source: str, lineno: int, reason: str, line: str) -> None:
        if len(self.examples) < _MAX_EXAMPLES:
            text = line.rstrip("\r\n")
            if len(text) > 120:
                text = text[:117] + "..."
            self.examples.append({"source": source, "line": lineno, "reason": reason, "text": text})

    def add_summary(self, event: Mapping[str, Any]) -> bool:
        """Add one summary event (a dict as in docs/events.md); False if it was filtered out."""
        s = Summary(event)
        if self.since is not None or self.until is not None:
            t = s.time
            if (
                t is None
                or (self.since is not None and t < self.since)
                or (self.until is not None and t >= self.until)
            ):
                self.counts.filtered += 1
                return False
        self.counts.summaries += 1
        if s.out_of_range:
            self.counts.out_of_range += 1
        self.overall.add(s)
        _group(self.by_model, s.model).add(s)
        _group(self.by_endpoint, s.endpoint).add(s)
        if s.time is not None:
            self.timeseries.add(s.time, s)
        return True

    # -- output --------------------------------------------------------------------------------

    def to_json(self, by: str = "both") -> dict[str, Any]:
        out: dict[str, Any] = {
            "percentile_method": PERCENTILE_METHOD,
            "lines": self.counts.to_json(),
            "malformed_examples": list(self.examples),
            "first_time": self.timeseries.first,
            "last_time": self.timeseries.last,
            "overall": self.overall.to_json(),
        }
        if by in ("model", "both"):
            out["by_model"] = {k: g.to_json() for k, g in sorted(self.by_model.items())}
        if by in ("endpoint", "both"):
            out["by_endpoint"] = {k: g.to_json() for k, g in sorted(self.by_endpoint.items())}
        out["timeseries"] = self.timeseries.to_json()
        return out


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


# -- reading -------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, stream: IO[str], every: int, enabled: bool) -> None:
        self.stream = stream
        self.every = every
        self.enabled = enabled
        self.total = 0
        self._next = every
        self._tty = enabled and _isatty(stream)
        self._started = time.monotonic()

    def add(self, nbytes: int, agg: Aggregator) -> None:
        self.total += nbytes
        if self.enabled and self.total >= self._next:
            self._next = self.total + self.every
            self._show(agg)

    def _show(self, agg: Aggregator) -> None:
        mib = self.total / (1024 * 1024)
        secs = time.monotonic() - self._started
        msg = (
            f"streamtap report: {mib:,.0f} MiB read, {agg.counts.lines:,} lines, "
            f"{agg.counts.summaries:,} summaries ({secs:.0f} s)"
        )
        self.stream.write("\r" + msg if self._tty else msg + "\n")
        self.stream.flush()

    def done(self, agg: Aggregator) -> None:
        if self.enabled:
            self._show(agg)
            if self._tty:
                self.stream.write("\n")
                self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def open_input(raw: IO[bytes]) -> Iterable[bytes]:
    """The lines of `raw`, decompressed when it starts with the gzip magic bytes."""
    peekable: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    head = peekable.peek(2)[:2]
    if head == _GZIP_MAGIC:
        # GzipFile handles concatenated members; a truncated file raises EOFError at its end,
        # after every complete line before the cut has been read.
        return gzip.GzipFile(fileobj=peekable, mode="rb")
    lines: Iterable[bytes] = peekable
    return lines


def read_stream(
    agg: Aggregator, raw: IO[bytes], source: str, progress: _Progress | None = None
) -> None:
    """Feed every line of `raw` (plain or gzip) to `agg`."""
    stream = open_input(raw)
    feed = agg.feed_line
    for lineno, data in enumerate(stream, 1):
        if progress is not None:
            progress.add(len(data), agg)
        if b"{" not in data:  # fast path: cannot be JSON, skip the decode
            agg.counts.lines += 1
            agg.counts.non_json += 1
            continue
        feed(data.decode("utf-8", "replace"), source, lineno)


def read_paths(
    agg: Aggregator,
    paths: Iterable[str],
    *,
    stdin: IO[Any] | None = None,
    progress: _Progress | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Read every path (`-` is stdin) into `agg`; the number of inputs that could not be read."""
    err = sys.stderr if stderr is None else stderr
    failed = 0
    for path in paths:
        try:
            if path == "-":
                src: Any = sys.stdin if stdin is None else stdin
                binary = getattr(src, "buffer", None)
                if binary is not None:
                    read_stream(agg, binary, "<stdin>", progress)
                elif isinstance(src.read(0), bytes):
                    read_stream(agg, src, "<stdin>", progress)
                else:  # a text stream without a binary buffer (io.StringIO)
                    for lineno, line in enumerate(src, 1):
                        agg.feed_line(line, "<stdin>", lineno)
            else:
                with open(path, "rb") as f:
                    read_stream(agg, f, path, progress)
        except (OSError, EOFError, zlib.error) as exc:
            failed += 1
            err.write(f"streamtap report: cannot read {printable(path)}: {printable(str(exc))}\n")
    return failed


# -- text output ---------------------------------------------------------------------------------


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


def _groups(agg: Aggregator, by: str) -> list[tuple[str, dict[str, GroupStats]]]:
    out = []
    if by in ("model", "both"):
        out.append(("model", agg.by_model))
    if by in ("endpoint", "both"):
        out.append(("endpoint", agg.by_endpoint))
    return out


def _fmt_time(t: float | None) -> str:
    return "?" if t is None else fmt_utc(t) + " UTC"


def render_text(agg: Aggregator, by: str = "both") -> str:
    c = agg.counts
    parts = [
        f"streamtap report: {c.summaries:,} streams"
        + (
            f", {_fmt_time(agg.timeseries.first)} to {_fmt_time(agg.timeseries.last)}"
            if agg.timeseries.first is not None
            else ""
        ),
        f"lines: {c.lines:,} read, {c.summaries:,} summaries, {c.malformed:,} malformed, "
        f"{c.invalid:,} invalid summaries, {c.other_json:,} other JSON, "
        f"{c.non_json:,} not JSON"
        + (f", {c.filtered:,} outside the time range" if c.filtered else "")
        + (
            f"; {c.out_of_range:,} summaries with values out of range (those values ignored)"
            if c.out_of_range
            else ""
        ),
        "percentiles: nearest-rank. TTFT = time to first token, TPOT = time per output token,"
        " gap p95 = median over streams of each stream's p95 inter-chunk gap.",
    ]
    for label, groups in _groups(agg, by):
        items = sorted(groups.items(), key=lambda kv: (-kv[1].count, kv[0]))
        lat_rows = [latency_row(k, g) for k, g in items]
        trf_rows = [traffic_row(k, g) for k, g in items]
        if len(items) > 1:
            lat_rows.append(latency_row("all", agg.overall))
            trf_rows.append(traffic_row("all", agg.overall))
        heads = [label, *LATENCY_HEADERS[1:]]
        parts.append(f"\nLatency by {label}\n" + table(heads, lat_rows, "lrrrrrrr"))
        heads = [label, *TRAFFIC_HEADERS[1:]]
        parts.append(f"\nTraffic and reliability by {label}\n" + table(heads, trf_rows, "lrrrrrll"))
        if OTHER in groups:
            parts.append(f"{OTHER}: every {label} past the first {MAX_GROUPS:,}, added up")
    return "\n".join(parts) + "\n"
