"""The timing core: gap statistics without keeping every gap."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamtap._core.timing import _BATCH, GapStats, Timing

gaps_st = st.lists(
    st.floats(min_value=0.0, max_value=30.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=1000,
)
# Long streams, gaps over many powers of two (1 ns .. 1000 s, and zeros), in runs of equal gaps
# so that batches are crossed several times: every shape of window the histogram cuts.
spread_gaps_st = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(min_value=-9, max_value=3).map(lambda e: 10.0**e)),
        st.integers(min_value=1, max_value=400),
    ),
    min_size=1,
    max_size=20,
).map(lambda runs: [x for x, n in runs for _ in range(n)])


def _nearest_rank(gaps: list[float], q: float) -> float:
    return sorted(gaps)[max(1, math.ceil(q * len(gaps))) - 1]


@settings(max_examples=200, deadline=None)
@given(gaps_st)
def test_gap_stats_are_exact_for_short_streams(gaps: list[float]) -> None:
    """Under _BATCH gaps nothing is folded: count, max, p95 exact; mean to rounding."""
    assert len(gaps) < _BATCH
    g = GapStats()
    for x in gaps:
        g.add(x)
    assert g.count == len(gaps)
    assert g.max == max(gaps)
    assert math.isclose(g.mean or 0.0, sum(gaps) / len(gaps), rel_tol=1e-9, abs_tol=1e-12)
    assert g.quantile(0.95) == _nearest_rank(gaps, 0.95)
    assert g.quantile(0.5) == _nearest_rank(gaps, 0.5)


@settings(max_examples=150, deadline=None)
@given(spread_gaps_st, st.integers(min_value=1, max_value=1500), st.integers(0, 2**32))
def test_gap_stats_histogram_is_within_its_bound(gaps: list[float], batch: int, seed: int) -> None:
    """Past _BATCH gaps: count and max exact, mean to rounding, p95 (and p50) the nearest-rank
    value within 0.4%, whatever the order of the gaps and the sizes of the batches given."""
    gaps = gaps * (1 + _BATCH // len(gaps))  # at least one fold
    random.Random(seed).shuffle(gaps)
    g = GapStats()
    for i in range(0, len(gaps), batch):
        g.extend(gaps[i : i + batch])
    assert g.count == len(gaps)
    assert g.max == max(gaps)
    assert math.isclose(g.mean or 0.0, sum(gaps) / len(gaps), rel_tol=1e-9, abs_tol=1e-300)
    for q in (0.95, 0.5):
        exact = _nearest_rank(gaps, q)
        got = g.quantile(q)
        assert got is not None and min(gaps) <= got <= g.max
        assert abs(got - exact) <= 0.004 * exact, (q, got, exact)


def test_gap_stats_ignore_what_no_clock_gives() -> None:
    """NaN and infinite gaps are dropped; negative ones count as zero once folded."""
    g = GapStats()
    g.extend([0.5, math.nan, math.inf, 0.25])
    assert g.count == 2 and g.max == 0.5 and g.mean == 0.375
    g.extend([-1.0] * 2000)
    assert g.count == 2002 and g.quantile(0.5) == 0.0 and g.quantile(1.0) == 0.5


def test_empty_and_reading_mid_stream() -> None:
    """No gaps: no figures. Reading between adds does not disturb later figures."""
    g = GapStats()
    assert g.mean is None and g.quantile(0.95) is None and g.count == 0
    for i in range(1, 1001):
        g.add(i / 1000)
        if i in (10, 600):
            assert g.max == i / 1000
    assert g.count == 1000 and g.max == 1.0
    assert math.isclose(g.mean or 0.0, 0.5005)


def test_timing_fields() -> None:
    """Time to first chunk/token, decode duration and gaps come from the marks given."""
    t = Timing(start=10.0)
    t.chunk(10.5)
    t.first_token = 10.7
    for now in (10.8, 11.0, 11.4):
        t.chunk(now)
    t.end = 11.5
    f = t.fields()
    assert f["gen_ai.response.time_to_first_chunk"] == 0.5
    assert math.isclose(f["streamtap.time_to_first_token"] or 0, 0.7)
    assert math.isclose(f["streamtap.decode_duration"] or 0, 0.7)
    assert math.isclose(f["streamtap.duration"] or 0, 1.5)
    assert math.isclose(f["streamtap.gap.max"] or 0, 0.4)


@given(
    st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=60),
    st.lists(st.integers(min_value=0, max_value=60), max_size=5),
)
def test_timing_folds_arrivals_into_the_same_gaps(times: list[float], folds: list[int]) -> None:
    """Folding the arrival times in batches, at any points, gives the gaps of consecutive
    arrivals, and the last arrival is always known."""
    arrivals = [sum(times[: i + 1]) for i in range(len(times))]
    t = Timing(start=0.0)
    g = GapStats()
    for i, now in enumerate(arrivals):
        t.chunk(now)
        if i:
            g.add(now - arrivals[i - 1])
        if i in folds:
            t.fold()
        assert t.last_chunk == now
    f = t.fields()
    assert t.first_chunk == arrivals[0]
    assert t.gaps.count == len(arrivals) - 1
    assert f["streamtap.gap.max"] == (g.max if g.count else None)
    assert f["streamtap.gap.p95"] == g.quantile(0.95)
