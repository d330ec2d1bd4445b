"""Timing of one stream: time to first chunk/token, gaps between chunks, durations.

Pure: takes `perf_counter()` readings from the caller and keeps O(1) memory per stream, so a
100k-chunk stream costs no more memory than a 10-chunk one. The p95 of the gaps comes from a
log-bucket histogram (relative error below 2%) instead of keeping every gap.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import chain, islice, repeat
from operator import mul, sub

# Bucket i holds gaps in [_MIN * _RATIO**i, _MIN * _RATIO**(i+1)). With a ratio of 1.04 the
# bucket's geometric middle is within 2% of any value in it; 1 µs .. ~1 h takes ~560 buckets.
_MIN = 1e-6
_RATIO = 1.04
_LOG_RATIO = math.log(_RATIO)
_INV_LOG_RATIO = 1 / _LOG_RATIO
_LOG_MIN = math.log(_MIN)
_NBUCKETS = 600
_BATCH = 512


class GapStats:
    """Streaming summary of inter-chunk gaps: count, mean, max and p95.

    `add` only appends to a short list (it runs for every chunk); the list is folded into the
    histogram every `_BATCH` gaps and before any figure is read.
    """

    __slots__ = ("_buckets", "_count", "_max", "_pending", "_total")

    def __init__(self) -> None:
        self._count = 0
        self._total = 0.0
        self._max = 0.0
        self._pending: list[float] = []
        # Allocated on the first fold: most streams that end early never need it.
        self._buckets: list[int] | None = None

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
        buckets = self._buckets
        if buckets is None:
            buckets = self._buckets = [0] * _NBUCKETS
        # Bucket indexes for the whole batch in C (map/Counter); Python only loops over the
        # distinct buckets, a few dozen.
        index = map(
            int,
            map(
                mul,
                map(sub, map(math.log, map(max, pending, repeat(_MIN))), repeat(_LOG_MIN)),
                repeat(_INV_LOG_RATIO),
            ),
        )
        for i, n in Counter(index).items():
            buckets[i if i < _NBUCKETS else _NBUCKETS - 1] += n
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
        """Nearest-rank quantile, reported as the bucket's geometric middle (capped at max)."""
        self._fold()
        if not self._count or self._buckets is None:
            return None
        rank = max(1, math.ceil(q * self._count))
        seen = 0
        for i, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                if i == 0:
                    return min(_MIN, self._max)
                return min(_MIN * float(_RATIO ** (i + 0.5)), self._max)
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
