"""Micro-benchmark of streamtap's word-boundary buffering (``streamtap._core.segment``).

Run standalone from anywhere::

    python benchmarks/bench_segment.py [--repeat N]

It loads ``src/streamtap/_core/segment*.py`` straight from this checkout, without the package's
``__init__`` (only ``regex`` is needed, not the package's other dependencies) and prints, for
several corpora of realistic deltas, the mean cost of one ``Segmenter.push`` in nanoseconds
(best of N runs), next to the cost of an empty Python method call on the same machine for
scale.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from pathlib import Path
from types import ModuleType

_SRC = Path(__file__).resolve().parent.parent / "src" / "streamtap" / "_core" / "segment.py"
_PACKAGE = "_streamtap_segment_bench"


def _load() -> ModuleType:
    # An empty stand-in for the package, so that segment's relative imports find its siblings
    # (segment_policy, segment_tables) without running streamtap/__init__.py.
    package = ModuleType(_PACKAGE)
    package.__path__ = [str(_SRC.parent)]
    sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.segment")


ENGLISH = (
    "Streaming responses arrive as many small deltas. Each delta is usually a single token, "
    "like ' the' or ' quick', sometimes punctuation such as ',' or '.', and now and then a "
    "newline.\n\nWhen the caller prints them as they come, a word can be cut in half, an "
    "emoji can be split, and the output flickers. Buffering until a word boundary fixes that "
    "without adding noticeable latency: the held tail is rarely longer than one word. "
    "Internationalization, tokenization and instrumentation are long words that tokenizers "
    "split into several pieces; numbers like 3.14159 or 2,048 and contractions like don't "
    "and it's must stay whole.\n"
)

CODE = '''def fibonacci(n: int) -> list[int]:
    """Return the first n Fibonacci numbers."""
    result = [0, 1]
    while len(result) < n:
        result.append(result[-1] + result[-2])
    return result[:n]


if __name__ == "__main__":
    for i, value in enumerate(fibonacci(20)):
        print(f"{i:>3}: {value}")
'''

CHINESE = (
    "流式响应以许多小片段的形式到达。每个片段通常是一个字，有时是标点符号。"
    "中文没有空格，所以每个汉字都是一个词边界，缓冲不会停滞。日本語のひらがなも同じです。"
)

THAI = "การสตรีมข้อความทีละส่วนช่วยให้ผู้ใช้เห็นคำตอบได้เร็วขึ้นโดยไม่ต้องรอจนจบ "

EMOJI = "Great job 👍🏽 team! 👨‍👩‍👧‍👦 family, flags 🇫🇷🇯🇵 and café vs cafe\u0301 🏳️‍🌈 done.\n"

_TOKEN = re.compile(r" ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]+|\s+")


def gpt_like(text: str, max_piece: int = 6) -> list[str]:
    """Split like a BPE tokenizer would, roughly: leading-space words, long words in pieces."""
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        tok = m.group()
        while len(tok) > max_piece + 1:
            out.append(tok[:max_piece])
            tok = tok[max_piece:]
        out.append(tok)
    return out


def fixed(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def by_cluster(text: str) -> list[str]:
    import regex

    return regex.findall(r"\X", text)


def corpora() -> dict[str, list[str]]:
    return {
        "english tokens (' the', ' quick', ',')": gpt_like(ENGLISH) * 20,
        "code tokens": gpt_like(CODE) * 20,
        "chinese/japanese, 1 char per delta": list(CHINESE) * 20,
        "thai, 1 cluster per delta": by_cluster(THAI) * 20,
        "emoji + combining, 1 cluster per delta": by_cluster(EMOJI) * 20,
        "english, 20-char deltas": fixed(ENGLISH, 20) * 20,
        "english, whole paragraph per delta": [ENGLISH] * 50,
    }


def bench(seg_mod: ModuleType, mode: str, deltas: list[str], repeat: int) -> float:
    policy = seg_mod.make_policy(mode)
    best = float("inf")
    for _ in range(repeat):
        seg = seg_mod.Segmenter(policy)
        push = seg.push
        now = 0.0
        t0 = time.perf_counter_ns()
        for d in deltas:
            now += 0.001
            push(d, now)
        t1 = time.perf_counter_ns()
        seg.flush()
        best = min(best, (t1 - t0) / len(deltas))
    return best


def baseline(deltas: list[str], repeat: int) -> float:
    class Noop:
        __slots__ = ()

        def push(self, text: str, now: float) -> str:
            return text

    best = float("inf")
    for _ in range(repeat):
        push = Noop().push
        now = 0.0
        t0 = time.perf_counter_ns()
        for d in deltas:
            now += 0.001
            push(d, now)
        t1 = time.perf_counter_ns()
        best = min(best, (t1 - t0) / len(deltas))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    seg_mod = _load()
    print(f"python {sys.version.split()[0]}, {_SRC}")
    print(f"{'corpus':44} {'deltas':>6}  {'word':>8} {'sentence':>8} {'line':>8}  ns/push")
    for name, deltas in corpora().items():
        cells = [bench(seg_mod, mode, deltas, args.repeat) for mode in ("word", "sentence", "line")]
        print(f"{name:44} {len(deltas):6d}  " + " ".join(f"{c:8.0f}" for c in cells))
    print(
        f"{'(empty method call + loop, for scale)':44} {'':6}  {baseline(deltas, args.repeat):8.0f}"
    )


if __name__ == "__main__":
    main()
