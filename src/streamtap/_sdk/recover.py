"""Resuming a broken stream through the SDK (the shell around the pure `_resume` decisions).

`Resumer.recover_sync` / `recover_async` are called by the stream proxy when reading the next
chunk failed. They describe the failure, ask `_resume` whether and how to go on, wait, send the
follow-up request through the *uninstrumented* SDK method (so the SDK's own request retries
still apply), and hand back a `Source`: the new stream's chunks, passed through a splice that
makes them continue the answer the caller already has.

Protocol-neutral: what the follow-up request is and how its items are spliced belongs to the
protocol's `adapter.ResumeAdapter` (`chat_resume.ChatResume` for chat completions).
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import openai

from .._core import machine
from .._core import resume as _resume
from .._core.resume import CLOSE, Budget, Close, Failure, Plan, Send, Sleep, Step
from .._core.state import CONTENT, StreamState, delivered_text, key_channel
from .._exceptions import Diverged, ErrorObject, IncompleteStream, Stalled, interrupted
from .._runtime import runtime
from . import fast_decode
from .adapter import ResumeAdapter, Splicer
from .chat_resume import ChatResume
from .endpoint import endpoint_key
from .run import DoneProbe, aclose_quietly, close_quietly

if TYPE_CHECKING:
    from .call import Call
    from .run import Run

# Endpoints that rejected a prefill request (never tried again), and endpoints whose streams end
# without a finish_reason (and without `[DONE]`) every time (a clean end there is the end, not
# a cut): `runtime.no_prefill` and `runtime.no_finish`.
# Headers the SDK's `with_raw_response` / `with_streaming_response` add to ask for a wrapper.
_SDK_MARKERS = frozenset({"x-stainless-raw-response", "____stainless_override_cast_to"})


def _transport_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(timeout types, transport types) of the httpx flavours already imported. Only
    `sys.modules` is read, never an import: an exception of a flavour nobody imported cannot be
    raised, and importing one here, at a failure in one thread, raced the SDK importing it in
    another (openai 3.x saw a half-initialised `httpx`). Not cached, for the same reason: a
    flavour may be imported later; this runs at failures only."""
    timeouts: list[type] = [openai.APITimeoutError]
    transports: list[type] = [openai.APIConnectionError]
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        mod = sys.modules.get(name)
        if mod is None:
            continue
        t = getattr(mod, "TimeoutException", None)
        if t is not None:
            timeouts.append(t)
        for attr in ("TransportError", "NetworkError", "RemoteProtocolError", "ProtocolError"):
            e = getattr(mod, attr, None)
            if isinstance(e, type):
                transports.append(e)
    return tuple(timeouts), tuple(transports)


def _corrupt_types() -> tuple[type, ...]:
    """httpx's DecodingError, of whichever httpx flavours are installed."""
    found: list[type] = []
    for name in ("httpx", "httpx2"):
        mod = sys.modules.get(name)
        e = getattr(mod, "DecodingError", None) if mod is not None else None
        if isinstance(e, type):
            found.append(e)
    return tuple(found)


def corrupt_body(exc: BaseException) -> bool:
    """The body arrived but cannot be read: a content encoding that does not decode (bad gzip
    or brotli), or a TLS record that fails its integrity check. Not a cut: the server (or
    something on the way) sent bytes that are wrong, and sending the request again is as likely
    to fail the same way, after billing a new answer. A TLS end of stream without close_notify
    (`SSLEOFError`) is only a connection closed early, and stays an interruption."""
    corrupt = _corrupt_types()
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:  # the SDK and httpcore wrap what they catch
        if isinstance(e, corrupt):
            return True
        if isinstance(e, ssl.SSLError) and not isinstance(
            e, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
        ):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def describe(exc: BaseException, stalled: bool) -> Failure | None:
    """Translate an exception raised while reading a stream; None: not an interruption."""
    if isinstance(exc, Diverged):
        return Failure("diverged", message=str(exc))
    if isinstance(exc, IncompleteStream):
        return Failure("incomplete")
    if isinstance(exc, Stalled):
        return Failure("stall")
    if corrupt_body(exc):
        return None  # surfaces unchanged
    if isinstance(exc, ErrorObject):
        body = exc.body
        code = body.get("code")
        status = _resume.parse_status(code)
        return Failure(
            "in_band_error",
            status=status,
            code=None if status is not None or code is None else str(code),
            message=str(body.get("message") or ""),
        )
    timeouts, transports = _transport_errors()
    if stalled and isinstance(exc, timeouts + transports):
        return Failure("stall")
    if isinstance(exc, timeouts):
        return Failure("timeout")
    if isinstance(exc, transports):
        return Failure("transport", message=str(exc))
    if isinstance(exc, openai.APIStatusError):
        return None  # a response status, not a broken stream
    if isinstance(exc, openai.APIError):
        body = exc.body if isinstance(exc.body, dict) else {}
        code = body.get("code")
        status = _resume.parse_status(code) or _resume.parse_status(body.get("status"))
        return Failure(
            "in_band_error",
            status=status,
            code=str(code if code is not None and status is None else body.get("type") or ""),
            message=str(body.get("message") or exc.message or ""),
        )
    return None


