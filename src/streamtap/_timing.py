"""Timing of one stream: time to first chunk/token, gaps between chunks, durations.

Pure: takes `perf_counter()` readings from the caller and keeps O(1) memory per stream, so a
100k-chunk stream costs no more memory than a 10-chunk one. The p95 of the gaps comes from a
log-scale histogram (relative error below 0.4%) instead of keeping every gap.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections import Counter
from itertools import chain, islice, repeat
from operator import rshift, sub

# Gaps are counted in buckets keyed by the top bits of their IEEE 754 double: the exponent and
# the first 7 bits of the mantissa, i.e. 128 buckets per power of two, each under 0.8% wide.
# Keys are computed for a whole batch in C (array -> 64-bit integers -> shift -> Counter),
# so nothing runs in Python per gap; a stream uses a few hundred keys at most (1 µs .. 1 h is
# 32 powers of two). Quantiles are reported at the bucket's middle: within 0.4%.
_SHIFT = 52 - 7
_BATCH = 512


def _bucket_bounds(key: int) -> tuple[float, float]:
    lo, hi = struct.unpack("<2d", struct.pack("<2Q", key << _SHIFT, (key + 1) << _SHIFT))
    return float(lo), float(hi)


class GapStats:
    """Streaming summary of inter-chunk gaps: count, mean, max and p95.

    `add` only appends to a short list; the list is folded into the histogram every `_BATCH`
    gaps and before any figure is read. `extend` folds a batch at once.
    """

    __slots__ = ("_buckets", "_count", "_max", "_pending", "_total")

    def __init__(self) -> None:
        self._count = 0
        self._total = 0.0
        self._max = 0.0
        self._pending: list[float] = []
        self._buckets: Counter[int] = Counter()

    def add(self, gap: float) -> None:
        pending = self._pending
        pending.append(gap)
        if len(pending) >= _BATCH:
            self._fold()

    def extend(self, gaps: list[float]) -> None:
        """Add many gaps at once (folded right away)."""
        self._pending.extend(gaps)
        self._fold()

    def _fold(self) -> None:
        pending = self._pending
        if not pending:
            return
        # Negative gaps cannot come from a monotonic clock; count them as zero all the same.
        bits = memoryview(array("d", pending)).cast("B").cast("Q")
        self._buckets.update(map(rshift, bits, repeat(_SHIFT)))
        self._count += len(pending)
        self._total += sum(pending)
        top = max(pending)
        if top > self._max:
            self._max = top
        pending.clear()

    @property
    def count(self) -> int:
        return self._count + len(self._pending)

    @property
    def max(self) -> float:
        self._fold()
        return self._max

    @property
    def mean(self) -> float | None:
        self._fold()
        return self._total / self._count if self._count else None

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile, reported as the middle of its bucket (capped at max)."""
        self._fold()
        if not self._count:
            return None
        rank = max(1, math.ceil(q * self._count))
        seen = 0
        # Keys of negative gaps (sign bit set) sort last; they stand for zero, so first.
        for key in sorted(self._buckets, key=lambda k: -1 if k >> (63 - _SHIFT) else k):
            seen += self._buckets[key]
            if seen >= rank:
                if key >> (63 - _SHIFT):
                    return 0.0
                lo, hi = _bucket_bounds(key)
                return min((lo + hi) / 2, self._max)
        return self._max  # pragma: no cover - ranks never exceed count


class Timing:
    """Marks on one request's timeline, all in `perf_counter()` seconds.

    Arrival times are appended to `arrivals` (the hot path does this directly: one list append
    per chunk) and folded into the gap statistics in batches, by `fold()`.
    """

    __slots__ = ("_last", "arrivals", "end", "first_chunk", "first_token", "gaps", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.first_chunk: float | None = None
        self.first_token: float | None = None
        self.end: float | None = None
        self.gaps = GapStats()
        self.arrivals: list[float] = []  # not yet folded into `gaps`
        self._last: float | None = None  # the last arrival already folded

    def chunk(self, now: float) -> None:
        if self.first_chunk is None:
            self.first_chunk = now
        self.arrivals.append(now)

    @property
    def last_chunk(self) -> float | None:
        arrivals = self.arrivals
        return arrivals[-1] if arrivals else self._last

    def fold(self) -> None:
        """Turn the pending arrival times into gaps (the list object is kept: it is shared)."""
        arrivals = self.arrivals
        if not arrivals:
            return
        prev = self._last
        if prev is None:
            gaps = list(map(sub, islice(arrivals, 1, None), arrivals))
        else:
            gaps = list(map(sub, arrivals, chain((prev,), arrivals)))
        if gaps:
            self.gaps.extend(gaps)
        self._last = arrivals[-1]
        arrivals.clear()

    def fields(self) -> dict[str, float | None]:
        self.fold()
        start = self.start
        end = self.end
        first_token = self.first_token
        return {
            "gen_ai.response.time_to_first_chunk": _since(start, self.first_chunk),
            "streamtap.time_to_first_token": _since(start, first_token),
            "streamtap.duration": _since(start, end),
            "streamtap.decode_duration": _since(first_token, self.last_chunk),
            "streamtap.gap.mean": self.gaps.mean,
            "streamtap.gap.p95": self.gaps.quantile(0.95),
            "streamtap.gap.max": self.gaps.max if self.gaps.count else None,
        }


def _since(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return b - a
