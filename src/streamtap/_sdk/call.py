"""One request: what `create` decided before sending it, and what the caller gets back.

`Call` holds a request's options, whether streamtap asks for usage (and hides the chunk that
brings it), the stream's state, and turns what the SDK returned into what the caller gets: a
proxy around a stream (with its protocol's adapter and resume), a proxy around a raw response,
or a logged plain response. It also remembers, per endpoint, servers that refuse
`stream_options` or send usage unasked.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

import openai

from .. import _options
from .._core.state import StreamState
from .._errors import internal_error
from .._options import Resolved
from .._runtime import runtime
from . import fast_decode
from . import log as _log
from .adapter import ResumeAdapter
from .chat import record_completion
from .endpoint import CHAT_COMPLETIONS, RESPONSES, endpoint_key, request_fields, response_meta
from .proxy import AsyncStreamProxy, ResponseProxy, StreamProxy
from .recover import Resumer
from .responses import ResponsesAdapter, record_response
from .responses_resume import ResponsesResume
from .run import Run

_rt = runtime
# The header the SDK's `.stream()` helper sends: its requests go as the caller wrote them (see
# docs/events.md, "Usage"), so the helper's final completion has usage exactly when raw's has.
_HELPER_HEADER = "X-Stainless-Helper-Method"
# Set while the SDK's own `create` (instrumented or not) runs: its `post` is not a second request.
in_create: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "streamtap_in_create", default=False
)


class Call:
    """What `create` decided for one request, before it is sent."""

    __slots__ = (
        "api",
        "client",
        "hide_usage",
        "injected",
        "kwargs",
        "resolved",
        "resource",
        "retrieving",
        "state",
        "stream",
    )

    def __init__(
        self, client: Any, resolved: Resolved, kwargs: dict[str, Any], api: str = CHAT_COMPLETIONS
    ) -> None:
        self.client = client
        self.api = api
        self.resource: Any = None  # the SDK resource the call was made on (`client.responses`)
        self.retrieving = False  # a `responses.retrieve(id, stream=True)`: a re-attach itself
        self.resolved = resolved = _options.effective(resolved)
        self.stream = stream = kwargs.get("stream") is True
        self.injected = False
        self.hide_usage = False
        so = kwargs.get("stream_options")
        # (A Responses stream always ends with its usage: nothing to ask for.)
        undecided = (
            stream
            and api == CHAT_COMPLETIONS
            and not (isinstance(so, dict) and "include_usage" in so)
        )
        endpoint = endpoint_key(client) if undecided else ""
        if undecided and self._may_inject(resolved.options.include_usage, endpoint, kwargs):
            # The caller did not decide: ask for usage, and hide the chunk that brings it.
            extra = so if isinstance(so, dict) else {}
            kwargs = {**kwargs, "stream_options": {**extra, "include_usage": True}}
            self.injected = self.hide_usage = True
        self.kwargs = kwargs
        clock = _rt.clock
        self.state = StreamState(
            resolved,
            request_fields(client, kwargs, stream, api),
            clock(),
            kwargs.get("messages" if api == CHAT_COMPLETIONS else "input"),
            clock,
        )
        self.state.request["streamtap.started_at"] = time.time()
        if undecided and not self.injected:
            _watch_usage(endpoint, self.state)

    @staticmethod
    def _may_inject(include_usage: bool, endpoint: str, kwargs: dict[str, Any]) -> bool:
        headers = kwargs.get("extra_headers")
        return (
            include_usage
            and not (isinstance(headers, dict) and _HELPER_HEADER in headers)
            and endpoint not in _rt.no_stream_options
            and not _sends_usage_unasked(endpoint)
        )

    def without_stream_options(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        del kwargs["stream_options"]
        self.hide_usage = False
        return kwargs

    def rejected_stream_options(self, exc: BaseException) -> bool:
        """The server refused the `stream_options` streamtap added (and nothing else)."""
        return (
            self.injected
            and isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError))
            and _about_stream_options(exc)
        )

    def remember_no_stream_options(self) -> None:
        _rt.no_stream_options.add(endpoint_key(self.client))

    def fail(self, exc: BaseException) -> None:
        state = self.state
        outcome = "cancelled" if isinstance(exc, (KeyboardInterrupt, cancelled())) else "error"
        end = "exception" if outcome == "error" else "cancelled"
        if state.finish(outcome, end, state.clock(), exc):
            response = getattr(exc, "response", None)
            response_meta(state, response)
            _log.emit(state)

    def resumer(
        self, create: Any, args: Any, protocol: ResumeAdapter | None = None
    ) -> Resumer | None:
        o = self.resolved.options
        if not o.retry or o.resume_strategy == "off":
            return None
        return Resumer(self, create, args, protocol)

    def run(self, result: Any, create: Any, args: Any) -> Run:
        if self.api != RESPONSES:
            return Run(self.state, result, self.hide_usage, self.resumer(create, args))
        adapter = ResponsesAdapter()
        mark = marked_async if isinstance(result, openai.AsyncStream) else marked_sync
        protocol = ResponsesResume.of(adapter, self, create, args, mark)
        resumer = self.resumer(create, args, protocol)
        return Run(self.state, result, self.hide_usage, resumer, adapter)

    def adopt(self, result: Any, create: Any, args: Any) -> Any:
        """Wrap what the SDK returned so the caller gets an instrumented equivalent."""
        if self.resolved.options.fast_decode and isinstance(
            result, (openai.Stream, openai.AsyncStream)
        ):
            fast_decode.install_quietly(result, self.state)
        if isinstance(result, openai.Stream):
            return StreamProxy(result, self.run(result, create, args))
        if isinstance(result, openai.AsyncStream):
            return AsyncStreamProxy(result, self.run(result, create, args))
        if is_raw_response(result):
            response_meta(self.state, getattr(result, "http_response", None))
            return ResponseProxy(
                result, lambda parsed: self.adopt(parsed, create, args), self.state
            )
        # A plain (non-streamed) completion: log it with its latency and usage.
        state = self.state
        try:
            if self.api == RESPONSES:
                record_response(state, result)
            else:
                record_completion(state, result)
            state.timing.chunk(state.clock())
        except Exception as exc:
            internal_error("recording a completion", exc)
        if state.finish("ok", "response", state.clock()):
            _log.emit(state)
        return result


def _about_stream_options(exc: BaseException) -> bool:
    """Whether a 400/422 names `stream_options` / `include_usage` (message, param, code or body:
    OpenAI-style errors, vLLM's and FastAPI's validation details alike)."""
    parts = [getattr(exc, name, None) for name in ("message", "param", "code", "body")]
    text = " ".join(str(p) for p in parts if p is not None).lower()
    return "stream_options" in text or "include_usage" in text


# -- usage the server sends unasked ----------------------------------------------------------

_WATCH_PER_ENDPOINT = 8
_WATCH_ENDPOINTS = 256


def _watch_usage(endpoint: str, state: StreamState) -> None:
    if _sends_usage_unasked(endpoint):  # (also drops the watched streams that ended)
        return
    with _rt.lock:
        watched = _rt.usage_watch.get(endpoint)
        if watched is None:
            if len(_rt.usage_watch) >= _WATCH_ENDPOINTS:
                _rt.usage_watch.clear()
            watched = _rt.usage_watch[endpoint] = []
        watched.append(state)
        del watched[:-_WATCH_PER_ENDPOINT]


def _sends_usage_unasked(endpoint: str) -> bool:
    """Whether a stream to this endpoint that did not ask for usage got it (learned once)."""
    if endpoint in _rt.usage_unasked:
        return True
    if not _rt.usage_watch:
        return False
    with _rt.lock:
        watched = _rt.usage_watch.get(endpoint)
        if not watched:
            return False
        if any(st.usage is not None or st.usage_prior is not None for st in watched):
            _rt.usage_unasked.add(endpoint)
            del _rt.usage_watch[endpoint]
            return True
        watched[:] = [st for st in watched if not st.finished]  # they ended without usage
        return False


def cancelled() -> type[BaseException]:
    import asyncio

    return asyncio.CancelledError


def is_raw_response(result: Any) -> bool:
    from openai._legacy_response import LegacyAPIResponse
    from openai._response import APIResponse, AsyncAPIResponse

    return isinstance(result, (LegacyAPIResponse, APIResponse, AsyncAPIResponse))


def marked_sync(create: Any) -> Any:
    """`create` with `in_create` set (also for the follow-up requests of a resume)."""

    def marked(*args: Any, **kwargs: Any) -> Any:
        token = in_create.set(True)
        try:
            return create(*args, **kwargs)
        finally:
            in_create.reset(token)

    return marked


def marked_async(create: Any) -> Any:
    async def marked(*args: Any, **kwargs: Any) -> Any:
        token = in_create.set(True)
        try:
            return await create(*args, **kwargs)
        finally:
            in_create.reset(token)

    return marked
