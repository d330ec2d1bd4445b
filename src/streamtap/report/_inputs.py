"""Reading log files and telling the summary events in them from everything else.

Reads JSON log lines as real log files hold them: pure JSON lines, JSON after a prefix
(`2026-11-21 20:59:01 INFO {...}`), JSON inside a wrapper's string (Docker's `{"log": ...}`),
other JSON events and plain text mixed in, plain or gzipped (told apart by the magic bytes, not
the file name), or standard input (`-`). Nothing in the input is fatal: malformed lines are
counted and a few are kept as examples; JSON nested too deeply to decode is a malformed line.

`Summary` takes the fields the report uses from one event and checks each: numbers out of
range (negative or absurd latencies, a 400-digit integer, a start time outside years 1 to 9999)
are ignored and counted.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import IO, Any, Protocol

from ._values import MAX_TIME, MIN_TIME, finite, is_number, parse_iso, printable, whole

SUMMARY_EVENT = "streamtap.stream.summary"
# A summary without these cannot be placed in a table; it is counted as invalid.
REQUIRED_FIELDS = ("gen_ai.request.model", "streamtap.outcome")
UNKNOWN = "(unknown)"
# Resumed streams whose summary names no strategy (plain retries before the first chunk).
NO_STRATEGY = "none"
# Largest latency (s) or rate (1/s) taken from a summary, and largest token count or retry
# count: beyond them a value is a corrupt field, and it would only break the scales.
MAX_METRIC = 1e12
MAX_COUNT = 2**53

_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 64 * 1024 * 1024  # bytes of (decompressed) input between progress lines
_MAX_EXAMPLES = 5  # malformed lines quoted in the report
_MAX_BRACES = 4  # '{' positions tried per line before giving up
# Wrappers that carry the event as a string: Docker's json-file driver ("log"), log shippers.
_WRAPPER_KEYS = ("log", "message", "msg", "line")


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
        "operation",
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
        self.endpoint = self._endpoint(ev)
        self.operation = self._operation(ev)
        self.error_type = _name(ev.get("error.type"))
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
        self.strategy: str = _name(ev.get("streamtap.resume.strategy")) or NO_STRATEGY
        self.time = self._time(ev)

    @staticmethod
    def _operation(ev: Mapping[str, Any]) -> str:
        """`chat (responses)`, `chat (chat_completions)`: the operation and the API it used
        (`openai.api.type`; events written before that field have the operation alone)."""
        operation = _name(ev.get("gen_ai.operation.name")) or UNKNOWN
        api = _name(ev.get("openai.api.type"))
        return f"{operation} ({api})" if api else operation

    def _endpoint(self, ev: Mapping[str, Any]) -> str:
        """`address:port`, the address alone, or UNKNOWN."""
        address = _name(ev.get("server.address"))
        port = self._count(ev.get("server.port"), 65535)
        if address is None:
            return UNKNOWN
        return f"{address}:{port}" if port is not None else address

    def _time(self, ev: Mapping[str, Any]) -> float | None:
        started = ev.get("streamtap.started_at")
        if is_number(started) and finite(started) is None:  # NaN, or too large for a float
            self.out_of_range += 1
        t = event_time(ev)
        if t is not None and not MIN_TIME <= t <= MAX_TIME:
            self.out_of_range += 1
            return None
        return t

    def _metric(self, value: Any) -> float | None:
        """A latency or rate: a number in [0, MAX_METRIC]; None when missing or unusable."""
        if not is_number(value):
            return None  # missing, or of the wrong type: unknown
        f = finite(value)
        if f is None or not 0.0 <= f <= MAX_METRIC:
            self.out_of_range += 1
            return None
        return f

    def _count(self, value: Any, limit: int = MAX_COUNT) -> int | None:
        """Tokens, retries, a port: an integer in [0, limit]; None when missing or unusable."""
        n = whole(value)
        if n is None:
            return None
        if not 0 <= n <= limit:
            self.out_of_range += 1
            return None
        return n


def _name(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def event_time(ev: Mapping[str, Any]) -> float | None:
    """Seconds since the epoch: `streamtap.started_at`, else the log record's `timestamp`.

    Not range-checked here: see `Summary` (MIN_TIME, MAX_TIME).
    """
    started = finite(ev.get("streamtap.started_at"))
    if started is not None:
        return started
    ts = ev.get("timestamp")
    if isinstance(ts, str):
        return parse_iso(ts)
    return finite(ts)


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


class LineParser:
    """Finds the summary event on a log line; counts every line by kind, keeps a few examples."""

    def __init__(self) -> None:
        self.counts = LineCounts()
        self.examples: list[dict[str, Any]] = []
        self._decoder = json.JSONDecoder()
        self._too_deep = False

    def parse(self, line: str, source: str = "<input>", lineno: int = 0) -> dict[str, Any] | None:
        """The summary event on `line` if it has the required fields, else None (counted)."""
        counts = self.counts
        counts.lines += 1
        brace = line.find("{")
        if brace < 0:
            counts.non_json += 1
            return None
        self._too_deep = False
        obj = self._decode(line, brace)
        if obj is None:
            self._count_undecodable(line, brace, source, lineno)
            return None
        if not _is_summary(obj):
            inner = self._unwrap(obj)
            if inner is None:
                counts.other_json += 1
                return None
            obj = inner
        missing = [f for f in REQUIRED_FIELDS if _name(obj.get(f)) is None]
        if missing:
            counts.invalid += 1
            self._example(source, lineno, "summary without " + ", ".join(missing), line)
            return None
        return obj

    def _count_undecodable(self, line: str, brace: int, source: str, lineno: int) -> None:
        """A line with a brace but no JSON object: malformed if it was meant to be one."""
        if self._too_deep:
            self.counts.malformed += 1
            self._example(source, lineno, "JSON nested too deeply", line)
        elif SUMMARY_EVENT in line or _looks_like_json(line[brace:]):
            self.counts.malformed += 1
            self._example(source, lineno, "not valid JSON (truncated?)", line)
        else:
            self.counts.non_json += 1

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


# -- reading -------------------------------------------------------------------------------------


class LineSink(Protocol):
    """What the readers feed lines to (an `Aggregator`)."""

    counts: LineCounts

    def feed_line(self, line: str, source: str = ..., lineno: int = ...) -> None: ...


class Progress:
    """Running totals on `stream` (stderr) every `every` bytes read, when enabled."""

    def __init__(self, stream: IO[str], enabled: bool, every: int | None = None) -> None:
        self.stream = stream
        self.every = _PROGRESS_EVERY if every is None else every
        self.enabled = enabled
        self.total = 0
        self._next = self.every
        self._tty = enabled and isatty(stream)
        self._started = time.monotonic()

    def add(self, nbytes: int, counts: LineCounts) -> None:
        self.total += nbytes
        if self.enabled and self.total >= self._next:
            self._next = self.total + self.every
            self._show(counts)

    def _show(self, counts: LineCounts) -> None:
        mib = self.total / (1024 * 1024)
        secs = time.monotonic() - self._started
        msg = (
            f"streamtap report: {mib:,.0f} MiB read, {counts.lines:,} lines, "
            f"{counts.summaries:,} summaries ({secs:.0f} s)"
        )
        self.stream.write("\r" + msg if self._tty else msg + "\n")
        self.stream.flush()

    def done(self, counts: LineCounts) -> None:
        if self.enabled:
            self._show(counts)
            if self._tty:
                self.stream.write("\n")
                self.stream.flush()


def isatty(stream: IO[str]) -> bool:
    """Whether `stream` is a terminal (False for anything that cannot say)."""
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
    sink: LineSink, raw: IO[bytes], source: str, progress: Progress | None = None
) -> None:
    """Feed every line of `raw` (plain or gzip) to `sink`."""
    stream = open_input(raw)
    feed = sink.feed_line
    counts = sink.counts
    for lineno, data in enumerate(stream, 1):
        if progress is not None:
            progress.add(len(data), counts)
        if b"{" not in data:  # fast path: cannot be JSON, skip the decode
            counts.lines += 1
            counts.non_json += 1
            continue
        feed(data.decode("utf-8", "replace"), source, lineno)


def _read_stdin(sink: LineSink, src: Any, progress: Progress | None) -> None:
    binary = getattr(src, "buffer", None)
    if binary is not None:
        read_stream(sink, binary, "<stdin>", progress)
    elif isinstance(src.read(0), bytes):
        read_stream(sink, src, "<stdin>", progress)
    else:  # a text stream without a binary buffer (io.StringIO)
        for lineno, line in enumerate(src, 1):
            sink.feed_line(line, "<stdin>", lineno)


def read_paths(
    sink: LineSink,
    paths: Iterable[str],
    *,
    stdin: IO[Any] | None = None,
    progress: Progress | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Read every path (`-` is stdin) into `sink` (an `Aggregator`).

    Returns the number of inputs that could not be read (each is named on `stderr`); the lines
    read before a failure, such as a truncated gzip file, still count.
    """
    err = sys.stderr if stderr is None else stderr
    failed = 0
    for path in paths:
        try:
            if path == "-":
                _read_stdin(sink, sys.stdin if stdin is None else stdin, progress)
            else:
                with open(path, "rb") as f:
                    read_stream(sink, f, path, progress)
        except (OSError, EOFError, zlib.error) as exc:
            failed += 1
            err.write(f"streamtap report: cannot read {printable(path)}: {printable(str(exc))}\n")
    return failed
