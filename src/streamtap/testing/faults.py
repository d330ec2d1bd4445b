"""Faults: the precise ways a reply can break (cuts, stalls, error events, HTTP errors...)."""

from __future__ import annotations

import http
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .headers import HeaderValue

FaultKind = Literal[
    "cut",
    "stall",
    "error_event",
    "response_failed",
    "no_done",
    "no_finish_reason",
    "http_error",
    "garbage",
    "invalid_json",
    "disconnect",
]


@dataclass(frozen=True)
class Fault:
    """One way to break a response. Build it with the class methods, not directly.

    "Events" are SSE events of the body (each chunk, the usage chunk, ``[DONE]``, error events,
    and for ``raw`` bodies every blank-line-terminated block); ``after_events=k`` acts once the
    first *k* have been written. "Bytes" count the response body only (not status line,
    headers or chunked-encoding framing).
    """

    kind: FaultKind
    at_byte: int | None = None
    after_events: int | None = None
    mode: Literal["close", "rst"] = "close"
    seconds: float = 0.0
    then: Literal["continue", "close"] = "continue"
    error: Mapping[str, Any] | None = None
    status_in_body: int | None = None
    style: Literal["data", "event", "object"] = "data"
    status: int = 200
    body: bytes | None = None
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    content_type: str = "text/html"

    @classmethod
    def cut(
        cls,
        at_byte: int | None = None,
        *,
        after_events: int | None = None,
        mode: Literal["close", "rst"] = "close",
    ) -> Fault:
        """Send exactly the first *at_byte* bytes of the body (or the first *after_events*
        events), then drop the connection: ``mode="close"`` closes it (FIN) without finishing
        the chunked body; ``mode="rst"`` resets it (``SO_LINGER`` 0), in which case the client's
        kernel may discard bytes the client had not read yet, just like a real reset.

        *at_byte* may fall inside a UTF-8 character or a JSON document. If it is at or past
        the end of the body, the whole body is sent but the HTTP message is never finished.
        """
        if (at_byte is None) == (after_events is None):
            raise ValueError("Fault.cut() needs exactly one of at_byte or after_events")
        if (at_byte is not None and at_byte < 0) or (after_events is not None and after_events < 0):
            raise ValueError("Fault.cut() offsets must be >= 0")
        return cls("cut", at_byte=at_byte, after_events=after_events, mode=mode)

    @classmethod
    def stall(
        cls,
        after_events: int = 1,
        seconds: float = 1.0,
        *,
        then: Literal["continue", "close"] = "continue",
        mode: Literal["close", "rst"] = "close",
    ) -> Fault:
        """Send *after_events* events, then nothing for *seconds*; then either carry on
        (``then="continue"``) or drop the connection (``then="close"``, with *mode* as in
        :meth:`cut`). Server shutdown and a client hanging up both end the stall at once.
        """
        if seconds < 0 or after_events < 0:
            raise ValueError("Fault.stall() needs after_events >= 0 and seconds >= 0")
        return cls("stall", after_events=after_events, seconds=seconds, then=then, mode=mode)

    @classmethod
    def error_event(
        cls,
        after_events: int = 1,
        error: Mapping[str, Any] | None = None,
        status_in_body: int | None = None,
        style: Literal["data", "event", "object"] = "data",
    ) -> Fault:
        """After HTTP 200 and *after_events* events, send an in-band error and end the body
        (cleanly, without ``[DONE]``). Styles:

        * ``"data"`` (OpenRouter): ``data: {"error": {...}}``
        * ``"event"`` (Groq): ``event: error`` + ``data: {"error": {...}}``
        * ``"object"`` (vLLM): ``data: {"object": "error", "message": ..., "type": ...,
          "param": null, "code": ...}``

        *error* defaults to a ``server_error``; *status_in_body*, if given, becomes its
        ``code`` (OpenRouter and vLLM put the HTTP-like status there, e.g. ``429`` or ``502``).

        In a Responses API stream the error is the Responses ``error`` event, with the next
        ``sequence_number``: ``"data"`` and ``"event"`` send OpenAI's shape, ``event: error`` +
        ``data: {"type": "error", "code": ..., "message": ..., "param": null, ...}`` (the SDK
        yields a ``ResponseErrorEvent``); ``"object"`` nests it,
        ``{"type": "error", "error": {...}, ...}`` (the SDK raises ``APIError``).
        """
        return cls(
            "error_event",
            after_events=after_events,
            error=dict(error) if error is not None else None,
            status_in_body=status_in_body,
            style=style,
        )

    @classmethod
    def response_failed(
        cls, after_events: int = 1, error: Mapping[str, Any] | None = None
    ) -> Fault:
        """A Responses API stream: after *after_events* events send ``response.failed`` (the
        response with ``status: "failed"`` and *error*, default a ``server_error``) and end the
        body. In a chat-completions stream it is :meth:`error_event` (``"data"`` style).
        """
        return cls(
            "response_failed",
            after_events=after_events,
            error=dict(error) if error is not None else None,
        )

    @classmethod
    def no_done(cls) -> Fault:
        """End the body cleanly but without ``data: [DONE]`` (a Responses API stream: without
        its terminal ``response.completed`` / ``response.incomplete`` event)."""
        return cls("no_done")

    @classmethod
    def no_finish_reason(cls) -> Fault:
        """Send ``finish_reason: null`` everywhere (the stream still ends normally)."""
        return cls("no_finish_reason")

    @classmethod
    def http_error(
        cls,
        status: int,
        body: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, HeaderValue] | None = None,
        *,
        retry_after: float | None = None,
    ) -> Fault:
        """Answer HTTP *status* instead, with an OpenAI-style error JSON by default.

        A mapping *body* is sent as JSON; str/bytes verbatim. *retry_after* sets the
        ``retry-after`` header (seconds); a 429 without one gets ``retry-after: 1``.
        """
        hdrs: dict[str, HeaderValue] = dict(headers or {})
        names = {k.lower() for k in hdrs}
        if retry_after is not None:
            hdrs["retry-after"] = _number(retry_after)
        elif status == 429 and "retry-after" not in names:
            hdrs["retry-after"] = "1"
        if body is None:
            raw = json.dumps({"error": _default_error(status)}).encode()
        elif isinstance(body, Mapping):
            raw = json.dumps(body).encode()
        else:
            raw = body.encode() if isinstance(body, str) else bytes(body)
        return cls("http_error", status=status, body=raw, headers=hdrs)

    @classmethod
    def garbage(
        cls,
        body: bytes | str = b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        content_type: str = "text/html",
        *,
        status: int = 200,
    ) -> Fault:
        """Answer *status* (200 by default) with *body* and *content_type* instead of a stream,
        like a proxy or captive portal would."""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        return cls("garbage", body=raw, content_type=content_type, status=status)

    @classmethod
    def invalid_json(cls, after_events: int = 1, data: str = '{"id":"chatcmpl-') -> Fault:
        """After *after_events* events insert ``data: <data>`` (not valid JSON), then carry on."""
        return cls("invalid_json", after_events=after_events, body=data.encode())

    @classmethod
    def disconnect(cls, mode: Literal["close", "rst"] = "close") -> Fault:
        """Read the request, then drop the connection without sending anything."""
        return cls("disconnect", mode=mode)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _default_error(status: int) -> dict[str, Any]:
    table: dict[int, tuple[str, str, str | None]] = {
        400: ("Invalid request.", "invalid_request_error", None),
        401: (
            "Incorrect API key provided: test. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
        404: (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        408: ("Request timed out.", "timeout", None),
        429: (
            "Rate limit reached for requests. Please try again in 1s.",
            "requests",
            "rate_limit_exceeded",
        ),
        500: (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        502: ("Bad gateway.", "server_error", None),
        503: ("The server is overloaded or not ready yet.", "server_error", None),
        504: ("Gateway timeout.", "server_error", None),
    }
    message, kind, code = table.get(
        status,
        (http.HTTPStatus(status).phrase if status in _STATUSES else "Error", "server_error", None),
    )
    return {"message": message, "type": kind, "param": None, "code": code}


_STATUSES = frozenset(s.value for s in http.HTTPStatus)


def _openai_error(message: str, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }
    ).encode()
