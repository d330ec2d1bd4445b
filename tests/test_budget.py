"""The resume budget (`_resume.Budget`): attempts, deadline, exponential backoff with equal
jitter, Retry-After. Deterministic: the random source and the clock are injected."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamtap._core.resume import Budget


class Fixed(random.Random):
    """A random source whose `uniform(a, b)` is always the same fraction of the way."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def budget(fraction: float = 0.0, **kw: float | None) -> Budget:
    fields: dict[str, float | None] = {
        "max_attempts": 6,
        "deadline": None,
        "start": 0.0,
        "initial": 1.0,
        "maximum": 8.0,
    }
    fields.update(kw)
    return Budget(rng=Fixed(fraction), **fields)  # type: ignore[arg-type]


def waits(b: Budget, now: float = 0.0) -> list[float | None]:
    """next_wait for each attempt until the budget is spent (as `_recover` counts attempts)."""
    out: list[float | None] = []
    while True:
        wait = b.next_wait(now)
        out.append(wait)
        if wait is None:
            return out
        b.attempts += 1


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, [0.5, 1.0, 2.0, 4.0, 4.0, None]),  # the floor: half the ceiling, never 0
        (0.5, [0.75, 1.5, 3.0, 6.0, 6.0, None]),
        (1.0, [1.0, 2.0, 4.0, 8.0, 8.0, None]),  # the ceiling doubles up to `maximum`
    ],
)
def test_exponential_backoff_with_equal_jitter(
    fraction: float, expected: list[float | None]
) -> None:
    assert waits(budget(fraction)) == expected


def test_one_attempt_has_no_resume() -> None:
    assert budget(max_attempts=1).next_wait(0.0) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [(8.0, 1.0), (8.9, 1.0), (9.0, None), (9.5, None), (20.0, None)],
)
def test_deadline_counts_the_wait(now: float, expected: float | None) -> None:
    """Spent when the next attempt would start at or after `deadline` seconds from `start`."""
    b = budget(1.0, deadline=10.0, start=100.0)
    assert b.next_wait(100.0 + now) == expected


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(None, 0.5), (0.2, 0.5), (5.0, 5.0), (100.0, 32.0)],
)
def test_retry_after_longer_than_the_backoff_wins(
    retry_after: float | None, expected: float
) -> None:
    """A longer Retry-After replaces the jittered wait, capped at 4 x maximum."""
    assert budget(0.0).next_wait(0.0, retry_after) == expected


def test_retry_after_past_the_deadline_spends_the_budget() -> None:
    b = budget(0.0, deadline=30.0)
    assert b.next_wait(0.0, 20.0) == 20.0
    assert b.next_wait(15.0, 20.0) is None


@given(
    seed=st.integers(0, 2**32),
    initial=st.floats(0.001, 10.0),
    maximum=st.floats(0.001, 60.0),
    attempts=st.integers(1, 40),
)
def test_every_wait_is_within_half_ceiling_and_ceiling(
    seed: int, initial: float, maximum: float, attempts: int
) -> None:
    b = Budget(
        max_attempts=attempts + 1,
        deadline=None,
        start=0.0,
        initial=initial,
        maximum=maximum,
        attempts=attempts,
        rng=random.Random(seed),
    )
    ceiling = min(maximum, initial * 2 ** (attempts - 1))
    wait = b.next_wait(0.0)
    assert wait is not None
    assert ceiling / 2 <= wait <= ceiling
