"""Per-stream state: feeds timing, token counting and segmenting, and builds the summary.

Pure: it sees strings, numbers and clock readings, never an SDK object (the clock itself is
handed in by the shell, `runtime.clock`, and read only to release held text). The shell
(`_chat`, `_drivers`) translates chunks into calls on a `StreamState`, and a finished state
into one summary event (`_log`).
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .._options import Resolved
from .segment import Segmenter
from .timing import Timing

if TYPE_CHECKING:
    from .._types import Outcome
    from .tokens import TokenCounter

SCHEMA_VERSION = 1

# Text channels of one choice. Each (choice index, channel) pair gets its own lane, so that
# n > 1 choices and reasoning text are never merged into the answer text. SUMMARY: a reasoning
# summary (the Responses API), which is not the reasoning the server bills.
CONTENT, REASONING, REFUSAL, SUMMARY = 0, 1, 2, 3
CHANNEL_NAMES = ("content", "reasoning", "refusal", "reasoning_summary")


def lane_key(index: int, channel: int) -> int:
    """The key of a lane in `StreamState.lanes`: lanes sort by choice, then channel."""
    return index * 4 + channel


def key_index(key: int) -> int:
    return key // 4


def key_channel(key: int) -> int:
    return key % 4


class Lane:
    """One text channel of one choice: its segmenter, token counter and delivered text.

    Text delivered to the caller is only appended to `pending` on the hot path (one list
    append per chunk); `StreamState.settle()` accounts for it in batches: characters, tokens
    and the captured copy are exact after a settle, which every reader does first.
    """

    __slots__ = (
        "captured",
        "chars",
        "counter",
        "dropped",
        "dropped_at",
        "field",
        "index",
        "last_at",
        "last_tokens",
        "pending",
        "seg",
        "tokens",
    )

    def __init__(
        self,
        index: int,
        field: str,
        seg: Segmenter | None,
        counter: TokenCounter | None,
        capture: bool,
    ) -> None:
        self.index = index
        self.field = field  # name of the delta attribute this lane's text travels in
        self.seg = seg
        self.counter = counter
        self.pending: list[str] = []  # delivered, not yet accounted for (see settle)
        self.last_at = 0  # chunk number of the latest chunk that delivered text here
        self.last_tokens = 0  # tokens of that chunk's text, when it was settled already
        self.chars = 0  # characters delivered to the caller so far
        self.tokens = 0
        # The delivered text, kept only when needed (resume, log_content). A StringIO: writing
        # a piece is one C call and the whole text is built once, not re-joined as it grows.
        self.captured: io.StringIO | None = io.StringIO() if capture else None
        # Text held at a break and dropped for the resumed attempt, which sends it again, and
        # `delivered()` then: if that attempt fails before any new text, it is the caller's.
        self.dropped = ""
        self.dropped_at = 0

    def delivered(self) -> int:
        """Characters delivered to the caller so far, the pending ones too."""
        return self.chars + sum(map(len, self.pending))

    def fold(self, keep: int = 0) -> int:
        """Account for the pending text but its last `keep` pieces; returns the new tokens."""
        pending = self.pending
        if len(pending) <= keep:
            return 0
        if keep:
            text = "".join(pending[:-keep])
            del pending[:-keep]
        else:
            text = pending[0] if len(pending) == 1 else "".join(pending)
            pending.clear()
        self.chars += len(text)
        cap = self.captured
        if cap is not None:
            cap.write(text)
        counter = self.counter
        if counter is None:
            return 0
        n = counter.feed(text)
        self.tokens += n
        return n


@dataclasses.dataclass(frozen=True)
class StreamStats:
    """A live snapshot of one stream, from `streamtap.stats(stream)`."""

    chunks: int
    """Chunks received from the server so far (all attempts)."""
    time_to_first_chunk: float | None
    time_to_first_token: float | None
    elapsed: float
    tokens: int
    """Tokens of the text delivered so far (exact: the pending tail is counted too)."""
    last_chunk_tokens: int
    """Tokens the most recent chunk's text added to `tokens` (0 when it delivered no text)."""
    token_source: str | None
    held_chars: int
    """Characters the word buffer holds back right now."""
    retries: int
    outcome: Outcome | None
    """None while the stream runs, then as in the summary event."""
    usage: dict[str, int] | None


