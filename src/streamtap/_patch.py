"""instrument / uninstrument: patch the SDK's classes once, decide per client.

The SDK's `Completions.create` (and its async twin) is wrapped once, at class level, the first
time anything is instrumented. Each call then looks up its client in a registry (one weak dict
lookup) to find that client's options, or the process-wide options of `instrument()` without a
client. Patching the class rather than the instance is what makes `with_raw_response`,
`with_streaming_response`, the `.stream()` helper, the module-level `openai.chat.completions`
and clients derived with `with_options()` / `copy()` all covered with no extra work.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import openai
import wrapt

from . import _log, _options
from ._errors import internal_error
from ._openai import endpoint_key, record_completion, request_fields, response_meta
from ._options import Resolved
from ._proxy import AsyncStreamProxy, ResponseProxy, Run, StreamProxy
from ._recover import Resumer, forget_endpoints
from ._state import StreamState

_clock = time.perf_counter

_lock = threading.RLock()
_clients: weakref.WeakKeyDictionary[Any, Resolved] = weakref.WeakKeyDictionary()
_global: Resolved | None = None
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, original) to restore
# Endpoints that answered 400 to `stream_options`: never send it to them again.
_no_stream_options: set[str] = set()


def _client_classes() -> tuple[type, ...]:
    return (openai.OpenAI, openai.AsyncOpenAI)


def _lookup(client: Any) -> Resolved | None:
    if _clients:
        try:
            found = _clients.get(client)
        except TypeError:  # an unhashable client subclass
            found = None
        if found is not None:
            return found
    return _global


def instrument(client: Any = None, **options: Any) -> Any:
    """Instrument one client, or every client in the process when called without one.

    Returns the client (or None). Calling it again for an instrumented client is a no-op.
    Options are validated here, so bad configuration fails now and not at request time.
    """
    global _global
    if client is not None and not isinstance(client, _client_classes()):
        raise TypeError(
            "streamtap.instrument() expects an openai.OpenAI, openai.AsyncOpenAI, "
            f"openai.AzureOpenAI or openai.AsyncAzureOpenAI client, got {type(client).__name__}"
        )
    resolved = Resolved(_options.make_options(None, **options))
    resolved.preload()
    with _lock:
        _patch_sdk()
        if client is None:
            if _global is None:
                _global = resolved
        elif client not in _clients:
            _clients[client] = resolved
            _forget_bound_wrappers(client)
    return client


def _forget_bound_wrappers(client: Any) -> None:
    """Drop `with_raw_response` / `with_streaming_response` the SDK cached before we patched.

    They hold the `create` method as it was when first accessed, so ones made before
    `instrument()` would bypass it; the SDK remakes them on next access.
    """
    try:
        resource = client.chat.completions
        for name in ("with_raw_response", "with_streaming_response"):
            resource.__dict__.pop(name, None)
    except Exception as exc:
        internal_error("refreshing cached SDK wrappers", exc)


def uninstrument(client: Any = None) -> None:
    """Undo `instrument(client)`; without a client, undo everything and unpatch the SDK."""
    global _global
    with _lock:
        if client is not None:
            _clients.pop(client, None)
            return
        _clients.clear()
        _global = None
        _no_stream_options.clear()
        forget_endpoints()
        for cls, name, original in reversed(_patched):
            setattr(cls, name, original)
        _patched.clear()


def is_instrumented(client: Any) -> bool:
    return _lookup(client) is not None


def _wrap(cls: type, name: str, wrapper: Any) -> None:
    original = cls.__dict__.get(name)
    if original is None:
        return
    _patched.append((cls, name, original))
    setattr(cls, name, wrapt.FunctionWrapper(original, wrapper))


def _patch_sdk() -> None:
    if _patched:
        return
    from openai.resources.chat.completions import AsyncCompletions, Completions

    _wrap(Completions, "create", _sync_create)
    _wrap(AsyncCompletions, "create", _async_create)
    for cls in _client_subclasses():
        for name in ("copy", "with_options"):
            _wrap(cls, name, _copy)


def _client_subclasses() -> list[type]:
    out: list[type] = []
    todo: list[type] = list(_client_classes())
    while todo:
        cls = todo.pop()
        if cls not in out:
            out.append(cls)
            todo.extend(cls.__subclasses__())
    return out


def _copy(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    new = wrapped(*args, **kwargs)
    try:
        resolved = _clients.get(instance)
        if resolved is not None and new is not instance:
            _clients[new] = resolved
    except Exception as exc:
        internal_error("registering a copied client", exc)
    return new


# -- one request ------------------------------------------------------------------------------


class _Call:
    """What `create` decided for one request, before it is sent."""

    __slots__ = ("client", "hide_usage", "injected", "kwargs", "resolved", "state", "stream")

    def __init__(self, instance: Any, resolved: Resolved, kwargs: dict[str, Any]) -> None:
        client = instance._client
        self.client = client
        self.resolved = resolved = _options.effective(resolved)
        self.stream = stream = kwargs.get("stream") is True
        o = resolved.options
        self.injected = False
        self.hide_usage = False
        if stream and o.include_usage and endpoint_key(client) not in _no_stream_options:
            so = kwargs.get("stream_options")
            if not isinstance(so, dict):
                kwargs = {**kwargs, "stream_options": {"include_usage": True}}
                self.injected = self.hide_usage = True
            elif "include_usage" not in so:
                kwargs = {**kwargs, "stream_options": {**so, "include_usage": True}}
                self.injected = self.hide_usage = True
        self.kwargs = kwargs
        self.state = StreamState(
            resolved,
            request_fields(client, kwargs, stream),
            _clock(),
            kwargs.get("messages"),
        )
        self.state.request["streamtap.started_at"] = time.time()

    def without_stream_options(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        del kwargs["stream_options"]
        self.hide_usage = False
        return kwargs

    def rejected_stream_options(self, exc: BaseException) -> bool:
        return self.injected and isinstance(
            exc, (openai.BadRequestError, openai.UnprocessableEntityError)
        )

    def remember_no_stream_options(self) -> None:
        _no_stream_options.add(endpoint_key(self.client))

    def fail(self, exc: BaseException) -> None:
        state = self.state
        outcome = "cancelled" if isinstance(exc, (KeyboardInterrupt, _cancelled())) else "error"
        if state.finish(outcome, "exception" if outcome == "error" else "cancelled", _clock(), exc):
            response = getattr(exc, "response", None)
            response_meta(state, response)
            _log.emit(state)

    def resumer(self, create: Any, args: Any) -> Resumer | None:
        o = self.resolved.options
        if not o.retry or o.resume_strategy == "off":
            return None
        return Resumer(self, create, args)

    def adopt(self, result: Any, create: Any, args: Any) -> Any:
        """Wrap what the SDK returned so the caller gets an instrumented equivalent."""
        if isinstance(result, openai.Stream):
            run = Run(self.state, result, self.hide_usage, self.resumer(create, args))
            return StreamProxy(result, run)
        if isinstance(result, openai.AsyncStream):
            run = Run(self.state, result, self.hide_usage, self.resumer(create, args))
            return AsyncStreamProxy(result, run)
        if _is_raw_response(result):
            response_meta(self.state, getattr(result, "http_response", None))
            return ResponseProxy(
                result, lambda parsed: self.adopt(parsed, create, args), self.state
            )
        # A plain (non-streamed) completion: log it with its latency and usage.
        state = self.state
        try:
            record_completion(state, result)
            state.timing.chunk(_clock())
        except Exception as exc:
            internal_error("recording a completion", exc)
        if state.finish("ok", "response", _clock()):
            _log.emit(state)
        return result


def _cancelled() -> type[BaseException]:
    import asyncio

    return asyncio.CancelledError


def _is_raw_response(result: Any) -> bool:
    from openai._legacy_response import LegacyAPIResponse
    from openai._response import APIResponse, AsyncAPIResponse

    return isinstance(result, (LegacyAPIResponse, APIResponse, AsyncAPIResponse))


def _prepare(instance: Any, args: Any, kwargs: Any) -> _Call | None:
    try:
        resolved = _lookup(instance._client)
        if resolved is None:
            return None
        return _Call(instance, resolved, kwargs)
    except Exception as exc:
        internal_error("preparing a request", exc)
        return None


def _sync_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _prepare(instance, args, kwargs)
    if call is None:
        return wrapped(*args, **kwargs)
    try:
        try:
            result = wrapped(*args, **call.kwargs)
        except Exception as exc:
            if not call.rejected_stream_options(exc):
                raise
            result = wrapped(*args, **call.without_stream_options())
            call.remember_no_stream_options()
    except BaseException as exc:
        call.fail(exc)
        raise
    return _adopt(call, result, wrapped, args)


def _async_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _prepare(instance, args, kwargs)
    if call is None:
        return wrapped(*args, **kwargs)
    return _acreate(call, wrapped, args)


async def _acreate(call: _Call, wrapped: Any, args: Any) -> Any:
    try:
        try:
            result = await wrapped(*args, **call.kwargs)
        except Exception as exc:
            if not call.rejected_stream_options(exc):
                raise
            result = await wrapped(*args, **call.without_stream_options())
            call.remember_no_stream_options()
    except BaseException as exc:
        call.fail(exc)
        raise
    return _adopt(call, result, wrapped, args)


def _adopt(call: _Call, result: Any, create: Any, args: Any) -> Any:
    try:
        return call.adopt(result, create, args)
    except Exception as exc:
        internal_error("wrapping the SDK's result", exc)
        return result
