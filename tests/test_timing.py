"""The timing core: gap statistics without keeping every gap."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from streamtap._timing import GapStats, Timing

gaps_st = st.lists(
    st.floats(min_value=0.0, max_value=30.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=1500,  # crosses the internal batch size several times
)


@settings(max_examples=200, deadline=None)
@given(gaps_st)
def test_gap_stats_match_exact_values(gaps: list[float]) -> None:
    """count, mean and max are exact; p95 is the nearest-rank p95 within 0.4 % (or 1 µs)."""
    g = GapStats()
    for x in gaps:
        g.add(x)
    assert g.count == len(gaps)
    assert g.max == max(gaps)
    assert math.isclose(g.mean or 0.0, sum(gaps) / len(gaps), rel_tol=1e-9, abs_tol=1e-12)
    exact = sorted(gaps)[max(1, math.ceil(0.95 * len(gaps))) - 1]
    p95 = g.quantile(0.95)
    assert p95 is not None
    assert p95 <= g.max
    assert abs(p95 - exact) <= max(0.004 * exact, 1e-6), (p95, exact)


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
