"""Timing of one stream: time to first chunk/token, gaps between chunks, durations.

Pure: takes readings of the stream's clock from the caller (`StreamState.clock`:
`time.perf_counter` unless a test swapped `runtime.clock`) and keeps O(1) memory per stream, so a
100k-chunk stream costs no more memory than a 10-chunk one. The p95 of the gaps is exact up to
1,024 gaps and comes from a log-scale histogram (relative error below 0.4%) after that.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from itertools import chain, islice
from operator import sub

# Gaps are counted in buckets of 1/128 of a power of two (each under 0.8% wide), keyed by one
# byte of their float32 form: the lowest bit of the exponent and the first 7 of the mantissa.
# A batch is sorted, converted to float32 and cut into windows of two powers of two (the pairs
# whose float32 exponents differ in the lowest bit only); each window's key bytes are cut out in
# C (memoryview slice -> bytes) and counted by `Counter` in C: nothing runs in Python per gap,
# only per window. Within a window the key bytes sort as the gaps do, so a quantile walks the
# windows in order and only one window's keys. It is reported at the bucket's geometric middle:
# within 0.4%. Until `_BATCH` gaps have arrived they are kept as they are and the quantile is
# exact: most streams never need the histogram.
_BATCH = 1024
_TINY = 1e-30  # gaps below count as zero (no negative gap comes from a monotonic clock)
_HUGE = 1e30  # gaps from here up count as the largest one (float32 stops at 3.4e38)
_KEY_BYTE = 2 if sys.byteorder == "little" else 1


class GapStats:
    """Streaming summary of inter-chunk gaps: count, mean, max and p95.

    `extend` takes a batch of gaps (a C-level `sum` and a list extend); every `_BATCH` gaps, and
    only once the stream gets that long, they are folded into the histogram.
    """

    __slots__ = ("_count", "_max", "_min", "_over", "_pending", "_total", "_windows", "_zero")

    def __init__(self) -> None:
        self._count = 0  # all gaps, pending ones included
        self._total = 0.0  # their sum
        self._max = -math.inf  # over the folded gaps only
        self._min = math.inf
        self._pending: list[float] = []  # gaps not in the histogram yet
        # window (float32 exponent >> 1) -> key byte -> count; empty until a fold
        self._windows: dict[int, Counter[int]] = {}
        self._zero = 0  # folded gaps below _TINY
        self._over = 0  # folded gaps from _HUGE up

    def add(self, gap: float) -> None:
        self.extend([gap])

    def extend(self, gaps: list[float]) -> None:
        total = sum(gaps)
        if not math.isfinite(total):  # a NaN or an infinity: no clock gives those; dropped
            gaps = [x for x in gaps if math.isfinite(x)]
            total = sum(gaps)
        self._count += len(gaps)
        self._total += total
        pending = self._pending
        pending.extend(gaps)
        if len(pending) >= _BATCH:
            self._fold()

    def _fold(self) -> None:
        g = sorted(self._pending)
        self._pending.clear()
        n = len(g)
        if not n:
            return
        if g[-1] > self._max:
            self._max = g[-1]
        if g[0] < self._min:
            self._min = g[0]
        i = bisect_left(g, _TINY)
        k = bisect_left(g, _HUGE, i)
        self._zero += i
        self._over += n - k
        if i == k:
            return
        f32 = array("f", g[i:k] if i or k < n else g)
        keys = memoryview(f32).cast("B")
        windows = self._windows
        end = len(f32)
        i = 0
        while i < end:
            w = (math.frexp(f32[i])[1] + 126) >> 1  # float32 exponents 2w and 2w + 1
            j = bisect_left(f32, math.ldexp(1.0, 2 * w - 125), i)
            counts = windows.get(w)
            if counts is None:
                counts = windows[w] = Counter()
            counts.update(bytes(keys[4 * i + _KEY_BYTE : 4 * j : 4]))
            i = j

    @property
    def count(self) -> int:
        return self._count

    @property
    def max(self) -> float:
        pending = self._pending
        return max(self._max, max(pending)) if pending else self._max

    @property
    def mean(self) -> float | None:
        return self._total / self._count if self._count else None

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile: exact while nothing was folded, else the geometric middle of
        its bucket (kept within the smallest and largest gap)."""
        if not self._count:
            return None
        rank = max(1, math.ceil(q * self._count))
        if not (self._windows or self._zero or self._over):
            return sorted(self._pending)[rank - 1]
        self._fold()
        seen = self._zero
        if rank <= seen:
            return min(0.0, self._max)
        windows = self._windows
        for w in sorted(windows):
            counts = windows[w]
            in_window = sum(counts.values())
            if seen + in_window < rank:
                seen += in_window
                continue
            for b in sorted(counts):  # in order of value: exponent bit, then mantissa
                seen += counts[b]
                if seen >= rank:
                    mid = math.ldexp(
                        math.sqrt((128 + (b & 127)) * (129 + (b & 127))), 2 * w + (b >> 7) - 134
                    )
                    return min(max(mid, self._min), self._max)
        return self._max  # in the gaps from _HUGE up


class Timing:
    """Marks on one request's timeline, all in seconds of the stream's clock.

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
