"""`streamtap demo`, `streamtap report` and `streamtap run`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamtap.testing import FakeServer

DEMO_EVENTS = "streamtap-demo-events.jsonl"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from .report import report_main

        return report_main(argv[1:])
    if argv and argv[0] == "run":
        from ._launch.command import run_main

        return run_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="streamtap",
        description="streamtap: word buffering, token counts, resume and latency logs for "
        "OpenAI streams.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="stream a few answers through an instrumented client and show the log events",
        description="Without --base-url, runs against streamtap's embedded local server "
        "(no API key, no network). With --base-url, against a real endpoint "
        "(OPENAI_API_KEY from the environment).",
    )
    demo.add_argument(
        "--base-url", help="an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1"
    )
    demo.add_argument("--model", default=None, help="model name (default: gpt-4o-mini)")
    demo.add_argument("--prompt", default=None, help="the question to ask")
    demo.add_argument(
        "--events",
        default=DEMO_EVENTS,
        help=f"where to write the JSON events (default {DEMO_EVENTS})",
    )
    demo.add_argument("--fast", action="store_true", help="no pacing between chunks")
    sub.add_parser("report", help="summarise streamtap JSON log files (see `streamtap report -h`)")
    sub.add_parser(
        "run",
        help="run a program with every OpenAI client it creates instrumented, no code change "
        "(see `streamtap run -h`)",
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover - argparse enforces the choices


def _print_event(line: str) -> None:
    event = json.loads(line)
    keys = [
        ("gen_ai.response.model", "model", ""),
        ("streamtap.outcome", "outcome", ""),
        ("streamtap.time_to_first_token", "ttft", "s"),
        ("streamtap.duration", "duration", "s"),
        ("streamtap.chunk_count", "chunks", ""),
        ("gen_ai.usage.output_tokens", "output tokens", ""),
        ("streamtap.tokens.counted", "counted", ""),
        ("streamtap.tokens.source", "count source", ""),
        ("streamtap.output_tokens_per_second", "tokens/s", ""),
        ("streamtap.gap.p95", "gap p95", "s"),
        ("streamtap.buffering.mode", "buffering", ""),
        ("streamtap.retries", "retries", ""),
        ("streamtap.resume.strategy", "resumed by", ""),
    ]
    parts = []
    for key, label, unit in keys:
        if key in event:
            v = event[key]
            if isinstance(v, float):
                v = f"{v:.3f}" if unit == "s" else f"{v:.1f}"
            parts.append(f"{label}={v}{unit}")
    print("   event: " + "  ".join(parts))


class _Tee(logging.Handler):
    """Writes each event as one JSON line to a file and shows a short form on stdout."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        from ._sdk.log import event_formatter

        self.setFormatter(event_formatter(json=True))
        self._file = path.open("w", encoding="utf-8")  # this run's events only
        self.pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self._file.write(line + "\n")
        self._file.flush()
        if record.getMessage() == "streamtap.stream.summary":
            self.pending.append(line)  # shown after the answer it describes
        elif record.levelno >= logging.WARNING:
            print(f"   [{record.levelname.lower()}] {record.getMessage()}")

    def show(self) -> None:
        for line in self.pending:
            _print_event(line)
        self.pending.clear()

    def close(self) -> None:
        self._file.close()
        super().close()


