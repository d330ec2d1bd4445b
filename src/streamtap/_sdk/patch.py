"""instrument / uninstrument: patch the SDK's classes once, decide per client.

The SDK's `Completions.create` (and its async twin) is wrapped once, at class level, the first
time anything is instrumented. Each call then looks up its client in a registry (one weak dict
lookup) to find that client's options, or the process-wide options of `instrument()` without a
client. Patching the class rather than the instance is what makes `with_raw_response`,
`with_streaming_response`, the `.stream()` helper, the module-level `openai.chat.completions`
and clients derived with `with_options()` / `copy()` all covered with no extra work.

Libraries that skip `create` and call the client's low-level `post("/chat/completions",
stream=True, stream_cls=...)` themselves (litellm's OpenAI provider) are covered by a second
wrapper, on the clients' `post`: it instruments a streamed chat completion request that did not
come through `create` (a context variable marks the ones that did, so nothing is instrumented
twice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import openai
import wrapt

from .. import _options
from .._errors import internal_error
from .._options import Resolved
from .._runtime import runtime
from . import fast_decode
from .call import Call, in_create, marked_async, marked_sync
from .endpoint import CHAT_COMPLETIONS, RESPONSES

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .._types import InstrumentOptions


# The registry, the patches and per-endpoint memory live on `runtime` (one reset).
_rt = runtime


def _client_classes() -> tuple[type, ...]:
    return (openai.OpenAI, openai.AsyncOpenAI)


def _lookup(client: Any) -> Resolved | None:
    if _rt.clients:
        try:
            found = _rt.clients.get(client)
        except TypeError:  # an unhashable client subclass
            found = None
        if found is not None:
            return found
    return _rt.global_options


# The client types `instrument()` takes (AzureOpenAI and AsyncAzureOpenAI are subclasses).
_Client = TypeVar("_Client", bound="openai.OpenAI | openai.AsyncOpenAI")


@overload
def instrument(client: _Client, **options: Unpack[InstrumentOptions]) -> _Client: ...
@overload
def instrument(client: None = None, **options: Unpack[InstrumentOptions]) -> None: ...
def instrument(client: Any = None, **options: Any) -> Any:
    """Instrument one client, or every client in the process when called without one.

    Returns the client itself (typed as the client's own class), or None. Calling it again for
    an instrumented client is a no-op. Options (`InstrumentOptions`, README "Options") are
    validated here: an unknown name raises TypeError, a bad value ValueError or TypeError, each
    naming the option, so bad configuration fails now and not at request time.
    """
    if client is not None and not isinstance(client, _client_classes()):
        raise TypeError(
            "streamtap.instrument() expects an openai.OpenAI, openai.AsyncOpenAI, "
            f"openai.AzureOpenAI or openai.AsyncAzureOpenAI client, got {type(client).__name__}"
        )
    resolved = Resolved(_options.make_options(None, **options))
    resolved.preload()
    if resolved.options.fast_decode:
        _prepare_fast_decode()
    with _rt.lock:
        _patch_sdk()
        if client is None:
            if _rt.global_options is None:
                _rt.global_options = resolved
        elif client not in _rt.clients:
            _rt.clients[client] = resolved
            _forget_bound_wrappers(client)
    return client


def _prepare_fast_decode() -> None:
    try:
        fast_decode.prepare()
    except Exception as exc:
        internal_error("preparing fast decoding", exc)


def _forget_bound_wrappers(client: Any) -> None:
    """Drop `with_raw_response` / `with_streaming_response` the SDK cached before we patched.

    They hold the `create` method as it was when first accessed, so ones made before
    `instrument()` would bypass it; the SDK remakes them on next access.
    """
    try:
        resources = [client.chat.completions]
        if _has_responses():
            resources.append(client.responses)
        for resource in resources:
            for name in ("with_raw_response", "with_streaming_response"):
                resource.__dict__.pop(name, None)
    except Exception as exc:
        internal_error("refreshing cached SDK wrappers", exc)


def _has_responses() -> bool:
    """The SDK has the Responses API (openai 1.66 and later)."""
    try:
        import openai.resources.responses  # noqa: F401
    except ImportError:
        return False
    return True


def uninstrument(client: openai.OpenAI | openai.AsyncOpenAI | None = None) -> None:
    """Undo `instrument(client)`; without a client, undo everything and unpatch the SDK.

    Without a client this is `Runtime.reset()`: every client, option and per-endpoint memory is
    forgotten (loaded tokenizers are kept; see `streamtap._runtime`).
    """
    if client is not None:
        with _rt.lock:
            _rt.clients.pop(client, None)
        return
    _rt.reset()


def is_instrumented(client: object) -> bool:
    """Whether requests made with this client are instrumented (by its own `instrument()`
    call, one on the client it was derived from, or `instrument()` without a client)."""
    return _lookup(client) is not None


def _wrap(cls: type, name: str, wrapper: Any) -> None:
    original = cls.__dict__.get(name)
    if original is None:
        return
    _rt.patched.append((cls, name, original))
    setattr(cls, name, wrapt.FunctionWrapper(original, wrapper))


def _patch_sdk() -> None:
    if _rt.patched:
        return
    from openai.resources.chat.completions import AsyncCompletions, Completions

    _wrap(Completions, "create", _sync_create)
    _wrap(AsyncCompletions, "create", _async_create)
    _wrap_parse(Completions, AsyncCompletions, CHAT_COMPLETIONS)
    if _has_responses():
        from openai.resources.responses import AsyncResponses, Responses

        # (`responses.stream(...)` calls `create` / `retrieve`: the helper is covered too.)
        _wrap(Responses, "create", _sync_responses_create)
        _wrap(AsyncResponses, "create", _async_responses_create)
        _wrap(Responses, "retrieve", _sync_responses_retrieve)
        _wrap(AsyncResponses, "retrieve", _async_responses_retrieve)
        _wrap_parse(Responses, AsyncResponses, RESPONSES)
    from openai._base_client import AsyncAPIClient, SyncAPIClient

    _wrap(SyncAPIClient, "post", _sync_post)
    _wrap(AsyncAPIClient, "post", _async_post)
    for cls in _client_subclasses():
        for name in ("copy", "with_options"):
            _wrap(cls, name, _copy)


def _wrap_parse(sync_cls: type, async_cls: type, api: str) -> None:
    """`parse(...)` (structured outputs, not streamed) posts by itself, not through `create`:
    one event per call too, with its latency and usage (where this SDK has it)."""

    def sync_parse(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if kwargs.get("stream") is True:  # (not a stream the SDK can parse: left alone)
            return wrapped(*args, **kwargs)
        return _sync_create(wrapped, instance, args, kwargs, api)

    def async_parse(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if kwargs.get("stream") is True:
            return wrapped(*args, **kwargs)
        return _async_create(wrapped, instance, args, kwargs, api)

    _wrap(sync_cls, "parse", sync_parse)  # (`_wrap` skips a class without one)
    _wrap(async_cls, "parse", async_parse)


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
        resolved = _rt.clients.get(instance)
        if resolved is not None and new is not instance:
            _rt.clients[new] = resolved
    except Exception as exc:
        internal_error("registering a copied client", exc)
    return new


def _prepare(
    instance: Any, args: Any, kwargs: Any, api: str = CHAT_COMPLETIONS, wrapped: Any = None
) -> Call | None:
    try:
        resolved = _lookup(instance._client)
        if resolved is None:
            return None
        call = Call(instance._client, resolved, kwargs, api)
        if api == RESPONSES:
            call.resource = instance
            call.retrieving = getattr(wrapped, "__name__", "") == "retrieve"
        return call
    except Exception as exc:
        internal_error("preparing a request", exc)
        return None


def _sync_create(
    wrapped: Any, instance: Any, args: Any, kwargs: Any, api: str = CHAT_COMPLETIONS
) -> Any:
    token = in_create.set(True)
    try:
        call = _prepare(instance, args, kwargs, api, wrapped)
        if call is None:
            return wrapped(*args, **kwargs)
        return _send_sync(call, marked_sync(wrapped), args)
    finally:
        in_create.reset(token)


def _send_sync(call: Call, send: Any, args: Any, resend: Any = None) -> Any:
    """Send the request (again without `stream_options` if they were refused), adopt the result.

    `resend` sends a resume's follow-up requests (default: `send`)."""
    try:
        try:
            result = send(*args, **call.kwargs)
        except Exception as exc:
            if not call.rejected_stream_options(exc):
                raise
            result = send(*args, **call.without_stream_options())
            call.remember_no_stream_options()
    except BaseException as exc:
        call.fail(exc)
        raise
    return _adopt(call, result, resend or send, args)


def _async_create(
    wrapped: Any, instance: Any, args: Any, kwargs: Any, api: str = CHAT_COMPLETIONS
) -> Any:
    call = _prepare(instance, args, kwargs, api, wrapped)
    send = marked_async(wrapped)
    if call is None:
        return send(*args, **kwargs)
    return _send_async(call, send, args)


# -- the Responses API -------------------------------------------------------------------------


def _sync_responses_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _sync_create(wrapped, instance, args, kwargs, RESPONSES)


def _async_responses_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _async_create(wrapped, instance, args, kwargs, RESPONSES)


def _sync_responses_retrieve(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """`retrieve(id, stream=True, starting_after=N)` streams a (background) response's events
    again: instrumented like `create`. A plain `retrieve` is not a generation: untouched."""
    if kwargs.get("stream") is not True:
        return wrapped(*args, **kwargs)
    return _sync_create(wrapped, instance, args, kwargs, RESPONSES)


def _async_responses_retrieve(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if kwargs.get("stream") is not True:
        return wrapped(*args, **kwargs)
    return _async_create(wrapped, instance, args, kwargs, RESPONSES)


async def _send_async(call: Call, send: Any, args: Any, resend: Any = None) -> Any:
    try:
        try:
            result = await send(*args, **call.kwargs)
        except Exception as exc:
            if not call.rejected_stream_options(exc):
                raise
            result = await send(*args, **call.without_stream_options())
            call.remember_no_stream_options()
    except BaseException as exc:
        call.fail(exc)
        raise
    return _adopt(call, result, resend or send, args)


# -- the low-level `post` (litellm and other libraries that bypass `create`) -------------------


def _chat_stream_post(instance: Any, args: Any, kwargs: Any) -> Call | None:
    """A `Call` for a streamed chat completion `post` that did not come through `create`."""
    if in_create.get() or kwargs.get("stream") is not True:
        return None
    path = args[0] if args else kwargs.get("path")
    body = kwargs.get("body")
    if not (isinstance(path, str) and path.rstrip("/").endswith("/chat/completions")):
        return None
    if not isinstance(body, dict):
        return None
    try:
        resolved = _lookup(instance)
        if resolved is None:
            return None
        return Call(instance, resolved, {**body, "stream": True})
    except Exception as exc:
        internal_error("preparing a request", exc)
        return None


def _post_as_create(post: Any, args: Any, kwargs: dict[str, Any], options: Any) -> Any:
    """A `create`-like callable that sends a request body through `post` as the caller did.

    It takes the body's fields as keyword arguments (what `Call` and the resumer work with);
    an `extra_body` a resume adds is merged into the body.
    """

    def send(*_: Any, **body: Any) -> Any:
        extra = body.pop("extra_body", None)
        if isinstance(extra, dict):
            body.update(extra)
        sent = {**kwargs, "body": body}
        if options is not None:
            sent["options"] = options
        return post(*args, **sent)

    return send


def _without_raw_marker(options: Any) -> Any:
    """The caller's request options, minus "return the raw response": a resume's follow-up
    request must give a stream (the caller's loop already holds the parsed one)."""
    if not isinstance(options, dict):
        return options
    from openai._constants import RAW_RESPONSE_HEADER

    headers = options.get("headers")
    if not headers or RAW_RESPONSE_HEADER not in headers:
        return options
    kept = {k: v for k, v in headers.items() if k != RAW_RESPONSE_HEADER}
    return {**options, "headers": kept}


def _senders(wrapped: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    options = kwargs.get("options")
    first = _post_as_create(wrapped, args, kwargs, options)
    return first, _post_as_create(wrapped, args, kwargs, _without_raw_marker(options))


def _post_wrapper(send: Callable[..., Any]) -> Callable[[Any, Any, Any, Any], Any]:
    """The wrapper of a client's low-level `post`: streamed chat completions that did not come
    through `create` (litellm) are sent by `send` (`_send_sync` or `_send_async`)."""

    def post(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _chat_stream_post(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        first, follow = _senders(wrapped, args, kwargs)
        return send(call, first, (), follow)

    return post


_sync_post = _post_wrapper(_send_sync)
_async_post = _post_wrapper(_send_async)


def _adopt(call: Call, result: Any, create: Any, args: Any) -> Any:
    try:
        return call.adopt(result, create, args)
    except Exception as exc:
        internal_error("wrapping the SDK's result", exc)
        return result