class Source:
    """A resumed attempt's stream (sync or async), seen through its splice."""

    def __init__(self, stream: Any, splice: Splicer) -> None:
        self.stream = stream
        self.response = stream.response
        self.probe = DoneProbe.install(stream)
        is_async = not hasattr(stream, "__next__")
        self._iterator = (self._achunks if is_async else self._chunks)(stream, splice)

    @staticmethod
    def _chunks(stream: Any, splice: Splicer) -> Iterator[Any]:
        for chunk in stream:
            yield from splice.checked(chunk)

    @staticmethod
    async def _achunks(stream: Any, splice: Splicer) -> AsyncIterator[Any]:
        async for chunk in stream:
            for out in splice.checked(chunk):
                yield out

    def close(self) -> Any:
        """The stream's own close (a coroutine for an async stream)."""
        return self.stream.close()


class Resumer:
    """Resume policy and history for one request; `protocol` is the protocol's side of it
    (default: chat completions)."""

    def __init__(
        self, call: Call, create: Any, args: Any, protocol: ResumeAdapter | None = None
    ) -> None:
        self.call = call
        o = call.resolved.options
        self.protocol: ResumeAdapter = protocol or ChatResume(
            call.client, create, args, call.kwargs, o.prefill
        )
        self.options = o
        self.budget = Budget(
            max_attempts=o.max_attempts,
            deadline=o.retry_deadline,
            start=call.state.timing.start,
            initial=o.backoff_initial,
            maximum=o.backoff_max,
        )
        self.diverged = False
        self.endpoint = endpoint_key(call.client)
        # The first failure was a clean end of the body: where the raw SDK ends cleanly,
        # streamtap must not raise, whatever happens to the resumes.
        self.clean_origin = False
        self.clean_end_at: int | None = None  # characters delivered at the last clean end

    def expects_finish(self) -> bool:
        """Whether a clean end without finish_reason can be a cut on this endpoint."""
        return self.endpoint not in runtime.no_finish

    # -- deciding ---------------------------------------------------------------------------

    def _next(
        self, run: Run, failure: Failure, exc: BaseException
    ) -> tuple[str, float, Send] | None:
        """Record the failed attempt and plan the next one (None: give up, surface `exc`).

        Raises IncompleteStream to end the stream where it is, as the server would have.
        """
        state = run.state
        state.settle(keep_latest=False)
        self.protocol.interrupted(state, run.last_chunk, failure.cause)
        if not state.attempts:
            self.clean_origin = failure.cause == "incomplete"
        if failure.cause == "diverged":
            self.diverged = True
        if not _resume.retryable(failure):
            if state.retries:  # the history explains the error the caller will get
                self._close_attempt(run, failure)
            return None
        if self.protocol.answer_complete(state):
            # Every choice has its finish_reason: only usage or `[DONE]` was still to come,
            # not worth generating the answer again. End as if the server had.
            self._close_attempt(run, failure, "complete")
            raise IncompleteStream("the answer was complete")
        if failure.cause == "incomplete" and self._ended_as_before(state):
            # The resumed attempt ended where the last one did, without a finish_reason:
            # this endpoint does not send one. End as the raw SDK does, and remember it.
            runtime.no_finish.add(self.endpoint)
            self._close_attempt(run, failure, "incomplete")
            raise IncompleteStream()
        self._close_attempt(run, failure)
        strategy = self.protocol.exact_resume(failure.cause) or self._choose(state)
        if strategy is None:
            return None
        wait = self.budget.next_wait(state.clock(), failure.retry_after)
        if wait is None:
            raise self._stop(run, exc, failure, self._budget_spent())
        self.budget.attempts += 1
        state.retries += 1
        state.resume_strategy = strategy
        state.attempts.append(
            {"attempt": self.budget.attempts, "strategy": strategy, "wait": round(wait, 4)}
        )
        return (
            strategy,
            wait,
            self.protocol.request(state, strategy, _plain_stream_request(self.call.kwargs)),
        )

    def _choose(self, state: StreamState) -> str | None:
        """The strategy `_core.resume` chooses for the next attempt (None: give up)."""
        lanes = [ln for ln in state.lanes.values() if ln.chars or ln.seg is not None]
        single = (
            all(k == 0 for k, ln in state.lanes.items() if ln.chars)
            and len({ln.index for ln in lanes}) <= 1
        )
        configured = self.options.resume_strategy
        return _resume.choose(
            configured=configured if configured in self.protocol.strategies else "auto",
            prefill_supported=self.protocol.prefill_style is not None,
            prefill_rejected=self.endpoint in runtime.no_prefill,
            single_text_lane=single,
            tool_call_started=state.tool_calls_seen,
            replay_diverged=self.diverged,
            delivered_any=any(ln.chars for ln in state.lanes.values()),
        )

    def _ended_as_before(self, state: StreamState) -> bool:
        at = sum(ln.chars for ln in state.lanes.values())
        same = self.clean_end_at == at
        self.clean_end_at = at
        return same

    def _budget_spent(self) -> str:
        b = self.budget
        if b.attempts >= b.max_attempts:
            return f"all {b.max_attempts} attempts (max_attempts) were used"
        return f"the retry_deadline ({b.deadline:g} s after the request) has passed"

    def _close_attempt(self, run: Run, failure: Failure, outcome: str = "interrupted") -> None:
        state = run.state
        if state.usage is not None:
            state.add_prior_usage(state.usage)
            state.usage = None
        entry = {
            "cause": failure.cause,
            "chars": sum(ln.chars for ln in state.lanes.values()),
            "tokens": state.tokens_total,
            "outcome": outcome,
        }
        if failure.status is not None:
            entry["status"] = failure.status
        if state.attempts and "cause" not in state.attempts[-1]:
            state.attempts[-1].update(entry)
        else:
            state.attempts.append(
                {"attempt": len(state.attempts) + 1, "strategy": "initial", **entry}
            )

    def _stop(self, run: Run, exc: BaseException, failure: Failure, why: str) -> Exception:
        """What giving up raises: the end of the stream, where the raw SDK would have ended
        cleanly; else the caller's one exception."""
        if failure.cause == "incomplete" or self.clean_origin:
            state = run.state
            if state.attempts:
                state.attempts[-1]["outcome"] = "incomplete"
            return IncompleteStream(why)
        return self._exhausted(run, exc, why)

    def _exhausted(self, run: Run, exc: BaseException, why: str) -> Exception:
        state = run.state
        # No attempt follows: text set aside at the break is held again now, so that the message
        # counts what the caller will have (the driver delivers held text before raising).
        machine.give_up(state, state.clock())
        delivered = delivered_text(state)
        if state.attempts:
            state.attempts[-1]["outcome"] = "failed"
        err = interrupted(exc, _message(state, why, exc), delivered, list(state.attempts))
        err.__cause__ = exc
        return err

    def _failed_request(self, run: Run, exc: BaseException, strategy: str) -> Failure | None:
        """A follow-up request failed before streaming; decide whether to go on."""
        if strategy == "prefill" and isinstance(
            exc, (openai.BadRequestError, openai.UnprocessableEntityError)
        ):
            runtime.no_prefill.add(self.endpoint)  # the endpoint cannot prefill: fall back
            return Failure("transport", message="prefill rejected")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if self.protocol.refused(strategy, status):  # it falls back to another strategy
                return Failure("transport", message=f"{strategy} refused ({status})")
            retry_after = _retry_after(exc)
            f = Failure("in_band_error", status=status, message=str(exc), retry_after=retry_after)
            return f if _resume.retryable(f) else None
        return describe(exc, False)

    # -- doing ------------------------------------------------------------------------------

    def plan(self, run: Run, exc: BaseException) -> Generator[Step, Any, Source | None]:
        """The resume of one failed read, as steps a driver carries out (httpx's `auth_flow`
        pattern): `CLOSE` the broken stream, `Sleep`, `Send` a follow-up request (the driver
        sends back the new stream, or throws in the request's exception). Returns the source
        to read on from, or None to surface `exc`; raises what the caller gets instead."""
        failure = describe(exc, run.stalled)
        run.stalled = False
        if failure is None:
            return None
        last = exc
        while True:
            plan = self._next(run, failure, last)
            if plan is None:
                self._give_up(run, last, failure)
                return None
            yield CLOSE  # only now: a stream we do not resume is read on to its end
            strategy, wait, send = plan
            yield Sleep(wait)
            try:
                stream = yield send
            except Exception as err:
                f = self._failed_request(run, err, strategy)
                if f is None:
                    why = f"the resume request failed ({_describe_error(err)})"
                    raise self._stop(run, err, failure, why) from err
                failure, last = f, err
                continue
            splice = self.protocol.splice(run.state, strategy)
            run.attempt_started()
            if self.options.fast_decode:
                fast_decode.install_quietly(stream, run.state)
            return Source(stream, splice)

    def recover_sync(self, run: Run, exc: BaseException) -> Source | None:
        """Carry out `plan` with blocking calls."""
        plan = Plan(self.plan(run, exc))
        while (step := plan.next()) is not None:
            if isinstance(step, Close):
                close_quietly(run.stream)
            elif isinstance(step, Sleep):
                runtime.sleep(step.seconds)
            else:
                try:
                    plan.sent = _retrying_sync(step.create, step.args, step.kwargs)
                except Exception as err:
                    plan.error = err
        return plan.value  # type: ignore[no-any-return]

    async def recover_async(self, run: Run, exc: BaseException) -> Source | None:
        """Carry out `plan` on the event loop (the same steps as `recover_sync`)."""
        plan = Plan(self.plan(run, exc))
        while (step := plan.next()) is not None:
            if isinstance(step, Close):
                await aclose_quietly(run.stream)
            elif isinstance(step, Sleep):
                await runtime.async_sleep(step.seconds)
            else:
                try:
                    plan.sent = await _retrying_async(step.create, step.args, step.kwargs)
                except Exception as err:
                    plan.error = err
        return plan.value  # type: ignore[no-any-return]

    def _give_up(self, run: Run, exc: BaseException, failure: Failure) -> None:
        """Not resumable: the original error surfaces, unless we changed what it means."""
        if failure.cause in ("diverged", "incomplete") or run.state.retries or self.clean_origin:
            # The caller never saw these failures' own exceptions; explain them.
            raise self._stop(run, exc, failure, _why_not(failure, run))
        return None


