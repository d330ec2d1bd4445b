"""Resuming a broken stream through the SDK (the shell around the pure `_resume` decisions).

`Resumer.recover_sync` / `recover_async` are called by the stream proxy when reading the next
chunk failed. They describe the failure, ask `_resume` whether and how to go on, wait, send the
follow-up request through the *uninstrumented* SDK method (so the SDK's own request retries
still apply), and hand back a `Source`: the new stream's chunks, passed through a `Splice` that
makes them continue the answer the caller already has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import openai
import tenacity

from . import _resume
from ._exceptions import Diverged, ErrorObject, IncompleteStream, interrupted
from ._openai import endpoint_key
from ._proxy import aclose_quietly, close_quietly
from ._resume import Budget, Failure
from ._state import CONTENT, REASONING, REFUSAL, StreamState, delivered_text

if TYPE_CHECKING:
    from ._patch import _Call
    from ._proxy import Run

_clock = time.perf_counter

CONTINUE_PROMPT = (
    "Your previous message was cut off. Continue it exactly where it stopped: do not repeat "
    "anything, do not add an introduction, start with the very next characters."
)

# Endpoints known to continue a partial assistant message ("prefix": true).
_PREFIX_HOSTS = ("api.deepseek.com", "api.mistral.ai")
# Endpoints that rejected a prefill request: never try again.
_no_prefill: set[str] = set()


def _transport_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(timeout types, transport types) of whichever httpx flavours are installed."""
    timeouts: list[type] = [openai.APITimeoutError]
    transports: list[type] = [openai.APIConnectionError]
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        t = getattr(mod, "TimeoutException", None)
        if t is not None:
            timeouts.append(t)
        for attr in ("TransportError", "NetworkError", "RemoteProtocolError", "ProtocolError"):
            e = getattr(mod, attr, None)
            if isinstance(e, type):
                transports.append(e)
    return tuple(timeouts), tuple(transports)


_TIMEOUTS, _TRANSPORTS = _transport_errors()


def describe(exc: BaseException, stalled: bool) -> Failure | None:
    """Translate an exception raised while reading a stream; None: not an interruption."""
    if isinstance(exc, Diverged):
        return Failure("diverged", message=str(exc))
    if isinstance(exc, IncompleteStream):
        return Failure("incomplete")
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
    if stalled and isinstance(exc, _TIMEOUTS + _TRANSPORTS):
        return Failure("stall")
    if isinstance(exc, _TIMEOUTS):
        return Failure("timeout")
    if isinstance(exc, _TRANSPORTS):
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


