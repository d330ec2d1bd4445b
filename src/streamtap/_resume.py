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
from typing import Literal

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
    """Attempts, a total deadline and exponential backoff with full jitter."""

    max_attempts: int
    deadline: float | None  # seconds after `start`
    start: float
    initial: float
    maximum: float
    attempts: int = 1  # the first attempt counts
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def next_wait(self, now: float, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        if self.attempts >= self.max_attempts:
            return None
        ceiling = min(self.maximum, self.initial * (2 ** (self.attempts - 1)))
        wait = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self.maximum * 4)
        if self.deadline is not None and now + wait - self.start > self.deadline:
            return None
        return wait


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