def _why_not(failure: Failure, run: Run) -> str:
    if failure.cause == "diverged":
        return (
            "a replay of the request did not reproduce the text already delivered (the model "
            "answers this request differently each time: temperature > 0, no seed); "
            'resume_strategy="continuation" would accept a lossy continuation instead'
        )
    if run.state.tool_calls_seen:
        return "a tool call (or audio) had started, and is never spliced"
    if failure.cause == "in_band_error":
        return "the resumed attempt failed with an error that a retry does not fix"
    return f"it cannot be resumed after a {failure.cause} failure"


def _describe_error(exc: BaseException) -> str:
    """`Type: message`, and the root cause's when the SDK wrapped it ("Connection error.")."""
    text = _one_error(exc)
    root = exc
    for _ in range(8):
        nxt = root.__cause__ or root.__context__
        if nxt is None:
            break
        root = nxt
    if root is not exc and str(root) != str(exc):
        text += f" ({_one_error(root)})"
    return text


def _one_error(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _message(state: StreamState, why: str, exc: BaseException) -> str:
    """The exception's message: what the caller got, why streamtap gave up, the last error."""
    chars = sum(ln.chars for k, ln in state.lanes.items() if key_channel(k) == CONTENT)
    chars += sum(  # still held: delivered right before the exception is raised
        ln.seg.held_chars for k, ln in state.lanes.items() if key_channel(k) == CONTENT and ln.seg
    )
    choices = len({ln.index for ln in state.lanes.values()})
    got = f"{chars:,} character{'s' if chars != 1 else ''} of the answer"
    if choices > 1:
        got += f" ({choices} choices)"
    causes = [str(a.get("cause")) for a in state.attempts if a.get("cause")]
    if causes:
        why += f" (causes: {', '.join(causes)})"
    return (
        f"the stream broke after {got} had been delivered and could not be resumed: {why}. "
        f"Last error: {_describe_error(exc)}. "
        "The text delivered is in .delivered, the attempt history in .attempts."
    )


def _plain_stream_request(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The caller's arguments, minus the SDK's raw-response markers.

    `with_raw_response` / `with_streaming_response` add a header that makes `create` return a
    response wrapper; the follow-up request must return a plain stream to read on from.
    """
    out = dict(kwargs)
    headers = out.get("extra_headers")
    if isinstance(headers, Mapping) and any(_is_marker(k) for k in headers):
        out["extra_headers"] = {k: v for k, v in headers.items() if not _is_marker(k)}
    return out


def _is_marker(name: object) -> bool:
    return isinstance(name, str) and name.lower() in _SDK_MARKERS


def _quick_retry() -> dict[str, Any]:
    """One quick retry of the follow-up request itself on a connection error before any
    response (the SDK's own max_retries covers status codes); the shared Budget governs the
    rest. Both loops below use it, each with its own sleep."""
    import tenacity  # resumes are rare: not at import

    return {
        "stop": tenacity.stop_after_attempt(2),
        "wait": tenacity.wait_random(0.01, 0.05),
        "retry": tenacity.retry_if_exception_type(openai.APIConnectionError),
        "reraise": True,
    }


def _retrying_sync(create: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    import tenacity

    for attempt in tenacity.Retrying(sleep=runtime.sleep, **_quick_retry()):
        with attempt:
            return create(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


async def _retrying_async(create: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    import tenacity

    async for attempt in tenacity.AsyncRetrying(sleep=runtime.async_sleep, **_quick_retry()):
        with attempt:
            return await create(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(exc: openai.APIStatusError) -> float | None:
    try:
        value = exc.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