class Splice:
    """Makes the chunks of a resumed attempt continue the answer the caller has."""

    __slots__ = ("held", "overlap_done", "pos", "prefix", "stamp", "state", "strategy")

    def __init__(
        self,
        strategy: str,
        stamp: tuple[Any, Any, Any],
        prefix: dict[int, str],
        state: StreamState,
    ) -> None:
        self.state = state  # chunks dropped here still count as received
        self.strategy = strategy
        self.stamp = stamp  # first attempt's (id, created, model)
        self.prefix = prefix  # replay: delivered text per lane key; continuation: {0: text}
        self.pos = dict.fromkeys(prefix, 0)
        self.held: list[Any] = []
        self.overlap_done = strategy != "continuation"

    def __call__(self, chunk: Any) -> list[Any]:
        d = chunk.__dict__
        rid, created, model = self.stamp
        if rid:
            d["id"] = rid
        if created:
            d["created"] = created
        if model:
            d["model"] = model
        if self.strategy == "replay" and self.prefix:
            out = self._skip(chunk)
        elif not self.overlap_done:
            out = self._trim(chunk)
        else:
            out = [chunk] if _has_payload(chunk, role_counts=False) else []
        if not out:
            self.state.chunk_count += 1
            self.state.timing.chunk(_clock())
        return out

    def _skip(self, chunk: Any) -> list[Any]:
        """Replay: drop what the caller has, after checking it is the same text."""
        for choice in chunk.__dict__.get("choices") or ():
            cd = choice.__dict__
            index = cd.get("index") or 0
            delta = cd.get("delta")
            if delta is not None:
                dd = delta.__dict__
                extra = delta.__pydantic_extra__ or {}
                for channel, field, store in (
                    (CONTENT, "content", dd),
                    (REFUSAL, "refusal", dd),
                    (REASONING, "reasoning_content", extra),
                    (REASONING, "reasoning", extra),
                ):
                    text = store.get(field)
                    key = index * 4 + channel
                    if key not in self.prefix:
                        if text and key in self._pending_keys(index):
                            raise Diverged(f"replay produced {field} text where none was expected")
                        continue
                    if not text:
                        continue
                    want = self.prefix[key]
                    pos = self.pos[key]
                    n = min(len(text), len(want) - pos)
                    if text[:n] != want[pos : pos + n]:
                        raise Diverged(
                            f"replay diverged from the delivered text at character {pos}"
                        )
                    self.pos[key] = pos + n
                    if self.pos[key] == len(want):
                        del self.prefix[key]
                    store[field] = text[n:]
                if dd.get("tool_calls") and self._pending_keys(index):
                    raise Diverged("replay produced a tool call before the delivered text ended")
            if cd.get("finish_reason") and self._pending_keys(index):
                raise Diverged("replay finished before reaching the delivered text")
        return [chunk] if _has_payload(chunk, role_counts=False) else []

    def _pending_keys(self, index: int) -> list[int]:
        return [k for k in self.prefix if k // 4 == index]

    def _trim(self, chunk: Any) -> list[Any]:
        """Continuation: hold the first characters until any repeated overlap can be cut."""
        self.held.append(chunk)
        want = self.prefix.get(0, "")
        texts = [_content(c) for c in self.held]
        joined = "".join(texts)
        decisive = len(joined) >= min(len(want), 400) or any(
            _finished(c) or _tool_calls(c) for c in self.held
        )
        if not decisive:
            return []
        self.overlap_done = True
        cut = _resume.trim_overlap(want, joined)
        out = []
        for c in self.held:
            if cut:
                text = _content(c)
                take = min(cut, len(text))
                if take:
                    _set_content(c, text[take:])
                    cut -= take
            if _has_payload(c, role_counts=False):
                out.append(c)
        self.held = []
        return out


def _content(chunk: Any) -> str:
    for choice in chunk.__dict__.get("choices") or ():
        delta = choice.__dict__.get("delta")
        if delta is not None and (choice.__dict__.get("index") or 0) == 0:
            text = delta.__dict__.get("content")
            return text if isinstance(text, str) else ""
    return ""


def _set_content(chunk: Any, text: str) -> None:
    for choice in chunk.__dict__.get("choices") or ():
        delta = choice.__dict__.get("delta")
        if delta is not None and (choice.__dict__.get("index") or 0) == 0:
            delta.__dict__["content"] = text


def _finished(chunk: Any) -> bool:
    return any(c.__dict__.get("finish_reason") for c in chunk.__dict__.get("choices") or ())


def _tool_calls(chunk: Any) -> bool:
    for c in chunk.__dict__.get("choices") or ():
        delta = c.__dict__.get("delta")
        if delta is not None and delta.__dict__.get("tool_calls"):
            return True
    return False


def _has_payload(chunk: Any, role_counts: bool) -> bool:
    """Whether a chunk still says anything the caller has not already been told."""
    d = chunk.__dict__
    if d.get("usage") is not None:
        return True
    for c in d.get("choices") or ():
        cd = c.__dict__
        if cd.get("finish_reason") or cd.get("logprobs"):
            return True
        delta = cd.get("delta")
        if delta is None:
            continue
        dd = delta.__dict__
        if (
            dd.get("content")
            or dd.get("refusal")
            or dd.get("tool_calls")
            or dd.get("function_call")
        ):
            return True
        if role_counts and dd.get("role"):
            return True
        extra = delta.__pydantic_extra__
        if extra and any(isinstance(v, str) and v for v in extra.values()):
            return True
    return False


class SyncSource:
    """A resumed attempt's stream, seen through its `Splice`."""

    def __init__(self, stream: Any, splice: Splice) -> None:
        self.stream = stream
        self.response = stream.response
        self._iterator = self._chunks(stream, splice)

    @staticmethod
    def _chunks(stream: Any, splice: Splice) -> Iterator[Any]:
        for chunk in stream:
            yield from splice(chunk)

    def close(self) -> None:
        self.stream.close()


class AsyncSource:
    def __init__(self, stream: Any, splice: Splice) -> None:
        self.stream = stream
        self.response = stream.response
        self._iterator = self._chunks(stream, splice)

    @staticmethod
    async def _chunks(stream: Any, splice: Splice) -> AsyncIterator[Any]:
        async for chunk in stream:
            for out in splice(chunk):
                yield out

    async def close(self) -> None:
        await self.stream.close()


class Resumer:
    """Resume policy and history for one request."""

    def __init__(self, call: _Call, create: Any, args: Any) -> None:
        self.call = call
        self.create = create
        self.args = args
        o = call.resolved.options
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
        self.prefill_style = _prefill_style(call.client, o.prefill)
        self.stamp: tuple[Any, Any, Any] | None = None

    # -- deciding ---------------------------------------------------------------------------

    def _next(
        self, run: Run, failure: Failure, exc: BaseException
    ) -> tuple[str, float, dict[str, Any]] | None:
        """Record the failed attempt and plan the next one (None: give up, surface `exc`)."""
        state = run.state
        state.settle(keep_latest=False)
        if self.stamp is None:
            first = run.last_chunk.__dict__ if run.last_chunk is not None else {}
            self.stamp = (state.response_id, first.get("created"), state.response_model)
        if failure.cause == "diverged":
            self.diverged = True
        if not _resume.retryable(failure):
            if state.retries:  # the history explains the error the caller will get
                self._close_attempt(run, failure)
            return None
        self._close_attempt(run, failure)
        lanes = [ln for ln in state.lanes.values() if ln.chars or ln.seg is not None]
        single = (
            all(k == 0 for k, ln in state.lanes.items() if ln.chars)
            and len({ln.index for ln in lanes}) <= 1
        )
        strategy = _resume.choose(
            configured=self.options.resume_strategy,
            prefill_supported=self.prefill_style is not None and self.endpoint not in _no_prefill,
            single_text_lane=single,
            tool_call_started=run.state.tool_calls_seen,
            replay_diverged=self.diverged,
        )
        if strategy is None:
            return None
        wait = self.budget.next_wait(_clock(), failure.retry_after)
        if wait is None:
            raise self._exhausted(run, exc, "resume budget spent")
        self.budget.attempts += 1
        state.retries += 1
        state.resume_strategy = strategy
        state.attempts.append(
            {"attempt": self.budget.attempts, "strategy": strategy, "wait": round(wait, 4)}
        )
        return strategy, wait, self._request(run, strategy)

    def _close_attempt(self, run: Run, failure: Failure) -> None:
        state = run.state
        if state.usage is not None:
            state.add_prior_usage(state.usage)
            state.usage = None
        entry = {
            "cause": failure.cause,
            "chars": sum(ln.chars for ln in state.lanes.values()),
            "tokens": state.tokens_total,
            "outcome": "interrupted",
        }
        if failure.status is not None:
            entry["status"] = failure.status
        if state.attempts and "cause" not in state.attempts[-1]:
            state.attempts[-1].update(entry)
        else:
            state.attempts.append(
                {"attempt": len(state.attempts) + 1, "strategy": "initial", **entry}
            )

    def _request(self, run: Run, strategy: str) -> dict[str, Any]:
        kwargs = dict(self.call.kwargs)
        if strategy == "replay":
            return kwargs
        state = run.state
        delivered = _lane_text(state, 0)
        messages = list(kwargs.get("messages") or [])
        produced = state.tokens_total
        for key in ("max_tokens", "max_completion_tokens"):
            reduced = _resume.reduced_limit(kwargs.get(key), produced)
            if reduced is not None:
                kwargs[key] = reduced
        if strategy == "prefill":
            if self.prefill_style == "prefix":
                messages.append({"role": "assistant", "content": delivered, "prefix": True})
            else:
                messages.append({"role": "assistant", "content": delivered})
                extra = dict(kwargs.get("extra_body") or {})
                extra.update(continue_final_message=True, add_generation_prompt=False)
                kwargs["extra_body"] = extra
        else:  # continuation
            messages.append({"role": "assistant", "content": delivered})
            messages.append({"role": "user", "content": CONTINUE_PROMPT})
        kwargs["messages"] = messages
        return kwargs

    def _splice(self, run: Run, strategy: str) -> Splice:
        assert self.stamp is not None
        state = run.state
        if strategy == "replay":
            prefix = {
                k: ln.captured.getvalue()
                for k, ln in state.lanes.items()
                if ln.chars and ln.captured is not None
            }
        elif strategy == "continuation":
            prefix = {0: _lane_text(state, 0)}
        else:
            prefix = {}
        return Splice(strategy, self.stamp, prefix, state)

    def _exhausted(self, run: Run, exc: BaseException, why: str) -> BaseException:
        state = run.state
        delivered = delivered_text(state)
        if state.attempts:
            state.attempts[-1].setdefault("outcome", "failed")
        err = interrupted(
            exc,
            f"stream interrupted and not resumed ({why}): {exc}",
            delivered,
            list(state.attempts),
        )
        err.__cause__ = exc
        return err

    def _failed_request(self, run: Run, exc: BaseException, strategy: str) -> Failure | None:
        """A follow-up request failed before streaming; decide whether to go on."""
        if strategy == "prefill" and isinstance(
            exc, (openai.BadRequestError, openai.UnprocessableEntityError)
        ):
            _no_prefill.add(self.endpoint)  # the endpoint cannot prefill: fall back
            return Failure("transport", message="prefill rejected")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = _retry_after(exc)
            f = Failure("in_band_error", status=status, message=str(exc), retry_after=retry_after)
            return f if _resume.retryable(f) else None
        return describe(exc, False)

    # -- doing ------------------------------------------------------------------------------

    def recover_sync(self, run: Run, exc: BaseException) -> Any:
        failure = describe(exc, run.stalled)
        run.stalled = False
        if failure is None:
            return None
        last = exc
        while True:
            plan = self._next(run, failure, last)
            if plan is None:
                return self._give_up(run, last, failure)
            close_quietly(run.stream)  # only now: a stream we do not resume is read on to its end
            strategy, wait, kwargs = plan
            time.sleep(wait)
            try:
                stream = _retrying_sync(self.create, self.args, kwargs)
            except Exception as err:
                f = self._failed_request(run, err, strategy)
                if f is None:
                    raise self._exhausted(run, err, "the resume request failed") from err
                failure, last = f, err
                continue
            run.attempt_started()
            return SyncSource(stream, self._splice(run, strategy))

    async def recover_async(self, run: Run, exc: BaseException) -> Any:
        failure = describe(exc, run.stalled)
        run.stalled = False
        if failure is None:
            return None
        last = exc
        while True:
            plan = self._next(run, failure, last)
            if plan is None:
                return self._give_up(run, last, failure)
            await aclose_quietly(run.stream)
            strategy, wait, kwargs = plan
            await asyncio.sleep(wait)
            try:
                stream = await _retrying_async(self.create, self.args, kwargs)
            except Exception as err:
                f = self._failed_request(run, err, strategy)
                if f is None:
                    raise self._exhausted(run, err, "the resume request failed") from err
                failure, last = f, err
                continue
            run.attempt_started()
            return AsyncSource(stream, self._splice(run, strategy))

    def _give_up(self, run: Run, exc: BaseException, failure: Failure) -> None:
        """Not resumable: the original error surfaces, unless we changed what it means."""
        if failure.cause in ("diverged", "incomplete") or run.state.retries:
            # The caller never saw these failures' own exceptions; explain them.
            raise self._exhausted(run, exc, f"cannot resume after {failure.cause}")
        return None


def _retrying_sync(create: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    # One quick retry of the follow-up request itself on a connection error before any
    # response (the SDK's own max_retries covers status codes); the shared Budget governs the rest.
    for attempt in tenacity.Retrying(
        stop=tenacity.stop_after_attempt(2),
        wait=tenacity.wait_random(0.01, 0.05),
        retry=tenacity.retry_if_exception_type(openai.APIConnectionError),
        reraise=True,
    ):
        with attempt:
            return create(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


async def _retrying_async(create: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    async for attempt in tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(2),
        wait=tenacity.wait_random(0.01, 0.05),
        retry=tenacity.retry_if_exception_type(openai.APIConnectionError),
        reraise=True,
    ):
        with attempt:
            return await create(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


def _lane_text(state: StreamState, key: int) -> str:
    state.settle(keep_latest=False)
    lane = state.lanes.get(key)
    return lane.captured.getvalue() if lane is not None and lane.captured is not None else ""


def _retry_after(exc: openai.APIStatusError) -> float | None:
    try:
        value = exc.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _prefill_style(client: Any, configured: str | None) -> str | None:
    """How this endpoint continues a partial assistant message, if it can."""
    if configured is not None:
        return configured
    try:
        host = urlsplit(str(client.base_url)).hostname or ""
    except Exception:
        host = ""
    if any(host == h or host.endswith("." + h) for h in _PREFIX_HOSTS):
        return "prefix"
    return None
