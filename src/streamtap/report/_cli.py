"""`streamtap report`'s command line: arguments, reading, and the text, JSON or HTML output.

The only module of the package that writes to stdout and stderr or opens output files. Nothing
in this package imports `openai` or streamtap's SDK modules: the command starts fast anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from ._aggregate import Aggregator
from ._html import render_html
from ._inputs import Progress, isatty, read_paths
from ._text import render_text
from ._values import parse_time_arg, printable


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `streamtap report`."""
    p = argparse.ArgumentParser(
        prog="streamtap report",
        description=(
            "Summarise streamtap.stream.summary events from JSON log files: latency "
            "percentiles (nearest-rank), error and retry rates, tokens, per model, endpoint and "
            "operation."
        ),
    )
    p.add_argument(
        "paths",
        nargs="*",
        default=["-"],
        metavar="LOGFILE",
        help="log files, plain or gzipped (detected by content); '-' or nothing reads stdin",
    )
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument(
        "--by",
        choices=("model", "endpoint", "operation", "both", "all"),
        default="all",
        help=(
            "group tables by model, by endpoint (server.address:server.port), by operation "
            "(gen_ai.operation.name and openai.api.type: chat completions or the Responses "
            "API), by model and endpoint (both), or all three (default)"
        ),
    )
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON")
    p.add_argument(
        "--since",
        type=parse_time_arg,
        metavar="TIME",
        help="keep streams started at or after TIME (ISO 8601, epoch seconds, or an age: 6h)",
    )
    p.add_argument(
        "--until", type=parse_time_arg, metavar="TIME", help="keep streams started before TIME"
    )
    p.add_argument(
        "--progress",
        action="store_true",
        help="report progress on stderr (default: only when stderr is a terminal)",
    )
    return p


def report_main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[Any] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """`streamtap report ...`; returns the exit code (0 ok, 1 unreadable input, 2 usage)."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    for stream in (out, err):
        # A terminal or pipe that cannot encode a model's name gets an escape, not a traceback.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")
    try:
        return _run(argv, stdin, out, err)
    except BrokenPipeError:  # `streamtap report app.log | head`: the reader has what it wanted
        with contextlib.suppress(Exception):
            # Python flushes stdout again at exit: point it at nothing so that stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 1


def _run(argv: Sequence[str] | None, stdin: IO[Any] | None, out: IO[str], err: IO[str]) -> int:
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    if args.since is not None and args.until is not None and args.since >= args.until:
        err.write("streamtap report: --since must be before --until\n")
        return 2

    agg = Aggregator(since=args.since, until=args.until)
    progress = Progress(err, args.progress or isatty(err))
    failed = read_paths(agg, args.paths, stdin=stdin, progress=progress, stderr=err)
    progress.done(agg.counts)
    _warn_about_input(agg, err)
    if args.html and not _write_html(agg, args.html, err):
        return 1
    if args.json:
        # ASCII only (names' control characters as \u escapes), and DEL too, which JSON allows.
        text = json.dumps(agg.to_json(args.by), indent=2, sort_keys=False, ensure_ascii=True)
        out.write(text.replace("\x7f", "\\u007f") + "\n")
    else:
        out.write(render_text(agg, args.by))
    out.flush()
    return 1 if failed else 0


def _warn_about_input(agg: Aggregator, err: IO[str]) -> None:
    """On stderr: the lines skipped (with a few examples), the values ignored, no summaries."""
    c = agg.counts
    if c.malformed or c.invalid:
        err.write(
            f"streamtap report: skipped {c.malformed:,} malformed line(s) and "
            f"{c.invalid:,} invalid summary event(s)\n"
        )
        for ex in agg.examples:
            err.write(
                f"  {printable(ex['source'])}:{ex['line']}: {ex['reason']}: "
                f"{printable(ex['text'])}\n"
            )
    if c.out_of_range:
        err.write(
            f"streamtap report: ignored values out of range in {c.out_of_range:,} summary "
            "event(s) (negative or absurd numbers, start times outside years 1 to 9999)\n"
        )
    if c.summaries == 0:
        err.write("streamtap report: no streamtap.stream.summary events found\n")


def _write_html(agg: Aggregator, path: str, err: IO[str]) -> bool:
    """Write the HTML page to `path`; False (said on stderr) when it cannot be written."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_html(agg))
    except OSError as exc:
        err.write(f"streamtap report: cannot write {printable(path)}: {exc}\n")
        return False
    err.write(f"streamtap report: wrote {printable(os.path.abspath(path))}\n")
    return True
