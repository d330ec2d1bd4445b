"""`streamtap report`: aggregation numbers, messy input, gzip/stdin, and the HTML page.

The log files are generated with known distributions (model-a's TTFT values are exactly
0.01, 0.02, ..., 1.00) so that the nearest-rank percentiles, rates and totals are known exactly.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _browser import chromium
from streamtap.report import (
    Aggregator,
    _aggregate,
    _inputs,
    _text,
    _values,
    percentile,
    render_html,
    report_main,
)

T0 = 1795291200.0  # 2026-11-21 20:00:00 UTC
REPO = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def summary(model: str, address: str, port: int, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "streamtap.stream.summary",
        "level": "info",
        "streamtap.schema_version": 1,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model + "-2026-01-01",
        "server.address": address,
        "server.port": port,
        "streamtap.stream": True,
        "streamtap.outcome": "ok",
        "streamtap.retries": 0,
    }
    ev.update(fields)
    return ev


def known_events() -> list[dict[str, Any]]:
    """model-a: 100 streams, TTFT i/100; model-b: 20 streams, TTFT 2 + i/10."""
    events = []
    for i in range(1, 101):
        ev = summary(
            "model-a",
            "a.example",
            443,
            **{
                "streamtap.started_at": T0 + i * 60,
                "streamtap.time_to_first_token": i / 100,
                "gen_ai.response.time_to_first_chunk": i / 200,
                "streamtap.duration": 1 + i / 100,
                "streamtap.time_per_output_token": i / 1000,
                "streamtap.output_tokens_per_second": 100.0 + i,
                "streamtap.gap.p95": i / 500,
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": i,
            },
        )
        if i % 20 == 0:  # 5 errors
            ev["streamtap.outcome"] = "error"
            ev["error.type"] = "httpx.ReadTimeout"
        if i % 10 == 1:  # 10 retried: 1..51 by prefill (6), 61..91 by replay (4)
            ev["streamtap.retries"] = 1
            ev["streamtap.resume.strategy"] = "prefill" if i < 60 else "replay"
        events.append(ev)
    for i in range(1, 21):
        ev = summary(
            "model-b",
            "b.example",
            8000,
            **{
                "streamtap.started_at": T0 + 7200 + i * 60,
                "streamtap.time_to_first_token": 2 + i / 10,
                "streamtap.time_per_output_token": 0.02,
                "streamtap.output_tokens_per_second": 50.0,
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 7,
                "streamtap.gap.p95": None,  # unknown values may be null
            },
        )
        if i == 3:
            ev["streamtap.outcome"] = "error"
            ev["error.type"] = "openai.APIConnectionError"
        if i == 7:
            ev["streamtap.outcome"] = "error"  # no error.type
        if i == 20:
            ev["streamtap.outcome"] = "cancelled"
        if i == 1:
            ev["streamtap.retries"] = 2  # plain retries: no strategy
        elif i <= 4:
            ev["streamtap.retries"] = 1
            ev["streamtap.resume.strategy"] = "continuation"
        events.append(ev)
    return events


def messy_log(events: list[dict[str, Any]]) -> tuple[bytes, dict[str, int]]:
    """The events mixed with what real log files hold; returns the bytes and expected counts."""
    lines: list[bytes] = []
    want = {"summaries": 0, "malformed": 0, "invalid": 0, "other_json": 0, "non_json": 0}

    def add(line: str | bytes, kind: str) -> None:
        lines.append(line if isinstance(line, bytes) else line.encode())
        want[kind] += 1

    add("starting worker pid=4242", "non_json")
    add("", "non_json")
    for k, ev in enumerate(events):
        text = json.dumps(ev)
        if k % 3 == 1:
            text = f"2026-11-21 20:59:01,123 INFO streamtap {text}"
        elif k % 7 == 2:  # Docker's json-file driver wraps the line
            text = json.dumps({"log": text + "\n", "stream": "stderr", "time": "2026-11-21T20:59Z"})
        add(text, "summaries")
        if k % 25 == 0:
            add(json.dumps({"event": "http.request", "status": 200}), "other_json")
        if k % 30 == 0:
            add("GET /healthz {status=ok} 200", "non_json")
    add(
        '{"event": "streamtap.stream.summary", "gen_ai.request.model": "model-a", "streamtap.ti',
        "malformed",
    )
    add('2026-11-21 INFO {"event": "streamtap.chunk", "index": 1', "malformed")
    add(json.dumps({"event": "streamtap.stream.summary", "streamtap.outcome": "ok"}), "invalid")
    add(json.dumps({"event": "streamtap.stream.summary", "gen_ai.request.model": "x"}), "invalid")
    add(json.dumps({"event": "streamtap.chunk", "streamtap.chunk.index": 3}), "other_json")
    add(b"\xff\xfe\x00 binary garbage", "non_json")
    add(json.dumps([1, 2, 3]), "non_json")  # JSON, but not an object
    return b"\n".join(lines) + b"\n", want


def run(args: list[str], **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = report_main(args, stdout=out, stderr=err, **kw)
    return code, out.getvalue(), err.getvalue()


def run_json(args: list[str], **kw: Any) -> dict[str, Any]:
    code, out, err = run([*args, "--json"], **kw)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    data, want = messy_log(known_events())
    path = tmp_path / "app.log"
    path.write_bytes(data)
    return path, want


def check_known(rep: dict[str, Any]) -> None:
    """The numbers that `known_events()` must give."""
    a = rep["by_model"]["model-a"]
    assert a["count"] == 100
    ttft = a["time_to_first_token"]
    assert (ttft["p50"], ttft["p95"], ttft["p99"]) == (0.5, 0.95, 0.99)
    assert (ttft["min"], ttft["max"], ttft["n"]) == (0.01, 1.0, 100)
    assert ttft["p90"] == 0.9
    assert a["time_per_output_token"]["p50"] == 50 / 1000
    assert a["output_tokens_per_second"]["p50"] == 150.0
    assert a["gap_p95"]["p50"] == 50 / 500
    assert a["duration"]["p95"] == 1 + 95 / 100
    assert a["time_to_first_chunk"]["p50"] == 50 / 200
    assert a["errors"] == 5 and a["error_rate"] == 0.05
    assert a["error_types"] == {"httpx.ReadTimeout": 5}
    assert a["retried"] == 10 and a["retry_rate"] == 0.1 and a["retries"] == 10
    assert a["resumed"] == {"prefill": 6, "replay": 4}
    assert a["outcomes"] == {"ok": 95, "error": 5}
    assert a["tokens"]["input"] == 1000 and a["tokens"]["output"] == 5050

    b = rep["by_model"]["model-b"]
    assert b["count"] == 20
    ttft = b["time_to_first_token"]
    assert (ttft["p50"], ttft["p95"], ttft["p99"]) == (2 + 10 / 10, 2 + 19 / 10, 2 + 20 / 10)
    assert b["errors"] == 2 and b["error_rate"] == 0.1
    assert b["error_types"] == {"openai.APIConnectionError": 1, "(unknown)": 1}
    assert b["retried"] == 4 and b["retries"] == 5 and b["retry_rate"] == 0.2
    assert b["resumed"] == {"continuation": 3, "none": 1}
    assert b["outcomes"] == {"ok": 17, "error": 2, "cancelled": 1}
    assert b["gap_p95"]["n"] == 0 and b["gap_p95"]["p50"] is None
    assert b["tokens"] == {"input": 2000, "output": 140, "reasoning": 0, "cached": 0}

    assert set(rep["by_endpoint"]) == {"a.example:443", "b.example:8000"}
    assert rep["by_endpoint"]["a.example:443"]["time_to_first_token"]["p95"] == 0.95
    assert rep["by_endpoint"]["b.example:8000"]["count"] == 20

    overall = rep["overall"]
    assert overall["count"] == 120 and overall["errors"] == 7 and overall["retried"] == 14
    # 120 TTFT values: rank ceil(0.5 * 120) = 60 is model-a's 0.60.
    assert overall["time_to_first_token"]["p50"] == 0.6
    # rank ceil(0.95 * 120) = 114 is model-b's 14th value, 2 + 14/10.
    assert overall["time_to_first_token"]["p95"] == 2 + 14 / 10
    assert rep["percentile_method"] == "nearest-rank"


# -- percentiles ---------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    """The documented method: the value at rank ceil(p/100 * n); always an observed value."""
    ten = [float(i) for i in range(1, 11)]
    assert percentile(ten, 50) == 5.0
    assert percentile(ten, 51) == 6.0
    assert percentile(ten, 95) == 10.0
    assert percentile(ten, 90) == 9.0
    assert percentile(ten, 0) == 1.0
    assert percentile(ten, 100) == 10.0
    assert percentile([], 50) is None
    assert percentile([3.5], 99) == 3.5
    hundred = [i / 100 for i in range(1, 101)]
    assert [percentile(hundred, p) for p in (50, 95, 99)] == [0.5, 0.95, 0.99]
    # no floating-point drift at exact ranks: 99.9% of 1000 is rank 999 exactly
    thousand = [float(i) for i in range(1, 1001)]
    assert percentile(thousand, 99.9) == 999.0


# -- aggregation over messy files ----------------------------------------------------------------


def test_known_distributions_from_messy_log(messy: tuple[Path, dict[str, int]]) -> None:
    """Exact percentiles, rates and totals from a log with prefixes, wrappers and junk lines."""
    path, want = messy
    rep = run_json([str(path)])
    check_known(rep)
    lines = rep["lines"]
    for kind, n in want.items():
        assert lines[kind] == n, kind
    assert lines["lines"] == sum(want.values())
    assert lines["filtered"] == 0
    reasons = [ex["reason"] for ex in rep["malformed_examples"]]
    assert reasons.count("not valid JSON (truncated?)") == 2
    assert "summary without gen_ai.request.model" in reasons
    assert "summary without streamtap.outcome" in reasons
    assert all(ex["source"] == str(path) and ex["line"] > 0 for ex in rep["malformed_examples"])


def test_malformed_lines_are_reported_not_fatal(messy: tuple[Path, dict[str, int]]) -> None:
    """Malformed and invalid lines are counted on stderr with file:line, and the exit code is 0."""
    path, want = messy
    code, out, err = run([str(path)])
    assert code == 0
    assert (
        f"skipped {want['malformed']} malformed line(s) and {want['invalid']} invalid summary"
        in err
    )
    assert re.search(rf"{re.escape(str(path))}:\d+: not valid JSON", err)
    assert "model-a" in out


def test_text_tables(messy: tuple[Path, dict[str, int]]) -> None:
    """The printed tables carry the same numbers, per model and per endpoint."""
    path, _ = messy
    code, out, _err = run([str(path)])
    assert code == 0
    assert "Latency by model" in out and "Latency by endpoint" in out
    row_a = next(ln for ln in out.splitlines() if ln.startswith("model-a ") and "0.500" in ln)
    # streams, TTFT p50/p95/p99 (s), TPOT p50 (ms), output tok/s p50, gap p95 (ms)
    assert row_a.split() == ["model-a", "100", "0.500", "0.950", "0.990", "50.0", "150.0", "100.0"]
    traffic_a = [ln for ln in out.splitlines() if ln.startswith("model-a ")][1]
    assert "5.0%" in traffic_a and "10.0%" in traffic_a
    assert "10 (prefill 6, replay 4)" in traffic_a
    assert "ok 95, error 5" in traffic_a
    assert "1,000" in traffic_a and "5,050" in traffic_a
    assert any(ln.startswith("b.example:8000 ") for ln in out.splitlines())
    assert "nearest-rank" in out

    code, out, _err = run([str(path), "--by", "endpoint"])
    assert "Latency by model" not in out and "Latency by endpoint" in out


def test_by_option_selects_groups(messy: tuple[Path, dict[str, int]]) -> None:
    """`--by model` / `--by endpoint` choose the tables (and JSON keys)."""
    path, _ = messy
    rep = run_json([str(path), "--by", "model"])
    assert "by_model" in rep and "by_endpoint" not in rep
    rep = run_json([str(path), "--by", "endpoint"])
    assert "by_endpoint" in rep and "by_model" not in rep
    code, _out, err = run([str(path), "--by", "nope"])
    assert code == 2 and "invalid choice" in err


def test_gzip_detected_by_magic_bytes(tmp_path: Path) -> None:
    """Gzip is recognised by content, not name; concatenated members (log rotation) work."""
    data, want = messy_log(known_events())
    half = len(data) // 2
    cut = data.index(b"\n", half) + 1
    rotated = tmp_path / "app.log.1"  # gzipped, without a .gz name
    rotated.write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    misnamed = tmp_path / "plain.gz"  # plain text with a .gz name
    misnamed.write_bytes(data)
    rep = run_json([str(rotated)])
    check_known(rep)
    assert rep["lines"]["summaries"] == want["summaries"]
    rep = run_json([str(misnamed)])
    check_known(rep)


def test_several_files_add_up(tmp_path: Path) -> None:
    """Events split over a plain and a gzipped file give the same aggregates as one file."""
    events = known_events()
    random.Random(7).shuffle(events)
    first = tmp_path / "one.log"
    second = tmp_path / "two.log.gz"
    first.write_text("".join(json.dumps(e) + "\n" for e in events[:50]))
    second.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in events[50:]).encode()))
    check_known(run_json([str(first), str(second)]))


def test_stdin_dash_monkeypatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """`-` reads standard input, gzipped or not (via sys.stdin.buffer)."""
    data, want = messy_log(known_events())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(data))))
    rep = run_json(["-"])
    check_known(rep)
    assert rep["lines"]["malformed"] == want["malformed"]
    # no path at all also means stdin; a text-only stream (no .buffer) works too
    monkeypatch.setattr(sys, "stdin", io.StringIO(data.decode("utf-8", "replace")))
    check_known(run_json([]))


def test_stdin_subprocess() -> None:
    """A real pipe into a child process: `... | streamtap report - --json`."""
    data, _ = messy_log(known_events())
    src = str(Path(_values.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = (
        "import sys; from streamtap.report import report_main; sys.exit(report_main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "-", "--json"],
        input=gzip.compress(data),
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    check_known(json.loads(proc.stdout))


# The console script's entry point, in a fresh interpreter (this one has the SDK loaded).
_FRESH_REPORT = """
import contextlib, io, json, sys
from streamtap.__main__ import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["report", *sys.argv[1:]])
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def test_report_package_needs_no_openai(messy: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    """`streamtap report` (text, JSON and HTML) loads neither openai nor streamtap's SDK side:
    of streamtap, only `__main__` and the report package."""
    path, _ = messy
    src = str(Path(_values.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    page = tmp_path / "r.html"
    for extra in ([], ["--json", "--html", str(page)]):
        proc = subprocess.run(
            [sys.executable, "-c", _FRESH_REPORT, str(path), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["code"] == 0 and "model-a" in result["out"]
        loaded = set(result["modules"])
        assert not {"openai", "httpx", "pydantic", "wrapt", "tiktoken", "structlog"} & loaded
        ours = {m for m in loaded if m.split(".")[0] == "streamtap"}
        assert ours - {"streamtap", "streamtap.__main__"}, "the report was not loaded"
        assert all(
            m.startswith("streamtap.report") for m in ours - {"streamtap", "streamtap.__main__"}
        ), ours
    assert "<svg" in page.read_text(encoding="utf-8")


def test_unreadable_input_is_reported_and_others_still_read(
    messy: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    """A missing file or a truncated gzip gives exit code 1, but every readable line counts."""
    path, _ = messy
    code, out, err = run([str(tmp_path / "missing.log"), str(path), "--json"])
    assert code == 1
    assert "cannot read" in err and "missing.log" in err
    check_known(json.loads(out))

    data = "".join(json.dumps(e) + "\n" for e in known_events()).encode()
    truncated = tmp_path / "cut.gz"
    truncated.write_bytes(gzip.compress(data)[:-200])
    code, out, err = run([str(truncated), "--json"])
    assert code == 1 and "cut.gz" in err
    assert 0 < json.loads(out)["lines"]["summaries"] < 120


def test_since_until_filter(messy: tuple[Path, dict[str, int]]) -> None:
    """--since/--until keep streams by start time (ISO 8601 or epoch seconds), end exclusive."""
    path, _ = messy
    # model-a starts at T0 + 60 .. T0 + 6000, model-b at T0 + 7260 .. T0 + 8400
    rep = run_json([str(path), "--since", "2026-11-21T22:00:00Z"])  # T0 + 7200
    assert set(rep["by_model"]) == {"model-b"}
    assert rep["lines"]["filtered"] == 100 and rep["lines"]["summaries"] == 20
    rep = run_json([str(path), "--since", str(T0 + 60), "--until", str(T0 + 601)])
    assert rep["overall"]["count"] == 10
    assert rep["by_model"]["model-a"]["time_to_first_token"]["max"] == 0.1
    code, _out, err = run([str(path), "--since", "yesterday-ish"])
    assert code == 2 and "not a time" in err
    code, _out, err = run([str(path), "--since", "2026-11-22", "--until", "2026-11-21"])
    assert code == 2


def test_relative_times() -> None:
    """Ages such as 30m, 6h, 7d count back from now."""
    assert _values.parse_time_arg("30m", now=10_000.0) == 10_000.0 - 1800
    assert _values.parse_time_arg("2d", now=1e6) == 1e6 - 2 * 86400
    assert _values.parse_time_arg("1700000000") == 1700000000.0
    assert _values.parse_time_arg("1970-01-02") == 86400.0


def test_timestamp_is_used_when_started_at_is_missing() -> None:
    """Without `streamtap.started_at` the record's ISO `timestamp` places it in time."""
    agg = Aggregator()
    for i in range(10):
        ev = summary("m", "h", 1, **{"streamtap.time_to_first_token": 0.1})
        ev["timestamp"] = f"2026-11-21T20:{i:02d}:30.5Z"
        agg.feed_line(json.dumps(ev))
    ts = agg.to_json()["timeseries"]
    assert sum(b["count"] for b in ts["buckets"]) == 10
    assert agg.timeseries.first == _values.parse_iso("2026-11-21T20:00:30.5+00:00")


def test_timeseries_buckets(messy: tuple[Path, dict[str, int]]) -> None:
    """Buckets cover the whole span, add up to the totals, and carry per-bucket percentiles."""
    path, _ = messy
    ts = run_json([str(path)])["timeseries"]
    buckets = ts["buckets"]
    width = ts["bucket_seconds"]
    assert len(buckets) <= 120
    assert all(b2["start"] - b1["start"] == width for b1, b2 in zip(buckets, buckets[1:]))
    assert sum(b["count"] for b in buckets) == 120
    assert sum(b["errors"] for b in buckets) == 7
    assert sum(b["retried"] for b in buckets) == 14
    assert sum(b["output_tokens"] for b in buckets) == 5050 + 140
    # the gap between model-a and model-b leaves empty buckets with no percentiles
    assert any(b["count"] == 0 and b["ttft_p50"] is None for b in buckets)
    assert max(b["ttft_p95"] or 0 for b in buckets) == 4.0


def test_timeseries_coarsens_with_bounded_memory() -> None:
    """A long span merges buckets into wider ones; counts survive every merge."""
    ts = _aggregate.TimeSeries(max_buckets=64)
    s = _inputs.Summary(summary("m", "h", 1, **{"streamtap.time_to_first_token": 0.5}))
    for i in range(5000):
        ts.add(T0 + i * 37.0, s)
        assert len(ts.buckets) <= 64
    width, points = ts.series(max_points=50)
    assert len(points) <= 50
    assert sum(b.count for _, b in points) == 5000
    assert width in _aggregate.WIDTHS and width >= 3600


def test_progress_on_stderr(
    messy: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--progress prints running totals on stderr (every _PROGRESS_EVERY bytes, and at the end)."""
    path, _ = messy
    monkeypatch.setattr(_inputs, "_PROGRESS_EVERY", 4096)
    code, _out, err = run([str(path), "--progress", "--json"])
    assert code == 0
    progress = [ln for ln in err.splitlines() if "MiB read" in ln]
    assert len(progress) >= 3
    assert progress[-1].endswith("s)") and "120 summaries" in progress[-1]
    code, _out, err = run([str(path), "--json"])  # not a TTY, no --progress: quiet
    assert "MiB read" not in err


def test_no_summaries() -> None:
    """Input without any summary is not an error, but says so."""
    code, out, err = run(["-"], stdin=io.StringIO("hello\nworld\n"))
    assert code == 0
    assert "no streamtap.stream.summary events found" in err
    assert "0 streams" in out


def test_wrapped_and_message_keyed_events() -> None:
    """Events under "message"/"msg" (python-json-logger style) and inside "log" strings count."""
    agg = Aggregator()
    base = summary("m", "h", 1)
    del base["event"]
    agg.feed_line(json.dumps({**base, "message": "streamtap.stream.summary"}))
    agg.feed_line(json.dumps({**base, "msg": "streamtap.stream.summary"}))
    inner = json.dumps({**base, "event": "streamtap.stream.summary"})
    agg.feed_line(json.dumps({"log": "2026-11-21 INFO " + inner + "\n", "stream": "stdout"}))
    agg.feed_line("[worker {3}] " + inner)  # a brace in the prefix
    assert agg.counts.summaries == 4
    assert agg.counts.malformed == 0 and agg.counts.other_json == 0


def test_wrong_types_are_ignored_not_fatal() -> None:
    """Fields with the wrong type (strings, booleans, NaN) are treated as unknown."""
    agg = Aggregator()
    agg.feed_line(
        json.dumps(
            summary(
                "m",
                "h",
                1,
                **{
                    "streamtap.time_to_first_token": "fast",
                    "streamtap.duration": True,
                    "gen_ai.usage.output_tokens": 1.5,
                    "streamtap.retries": "2",
                },
            )
        )
    )
    agg.feed_line('{"event": "streamtap.stream.summary", "gen_ai.request.model": "m", '
                  '"streamtap.outcome": "ok", "streamtap.time_to_first_token": NaN}')  # fmt: skip
    rep = agg.to_json()
    assert rep["overall"]["count"] == 2
    assert rep["overall"]["time_to_first_token"]["n"] == 0
    assert rep["overall"]["tokens"]["output"] == 0 and rep["overall"]["retried"] == 0


# -- HTML ----------------------------------------------------------------------------------------


def demo_events(seed: int = 3) -> list[dict[str, Any]]:
    """Six hours of traffic for three models on two endpoints, with a 40-minute incident."""
    rng = random.Random(seed)
    models = [
        ("gpt-4o", "api.openai.com", 443, 0.45, 0.012),
        ("gpt-4o-mini", "api.openai.com", 443, 0.3, 0.007),
        ("llama-3.1-70b", "vllm.internal", 8000, 0.8, 0.02),
    ]
    events = []
    for i in range(2700):
        model, host, port, base, tpot_base = rng.choice(models)
        t = T0 + i * 8 + rng.random() * 8
        incident = 9000 < i * 8 < 11400
        ttft = rng.lognormvariate(0, 0.45) * base * (3.5 if incident else 1)
        out = rng.randint(20, 900)
        tpot = rng.lognormvariate(0, 0.25) * tpot_base
        decode = tpot * (out - 1)
        ev = summary(
            model,
            host,
            port,
            **{
                "streamtap.started_at": t,
                "streamtap.time_to_first_token": ttft,
                "gen_ai.response.time_to_first_chunk": ttft * 0.9,
                "streamtap.duration": ttft + decode,
                "streamtap.time_per_output_token": tpot,
                "streamtap.output_tokens_per_second": out / decode,
                "streamtap.gap.p95": tpot * 2.5,
                "gen_ai.usage.input_tokens": rng.randint(50, 3000),
                "gen_ai.usage.output_tokens": out,
            },
        )
        r = rng.random()
        if r < (0.15 if incident else 0.01):
            ev["streamtap.outcome"] = "error"
            ev["error.type"] = rng.choice(["openai.APIConnectionError", "httpx.ReadTimeout"])
        elif r < 0.025:
            ev["streamtap.outcome"] = "cancelled"
        if rng.random() < (0.25 if incident else 0.03):
            ev["streamtap.retries"] = 1
            ev["streamtap.resume.strategy"] = rng.choice(["prefill", "replay", "continuation"])
        events.append(ev)
    return events


def aggregate(events: list[dict[str, Any]]) -> Aggregator:
    agg = Aggregator()
    for ev in events:
        agg.feed_line(json.dumps(ev))
    return agg


def test_html_is_self_contained(tmp_path: Path, messy: tuple[Path, dict[str, int]]) -> None:
    """One file: inline CSS and SVG, no scripts, no external URLs, titles and axis labels."""
    path, _ = messy
    out_file = tmp_path / "report.html"
    code, _out, err = run([str(path), "--html", str(out_file)])
    assert code == 0 and "wrote" in err
    page = out_file.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    urls = set(re.findall(r"https?://[^\s\"')]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert page.count('<svg class="chart"') == 4 + 2 * 2  # 4 time charts, 2 per model
    assert page.count('role="img"') == page.count("<svg")
    assert page.count("<title id=") == page.count("<svg")
    for label in ("time to first token (s)", "time per output token (ms)", "time (UTC)"):
        assert label in page
    assert "<caption>Latency by model</caption>" in page
    assert "<caption>Traffic and reliability by endpoint</caption>" in page


def test_html_escapes_names() -> None:
    """Model names from logs are data: they are escaped, never markup."""
    ev = summary("<img src=x onerror=alert(1)>", "h&h", 1, **{"streamtap.started_at": T0})
    ev["streamtap.time_to_first_token"] = 0.3
    page = render_html(aggregate([ev]))
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "h&amp;h:1" in page


def test_html_without_data_or_times() -> None:
    """No timestamps and no streams still give a valid page, with the charts marked empty."""
    assert "No streams." in render_html(Aggregator())
    ev = summary("m", "h", 1)  # no times, no latencies
    page = render_html(aggregate([ev]))
    assert "No time series" in page and "no data" in page


def _chromium() -> str:
    return chromium("the HTML report's rendering is not checked")


# Appended to a copy of the page by the test only: measures what Chromium actually laid out.
PROBE = """<script>
(function () {
  var out = {};
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var r = svg.getBoundingClientRect(), bars = 0, lines = 0, points = 0;
    svg.querySelectorAll("rect.bar").forEach(function (b) {
      var box = b.getBBox(); if (box.height > 0 && box.width > 0) bars++; });
    svg.querySelectorAll("polyline.series").forEach(function (p) {
      if (p.points.numberOfItems >= 2 && p.getBBox().width > 0) lines++; });
    svg.querySelectorAll("circle.pt").forEach(function (c) {
      if (c.getBBox().width > 0) points++; });
    out[svg.getAttribute("data-chart")] = {
      width: r.width, height: r.height, bars: bars, lines: lines, points: points,
      title: svg.querySelector("title").textContent };
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _run_chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )


def test_html_charts_render_in_chromium(tmp_path: Path) -> None:
    """Headless Chromium lays out every chart with visible bars, lines and points."""
    chromium = _chromium()
    del chromium
    agg = aggregate(demo_events())
    page = render_html(agg).replace("</body>", PROBE + "</body>")
    page_file = tmp_path / "probe.html"
    page_file.write_text(page, encoding="utf-8")
    proc = _run_chromium(["--dump-dom", page_file.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, proc.stdout[:2000]
    charts: dict[str, dict[str, Any]] = json.loads(html.unescape(match.group(1)))

    models = ["gpt-4o", "gpt-4o-mini", "llama-3.1-70b"]
    expected = {"ttft-over-time", "throughput-over-time", "errors-over-time", "tokens-over-time"}
    for i, model in enumerate(sorted(models, key=lambda m: (-agg.by_model[m].count, m))):
        slug = f"{i}-{model.replace('.', '-')}"
        expected |= {f"ttft-hist-{slug}", f"tpot-hist-{slug}"}
    assert set(charts) == expected
    for name, c in charts.items():
        assert c["width"] > 300 and c["height"] > 80, name
        assert c["title"], name
        if "-hist-" in name:
            assert c["bars"] >= 10, (name, c)
    assert charts["ttft-over-time"]["lines"] == 2  # p50 and p95
    assert charts["ttft-over-time"]["points"] > 40
    assert charts["throughput-over-time"]["lines"] == 1
    assert charts["errors-over-time"]["bars"] > 40  # streams per bucket
    assert charts["errors-over-time"]["lines"] >= 2  # errors, retried
    assert charts["tokens-over-time"]["bars"] > 40


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_html_screenshot(tmp_path: Path) -> None:
    """A 1280x2000 screenshot of the demo report; STREAMTAP_UPDATE_SCREENSHOT=1 refreshes
    docs/report.png."""
    _chromium()
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(aggregate(demo_events())), encoding="utf-8")
    shot = tmp_path / "report.png"
    proc = _run_chromium(
        [f"--screenshot={shot}", "--window-size=1280,2000", page_file.as_uri()], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 2000)
    assert len(data) > 50_000  # a blank page compresses to a few KB
    if os.environ.get("STREAMTAP_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "report.png")


# -- end to end ----------------------------------------------------------------------------------


def test_end_to_end_with_the_real_library(server: Any, tmp_path: Path) -> None:
    """Real streams through an instrumented client, logged as JSON lines by streamtap itself,
    then reported: the report agrees with the summaries the hooks received."""
    import logging

    import openai

    import streamtap
    from streamtap.testing import Fault, Reply

    captured: list[dict[str, Any]] = []
    log_file = tmp_path / "events.jsonl"
    with open(log_file, "w", encoding="utf-8") as f:
        f.write("2026-11-21 20:59:00 INFO app starting\n")
        handler = streamtap.configure_logging(json=True, stream=f)
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
            streamtap.instrument(client, hooks=[lambda s: captured.append(dict(s))])
            server.enqueue(Reply(text="One two three four five six seven eight nine ten. " * 8))
            server.enqueue(
                Reply(
                    text="Alpha beta gamma delta epsilon zeta eta theta. " * 8,
                    fault=Fault.cut(after_events=6),
                )
            )
            for i, model in enumerate(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o"]):
                stream = client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": f"question {i}"}],
                    stream=True,
                )
                try:
                    for _chunk in stream:
                        pass
                except openai.APIError:
                    pass  # an interrupted stream that could not be resumed is still reported
        finally:
            logging.getLogger("streamtap").removeHandler(handler)

    assert len(captured) == 4
    rep = run_json([str(log_file)])
    assert rep["lines"]["summaries"] == 4 and rep["lines"]["malformed"] == 0
    assert rep["lines"]["non_json"] == 1
    port = int(server.base_url.split(":")[2].split("/")[0])
    assert set(rep["by_endpoint"]) == {f"127.0.0.1:{port}"}
    for model in ("gpt-4o-mini", "gpt-4o"):
        mine = [s for s in captured if s["gen_ai.request.model"] == model]
        group = rep["by_model"][model]
        assert group["count"] == len(mine)
        ttfts = sorted(s["streamtap.time_to_first_token"] for s in mine)
        assert group["time_to_first_token"]["p50"] == pytest.approx(percentile(ttfts, 50))
        assert group["tokens"]["output"] == sum(
            s.get("gen_ai.usage.output_tokens") or 0 for s in mine
        )
        assert group["retried"] == sum(1 for s in mine if (s.get("streamtap.retries") or 0) > 0)
        assert group["outcomes"] == {
            o: sum(1 for s in mine if s["streamtap.outcome"] == o)
            for o in {s["streamtap.outcome"] for s in mine}
        }


def test_grouped_by_operation_chat_completions_and_responses(server: Any, tmp_path: Path) -> None:
    """A chat completion and a Responses stream from one instrumented client are reported apart
    by operation (`gen_ai.operation.name` and `openai.api.type`); events written before
    `openai.api.type` existed count under the operation alone."""
    import logging

    import openai

    import streamtap
    from streamtap.testing import Reply

    log_file = tmp_path / "events.jsonl"
    with open(log_file, "w", encoding="utf-8") as f:
        handler = streamtap.configure_logging(json=True, stream=f)
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
            streamtap.instrument(client)
            server.enqueue(Reply(text="Hello there."))
            list(client.chat.completions.create(model="gpt-4o", messages=[], stream=True))
            if hasattr(client, "responses"):
                done = {"id": "r", "object": "response", "created_at": 1, "model": "gpt-4o",
                        "status": "completed", "output": [], "tools": [],
                        "tool_choice": "auto", "parallel_tool_calls": True}  # fmt: skip
                event = {"type": "response.completed", "sequence_number": 0, "response": done}
                body = f"event: response.completed\ndata: {json.dumps(event)}\n\n"
                server.enqueue(Reply(raw=body))
                list(client.responses.create(model="gpt-4o", input="hi", stream=True))
        finally:
            logging.getLogger("streamtap").removeHandler(handler)
        f.write(json.dumps(summary("old", "a.example", 443)) + "\n")
    rep = run_json([str(log_file)])
    want = {"chat (chat_completions)": 1, "chat": 1}
    if hasattr(openai.OpenAI(api_key="k"), "responses"):
        want["chat (responses)"] = 1
    assert {k: g["count"] for k, g in rep["by_operation"].items()} == want
    code, out, _err = run([str(log_file), "--by", "operation"])
    assert code == 0 and "Latency by operation" in out and "Latency by model" not in out
    assert "by_operation" not in run_json([str(log_file), "--by", "both"])


# -- hostile input -------------------------------------------------------------------------------
# Log files come from anywhere. Valid JSON with absurd values, deep nesting or control characters
# must give a report (never a traceback), with what was ignored counted, in bounded memory, and
# with nothing that a terminal would act on.

SUMMARY = "streamtap.stream.summary"
BIG = "9" * 400  # a 400-digit integer: valid JSON, too large for a float
# What a terminal or a text renderer would act on: C0 (but the newline), DEL, C1, bidi controls,
# line separators, the BOM, lone surrogates.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ufeff\ud800-\udfff]"
)


def raw_summary(**fields: str) -> str:
    """A summary line with some fields given as raw JSON text (for values json.dumps can't make)."""
    base = '{"event": "streamtap.stream.summary", "gen_ai.request.model": "m", '
    base += '"streamtap.outcome": "ok", "streamtap.time_to_first_token": 0.25'
    return base + "".join(f', "{k}": {v}' for k, v in fields.items()) + "}"


HOSTILE = {
    "started_at 1e20": (raw_summary(**{"streamtap.started_at": "1e20"}), "out_of_range"),
    "started_at -1e15": (raw_summary(**{"streamtap.started_at": "-1e15"}), "out_of_range"),
    "started_at 400 digits": (raw_summary(**{"streamtap.started_at": BIG}), "out_of_range"),
    "started_at NaN": (raw_summary(**{"streamtap.started_at": "NaN"}), "out_of_range"),
    "ttft 400 digits": (raw_summary(**{"streamtap.duration": BIG}), "out_of_range"),
    "ttft Infinity": (raw_summary(**{"streamtap.duration": "Infinity"}), "out_of_range"),
    "ttft negative": (raw_summary(**{"streamtap.duration": "-3"}), "out_of_range"),
    "tokens 400 digits": (raw_summary(**{"gen_ai.usage.output_tokens": BIG}), "out_of_range"),
    "retries 400 digits": (raw_summary(**{"streamtap.retries": BIG}), "out_of_range"),
    "port 400 digits": (
        raw_summary(**{"server.address": '"h"', "server.port": BIG}),
        "out_of_range",
    ),
    "year 0001 minus": (raw_summary(timestamp='"0001-01-01T00:00:00+14:00"'), "out_of_range"),
    "year 0001": (raw_summary(timestamp='"0001-01-01T00:00:00Z"'), "summaries"),
    "year 9999": (raw_summary(timestamp='"9999-12-31T23:59:59Z"'), "summaries"),
    "nested 50k deep": (raw_summary(x="[" * 50_000 + "]" * 50_000), "malformed"),
    "nested 50k open": ('{"event": "streamtap.stream.summary", "x": ' + "[" * 50_000, "malformed"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("output", ["text", "json", "html"])
def test_hostile_values_are_counted_not_fatal(name: str, output: str, tmp_path: Path) -> None:
    """Each hostile line gives a report: exit 0, the line counted where it belongs, one line
    on stderr saying what was skipped, no traceback."""
    line, kind = HOSTILE[name]
    extra = {"text": [], "json": ["--json"], "html": ["--html", str(tmp_path / "r.html")]}
    code, _out, err = run(["-", *extra[output]], stdin=io.StringIO(line + "\n"))
    assert code == 0, err
    assert "Traceback" not in err
    agg = Aggregator()
    agg.feed_line(line)
    counts = agg.counts.to_json()
    assert counts[kind] == 1
    if kind == "out_of_range":
        assert counts["summaries"] == 1  # the summary counts; only its bad value is ignored
        assert "ignored values out of range in 1 summary event(s)" in err
    if kind == "malformed":
        assert "JSON nested too deeply" in err or "not valid JSON" in err
    if output == "html":
        assert (tmp_path / "r.html").stat().st_size < 200_000


def test_hostile_log_through_the_command_line(tmp_path: Path) -> None:
    """`python -m streamtap report` on a file of every hostile line: a report, not a crash."""
    path = tmp_path / "hostile.log"
    path.write_text("\n".join(line for line, _ in HOSTILE.values()) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "streamtap", "report", str(path), "--html", str(tmp_path / "h")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "streams" in proc.stdout.decode()


def test_huge_time_span_is_bounded(tmp_path: Path) -> None:
    """Start times 0 and 1e11 (and the ends of the calendar): a few buckets of a wider width,
    a small HTML page, little memory (it was 165,000 buckets, 395 MB and a 72 MB page)."""
    import tracemalloc

    lines = [
        raw_summary(**{"streamtap.started_at": "0"}),
        raw_summary(**{"streamtap.started_at": "1e11"}),
        raw_summary(timestamp='"0001-01-01T00:00:00Z"'),
        raw_summary(timestamp='"9999-12-31T23:59:59Z"'),
    ]
    tracemalloc.start()
    try:
        agg = Aggregator()
        for line in lines:
            agg.feed_line(line)
        page = render_html(agg)
        text = _text.render_text(agg)
        rep = agg.to_json()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert agg.counts.summaries == 4 and agg.counts.out_of_range == 0
    buckets = rep["timeseries"]["buckets"]
    assert 1 <= len(buckets) <= 120
    assert sum(b["count"] for b in buckets) == 4
    assert rep["timeseries"]["bucket_seconds"] > 604800
    assert len(page) < 200_000
    assert peak < 20_000_000
    assert "0001-01-01 00:00:00 UTC to 9999-12-31 23:59:59 UTC" in text
    code, _out, err = run(["-", "--html", str(tmp_path / "r.html")], stdin=io.StringIO(lines[1]))
    assert code == 0, err


def test_group_count_is_bounded() -> None:
    """Past MAX_GROUPS distinct models, further ones are added up in one "(other)" row."""
    agg = Aggregator()
    for i in range(_aggregate.MAX_GROUPS + 100):
        agg.feed_line(json.dumps(summary(f"model-{i}", "h", 1)))
    assert len(agg.by_model) == _aggregate.MAX_GROUPS + 1
    assert agg.by_model[_aggregate.OTHER].count == 100
    assert sum(g.count for g in agg.by_model.values()) == _aggregate.MAX_GROUPS + 100
    assert "(other): every model past the first 500, added up" in _text.render_text(agg)


def test_control_characters_are_escaped() -> None:
    """Names from the log reach the terminal escaped: no ESC, CR, OSC, C1 or bidi override
    acts on it, in the tables, in the quoted malformed lines, or in the HTML page."""
    hostile = "m\x1b[2J\x1b]0;owned\x07\r\x9b31m\u202eevil\u2066\ud800"
    ev = summary(hostile, "h\x1b[31m", 1, **{"streamtap.started_at": T0})
    ev.update(
        {
            "streamtap.outcome": "error\x1b[5m",
            "error.type": "E\r\x1b[K",
            "streamtap.retries": 1,
            "streamtap.resume.strategy": "s\x1b]8;;http://x\x07",
        }
    )
    line = json.dumps(ev)  # (control characters as JSON escapes: valid JSON)
    assert UNSAFE.search(line) is None
    malformed = '{"event": "streamtap.stream.summary", "x": "\x1b[2J\r\u202e'  # raw, cut off
    code, out, err = run(["-"], stdin=io.StringIO(line + "\n" + malformed + "\n"))
    assert code == 0
    assert UNSAFE.search(out) is None, out
    assert UNSAFE.search(err) is None, err
    assert "m\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x9b31m\\u202eevil\\u2066\\ud800" in out
    assert "\\x1b[2J\\x0d\\u202e" in err  # the malformed line is quoted, escaped
    line = json.dumps({**ev, "gen_ai.request.model": hostile + "\x7f"})  # (DEL stays raw)
    code, out, err = run(["-", "--json"], stdin=io.StringIO(line))
    assert code == 0 and UNSAFE.search(out) is None
    assert list(json.loads(out)["by_model"]) == [hostile + "\x7f"]  # the JSON keeps it exact
    page = render_html(aggregate([ev]))
    assert UNSAFE.search(page) is None
    assert "m\\x1b[2J" in page


def test_bad_time_arguments_are_one_line_errors() -> None:
    """--since/--until with NaN, infinity or a huge age: a usage error, or clamped; no crash."""
    code, _out, err = run(["-", "--since", "nan"], stdin=io.StringIO(""))
    assert code == 2 and "not a time" in err and "Traceback" not in err
    code, _out, err = run(["-", "--since", "1e400"], stdin=io.StringIO(""))
    assert code == 2 and "not a time" in err
    code, _out, err = run(["-", "--since", "1e300d"], stdin=io.StringIO(""))
    assert code == 0, err


# -- property tests ------------------------------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extras
    st = None  # type: ignore[assignment]

FIELDS = (
    "streamtap.started_at",
    "timestamp",
    "streamtap.time_to_first_token",
    "gen_ai.response.time_to_first_chunk",
    "streamtap.duration",
    "streamtap.time_per_output_token",
    "streamtap.output_tokens_per_second",
    "streamtap.gap.p95",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "streamtap.usage.reasoning_tokens",
    "streamtap.usage.cached_tokens",
    "streamtap.retries",
    "streamtap.resume.strategy",
    "server.address",
    "server.port",
    "error.type",
)

if st is not None:
    # Any text, surrogates and controls included (json.dumps writes them as escapes).
    any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
    numbers = st.one_of(
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0, -1, 1e20, -1e15, 1e308, 5e-324, 10**400, -(10**30), 2**53 + 1]),
    )
    dates = st.datetimes().map(lambda d: d.isoformat() + "Z") | st.sampled_from(
        ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-13-45", ""]
    )
    json_values = st.recursive(
        st.none() | st.booleans() | numbers | any_text | dates,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
        max_leaves=8,
    )
    summaries = st.fixed_dictionaries(
        {
            "event": st.just(SUMMARY),
            "gen_ai.request.model": any_text,
            "streamtap.outcome": any_text | st.sampled_from(["ok", "error", "cancelled"]),
        },
        optional=dict.fromkeys(FIELDS, json_values),
    )
    lines = st.one_of(
        summaries.map(json.dumps),
        summaries.map(lambda ev: "2026-11-21 INFO " + json.dumps(ev, ensure_ascii=False)),
        summaries.map(lambda ev: json.dumps({"log": json.dumps(ev)})),
        summaries.map(lambda ev: json.dumps(ev)[: len(json.dumps(ev)) // 2]),  # cut off
        json_values.map(json.dumps),
        any_text,
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(lines, max_size=8))
    def test_report_never_raises_and_prints_no_control_characters(batch: list[str]) -> None:
        """Any lines at all: the text, JSON and HTML outputs are made, and the text outputs
        (stdout and the quoted lines on stderr) and the page carry no control characters."""
        text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in batch) + "\n"
        for args in (["-"], ["-", "--json"]):
            code, out, err = run(args, stdin=io.StringIO(text))
            assert code == 0
            assert UNSAFE.search(out) is None, out
            assert UNSAFE.search(err) is None, err
        agg = Aggregator()
        for line in batch:
            agg.feed_line(line)
        json.dumps(agg.to_json(), allow_nan=False)  # strict JSON: no NaN or infinity
        page = render_html(agg)
        assert UNSAFE.search(page) is None
        assert len(page) < 500_000
        c = agg.counts
        assert c.lines == len(batch)
        assert c.lines == c.summaries + c.filtered + c.malformed + c.invalid + c.other_json + (
            c.non_json
        )


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`streamtap report app.log | head`: the reader leaves, the report stops, no traceback."""
    path = tmp_path / "app.log"
    path.write_text("\n".join(json.dumps(summary(f"m{i}", "h", 1)) for i in range(300)) + "\n")
    r, w = os.pipe()
    os.close(r)
    out = io.TextIOWrapper(io.FileIO(w, "w"), encoding="utf-8")
    err = io.StringIO()
    assert report_main([str(path), "--json"], stdout=out, stderr=err) == 1
    assert "Traceback" not in err.getvalue()