class StreamState:
    """Everything streamtap tracks about one request, from call to end."""

    __slots__ = (
        "_counter_factory",
        "arrivals",
        "attempts",
        "choice_indexes",
        "chunk_count",
        "clock",
        "counting_load",
        "decode_fallbacks",
        "end",
        "error_type",
        "exact_tokens",
        "fast",
        "finish_reasons",
        "finished",
        "input_messages",
        "internal_errors",
        "lanes",
        "opaque",
        "outcome",
        "request",
        "request_id",
        "resolved",
        "response_created",
        "response_id",
        "response_model",
        "resume_strategy",
        "retries",
        "status_code",
        "timing",
        "tokens_total",
        "tool_calls_seen",
        "usage",
        "usage_prior",
    )

    def __init__(
        self,
        resolved: Resolved,
        request: dict[str, Any],
        start: float,
        input_messages: Any = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.resolved = resolved
        # Where `start` and every reading of this stream come from (the shell's clock, a fake
        # one under test): whoever reads the time for this stream calls this.
        self.clock = clock
        self.request = request  # static fields of the event (model, server, provider, ...)
        self.timing = Timing(start)
        self.arrivals = self.timing.arrivals  # the hot path appends to it directly
        self.lanes: dict[int, Lane] = {}
        self.chunk_count = 0
        self.tokens_total = 0  # tokens of the settled text (see Lane)
        # The one content lane while the stream keeps the common shape (one choice, text
        # only): then `_chat.process_chunk` takes its short path. None otherwise.
        self.fast: Lane | None = None
        self.finish_reasons: dict[int, str] = {}
        self.choice_indexes: set[int] = set()
        self.usage: dict[str, int] | None = None
        self.usage_prior: dict[str, int] | None = None  # summed usage of cut-off attempts
        self.tool_calls_seen = False
        # Per choice, content the lanes cannot read (see `machine.opaque`), as delivered.
        self.opaque: dict[int, list[Any]] = {}
        self.exact_tokens = 0  # tokens the server itself reported per chunk (logprobs)
        # Items fast decoding left to the SDK (None: it does not decode this stream).
        self.decode_fallbacks: int | None = None
        self.response_id: str | None = None
        self.response_created: Any = None  # the first chunk's `created` (for synthetic chunks)
        self.response_model: str | None = None
        self.status_code: int | None = None
        self.request_id: str | None = None
        self.outcome: str | None = None
        self.end: str | None = None
        self.error_type: str | None = None
        self.finished = False
        self.retries = 0
        self.resume_strategy: str | None = None
        self.attempts: list[dict[str, Any]] = []
        # streamtap's own failures in this stream, per place (see _errors.internal_error).
        # After one, text is passed through unbuffered: held text must never be reordered.
        self.internal_errors: dict[str, int] = {}
        self.input_messages = input_messages if resolved.options.log_content else None
        o = resolved.options
        self._counter_factory = (
            resolved.counter_factory(request.get("gen_ai.request.model"))
            if o.count_tokens
            else None
        )
        # The tokenizer load this stream's count waits for (`_pending.Loading`), or None.
        self.counting_load: Any = None
        if self._counter_factory is not None and self._counter_factory.loading is not None:
            self.counting_load = self._counter_factory.loading
            self.counting_load.stream_started()

    def adopt_response_model(self, model: str) -> None:
        """Count with the served model's tokenizer when the requested name was not a model.

        Azure deployment names and proxies' aliases say nothing about the tokenizer; the
        model the server reports does. Only before any text was counted.
        """
        factory = self._counter_factory
        if factory is not None and factory.source == "estimate" and not self.lanes:
            if factory.loading is not None:
                return  # the requested model's tokenizer is loading: it is known
            better = self.resolved.counter_factory(model)
            if better.source != "estimate":  # (not one still loading: see counting_load)
                self._counter_factory = better

    # -- per chunk --------------------------------------------------------------------------

    def lane(self, index: int, channel: int, field: str, key: int | None = None) -> Lane:
        """The lane for (choice index, channel), created on first use.

        `key`: a key of the caller's (`lane_key(n, channel)`) where one choice has several
        lanes per channel (the Responses API: one per output item and part, all of choice 0).
        """
        if key is None:
            key = lane_key(index, channel)
        lane = self.lanes.get(key)
        if lane is None:
            o = self.resolved.options
            policy = self.resolved.policy if not self.internal_errors else None
            seg = (
                Segmenter(
                    policy,
                    hold_max_seconds=o.hold_max_seconds,
                    hold_max_chars=o.hold_max_chars,
                )
                if policy is not None
                else None
            )
            factory = self._counter_factory
            capture = o.log_content or (o.retry and o.resume_strategy != "off")
            lane = Lane(index, field, seg, factory.new() if factory else None, capture)
            self.lanes[key] = lane
        return lane

    def text(self, lane: Lane, text: str, now: float) -> str:
        """Account for a text delta and return what the caller may see now.

        Tokens are counted on the text as it is *delivered* (at the next settle): the sum over
        a stream is still the count of the whole answer, and text a resume discards or a
        replay skips is never counted twice.
        """
        if self.timing.first_token is None:
            self.timing.first_token = now
        seg = lane.seg
        out = seg.push(text, now) if seg is not None else text
        if out:
            lane.pending.append(out)
            lane.last_at = self.chunk_count
        return out

    def release(self, lane: Lane, now: float | None = None) -> str:
        """Release held text: all of it (now=None), or what the hold bound says is due."""
        seg = lane.seg
        if seg is None:
            return ""
        out = seg.flush(self.clock()) if now is None else seg.poll(now)
        if out:
            lane.pending.append(out)
            lane.last_at = self.chunk_count
        return out

    def settle(self, *, keep_latest: bool = True) -> None:
        """Account for what was delivered so far (see Lane) and fold the arrival times.

        With `keep_latest`, the latest chunk's piece of text stays pending, so that its token
        count can still be told apart (`live_tokens`); readers of text and counts pass False.
        """
        self.timing.fold()
        n = self.chunk_count if keep_latest else -1
        total = 0
        for ln in self.lanes.values():
            if ln.pending:
                total += ln.fold(keep=1 if ln.last_at == n else 0)
        self.tokens_total += total

    def live_tokens(self) -> tuple[int, int]:
        """(tokens so far, pending tails included; tokens the latest chunk added). Exact."""
        self.settle()
        n = self.chunk_count
        total = 0
        last = 0
        for ln in self.lanes.values():
            c = ln.counter
            if c is None:
                continue
            if ln.pending and ln.last_at == n:
                before = c.peek()
                self.tokens_total += ln.fold()
                after = c.peek()
                last += after - before
                total += after
            else:
                total += c.peek()
        return total, last

    def held_lanes(self) -> list[Lane]:
        return [ln for ln in self.lanes.values() if ln.seg is not None and ln.seg.held_chars]

    def deadline(self) -> float | None:
        """Earliest time at which the hold bound forces held text out."""
        best: float | None = None
        for ln in self.lanes.values():
            seg = ln.seg
            if seg is not None:
                d = seg.deadline
                if d is not None and (best is None or d < best):
                    best = d
        return best

    def discard_held(self) -> None:
        """Drop text the caller has not seen (a resumed attempt will produce it again); it is
        kept aside for `restore_dropped`."""
        for ln in self.lanes.values():
            if ln.seg is not None:
                held = ln.seg.discard()
                if held:
                    ln.dropped = held
                    ln.dropped_at = ln.delivered()

    def restore_dropped(self, now: float) -> None:
        """The stream ends without the resumed attempt having sent any new text for a lane:
        the text dropped at the break is held again (the final flush delivers it), since no
        other attempt will. A lane that got new text since has its own version of it."""
        for ln in self.lanes.values():
            seg = ln.seg
            if ln.dropped and seg is not None:
                if not seg.held_chars and ln.delivered() == ln.dropped_at:
                    seg.restore(ln.dropped, now)
                ln.dropped = ""

    def add_prior_usage(self, usage: dict[str, int]) -> None:
        prior = self.usage_prior or {}
        for k, v in usage.items():
            prior[k] = prior.get(k, 0) + v
        self.usage_prior = prior

    def total_usage(self) -> dict[str, int] | None:
        """Server usage summed over attempts."""
        if self.usage_prior is None:
            return self.usage
        total = dict(self.usage_prior)
        for k, v in (self.usage or {}).items():
            total[k] = total.get(k, 0) + v
        return total

    # -- end --------------------------------------------------------------------------------

    def finish(
        self, outcome: str, end: str, now: float, error: BaseException | None = None
    ) -> bool:
        """Record the end; returns False if the end was already recorded (exactly once)."""
        if self.finished:
            return False
        self.finished = True
        self.outcome = outcome
        self.end = end
        self.timing.end = now
        if error is not None:
            self.error_type = error_name(error)
        return True

    def final_tokens(self) -> int:
        """Count the pending tails (once, at the end) and return the stream's total."""
        self.settle(keep_latest=False)
        extra = 0
        for ln in self.lanes.values():
            c = ln.counter
            if c is not None:
                n = c.finish()
                ln.tokens += n
                extra += n
        self.tokens_total += extra
        return self.tokens_total

    def snapshot(self, now: float) -> StreamStats:
        tokens, last = self.live_tokens()
        t = self.timing
        held = sum(ln.seg.held_chars for ln in self.lanes.values() if ln.seg is not None)
        factory = self._counter_factory
        return StreamStats(
            chunks=self.chunk_count,
            time_to_first_chunk=None if t.first_chunk is None else t.first_chunk - t.start,
            time_to_first_token=None if t.first_token is None else t.first_token - t.start,
            elapsed=(t.end if t.end is not None else now) - t.start,
            tokens=self.exact_tokens or tokens,
            last_chunk_tokens=last,
            token_source="exact" if self.exact_tokens else (factory.source if factory else None),
            held_chars=held,
            retries=self.retries,
            outcome=cast("Outcome | None", self.outcome),
            usage=dict(self.usage) if self.usage else None,
        )

    def summary(self) -> dict[str, Any]:
        """The canonical event (docs/events.md). Call once, after `finish`."""
        o = self.resolved.options
        self.settle(keep_latest=False)
        counted = self.final_tokens() if self._counter_factory is not None else None
        ev: dict[str, Any] = {
            "streamtap.schema_version": SCHEMA_VERSION,
            **self.request,
            "gen_ai.response.model": self.response_model,
            "gen_ai.response.id": self.response_id,
            "streamtap.outcome": self.outcome,
            "streamtap.end": self.end,
            "http.response.status_code": self.status_code,
            "streamtap.request_id": self.request_id,
        }
        if self.error_type is not None:
            ev["error.type"] = self.error_type
        ev.update(self.timing.fields())
        ev["streamtap.chunk_count"] = self.chunk_count
        if self.finish_reasons:
            ev["gen_ai.response.finish_reasons"] = [
                self.finish_reasons[i] for i in sorted(self.finish_reasons)
            ]
        indexes = self.choice_indexes | {ln.index for ln in self.lanes.values()}
        ev["streamtap.choices"] = len(indexes) if indexes else None

        completion, reasoning = self._usage_fields(ev, counted)
        counted = self._token_fields(ev, counted, completion, reasoning)
        output_tokens = completion if completion is not None else counted
        decode = ev.get("streamtap.decode_duration")
        if output_tokens and decode:
            ev["streamtap.output_tokens_per_second"] = output_tokens / decode
            if output_tokens > 1:
                ev["streamtap.time_per_output_token"] = decode / (output_tokens - 1)
        self._buffering_fields(ev)
        ev["streamtap.retries"] = self.retries
        if self.internal_errors:
            ev["streamtap.internal_errors"] = sum(self.internal_errors.values())
        if self.decode_fallbacks is not None:
            ev["streamtap.fast_decode.fallbacks"] = self.decode_fallbacks
        if self.resume_strategy is not None:
            ev["streamtap.resume.strategy"] = self.resume_strategy
        if self.attempts:
            ev["streamtap.attempts"] = self.attempts
        if o.log_content:
            ev["streamtap.content.output"] = self.output_text()
            ev["streamtap.content.input"] = self.input_messages
        return ev

    def _usage_fields(self, ev: dict[str, Any], counted: int | None) -> tuple[int | None, int]:
        """The server's usage summed over attempts (else streamtap's count as the output
        tokens); returns (completion tokens, reasoning tokens) as the server billed them."""
        usage = self.total_usage()
        completion: int | None = None
        reasoning = 0
        if usage is not None:
            ev["gen_ai.usage.input_tokens"] = usage.get("prompt_tokens")
            completion = usage.get("completion_tokens")
            ev["gen_ai.usage.output_tokens"] = completion
            ev["streamtap.usage.source"] = "server"
            if "cached_tokens" in usage:
                ev["streamtap.usage.cached_tokens"] = usage["cached_tokens"]
            if "reasoning_tokens" in usage:
                reasoning = usage["reasoning_tokens"]
                ev["streamtap.usage.reasoning_tokens"] = reasoning
        elif counted is not None:
            ev["gen_ai.usage.output_tokens"] = counted
            ev["streamtap.usage.source"] = "streamtap"
        return completion, reasoning

    def _token_fields(
        self, ev: dict[str, Any], counted: int | None, completion: int | None, reasoning: int
    ) -> int | None:
        """streamtap's own count, its source and its difference from the bill; returns the
        count the event reports (the server's per-chunk count when logprobs gave one)."""
        if self.exact_tokens:
            counted = self.exact_tokens
            ev["streamtap.tokens.counted"] = counted
            ev["streamtap.tokens.source"] = "exact"
            ev["streamtap.tokens.encoding"] = "logprobs"
        elif counted is not None:
            factory = self._counter_factory
            assert factory is not None
            ev["streamtap.tokens.counted"] = counted
            ev["streamtap.tokens.source"] = factory.source
            ev["streamtap.tokens.encoding"] = factory.encoding
        if counted is not None and completion is not None:
            # completion_tokens includes reasoning. When the reasoning was streamed, streamtap
            # counted it too; when it was hidden (OpenAI o-series), take it out of the bill.
            streamed_reasoning = any(
                ln.tokens for key, ln in self.lanes.items() if key_channel(key) == REASONING
            )
            billed_text = completion if streamed_reasoning else completion - reasoning
            # A reasoning summary (Responses API) is written apart and not billed as output
            # (nor counted in an exact count: logprobs come with the answer text only).
            summary = 0 if self.exact_tokens else self._channel_tokens(SUMMARY)
            ev["streamtap.tokens.diff"] = counted - summary - billed_text
        return counted

    def _channel_tokens(self, channel: int) -> int:
        return sum(ln.tokens for key, ln in self.lanes.items() if key_channel(key) == channel)

    def _buffering_fields(self, ev: dict[str, Any]) -> None:
        ev["streamtap.buffering.mode"] = self.resolved.mode
        hold_max = 0.0
        hold_sum = 0.0
        hold_n = 0
        for ln in self.lanes.values():
            seg = ln.seg
            if seg is not None:
                hold_max = max(hold_max, seg.hold_max)
                hold_sum += seg.hold_sum
                hold_n += seg.hold_count
        if hold_n:
            ev["streamtap.buffering.hold_max"] = hold_max
            ev["streamtap.buffering.hold_mean"] = hold_sum / hold_n

    def output_text(self) -> dict[str, str] | str:
        """Delivered text per lane ("0.content", ...); a plain str for the one-choice case.
        Lanes of one choice and channel (the Responses API's parts) are joined in key order."""
        self.settle(keep_latest=False)
        texts: dict[str, str] = {}
        for key, ln in sorted(self.lanes.items()):
            if ln.captured is not None:
                name = f"{ln.index}.{CHANNEL_NAMES[key_channel(key)]}"
                texts[name] = texts.get(name, "") + ln.captured.getvalue()
        if list(texts) == ["0.content"]:
            return texts["0.content"]
        return texts


def delivered_text(state: StreamState) -> str | dict[str, str]:
    """The answer text the caller received: a str, or per choice index for n > 1."""
    state.settle(keep_latest=False)
    texts: dict[str, str] = {}
    for key, ln in sorted(state.lanes.items()):
        if key_channel(key) == CONTENT and ln.captured is not None:
            name = str(ln.index)
            texts[name] = texts.get(name, "") + ln.captured.getvalue()
    if list(texts) in ([], ["0"]):
        return texts.get("0", "")
    return texts


def error_name(exc: BaseException) -> str:
    """A stable, readable exception type name, e.g. `openai.APIConnectionError`."""
    cls = type(exc)
    module = cls.__module__
    top = module.split(".", 1)[0]
    if top in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "builtins", "asyncio"):
        return cls.__name__ if top == "builtins" else f"{top}.{cls.__name__}"
    return f"{module}.{cls.__qualname__}"
