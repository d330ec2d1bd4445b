"""Resume decisions: what counts as an interruption, which strategy, how long to wait.

Pure: it sees exception *descriptions* (a cause, an HTTP status, an error code), counts and
strings, never an SDK object. `_recover` (the shell) describes an exception with `describe()` and
acts on what this module decides.

The strategy ladder, per attempt:

1. ``prefill``  - the server continues a partial assistant message exactly (vLLM / llama.cpp
   ``continue_final_message``, DeepSeek / Mistral ``prefix: true``). Exact and cheap.
2. ``replay``   - the same request again; the part the caller already has is skipped after
   verifying, character for character, that the new output starts with it. Exact when the
   model is deterministic for the request (temperature 0, a seed); detected when it is not.
3. ``continuation`` - ask the model to continue after the delivered text and trim any overlap
   it repeats. Lossy by nature (the model may rephrase at the seam): only when the caller
   configured it.

Default (``auto``): prefill where the endpoint is known or configured to support it, else
replay; a replay that diverges ends the resume (the caller gets `StreamInterrupted`), because
by default the caller gets exactly what one real answer contains, or an error. Before any text
was delivered every strategy is a plain new request. A tool call (or audio) already partly
delivered is never spliced: the error surfaces, with everything delivered so far.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:  # tenacity loads on the first resume, not at import
    import tenacity

Cause = Literal["transport", "stall", "timeout", "in_band_error", "incomplete", "diverged"]
Strategy = Literal["prefill", "replay", "continuation"]

# In-band error codes and words that mean "try again later", as servers send them.
_RETRYABLE_CODES = frozenset(
    {
        "rate_limit_exceeded",
        "rate_limit_error",
        "server_error",
        "internal_error",
        "internal_server_error",
        "overloaded",
        "overloaded_error",
        "service_unavailable",
        "timeout",
        "bad_gateway",
        "gateway_timeout",
        "engine_overloaded",
        "too_many_requests",
    }
)
_RETRYABLE_WORDS = ("overloaded", "rate limit", "try again", "temporarily", "capacity", "timeout")
_NOT_RETRYABLE_WORDS = ("content filter", "content_filter", "content management policy")


@dataclasses.dataclass(frozen=True)
class Failure:
    """What went wrong, described without SDK objects."""

    cause: Cause
    status: int | None = None
    code: str | None = None
    message: str = ""
    retry_after: float | None = None


def retryable(f: Failure) -> bool:
    """Whether a failure after the stream started is an interruption worth resuming."""
    if f.cause in ("transport", "stall", "timeout", "incomplete", "diverged"):
        return True
    # An error event inside a 200 stream: only overload, rate limit and server errors.
    text = f"{f.code or ''} {f.message}".lower()
    if any(w in text for w in _NOT_RETRYABLE_WORDS):
        return False
    status = f.status
    if status is not None:
        return status in (408, 409, 429) or status >= 500
    if f.code is not None and f.code.lower() in _RETRYABLE_CODES:
        return True
    return any(w in text for w in _RETRYABLE_WORDS)


def parse_status(value: object) -> int | None:
    """An HTTP-like status from an error body's `code` / `status` (int or numeric string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 100 <= value <= 599:
        return value
    if isinstance(value, str) and value.isdigit() and 100 <= int(value) <= 599:
        return int(value)
    return None


