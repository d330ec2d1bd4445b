"""The exception a caller gets when a broken stream could not be resumed.

It must be caught by the handlers the caller already has. So the class raised is made, once per
original exception type, as a subclass of three things: `StreamInterrupted` (to catch it by
name), the matching openai exception (`APIConnectionError` for a broken or stalled connection,
`APIError` for an error event inside the stream), and the original exception's own type (so
`except httpx.RemoteProtocolError` still works on openai 1.x/2.x, where the SDK leaks it).
"""

from __future__ import annotations

import threading
from typing import Any

import openai


class StreamInterrupted(Exception):
    """A stream broke and streamtap's resume budget is spent (or resuming was not possible).

    Attributes: `delivered` (text the caller received, per choice for n > 1), `attempts` (the
    attempt history, as in the summary event), `original` (the last underlying exception).

    The instance raised is of a subclass that is also the matching openai exception and the
    original exception's type; it is named `StreamInterrupted` in module `streamtap` as well,
    so a traceback reads `streamtap.StreamInterrupted: <why>`.
    """

    delivered: str | dict[str, str]
    attempts: list[dict[str, Any]]
    original: BaseException | None

    def __reduce__(self) -> Any:
        bases = type(self).__bases__
        if bases[:1] != (StreamInterrupted,):
            return super().__reduce__()
        # The concrete class is made at run time: pickle it as the recipe that makes it again.
        delivered = getattr(self, "delivered", "")
        return (_rebuild, (bases, str(self), delivered, getattr(self, "attempts", [])))


def _rebuild(
    bases: tuple[type, ...], message: str, delivered: Any, attempts: Any
) -> StreamInterrupted:
    cls = _class_for(bases)
    exc: StreamInterrupted = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(
        message=message,
        request=None,
        _request=None,
        body=None,
        code=None,
        param=None,
        type=None,
        delivered=delivered,
        attempts=attempts,
        original=None,
    )
    return exc


class Diverged(Exception):
    """A replayed answer does not start with what the caller already has."""


class IncompleteStream(Exception):
    """The server ended the body cleanly but without a finish_reason (and without `[DONE]`).

    Raised by the resume logic too, to mean "end the stream here, as the raw SDK would".
    """

    def __init__(self, message: str = "the server ended the stream without a finish_reason"):
        super().__init__(message)


class Stalled(Exception):
    """The watchdog shut the socket of a body that ends when the connection closes.

    The SDK sees such a body end cleanly; streamtap closed it itself, so it is a stall.
    """

    def __init__(self) -> None:
        super().__init__("no data from the server for longer than the stall timeout")


class ErrorObject(Exception):
    """An `{"object": "error"}` chunk (vLLM style), which the SDK yields as if it were a chunk."""

    def __init__(self, chunk: object, body: dict[str, object]) -> None:
        super().__init__(str(body.get("message") or "error event in the stream"))
        self.chunk = chunk
        self.body = body


# Signals of streamtap's own: never the base of what a caller gets.
_INTERNAL = (Diverged, IncompleteStream, Stalled, ErrorObject)

_classes: dict[tuple[type, ...], type[StreamInterrupted]] = {}
_lock = threading.Lock()


def _class_for(bases: tuple[type, ...]) -> type[StreamInterrupted]:
    """The StreamInterrupted subclass with these bases, made once."""
    cls = _classes.get(bases)
    if cls is None:
        with _lock:
            cls = _classes.get(bases)
            if cls is None:
                cls = _make_class(bases)
                _classes[bases] = cls
    return cls


def _make_class(bases: tuple[type, ...]) -> type[StreamInterrupted]:
    try:
        cls: type[StreamInterrupted] = type("StreamInterrupted", bases, {})
    except TypeError:  # incompatible layouts: the openai family still catches it
        cls = type("StreamInterrupted", bases[:1] + bases[-1:], {})
    # What a traceback, repr() and the summary's error.type show: the public name.
    cls.__module__ = "streamtap"
    cls.__qualname__ = "StreamInterrupted"
    return cls


def _bases(original: BaseException) -> tuple[type, ...]:
    """StreamInterrupted, the original exception's type, and the matching openai family."""
    family: type = openai.APIConnectionError
    if isinstance(original, ErrorObject) or (
        isinstance(original, openai.APIError)
        and not isinstance(original, openai.APIConnectionError)
    ):
        family = openai.APIError  # an error event in the stream
    orig_type = type(original)
    if issubclass(family, orig_type) or issubclass(orig_type, _INTERNAL):
        return (StreamInterrupted, family)
    if issubclass(orig_type, family):
        return (StreamInterrupted, orig_type)
    return (StreamInterrupted, orig_type, family)


def interrupted(
    original: BaseException,
    message: str,
    delivered: str | dict[str, str],
    attempts: list[dict[str, Any]],
) -> StreamInterrupted:
    """Build the exception to raise for `original`, catchable as all of its ancestors."""
    cls = _class_for(_bases(original))
    exc: StreamInterrupted = cls.__new__(cls)
    Exception.__init__(exc, message)
    # Attributes the openai and httpx exception types promise to their handlers.
    request = getattr(original, "request", None) if _has_request(original) else None
    exc.__dict__.update(
        message=message,
        request=request,
        _request=request,
        body=getattr(original, "body", None),
        code=getattr(original, "code", None),
        param=getattr(original, "param", None),
        type=getattr(original, "type", None),
        delivered=delivered,
        attempts=attempts,
        original=original,
    )
    return exc


def _has_request(exc: BaseException) -> bool:
    try:
        return getattr(exc, "request", None) is not None
    except RuntimeError:  # httpx raises when an error has no request attached
        return False