def _demo(args: argparse.Namespace) -> int:
    import openai

    import streamtap

    events = Path(args.events)
    tee = _Tee(events)
    log = logging.getLogger("streamtap")
    log.addHandler(tee)
    log.setLevel(logging.INFO)
    try:
        if args.base_url:
            key = os.environ.get("OPENAI_API_KEY")
            if not key:
                print("streamtap demo: set OPENAI_API_KEY to use --base-url", file=sys.stderr)
                return 2
            client = openai.OpenAI(base_url=args.base_url, api_key=key)
            streamtap.instrument(client)
            _ask(
                client,
                args.model or "gpt-4o-mini",
                args.prompt or "In three sentences, why do streamed answers need buffering?",
                "your endpoint",
                tee,
            )
        else:
            _offline_demo(args, tee)
    finally:
        log.removeHandler(tee)
        tee.close()
    exe = "streamtap" if shutil.which("streamtap") else _relative(Path(sys.argv[0]))
    print(f"\nEvents written to {events}. Summarise them with:\n  {exe} report {events}")
    print(f"  {exe} report {events} --html streamtap-report.html")
    return 0


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _ask(client: Any, model: str, prompt: str, where: str, tee: _Tee, **extra: Any) -> None:
    print(f"\n-- {prompt}  ({where})")
    print("   ", end="")
    try:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], stream=True, **extra
        )
        pieces = 0
        for chunk in stream:
            if not chunk.choices:
                continue
            text = chunk.choices[0].delta.content
            if text:
                pieces += 1
                print(text.replace("\n", "\n   "), end="", flush=True)
        print()
        import streamtap

        received = streamtap.stats(stream).chunks
        print(f"   (the server sent {received} chunks; the loop saw {pieces} whole-word pieces)")
    except Exception as exc:  # the demo shows a failure instead of a traceback
        print(f"\n   -> the caller's loop got {type(exc).__name__}: {exc}")
    tee.show()


def _offline_demo(args: argparse.Namespace, tee: _Tee) -> None:
    import openai

    import streamtap
    from streamtap.testing import FakeServer

    model = args.model or "gpt-4o-mini"
    delay = 0.0 if args.fast else 0.03
    with FakeServer(token_counter=_billing_counter(model), answer_length=70) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="demo-key", max_retries=0)
        streamtap.instrument(client)
        print(f"streamtap demo: embedded server at {server.base_url} (no network, no API key)")
        _demo_boundaries(server, client, model, delay, tee)
        _demo_faults(server, client, model, delay, tee)


def _billing_counter(model: str) -> Callable[[str], int]:
    """Counts a text's tokens with the model's own tokenizer, as the server bills them."""
    from streamtap._core import tokens as _tokens

    factory = _tokens.counter_factory(model)

    def count(text: str) -> int:
        counter = factory.new()
        return counter.feed(text) + counter.finish()

    return count


def _demo_boundaries(server: FakeServer, client: Any, model: str, delay: float, tee: _Tee) -> None:
    """Odd-sized pieces of text (words, emoji, CJK) reach the caller on whole boundaries."""
    from streamtap.testing import Reply

    server.enqueue(
        Reply(
            text="Streaming word by word: the caller never sees half a word, even when "
            "the server splits the text into odd three-character pieces. Emoji stay "
            "whole too: 👩‍👩‍👧 🇫🇷 👍🏽.",
            chunk_size=3,
            delay=delay,
            model=model,
        )
    )
    _ask(client, model, "Explain word buffering", "server sends 3-character pieces", tee)
    server.enqueue(
        Reply(
            text="流式输出不会卡住：每个汉字都是一个边界。日本語も大丈夫です。",
            chunk_size=2,
            delay=delay,
            model=model,
        )
    )
    _ask(client, model, "And Chinese and Japanese?", "no spaces to wait for", tee)


def _demo_faults(server: FakeServer, client: Any, model: str, delay: float, tee: _Tee) -> None:
    """A cut connection is resumed; a stalled one ends on the idle timeout."""
    import streamtap
    from streamtap.testing import Fault, Reply

    server.enqueue(Reply.model_mode(delay=delay, model=model, fault=Fault.cut(after_events=25)))
    _ask(
        client,
        model,
        "What happens if the connection drops?",
        "the server cuts the connection after 25 chunks; streamtap resumes",
        tee,
    )
    server.enqueue(
        Reply.model_mode(delay=delay, model=model, fault=Fault.stall(after_events=15, seconds=30))
    )
    with streamtap.options(idle_timeout=1.0):
        _ask(
            client,
            model,
            "And if the server just goes quiet?",
            "the server stalls after 15 chunks; idle_timeout=1s",
            tee,
        )


if __name__ == "__main__":
    sys.exit(main())