@dataclasses.dataclass
class Budget:
    """How many resumes, by when, and how far apart: attempts, a total deadline, exponential
    backoff with equal jitter, and the server's Retry-After.

    The policy is tenacity's: `stop_after_attempt(max_attempts) | stop_before_delay(deadline)`
    and `wait_exponential(initial, max=maximum)`; `next_wait` asks them about the attempt that
    just failed (the loop that retries is `_recover`'s, which also closes, splices and logs).

    Jitter is *equal* jitter: the wait is uniform in [ceiling / 2, ceiling], where the ceiling
    doubles from `initial` up to `maximum`. Not full jitter ([0, ceiling]): a resume follows a
    cut the server or the network just made, and a wait near zero would hit the same fault;
    the floor keeps a real backoff, the random half still spreads many clients' resumes.

    A Retry-After longer than the jittered wait replaces it (capped at 4 x `maximum`). When the
    next attempt would be past `max_attempts`, or would start at or after `deadline` seconds
    from `start`, the budget is spent. `rng` and the `now` passed in make it deterministic
    under test.
    """

    max_attempts: int
    deadline: float | None  # seconds after `start`
    start: float
    initial: float
    maximum: float
    attempts: int = 1  # the first attempt counts
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    _policy: tenacity.Retrying | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def next_wait(self, now: float, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        import tenacity

        policy = self._policy or self._make_policy()
        state = tenacity.RetryCallState(policy, None, (), {})
        state.attempt_number = self.attempts
        state.start_time = self.start
        state.outcome_timestamp = now
        ceiling = policy.wait(state)
        wait = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self.maximum * 4)
        state.upcoming_sleep = wait
        return None if policy.stop(state) else wait

    def _make_policy(self) -> tenacity.Retrying:
        import tenacity

        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_attempts)
        if self.deadline is not None:
            stop = stop | tenacity.stop_before_delay(self.deadline)
        wait = tenacity.wait_exponential(multiplier=self.initial, max=self.maximum)
        self._policy = tenacity.Retrying(stop=stop, wait=wait)
        return self._policy


def choose(
    *,
    configured: str,
    prefill_supported: bool,
    prefill_rejected: bool,
    single_text_lane: bool,
    tool_call_started: bool,
    replay_diverged: bool,
    delivered_any: bool,
) -> Strategy | None:
    """The strategy for the next attempt, or None: surface the error instead."""
    if tool_call_started:
        # Never splice a tool call (or audio) half-way: the error surfaces instead.
        return None
    if not delivered_any:
        return "replay"  # nothing to continue from: a new request is exact
    if single_text_lane and not replay_diverged:
        if configured == "prefill" and not prefill_rejected:
            return "prefill"
        if configured == "continuation":
            return "continuation"  # lossy, and asked for
        if configured == "auto" and prefill_supported and not prefill_rejected:
            return "prefill"
    # n > 1, or no prefill: a verified replay, once it has not diverged.
    return None if replay_diverged else "replay"


def trim_overlap(
    delivered: str, continuation: str, *, min_overlap: int = 8, window: int = 400
) -> int:
    """How many leading characters of `continuation` repeat the end of `delivered`.

    The longest k (>= min_overlap, <= window) with delivered.endswith(continuation[:k]); 0 when
    there is none. A short k is ignored: a continuation may legitimately start with a word the
    answer just used.
    """
    limit = min(len(delivered), len(continuation), window)
    tail = delivered[-limit:] if limit else ""
    for k in range(limit, min_overlap - 1, -1):
        if tail.endswith(continuation[:k]):
            return k
    return 0


def reduced_limit(limit: object, produced_tokens: int) -> int | None:
    """`max_tokens` for a continuation: the original less what was already produced."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        return None
    return max(1, limit - produced_tokens)


# -- the steps of a resume plan ------------------------------------------------------------
# A resume is planned once, as a generator of these steps (`_recover.Resumer.plan`), and carried
# out by a sync and an async loop: every decision is shared, only the waiting differs.


class Close:
    """Close the broken attempt's stream (only once a resume is decided)."""

    __slots__ = ()


CLOSE = Close()


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Wait before the next attempt (backoff, Retry-After)."""

    seconds: float


@dataclasses.dataclass(frozen=True)
class Send:
    """Send the follow-up request `create(*args, **kwargs)`; the driver sends the new stream
    back into the plan, or throws in the request's exception."""

    create: Any
    args: Any
    kwargs: dict[str, Any]


Step = Union[Close, Sleep, Send]


class Plan:
    """Steps a plan generator one step at a time, for a driver loop (sync or async) that carries
    each step out and sets `sent` (the step's result) or `error` (what it raised) before asking
    for the next; `value` is what the plan returned."""

    __slots__ = ("error", "gen", "sent", "value")

    def __init__(self, gen: Generator[Any, Any, Any]) -> None:
        self.gen = gen
        self.sent: Any = None
        self.error: Exception | None = None
        self.value: Any = None

    def next(self) -> Any:
        """The next step, or None once the plan has returned (or raised: that propagates)."""
        sent, error = self.sent, self.error
        self.sent = self.error = None
        try:
            return self.gen.send(sent) if error is None else self.gen.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            return None
