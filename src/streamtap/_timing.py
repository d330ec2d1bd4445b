"""Timing of one stream: time to first chunk/token, gaps between chunks, durations.

Pure: takes `perf_counter()` readings from the caller and keeps O(1) memory per stream, so a
100k-chunk stream costs no more memory than a 10-chunk one. The p95 of the gaps comes from a
log-bucket histogram (relative error below 2%) instead of keeping every gap.
"""

from __future__ import annotations

import math

# Bucket i holds gaps in [_MIN * _RATIO**i, _MIN * _RATIO**(i+1)). With a ratio of 1.04 the
# bucket's geometric middle is within 2% of any value in it; 1 µs .. ~1 h takes ~560 buckets.
_MIN = 1e-6
_RATIO = 1.04
_LOG_RATIO = math.log(_RATIO)
_NBUCKETS = 600


class GapStats:
    """Streaming summary of inter-chunk gaps: count, mean, max and p95."""

    __slots__ = ("_buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        # Allocated on the first gap: most streams that end early never need it.
        self._buckets: list[int] | None = None

    def add(self, gap: float) -> None:
        self.count += 1
        self.total += gap
        if gap > self.max:
            self.max = gap
        buckets = self._buckets
        if buckets is None:
            buckets = self._buckets = [0] * _NBUCKETS
        if gap <= _MIN:
            buckets[0] += 1
        else:
            i = int(math.log(gap / _MIN) / _LOG_RATIO)
            buckets[i if i < _NBUCKETS else _NBUCKETS - 1] += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile, reported as the bucket's geometric middle (capped at max)."""
        if not self.count or self._buckets is None:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                if i == 0:
                    return min(_MIN, self.max)
                return min(_MIN * float(_RATIO ** (i + 0.5)), self.max)
        return self.max  # pragma: no cover - ranks never exceed count


class Timing:
    """Marks on one request's timeline, all in `perf_counter()` seconds."""

    __slots__ = ("end", "first_chunk", "first_token", "gaps", "last_chunk", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.first_chunk: float | None = None
        self.first_token: float | None = None
        self.last_chunk: float | None = None
        self.end: float | None = None
        self.gaps = GapStats()

    def chunk(self, now: float) -> None:
        last = self.last_chunk
        if last is None:
            self.first_chunk = now
        else:
            self.gaps.add(now - last)
        self.last_chunk = now

    def token(self, now: float) -> None:
        if self.first_token is None:
            self.first_token = now

    def fields(self) -> dict[str, float | None]:
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
