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
    """

    delivered: str | dict[str, str]
    attempts: list[dict[str, Any]]
    original: BaseException


class Diverged(Exception):
    """A replayed answer does not start with what the caller already has."""


class IncompleteStream(Exception):
    """The server ended the stream cleanly but without a finish_reason."""

    def __init__(self) -> None:
        super().__init__("the server ended the stream without a finish_reason")


class ErrorObject(Exception):
    """An `{"object": "error"}` chunk (vLLM style), which the SDK yields as if it were a chunk."""

    def __init__(self, chunk: object, body: dict[str, object]) -> None:
        super().__init__(str(body.get("message") or "error event in the stream"))
        self.chunk = chunk
        self.body = body


_classes: dict[tuple[type, type], type[StreamInterrupted]] = {}
_lock = threading.Lock()


def interrupted(
    original: BaseException,
    message: str,
    delivered: str | dict[str, str],
    attempts: list[dict[str, Any]],
) -> StreamInterrupted:
    """Build the exception to raise for `original`, catchable as all of its ancestors."""
    family: type = openai.APIConnectionError
    if isinstance(original, openai.APIError) and not isinstance(
        original, openai.APIConnectionError
    ):
        family = openai.APIError
    orig_type = type(original)
    key = (family, orig_type)
    cls: type[StreamInterrupted] | None = _classes.get(key)
    if cls is None:
        with _lock:
            bases: tuple[type, ...] = (StreamInterrupted, family)
            if not issubclass(family, orig_type) and orig_type not in (Diverged, IncompleteStream):
                bases = (
                    (StreamInterrupted, orig_type, family)
                    if not issubclass(orig_type, family)
                    else (StreamInterrupted, orig_type)
                )
            try:
                cls = type(f"StreamInterrupted_{orig_type.__name__}", bases, {})
            except TypeError:  # incompatible layouts: the openai family still catches it
                cls = type(
                    f"StreamInterrupted_{orig_type.__name__}", (StreamInterrupted, family), {}
                )
            cls.__module__ = "streamtap"
            _classes[key] = cls
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
