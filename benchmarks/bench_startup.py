"""What streamtap costs a process at start: import time, and the first stream's latency.

Standalone: ``PYTHONPATH=src python benchmarks/bench_startup.py [--runs N]``.

- Import: ``python -X importtime -c "import openai, streamtap; streamtap.instrument"`` in fresh
  interpreters; the cost of ``openai`` (its cumulative time) against everything imported after
  it (streamtap and what it pulls in, ``streamtap.instrument`` resolved). Medians of N runs,
  alternating with ``import openai`` alone so that both see the same machine load.
- First stream: a fresh interpreter starts the embedded fake server, creates a client, (for
  ``instrumented``) calls ``instrument()``, and times its very first streamed request: time to
  the first chunk, to the end of iteration, and the longest gap between two chunks the loop
  saw, raw against instrumented, medians of N; once with an instant server, once with a server
  that answers after 0.35 s and then sends a chunk every 10 ms (the tokenizer loads meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST_STREAM = """
import sys, time, openai
from streamtap.testing import FakeServer, Reply
instrumented = sys.argv[1] == "instrumented"
first_delay, delay = float(sys.argv[2]), float(sys.argv[3])
with FakeServer() as server:
    server.enqueue(
        Reply(text="word " * 60, model="gpt-4o", first_delay=first_delay, delay=delay)
    )
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    if instrumented:
        import streamtap
        streamtap.instrument(client)
    t0 = last = time.perf_counter()
    first = None
    gap = 0.0
    for chunk in client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        now = time.perf_counter()
        if first is None:
            first = now - t0
        else:
            gap = max(gap, now - last)
        last = now
    end = time.perf_counter() - t0
print(first, end, gap)
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [e.get("PYTHONPATH")])])
    e.setdefault("STREAMTAP_TIKTOKEN_DOWNLOAD", "0")
    return e


def import_times(code: str) -> tuple[int, int]:
    """(openai's cumulative us, us of every top-level import after it)."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env(),
        check=True,
    ).stderr
    tops: list[tuple[int, str]] = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or "cumulative" in parts[1]:
            continue
        name = parts[2]
        if name.startswith(" ") and not name.startswith("  "):
            tops.append((int(parts[1]), name.strip()))
    names = [n for _, n in tops]
    i = names.index("openai")
    return tops[i][0], sum(c for c, _ in tops[i + 1 :])


def first_stream(mode: str, first_delay: float, delay: float) -> tuple[float, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_STREAM, mode, str(first_delay), str(delay)],
        capture_output=True,
        text=True,
        env=env(),
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    base, extra = [], []
    for _ in range(args.runs):
        base.append(import_times("import openai")[0])
        extra.append(import_times("import openai, streamtap; streamtap.instrument")[1])
    b, x = statistics.median(base), statistics.median(extra)
    bytecode = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(
        f"import: openai {b / 1000:.1f} ms, streamtap adds {x / 1000:.1f} ms = {100 * x / b:.1f}%"
        f" (median of {args.runs}, bytecode cache {bytecode})"
    )
    for first_delay, delay in ((0.0, 0.0), (0.15, 0.01), (0.35, 0.01)):
        print(f"first stream, server TTFT {first_delay:g} s, {delay:g} s between chunks:")
        results: dict[str, list[tuple[float, float, float]]] = {"raw": [], "instrumented": []}
        for _ in range(args.runs):
            for mode in results:
                results[mode].append(first_stream(mode, first_delay, delay))
        for mode, runs in results.items():
            first, end, gap = (statistics.median(r[i] for r in runs) * 1000 for i in range(3))
            worst = max(r[2] for r in runs) * 1000
            print(
                f"  {mode:<12}: first chunk {first:6.1f} ms, end {end:6.1f} ms,"
                f" longest gap {gap:5.1f} ms (worst run {worst:5.1f} ms)"
            )
    print(json.dumps({"import_ratio": x / b}))


if __name__ == "__main__":
    main()
