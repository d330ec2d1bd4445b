"""A fake OpenAI-compatible ``/v1/chat/completions`` server for tests.

:class:`FakeServer` listens on ``127.0.0.1`` only, on an asyncio event loop in a background
thread (thousands of concurrent connections), and speaks real HTTP/1.1 over real sockets: status
line, headers, keep-alive, chunked transfer encoding for streams and real SSE framing. Because it
runs in its own thread it serves sync and async clients alike::

    import openai
    from streamtap.testing import FakeServer, Fault, Reply

    with FakeServer() as server:
        server.enqueue(Reply(text="Hello, world!", fault=Fault.cut(at_byte=120)))
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        stream = client.chat.completions.create(model="m", messages=[...], stream=True)

Each request to ``.../chat/completions`` takes the next queued :class:`Reply` (FIFO); when the
queue is empty it gets :attr:`FakeServer.default`, which is the deterministic *model mode*: the
answer is a pure function of the request (messages, ``seed``, ``model``), so the same request
gives the same text (see :func:`generate_answer`), ``max_tokens`` is honoured, and the prefill
continuation styles of vLLM / llama.cpp (``continue_final_message``) and DeepSeek / Mistral
(``"prefix": true``) answer with the exact rest of the original answer.

A :class:`Fault` attached to a reply breaks the response in a precise way: cut the connection
at an exact byte of the body (FIN or RST), stall, send an in-band error event, end without
``[DONE]``, answer an HTTP error, or send garbage.

What was sent is recorded per request (:attr:`FakeServer.responses`, :class:`RecordedResponse`):
the whole planned body and how many bytes of it went out, so a test can check a client's text
against exactly what the server sent. A ``responder`` callable can pick each request's reply
(e.g. by its messages) instead of the FIFO queue, for many concurrent clients.

Only the standard library is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import http
import json
import logging
import os
import random
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Union

__all__ = [
    "DEFAULT_MODEL",
    "FakeServer",
    "Fault",
    "RecordedRequest",
    "RecordedResponse",
    "Reply",
    "estimate_tokens",
    "generate_answer",
    "load_cassettes",
    "split_tokens",
]

DEFAULT_MODEL = "gpt-4o-mini"
"""Model name used when a request names none."""

HeaderValue = Union[str, Sequence[str]]
"""A header value; a sequence sends the header once per item."""

TokenCounter = Callable[[str], int]
"""A function that counts the tokens of a text."""

_log = logging.getLogger("streamtap.testing")

_POLL = 0.05  # seconds: how often an abort checks that the written bytes reached the kernel
_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_REQUESTS_PER_CONNECTION = 100_000
_MEMORY = 512  # model-mode answers remembered for prefill continuation

# Hop-by-hop and framing headers: never replayed from a recording, always set by the server.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


# --------------------------------------------------------------------------------------------
# Crude tokenizer
# --------------------------------------------------------------------------------------------

# A GPT-2-like pre-tokenizer: contractions, letter runs, up to 3 digits, punctuation runs, each
# with an optional leading space; whitespace runs. Every character falls in some branch, so
# "".join(split_tokens(text)) == text.
_TOKEN_RE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+| ?_+|\s+(?!\S)|\s+")


def split_tokens(text: str) -> list[str]:
    """Split *text* into crude token-like pieces whose concatenation is *text*.

    Words are one piece (long words several: ASCII every 6 letters, other scripts every 2
    characters), numbers are split every 3 digits, punctuation runs are one piece, and a single
    leading space sticks to the following piece, roughly like a BPE tokenizer. This is what the
    default chunking and :func:`estimate_tokens` use.
    """
    out: list[str] = []
    for piece in _TOKEN_RE.findall(text):
        core = piece.lstrip(" ")
        if core[:1].isalpha() and len(core) > (8 if core.isascii() else 3):
            step = 6 if core.isascii() else 2
            lead = piece[: len(piece) - len(core)]
            parts = [core[i : i + step] for i in range(0, len(core), step)]
            parts[0] = lead + parts[0]
            out.extend(parts)
        else:
            out.append(piece)
    return out


def estimate_tokens(text: str) -> int:
    """A crude token count of *text* (the default ``token_counter``): ``len(split_tokens(text))``.

    It is roughly in line with OpenAI's tokenizers for English prose, and exactly consistent
    with how the server chunks and truncates text, so ``max_tokens=k`` yields ``k`` tokens.
    """
    return len(split_tokens(text))


# --------------------------------------------------------------------------------------------
# Deterministic answer generation ("model mode")
# --------------------------------------------------------------------------------------------

_OPENERS = (
    "In short, ",
    "Generally speaking, ",
    "In practice, ",
    "That said, ",
    "For example, ",
    "On the other hand, ",
    "As a rule of thumb, ",
    "Most of the time, ",
    "Interestingly, ",
    "In my experience, ",
    "",
    "",
    "",
    "",
)
_SUBJECTS = (
    "the system",
    "a careful engineer",
    "the first approach",
    "this method",
    "the underlying model",
    "a well-designed cache",
    "the network layer",
    "each request",
    "the final answer",
    "a small team",
    "the library",
    "a simple script",
    "the database",
    "your application",
    "the scheduler",
    "a naïve implementation",
    "the client",
    "it",
)
_VERBS = (
    "handles",
    "improves",
    "depends on",
    "reduces",
    "explains",
    "balances",
    "measures",
    "avoids",
    "simplifies",
    "protects",
    "tracks",
    "builds on",
    "replaces",
    "validates",
    "doesn't ignore",
    "can't always predict",
    "usually streams",
    "quietly retries",
)
_OBJECTS = (
    "the overall latency",
    "unexpected errors",
    "a large amount of data",
    "the user's experience",
    "several edge cases",
    "the cost of each call",
    "memory usage",
    "the order of events",
    "long-running tasks",
    "the results",
    "partial failures",
    "the time to first token",
    "concurrent requests",
    "its configuration",
    "the remaining budget",
    "the connection pool",
)
_TAILS = (
    "",
    "",
    "",
    " in most cases",
    " without much effort",
    " when the load is high",
    " over time",
    " for a fraction of the cost",
    " — at least in theory",
    " if you configure it correctly",
    " by about 30%",
    " at scale",
    " during peak hours",
    " in 2 or 3 steps",
    " 🚀",
)
_JOINERS = (", and ", ", but ", "; ", ", so ", ", while ")
_LIST_INTROS = (
    "Here are a few points to keep in mind:",
    "The main steps are:",
    "A few things matter most:",
)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _digest(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(_canonical(list(parts)).encode()).digest()[:8], "big")


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _clause(rng: random.Random) -> str:
    return (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}"
    )


def _sentence(rng: random.Random) -> str:
    body = _clause(rng)
    if rng.random() < 0.3:
        body += rng.choice(_JOINERS) + _clause(rng)
    opener = rng.choice(_OPENERS)
    end = "!" if rng.random() < 0.05 else "."
    return (opener + body if opener else _capitalize(body)) + end


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


_STOPWORDS = frozenset(
    "about above after again answer below briefly could describe detail explain hello "
    "please quick short should simple their there these thing think those tell using what "
    "where which while words would write".split()
)


def _topic(messages: Sequence[Mapping[str, Any]], rng: random.Random) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            found = re.findall(r"[A-Za-z]{5,}", _message_text(message))
            words = sorted({w.lower() for w in found} - _STOPWORDS)
            return rng.choice(words) if words else None
    return None


def _compose_text(rng: random.Random, topic: str | None, length: int | None) -> str:
    paragraphs: list[str] = []
    sentences: list[str] = []
    if topic:
        sentences.append(f"When it comes to {topic}, {_clause(rng)}.")
    if length is None:
        target_paragraphs = rng.randint(2, 3)
        list_at = rng.randrange(target_paragraphs) if rng.random() < 0.35 else -1
        for index in range(target_paragraphs):
            if index == list_at:
                items = [f"{i}. {_capitalize(_clause(rng))}." for i in range(1, rng.randint(3, 4))]
                paragraphs.append(rng.choice(_LIST_INTROS) + "\n" + "\n".join(items))
                continue
            sentences.extend(_sentence(rng) for _ in range(rng.randint(2, 4)))
            paragraphs.append(" ".join(sentences))
            sentences = []
        return "\n\n".join(paragraphs)
    # Grow sentence by sentence until the crude count reaches *length*.
    total = sum(estimate_tokens(" " + s) for s in sentences)
    for _ in range(max(1, length) * 2 + 8):  # bounded: every sentence adds >= 3 tokens
        if total >= length:
            break
        sentence = _sentence(rng)
        total += estimate_tokens(" " + sentence)
        sentences.append(sentence)
        if len(sentences) == 3:
            paragraphs.append(" ".join(sentences))
            sentences = []
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def generate_answer(
    messages: Sequence[Mapping[str, Any]],
    seed: int | None = None,
    model: str = DEFAULT_MODEL,
    length: int | None = None,
    *,
    choice: int = 0,
) -> str:
    """Return the full answer that model mode gives to a request.

    The text is a pure function of the arguments: a PRNG seeded from a hash of *messages*
    (exactly as sent), *seed*, *model* and *choice* writes a realistic multi-paragraph English
    answer (contractions, numbers, a list now and then, ``—``, ``ï`` and the odd emoji).

    Args:
        messages: the request's ``messages``.
        seed: the request's ``seed``.
        model: the request's ``model`` (``DEFAULT_MODEL`` if the request had none).
        length: approximate length in tokens (as counted by :func:`estimate_tokens`); ``None``
            lets the PRNG pick a natural length of about 60 to 200 tokens.
        choice: the choice index, for ``n > 1`` (choice 0 is the canonical answer).

    A request with ``max_tokens=k`` gets the first ``k`` tokens of this text (with
    ``finish_reason="length"``) when the text is longer.
    """
    rng = random.Random(_digest("answer", list(messages), seed, model, choice, length))
    return _compose_text(rng, _topic(messages, rng), length)


def _continuation_fallback(key: int, prefix: str, length: int | None) -> str:
    """A plausible continuation of an unknown *prefix* (used when it is no known answer's)."""
    rng = random.Random(_digest("continue", key, prefix))
    text = _compose_text(rng, None, length if length is not None else rng.randint(30, 60))
    if prefix and not prefix[-1].isspace():
        text = " " + text
    return text


# --------------------------------------------------------------------------------------------
# Chunking helpers
# --------------------------------------------------------------------------------------------


def _chunk_text(
    text: str, *, chunk_size: int | None, tokens_per_chunk: tuple[int, int]
) -> list[str]:
    """Split *text* into deltas, deterministically (the PRNG is seeded from the text)."""
    if not text:
        return []
    if chunk_size is not None:
        return [text[i : i + chunk_size] for i in range(0, len(text), chunk_size)]
    low, high = tokens_per_chunk
    rng = random.Random(_digest("chunks", text, low, high))
    tokens = split_tokens(text)
    out: list[str] = []
    index = 0
    while index < len(tokens):
        step = rng.randint(low, high)
        out.append("".join(tokens[index : index + step]))
        index += step
    return out


def _chunker(reply: Reply) -> Callable[[str], list[str]]:
    """The reply's delta splitter."""

    def chunk(text: str) -> list[str]:
        return _chunk_text(
            text, chunk_size=reply.chunk_size, tokens_per_chunk=reply.tokens_per_chunk
        )

    return chunk


def _drop_prefix(pieces: Sequence[str], count: int) -> list[str]:
    """The pieces after the first *count* characters of their concatenation."""
    out: list[str] = []
    for piece in pieces:
        if count >= len(piece):
            count -= len(piece)
            continue
        out.append(piece[count:])
        count = 0
    return out


def _take_prefix(pieces: Sequence[str], count: int) -> list[str]:
    """The pieces making up the first *count* characters of their concatenation."""
    out: list[str] = []
    for piece in pieces:
        if count <= 0:
            break
        out.append(piece[:count])
        count -= len(piece)
    return out


def _truncate(text: str, limit: int, counter: TokenCounter) -> tuple[str, bool]:
    """The longest token-prefix of *text* that *counter* counts as at most *limit* tokens."""
    if counter(text) <= limit:
        return text, False
    tokens = split_tokens(text)
    low, high = 0, len(tokens)  # invariant: prefix of `low` tokens fits
    while low < high:
        mid = (low + high + 1) // 2
        if counter("".join(tokens[:mid])) <= max(0, limit):
            low = mid
        else:
            high = mid - 1
    return "".join(tokens[:low]), True


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------

FaultKind = Literal[
    "cut",
    "stall",
    "error_event",
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
        """
        return cls(
            "error_event",
            after_events=after_events,
            error=dict(error) if error is not None else None,
            status_in_body=status_in_body,
            style=style,
        )

    @classmethod
    def no_done(cls) -> Fault:
        """End the body cleanly but without ``data: [DONE]``."""
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


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    Give the content in one of these ways (with none of them the reply is in *model mode*,
    see :meth:`model_mode`):

    * ``text`` (one string, or one per choice) or ``pieces`` (the exact deltas), optionally
      with ``reasoning``, ``refusal`` and ``tool_calls``. The server builds OpenAI-style
      chunks: a role chunk, reasoning deltas, content deltas, refusal deltas, tool-call
      fragments, a finish chunk, the usage chunk when the request asked for
      ``stream_options.include_usage`` (with ``"usage": null`` on every other chunk), then
      ``[DONE]``. A non-streamed request gets a ``chat.completion`` JSON body instead.
    * ``chunks``: explicit chunk objects, each sent as ``data: <json>\\n\\n`` (a ``str`` item is
      sent as the data line verbatim), then ``data: [DONE]`` unless ``done=False``. Sent as a
      stream even to non-streamed requests.
    * ``raw``: the exact body bytes, sent verbatim (see :meth:`from_cassette`).

    Text is split into deltas of ``tokens_per_chunk`` (1 to 3) crude tokens (see
    :func:`split_tokens`), deterministically, or into ``chunk_size`` characters.

    Pacing: ``header_delay`` before the status line, ``first_delay`` after the headers,
    ``delay`` between events (a float, or a sequence whose item *i* is the pause between event
    *i* and event *i + 1*). ``split`` chooses how each event is written to the socket: whole
    (``"event"``), byte by byte (``"byte"``) or in pieces of *N* bytes; every write is flushed
    and, for chunked bodies, is its own HTTP chunk.

    Other fields:

    * ``model``, ``id``, ``created``, ``system_fingerprint``: chunk metadata (defaults: the
      request's model, ``chatcmpl-<hash of the request number>``, now).
    * ``n``: number of choices (default: one per ``text`` item, else the request's ``n``);
      choices are interleaved round-robin, one choice per chunk, as OpenAI does.
    * ``role_chunk``: start each choice with ``{"role": "assistant", "content": ""}`` (or
      ``content: null`` before reasoning, refusal or tool calls); False sends no role at all.
    * ``finish_reason``: default ``"stop"`` (``"tool_calls"`` with tool calls, ``"length"`` when
      ``max_tokens`` cut the text).
    * ``reasoning`` / ``reasoning_field``: a reasoning channel streamed before the content in
      ``reasoning_content`` (DeepSeek) or ``reasoning`` (Ollama, OpenRouter).
    * ``tool_calls``: ``[{"name": ..., "arguments": str | dict, "id": optional}]`` (or OpenAI's
      ``{"function": {...}}`` shape), streamed as an id/type/name fragment with
      ``arguments: ""`` followed by argument pieces.
    * ``usage``: a usage object to send instead of the computed one; ``include_usage``
      overrides the request's ``stream_options.include_usage``; ``usage_on_finish`` puts the
      usage on the last finish chunk (DeepSeek, Mistral) instead of a ``choices: []`` chunk.
    * ``token_counter``: counts tokens for usage and ``max_tokens`` (default: the server's).
    * ``length``: model-mode answer length, see :func:`generate_answer`.
    * ``status``, ``headers``: HTTP status and extra or overriding response headers
      (``content-type: text/event-stream`` and ``x-request-id: req_<n>`` are sent unless
      overridden; framing headers are always the server's own).
    * ``done``: send ``data: [DONE]`` at the end.
    * ``close_delimited``: send a stream body the way HTTP/1.0 servers and some proxies do, with
      neither ``content-length`` nor chunked encoding: the body ends when the server closes the
      connection (so a client cannot tell a closed socket from the end of the body).
    * ``fault``: a :class:`Fault` to inject.
    """

    text: str | Sequence[str] | None = None
    pieces: Sequence[str] | None = None
    chunks: Sequence[Mapping[str, Any] | str] | None = None
    raw: bytes | str | None = None
    chunk_size: int | None = None
    tokens_per_chunk: tuple[int, int] = (1, 3)
    model: str | None = None
    id: str | None = None
    created: int | None = None
    n: int | None = None
    role_chunk: bool = True
    finish_reason: str | None = None
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    refusal: str | None = None
    usage: Mapping[str, Any] | None = None
    include_usage: bool | None = None
    usage_on_finish: bool = False
    token_counter: TokenCounter | None = None
    length: int | None = None
    system_fingerprint: str | None = "fp_streamtap"
    status: int = 200
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    header_delay: float = 0.0
    first_delay: float = 0.0
    delay: float | Sequence[float] = 0.0
    split: Literal["event", "byte"] | int = "event"
    done: bool = True
    close_delimited: bool = False
    fault: Fault | None = None

    def __post_init__(self) -> None:
        given = [
            name for name in ("text", "pieces", "chunks", "raw") if getattr(self, name) is not None
        ]
        if len(given) > 1 and set(given) != {"text", "pieces"}:
            raise ValueError(f"Reply: give only one of {', '.join(given)}")
        if self.pieces is not None:
            object.__setattr__(self, "pieces", tuple(self.pieces))
            if self.text is not None and self.text != "".join(self.pieces):
                raise ValueError("Reply: text must equal ''.join(pieces)")
        if self.text is not None and not isinstance(self.text, str):
            object.__setattr__(self, "text", tuple(self.text))
        if self.chunks is not None:
            object.__setattr__(self, "chunks", tuple(self.chunks))
        if self.tool_calls is not None:
            object.__setattr__(self, "tool_calls", tuple(dict(c) for c in self.tool_calls))
        if not isinstance(self.delay, (int, float)):
            object.__setattr__(self, "delay", tuple(float(d) for d in self.delay))
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("Reply: chunk_size must be >= 1")
        low, high = self.tokens_per_chunk
        if not 1 <= low <= high:
            raise ValueError("Reply: tokens_per_chunk must be (low, high) with 1 <= low <= high")
        if self.n is not None and self.n < 1:
            raise ValueError("Reply: n must be >= 1")
        if isinstance(self.split, int) and self.split < 1:
            raise ValueError("Reply: split must be 'event', 'byte' or an int >= 1")
        if self.reasoning_field not in ("reasoning_content", "reasoning"):
            raise ValueError("Reply: reasoning_field must be 'reasoning_content' or 'reasoning'")

    @classmethod
    def model_mode(cls, length: int | None = None, **kwargs: Any) -> Reply:
        """A reply whose text is generated from the request (the server's default).

        The answer is :func:`generate_answer` of the request's ``messages``, ``seed`` and
        ``model`` (choice *i* for ``n > 1``), cut to ``max_tokens`` /
        ``max_completion_tokens`` with ``finish_reason="length"``. Prefill requests
        (``continue_final_message: true`` with ``add_generation_prompt: false``, or a final
        assistant message with ``"prefix": true``) get the exact rest of the original answer
        after the assistant prefix. *length* is passed to :func:`generate_answer`; other
        keyword arguments are :class:`Reply` fields (``fault``, ``delay``, ``split``, ...).
        """
        return cls(length=length, **kwargs)

    @classmethod
    def from_cassette(cls, record: Mapping[str, Any], **overrides: Any) -> Reply:
        """Replay one record of a ``streams.jsonl`` cassette file byte for byte.

        Uses the record's ``status``, ``response_headers`` (minus hop-by-hop and framing
        headers such as ``content-length``, ``transfer-encoding``, ``content-encoding`` and
        ``connection``) and ``sse`` body verbatim. *overrides* replace :class:`Reply` fields
        (e.g. ``delay=0.01``, ``split=7`` or ``fault=Fault.cut(at_byte=100)``).
        """
        headers = {
            str(name): value
            for name, value in (record.get("response_headers") or {}).items()
            if str(name).lower() not in _HOP_BY_HOP
        }
        fields: dict[str, Any] = {
            "raw": record["sse"],
            "status": record.get("status") or 200,
            "headers": headers,
        }
        fields.update(overrides)
        return cls(**fields)

    @property
    def is_model_mode(self) -> bool:
        """True when the text is generated from the request (no scripted content given)."""
        return all(
            value is None
            for value in (
                self.text,
                self.pieces,
                self.chunks,
                self.raw,
                self.tool_calls,
                self.refusal,
            )
        )

    def with_fault(self, fault: Fault | None) -> Reply:
        """A copy of this reply with *fault*."""
        return replace(self, fault=fault)


def load_cassettes(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines cassette file (like ``streams.jsonl``): one dict per non-blank line."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received (any path)."""

    method: str
    path: str
    """The path without the query string, e.g. ``/v1/chat/completions``."""
    query: str
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ``", "``."""
    body: bytes
    json: Any
    """The parsed JSON body, or ``None`` if the body is empty or not JSON."""
    received_at: float
    """``time.perf_counter()`` when the request had been read completely."""
    connection_id: int
    """Which connection it came on (1, 2, ...): equal ids mean the connection was reused."""
    request_id: str
    """The ``x-request-id`` the server answered with (``req_<n>``)."""


@dataclass
class RecordedResponse:
    """A chat-completions answer the server gave, and how much of it went out.

    The server updates the progress fields just before each write, so once a client has seen
    the end of its stream (or its break) they say exactly what it was sent.
    """

    request_id: str
    """The ``x-request-id`` of the request it answers (``req_<n>``)."""
    status: int
    sse: bool
    """The body is an SSE stream (else a JSON document or an error body)."""
    events: tuple[bytes, ...]
    """The whole planned body, split into SSE events (body faults already applied)."""
    reply: Reply
    """The :class:`Reply` that produced it (its ``fault`` says how it was broken)."""
    bytes_sent: int = 0
    """Body bytes written (not counting HTTP chunked framing)."""
    cut: bool = False
    """The connection was dropped before the HTTP message was finished."""
    complete: bool = False
    """Every event was written and the HTTP message finished."""

    @property
    def events_sent(self) -> int:
        """How many events were written completely."""
        total = 0
        for count, event in enumerate(self.events):
            total += len(event)
            if total > self.bytes_sent:
                return count
        return len(self.events)

    def chunks(self, *, sent: bool = True) -> list[dict[str, Any]]:
        """The JSON objects of the SSE events (those written completely when *sent*);
        ``[DONE]``, comments and data that is not a JSON object are skipped."""
        out: list[dict[str, Any]] = []
        if not self.sse:
            return out
        for event in self.events[: self.events_sent if sent else None]:
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")
            )
            try:
                obj = json.loads(data) if data and data.strip() != b"[DONE]" else None
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def text(self, choice: int = 0, *, sent: bool = True) -> str:
        """The ``delta.content`` of *choice* in the events (sent completely, when *sent*)."""
        return "".join(
            str(c.get("delta", {}).get("content") or "")
            for chunk in self.chunks(sent=sent)
            for c in chunk.get("choices") or ()
            if isinstance(c, dict) and c.get("index", 0) == choice
        )

    def finish_reasons(self, choice: int = 0, *, sent: bool = True) -> list[str]:
        """Every non-null ``finish_reason`` of *choice* (normally one, in the last chunk)."""
        return [
            str(c["finish_reason"])
            for chunk in self.chunks(sent=sent)
            for c in chunk.get("choices") or ()
            if isinstance(c, dict) and c.get("index", 0) == choice and c.get("finish_reason")
        ]

    @property
    def done_sent(self) -> bool:
        """A ``data: [DONE]`` event was written completely."""
        return any(_is_done_event(e) for e in self.events[: self.events_sent])


# --------------------------------------------------------------------------------------------
# Socket plumbing
# --------------------------------------------------------------------------------------------


class _Closed(Exception):
    """The connection is gone (peer hung up, fault, or server shutdown)."""


class _Peer(asyncio.Protocol):
    """One client connection on the server's event loop: bounded, hang-up-aware reads, writes
    and waits. A handler coroutine drives it; at most one of them waits on it at a time."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.write_timeout = server.write_timeout
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.eof = False  # the client sent FIN (no more request bytes)
        self.closed = False  # the connection is gone (either side), nothing more can be sent
        self.paused = False  # the client is not reading: the kernel's send buffer is full
        self._waiter: asyncio.Future[None] | None = None
        self.conn_id = 0

    # asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - platform dependent
                pass
        # Small buffer: a write is handed to the kernel at once or the writer waits for it.
        transport.set_write_buffer_limits(high=64 * 1024)
        self.conn_id = self.server._connection_opened(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the write side open: a half-closed client may still read

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        self.server._connection_closed(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    # waiting primitives ----------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to *seconds*, returning early when any callback above fires."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        handle = self.loop.call_later(max(0.0, seconds), _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    # reading ---------------------------------------------------------------------------
    async def _fill(self, deadline: float) -> bool:
        """Wait for more bytes; False on EOF. Raises _Closed on close/stop/timeout."""
        size = len(self.buffer)
        while len(self.buffer) == size:
            if self.closed or self.server._stopping:
                raise _Closed
            if self.eof:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Closed
            await self._sleep(remaining)
        return True

    async def read_until(self, marker: bytes, limit: int, deadline: float) -> bytes | None:
        """Bytes up to and including *marker*; None on a clean EOF before any byte."""
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                out, self.buffer = (
                    self.buffer[: index + len(marker)],
                    self.buffer[index + len(marker) :],
                )
                return out
            if len(self.buffer) > limit:
                raise _Closed
            if not await self._fill(deadline):
                if self.buffer:
                    raise _Closed
                return None

    async def read_exact(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill(deadline):
                raise _Closed
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    # writing ---------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Hand *data* to the kernel; wait (up to write_timeout) while the client is not
        reading."""
        if self.closed or self.server._stopping or self.transport is None:
            raise _Closed
        self.transport.write(data)
        deadline = time.monotonic() + self.write_timeout
        while self.paused:
            if self.closed or self.server._stopping or time.monotonic() >= deadline:
                raise _Closed
            await self._sleep(deadline - time.monotonic())

    # waiting ---------------------------------------------------------------------------
    async def wait(self, seconds: float) -> None:
        """Sleep *seconds*; raise _Closed at once on server shutdown or if the peer hangs up."""
        deadline = time.monotonic() + seconds
        while True:
            if self.closed or self.eof or self.server._stopping:
                raise _Closed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self._sleep(remaining)

    # closing ---------------------------------------------------------------------------
    async def abort(self, mode: Literal["close", "rst"]) -> None:
        """Drop the connection: FIN (``close``) or RST (``rst``), after the bytes written so
        far have reached the kernel."""
        transport = self.transport
        if self.closed or transport is None:
            self.close()
            return
        deadline = time.monotonic() + self.write_timeout
        while transport.get_write_buffer_size() and not self.closed:
            if self.server._stopping or time.monotonic() >= deadline:
                break
            await self._sleep(min(_POLL, deadline - time.monotonic()))
        sock = transport.get_extra_info("socket")
        if mode == "rst" and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:  # pragma: no cover
                pass
        elif sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        transport.abort()
        self.closed = True

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Plan:
    status: int
    headers: list[tuple[str, str]]
    events: list[bytes]
    framing: Literal["chunked", "length", "close"]
    keep_alive: bool


async def _read_request(peer: _Peer, idle_timeout: float) -> _Request | None:
    """Read one request; None on a clean EOF between requests. Malformed input: _Closed."""
    try:
        return await _parse_request(peer, idle_timeout)
    except (ValueError, UnicodeError) as exc:
        raise _Closed from exc


async def _parse_request(peer: _Peer, idle_timeout: float) -> _Request | None:
    head = await peer.read_until(b"\r\n\r\n", _MAX_HEADER_BYTES, time.monotonic() + idle_timeout)
    if head is None:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _Closed
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    deadline = time.monotonic() + 30.0
    if headers.get("expect", "").lower() == "100-continue":
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        for _ in range(_MAX_BODY_BYTES):
            size_line = await peer.read_until(b"\r\n", 1024, deadline)
            if size_line is None:
                raise _Closed
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers, if any, end with an empty line
                for _ in range(100):
                    trailer = await peer.read_until(b"\r\n", _MAX_HEADER_BYTES, deadline)
                    if trailer in (None, b"\r\n"):
                        break
                break
            if len(body) + size > _MAX_BODY_BYTES:
                raise _Closed
            body += await peer.read_exact(size, deadline)
            await peer.read_exact(2, deadline)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > _MAX_BODY_BYTES:
            raise _Closed
        body = await peer.read_exact(length, deadline)
    return _Request(method, target, version, headers, body)


_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


def _split_events(body: bytes) -> list[bytes]:
    """Split an SSE body after each blank line (any line-ending style); keep every byte."""
    events: list[bytes] = []
    start = 0
    for match in _EVENT_END.finditer(body):
        events.append(body[start : match.end()])
        start = match.end()
    if start < len(body):
        events.append(body[start:])
    return events


def _is_done_event(event: bytes) -> bool:
    lines = [line.strip() for line in event.splitlines() if line.strip()]
    return bool(lines) and all(line in (b"data: [DONE]", b"data:[DONE]") for line in lines)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _data_event(obj: Any) -> bytes:
    payload = obj.encode() if isinstance(obj, str) else _dumps(obj)
    return b"data: " + payload + b"\n\n"


_DONE = b"data: [DONE]\n\n"


# --------------------------------------------------------------------------------------------
# Content composition
# --------------------------------------------------------------------------------------------


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass
class _Choice:
    text: str | None
    pieces: list[str]
    finish_reason: str | None


@dataclass
class _Content:
    id: str
    created: int
    model: str
    choices: list[_Choice]
    reasoning: str | None
    reasoning_pieces: list[str]
    refusal: str | None
    refusal_pieces: list[str]
    tool_calls: list[_ToolCall]
    usage: dict[str, Any]
    system_fingerprint: str | None


def _usage(
    messages: Sequence[Mapping[str, Any]], content: _Content, counter: TokenCounter
) -> dict[str, Any]:
    prompt = 3 + sum(4 + counter(_message_text(m)) for m in messages if isinstance(m, Mapping))
    reasoning_tokens = counter(content.reasoning) if content.reasoning else 0
    completion = 0
    for choice in content.choices:
        completion += counter(choice.text or "") + reasoning_tokens
        if content.refusal:
            completion += counter(content.refusal)
        for call in content.tool_calls:
            completion += 4 + counter(call.name) + counter(call.arguments)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens * len(content.choices),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _prefill_prefix(body: Mapping[str, Any]) -> str | None:
    """The assistant prefix P if the request asks to continue its final message, else None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        return None
    vllm = body.get("continue_final_message") is True and body.get("add_generation_prompt") is False
    if vllm or last.get("prefix") is True:
        return _message_text(last)
    return None


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeServer:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1``, for tests.

    Use it as a (sync or async) context manager, or call :meth:`start` and :meth:`close`::

        with FakeServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
            server.enqueue(Reply(text="Hello!"), Fault.http_error(429))

    Routes: ``POST <anything>/chat/completions`` (so ``/v1/...`` and Azure's
    ``/openai/deployments/<d>/chat/completions`` both work), ``GET <anything>/models``; other
    paths get a 404 JSON error. Every request is recorded in :attr:`requests`, and every
    chat-completions answer in :attr:`responses` (what was sent, byte for byte).

    All connections are served by one asyncio event loop in one daemon thread, so thousands of
    concurrent streams cost no thread each (the listen backlog is 4096).

    Args:
        default: the reply when the queue is empty (default: ``Reply.model_mode()``).
        nondeterministic: model mode gives a different answer to every request (to force a
            replayed request to diverge). Prefill still continues any answer served before.
        supports_prefill: when False, requests carrying ``continue_final_message``,
            ``add_generation_prompt`` or a message with ``prefix`` get a 400, as from OpenAI.
        supports_stream_options: when False, requests carrying ``stream_options`` get a 400.
        answer_length: default *length* for model mode (see :func:`generate_answer`).
        token_counter: counts tokens for usage and ``max_tokens`` (default
            :func:`estimate_tokens`); a reply's own ``token_counter`` wins.
        keepalive_timeout: idle seconds before the server closes a kept-alive connection.
        write_timeout: seconds without write progress (client not reading) before giving up.
        port: 0 picks a free port.
        responder: called with each valid chat-completions request (a :class:`RecordedRequest`)
            before the queue is looked at; the :class:`Reply` (or bare :class:`Fault`) it
            returns answers the request, ``None`` falls through to the queue and
            :attr:`default`. It runs on the server's event loop: keep it quick, never block.
        history: keep only the last *history* :attr:`requests` and :attr:`responses` (None:
            all of them); long-running tests bound memory with it or with
            :meth:`take_responses`.

    Requests refused by validation (bad JSON, unsupported parameters) do not consume a queued
    reply.
    """

    def __init__(
        self,
        *,
        default: Reply | None = None,
        nondeterministic: bool = False,
        supports_prefill: bool = True,
        supports_stream_options: bool = True,
        answer_length: int | None = None,
        token_counter: TokenCounter | None = None,
        keepalive_timeout: float = 15.0,
        write_timeout: float = 30.0,
        port: int = 0,
        responder: Callable[[RecordedRequest], Reply | Fault | None] | None = None,
        history: int | None = None,
    ) -> None:
        self.default: Reply = default if default is not None else Reply.model_mode()
        """The reply used when the queue is empty."""
        self.nondeterministic = nondeterministic
        self.supports_prefill = supports_prefill
        self.supports_stream_options = supports_stream_options
        self.answer_length = answer_length
        self.token_counter: TokenCounter = token_counter or estimate_tokens
        self.keepalive_timeout = keepalive_timeout
        self.write_timeout = write_timeout
        self.responder = responder
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised while serving (a test can assert it stays empty)."""
        self._port = port
        self._lock = threading.Lock()
        self._stopping = False
        self._queue: deque[Reply] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=history)
        self._responses: deque[RecordedResponse] = deque(maxlen=history)
        self._peers: dict[int, _Peer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._request_count = 0
        self._connection_count = 0
        self._memory: deque[tuple[int, str]] = deque(maxlen=_MEMORY)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeServer:
        """Bind ``127.0.0.1:<port>``, start serving in a daemon thread, return self."""
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._port))
            listener.listen(4096)  # thousands of clients may connect at the same moment
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run_loop, args=(listener,), name=f"FakeServer:{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def _run_loop(self, listener: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._listener = loop.run_until_complete(
                loop.create_server(lambda: _Peer(self), sock=listener)
            )
            if self._stopping:  # closed before the loop got here
                self._listener.close()
            loop.run_forever()
        except Exception as exc:  # pragma: no cover - a bug in this module
            _log.exception("FakeServer's event loop failed")
            self.errors.append(exc)
        finally:
            listener.close()
            loop.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving: close the listening socket and every connection, stop the thread.

        Never blocks for more than about *timeout* seconds. Safe to call twice.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            done.result(max(0.0, deadline - time.monotonic()))
        except Exception:  # pragma: no cover - timed out or the loop is gone
            pass
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # pragma: no cover - already closed
            pass
        thread.join(max(0.0, deadline - time.monotonic()))
        self._loop = self._thread = self._listener = None

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            peers = list(self._peers.values())
            tasks = list(self._tasks)
        for peer in peers:  # wakes every waiting handler; each ends on _Closed
            peer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            task.cancel()
        await asyncio.sleep(0)  # let connection_lost callbacks run

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> FakeServer:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port (valid after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (for Azure clients: ``azure_endpoint=server.url``)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, for ``openai.OpenAI(base_url=...)``."""
        return self.url + "/v1"

    # scripting -------------------------------------------------------------------------
    def enqueue(self, *replies: Reply | Fault) -> None:
        """Queue replies, consumed first in, first out, one per chat-completions request.

        A bare :class:`Fault` means ``Reply.model_mode(fault=fault)``.
        """
        with self._lock:
            for reply in replies:
                self._queue.append(reply if isinstance(reply, Reply) else Reply(fault=reply))

    @property
    def queued(self) -> int:
        """How many queued replies have not been used yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def responses(self) -> list[RecordedResponse]:
        """A snapshot of every chat-completions answer so far (one per request that got one,
        in the order they started); each one's progress is final once its stream ended."""
        with self._lock:
            return list(self._responses)

    def take_responses(self) -> list[RecordedResponse]:
        """Like :attr:`responses`, but forgets them (for long runs: memory stays bounded)."""
        with self._lock:
            out = list(self._responses)
            self._responses.clear()
            return out

    def clear(self) -> None:
        """Forget recorded requests and responses, queued replies and errors."""
        with self._lock:
            self._requests.clear()
            self._responses.clear()
            self._queue.clear()
            self.errors.clear()

    def open_connections(self) -> int:
        """How many client connections are open right now."""
        with self._lock:
            return len(self._peers)

    def wait_for_open_connections(self, count: int = 0, timeout: float = 2.0) -> bool:
        """Wait until :meth:`open_connections` equals *count*; False if *timeout* ran out.

        The server notices a client hang-up at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.open_connections() == count:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def answer_for(
        self,
        messages: Sequence[Mapping[str, Any]],
        seed: int | None = None,
        model: str = DEFAULT_MODEL,
        *,
        choice: int = 0,
    ) -> str:
        """The full model-mode answer this server gives to such a request (deterministic
        servers only): :func:`generate_answer` with :attr:`answer_length`."""
        return generate_answer(messages, seed, model, self.answer_length, choice=choice)

    # connections -----------------------------------------------------------------------
    def _connection_opened(self, peer: _Peer) -> int:
        with self._lock:
            self._connection_count += 1
            conn_id = self._connection_count
            self._peers[conn_id] = peer
        if self._stopping:
            peer.close()
            return conn_id
        task = peer.loop.create_task(self._serve_connection(peer, conn_id))
        with self._lock:
            self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return conn_id

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.discard(task)

    def _connection_closed(self, peer: _Peer) -> None:
        with self._lock:
            self._peers.pop(peer.conn_id, None)

    async def _serve_connection(self, peer: _Peer, conn_id: int) -> None:
        try:
            for _ in range(_MAX_REQUESTS_PER_CONNECTION):
                request = await _read_request(peer, self.keepalive_timeout)
                if request is None or not await self._respond(peer, request, conn_id):
                    break
        except (_Closed, asyncio.CancelledError):
            pass
        except Exception as exc:  # pragma: no cover - a bug in this module
            _log.exception("FakeServer failed while serving connection %d", conn_id)
            with self._lock:
                self.errors.append(exc)
        finally:
            peer.close()

    # request handling ------------------------------------------------------------------
    async def _respond(self, peer: _Peer, request: _Request, conn_id: int) -> bool:
        path, _, query = request.target.partition("?")
        try:
            parsed: Any = json.loads(request.body) if request.body else None
            json_ok = True
        except ValueError:
            parsed, json_ok = None, False
        with self._lock:
            self._request_count += 1
            number = self._request_count
            request_id = f"req_{number}"
            recorded = RecordedRequest(
                method=request.method,
                path=path,
                query=query,
                headers=dict(request.headers),
                body=request.body,
                json=parsed,
                received_at=time.perf_counter(),
                connection_id=conn_id,
                request_id=request_id,
            )
            self._requests.append(recorded)
        keep_alive = request.version == "HTTP/1.1" and (
            "close" not in request.headers.get("connection", "").lower()
        )
        base = path.rstrip("/")
        if request.method == "POST" and base.endswith("/chat/completions"):
            if not json_ok or not isinstance(parsed, dict):
                plan = self._json_plan(
                    400,
                    _openai_error(
                        "We could not parse the JSON body of your request. (HINT: This likely "
                        "means you aren't using your HTTP library correctly.)"
                    ),
                    request_id,
                )
            else:
                plan_or_none = self._validate(parsed, request_id)
                if plan_or_none is None:
                    return await self._chat(peer, request, recorded, parsed, number, keep_alive)
                plan = plan_or_none
        elif request.method == "GET" and base.endswith("/models"):
            body = _dumps(
                {
                    "object": "list",
                    "data": [
                        {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "fake"}
                    ],
                }
            )
            plan = self._json_plan(200, body, request_id)
        else:
            plan = self._json_plan(
                404,
                _openai_error(f"Invalid URL ({request.method} {path})", code="unknown_url"),
                request_id,
            )
        plan.keep_alive = plan.keep_alive and keep_alive
        return await self._send(peer, plan, None, Reply())

    def _validate(self, body: dict[str, Any], request_id: str) -> _Plan | None:
        """A 400 plan if the request uses something this server refuses, else None."""
        messages = body.get("messages")
        if "stream_options" in body:
            if not self.supports_stream_options:
                return self._json_plan(
                    400,
                    _openai_error("Unrecognized request argument supplied: stream_options"),
                    request_id,
                )
            if body["stream_options"] is not None and body.get("stream") is not True:
                return self._json_plan(
                    400,
                    _openai_error(
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                        param="stream_options",
                    ),
                    request_id,
                )
        flags = [k for k in ("add_generation_prompt", "continue_final_message") if k in body]
        prefixed = [
            i
            for i, m in enumerate(messages if isinstance(messages, list) else [])
            if isinstance(m, Mapping) and "prefix" in m
        ]
        if not self.supports_prefill:
            if flags:
                noun = "argument" if len(flags) == 1 else "arguments"
                return self._json_plan(
                    400,
                    _openai_error(f"Unrecognized request {noun} supplied: {', '.join(flags)}"),
                    request_id,
                )
            if prefixed:
                i = prefixed[0]
                return self._json_plan(
                    400,
                    _openai_error(
                        f"Additional properties are not allowed ('prefix' was unexpected) - "
                        f"'messages.{i}'",
                        param=f"messages.[{i}]",
                    ),
                    request_id,
                )
        if body.get("continue_final_message") is True:
            last = messages[-1] if isinstance(messages, list) and messages else None
            if body.get("add_generation_prompt") is not False:
                return self._json_plan(
                    400,
                    _openai_error(
                        "Cannot set both `continue_final_message` and `add_generation_prompt` "
                        "to True.",
                        param="continue_final_message",
                    ),
                    request_id,
                )
            if not isinstance(last, Mapping) or last.get("role") != "assistant":
                return self._json_plan(
                    400,
                    _openai_error(
                        "continue_final_message is set but the final message is not from the "
                        "assistant.",
                        param="messages",
                    ),
                    request_id,
                )
        return None

    def _json_plan(
        self, status: int, body: bytes, request_id: str, extra: Mapping[str, HeaderValue] = {}
    ) -> _Plan:
        headers = _merge_headers(
            [("content-type", "application/json"), ("x-request-id", request_id)], extra
        )
        return _Plan(status, headers, [body], "length", True)

    async def _chat(
        self,
        peer: _Peer,
        request: _Request,
        recorded: RecordedRequest,
        body: dict[str, Any],
        number: int,
        keep_alive: bool,
    ) -> bool:
        reply = self._next_reply(recorded)
        fault = reply.fault
        if fault is not None and fault.kind == "disconnect":
            self._record(recorded, reply, _Plan(0, [], [], "close", False)).cut = True
            await peer.abort(fault.mode)
            return False
        plan = self._chat_plan(reply, body, number, recorded.request_id)
        if (request.version != "HTTP/1.1" or reply.close_delimited) and plan.framing == "chunked":
            plan.framing = "close"
        plan.keep_alive = plan.keep_alive and keep_alive
        return await self._send(peer, plan, fault, reply, self._record(recorded, reply, plan))

    def _next_reply(self, recorded: RecordedRequest) -> Reply:
        scripted = self.responder(recorded) if self.responder is not None else None
        if scripted is not None:
            return scripted if isinstance(scripted, Reply) else Reply(fault=scripted)
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: RecordedRequest, reply: Reply, plan: _Plan) -> RecordedResponse:
        sse = any(
            k == "content-type" and v.startswith("text/event-stream") for k, v in plan.headers
        )
        record = RecordedResponse(request.request_id, plan.status, sse, tuple(plan.events), reply)
        with self._lock:
            self._responses.append(record)
        return record

    def _chat_plan(self, reply: Reply, body: dict[str, Any], number: int, request_id: str) -> _Plan:
        fault = reply.fault
        stream = body.get("stream") is True
        if fault is not None and fault.kind == "http_error":
            return self._json_plan(fault.status, fault.body or b"", request_id, fault.headers)
        if fault is not None and fault.kind == "garbage":
            headers = [("content-type", fault.content_type), ("x-request-id", request_id)]
            return _Plan(fault.status, headers, [fault.body or b""], "length", True)

        sse_headers: list[tuple[str, str]] = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("x-request-id", request_id),
        ]
        if reply.raw is not None:
            raw = reply.raw.encode() if isinstance(reply.raw, str) else bytes(reply.raw)
            events = _split_events(raw)
            plan = _Plan(
                reply.status, _merge_headers(sse_headers, reply.headers), events, "chunked", True
            )
        elif reply.chunks is not None:
            events = [_data_event(chunk) for chunk in reply.chunks]
            if reply.done:
                events.append(_DONE)
            plan = _Plan(
                reply.status, _merge_headers(sse_headers, reply.headers), events, "chunked", True
            )
        else:
            content = self._compose(reply, body, number)
            if stream:
                events = self._stream_events(reply, body, content)
                plan = _Plan(
                    reply.status,
                    _merge_headers(sse_headers, reply.headers),
                    events,
                    "chunked",
                    True,
                )
            else:
                json_headers = [("content-type", "application/json"), ("x-request-id", request_id)]
                plan = _Plan(
                    reply.status,
                    _merge_headers(json_headers, reply.headers),
                    [_dumps(self._completion(reply, content))],
                    "length",
                    True,
                )
        if any(
            k.lower() == "connection" and "close" in v.lower()
            for k, v in _iter_headers(reply.headers)
        ):
            plan.keep_alive = False
        if plan.framing == "chunked" and fault is not None:
            plan.events = _apply_body_fault(plan.events, fault)
        return plan

    # composition -----------------------------------------------------------------------
    def _compose(self, reply: Reply, body: dict[str, Any], number: int) -> _Content:
        counter = reply.token_counter or self.token_counter
        messages_any = body.get("messages")
        messages: list[Mapping[str, Any]] = [
            m
            for m in (messages_any if isinstance(messages_any, list) else [])
            if isinstance(m, Mapping)
        ]
        model = str(body.get("model") or DEFAULT_MODEL)
        requested_n = body.get("n")
        if reply.n is not None:
            n = reply.n
        elif reply.text is not None and not isinstance(reply.text, str):
            n = len(reply.text)
        else:
            n = min(requested_n, 128) if isinstance(requested_n, int) and requested_n > 0 else 1
        limit_any = body.get("max_completion_tokens") or body.get("max_tokens")
        limit = limit_any if isinstance(limit_any, int) and limit_any > 0 else None
        no_finish = reply.fault is not None and reply.fault.kind == "no_finish_reason"
        chunk = _chunker(reply)

        choices: list[_Choice] = []
        for index in range(n):
            if reply.is_model_mode:
                text, pieces = self._model_text(reply, body, messages, model, index, number)
            elif reply.pieces is not None:
                pieces = [p for p in reply.pieces if p]
                text = "".join(pieces)
            elif reply.text is not None:
                text = (
                    reply.text
                    if isinstance(reply.text, str)
                    else reply.text[index % len(reply.text)]
                )
                pieces = chunk(text)
            else:
                text, pieces = None, []
            truncated = False
            if limit is not None and text:
                cut_text, truncated = _truncate(text, limit, counter)
                if truncated:
                    pieces = _take_prefix(pieces, len(cut_text))
                    text = cut_text
            if no_finish:
                finish: str | None = None
            elif truncated:
                finish = "length"
            elif reply.finish_reason is not None:
                finish = reply.finish_reason
            else:
                finish = "tool_calls" if reply.tool_calls else "stop"
            choices.append(_Choice(text, pieces, finish))

        tool_calls: list[_ToolCall] = []
        for index, call in enumerate(reply.tool_calls or ()):
            function = call.get("function")
            spec: Mapping[str, Any] = function if isinstance(function, Mapping) else call
            arguments = spec.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            call_id = (
                call.get("id")
                or "call_" + hashlib.sha256(f"{number}:{index}".encode()).hexdigest()[:24]
            )
            tool_calls.append(
                _ToolCall(
                    str(call_id),
                    str(spec.get("name", "")),
                    arguments,
                    chunk(arguments),
                )
            )
        content = _Content(
            id=reply.id or f"chatcmpl-{hashlib.sha256(f'id:{number}'.encode()).hexdigest()[:29]}",
            created=reply.created if reply.created is not None else int(time.time()),
            model=reply.model or model,
            choices=choices,
            reasoning=reply.reasoning,
            reasoning_pieces=chunk(reply.reasoning or ""),
            refusal=reply.refusal,
            refusal_pieces=chunk(reply.refusal or ""),
            tool_calls=tool_calls,
            usage={},
            system_fingerprint=reply.system_fingerprint,
        )
        content.usage = (
            dict(reply.usage) if reply.usage is not None else _usage(messages, content, counter)
        )
        return content

    def _model_text(
        self,
        reply: Reply,
        body: Mapping[str, Any],
        messages: list[Mapping[str, Any]],
        model: str,
        choice: int,
        number: int,
    ) -> tuple[str, list[str]]:
        """Model-mode text and deltas for one choice (the continuation, for prefill)."""
        seed = body.get("seed")
        length = reply.length if reply.length is not None else self.answer_length
        chunk = _chunker(reply)
        prefix = _prefill_prefix(body)
        base = messages[:-1] if prefix is not None else messages
        key = _digest("memory", base, seed, model, choice, length)
        if self.nondeterministic:
            full = generate_answer(
                [*base, {"role": "system", "content": f"#nondeterministic {number}"}],
                seed,
                model,
                length,
                choice=choice,
            )
        else:
            full = generate_answer(base, seed, model, length, choice=choice)
        if prefix is None:
            with self._lock:
                self._memory.append((key, full))
            return full, chunk(full)
        with self._lock:
            known = [text for k, text in reversed(self._memory) if k == key]
        for candidate in [full, *known]:
            if candidate.startswith(prefix):
                rest = _drop_prefix(chunk(candidate), len(prefix))
                return candidate[len(prefix) :], rest
        rest_text = _continuation_fallback(key, prefix, length)
        return rest_text, chunk(rest_text)

    def _chunk_obj(
        self, content: _Content, choices: list[dict[str, Any]], include_usage: bool
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": content.id,
            "object": "chat.completion.chunk",
            "created": content.created,
            "model": content.model,
            "service_tier": "default",
            "system_fingerprint": content.system_fingerprint,
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = None
        return obj

    def _stream_events(
        self, reply: Reply, body: Mapping[str, Any], content: _Content
    ) -> list[bytes]:
        options = body.get("stream_options")
        requested = isinstance(options, Mapping) and options.get("include_usage") is True
        include_usage = reply.include_usage if reply.include_usage is not None else requested
        per_choice: list[list[dict[str, Any]]] = []
        for index, choice in enumerate(content.choices):
            deltas: list[dict[str, Any]] = []
            has_text = bool(choice.pieces)
            tools = content.tool_calls
            first_frags = [
                {
                    "index": j,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                for j, call in enumerate(tools)
            ]
            if reply.role_chunk:
                role: dict[str, Any] = {"role": "assistant"}
                if content.reasoning:
                    role.update({"content": None, reply.reasoning_field: ""})
                elif has_text:
                    role.update({"content": "", "refusal": None})
                elif content.refusal:
                    role.update({"content": None, "refusal": ""})
                else:
                    role.update({"content": None})
                    if len(tools) == 1:
                        role["tool_calls"] = [first_frags[0]]
                deltas.append(role)
            for piece in content.reasoning_pieces:
                deltas.append({"content": None, reply.reasoning_field: piece})
            for piece in choice.pieces:
                deltas.append({"content": piece})
            for piece in content.refusal_pieces:
                deltas.append({"refusal": piece})
            for j, call in enumerate(tools):
                merged = (
                    reply.role_chunk
                    and len(tools) == 1
                    and not (has_text or content.reasoning or content.refusal)
                )
                if not merged:
                    deltas.append({"tool_calls": [first_frags[j]]})
                for piece in call.pieces:
                    deltas.append({"tool_calls": [{"index": j, "function": {"arguments": piece}}]})
            chunk_choices: list[dict[str, Any]] = [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
                for delta in deltas
            ]
            chunk_choices.append(
                {
                    "index": index,
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
            )
            per_choice.append(chunk_choices)

        objects: list[dict[str, Any]] = []
        longest = max((len(c) for c in per_choice), default=0)
        for step in range(longest):  # round-robin interleave of the choices
            for chunk_choices in per_choice:
                if step < len(chunk_choices):
                    objects.append(self._chunk_obj(content, [chunk_choices[step]], include_usage))
        if include_usage:
            if reply.usage_on_finish and objects:
                objects[-1]["usage"] = content.usage
            else:
                usage_obj = self._chunk_obj(content, [], include_usage)
                usage_obj["usage"] = content.usage
                objects.append(usage_obj)
        events = [_data_event(obj) for obj in objects]
        if reply.done:
            events.append(_DONE)
        return events

    def _completion(self, reply: Reply, content: _Content) -> dict[str, Any]:
        choices = []
        for index, choice in enumerate(content.choices):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": choice.text
                if choice.text is not None and (choice.text or not content.tool_calls)
                else None,
                "refusal": content.refusal,
            }
            if content.reasoning is not None:
                message[reply.reasoning_field] = content.reasoning
            if content.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in content.tool_calls
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
            )
        return {
            "id": content.id,
            "object": "chat.completion",
            "created": content.created,
            "model": content.model,
            "choices": choices,
            "usage": content.usage,
            "service_tier": "default",
            "system_fingerprint": content.system_fingerprint,
        }

    # writing ---------------------------------------------------------------------------
    async def _send(
        self,
        peer: _Peer,
        plan: _Plan,
        fault: Fault | None,
        reply: Reply,
        record: RecordedResponse | None = None,
    ) -> bool:
        """Write *plan* to the socket, applying pacing and transport faults; keep *record*'s
        progress one step ahead of each write, so it is final once the client saw the end.

        Returns whether the connection may serve another request.
        """
        if reply.header_delay > 0:
            await peer.wait(reply.header_delay)
        total = sum(len(e) for e in plan.events)
        try:
            phrase = http.HTTPStatus(plan.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {plan.status} {phrase}"]
        lines.extend(f"{name}: {value}" for name, value in plan.headers)
        if plan.framing == "chunked":
            lines.append("transfer-encoding: chunked")
        elif plan.framing == "length":
            lines.append(f"content-length: {total}")
        keep = plan.keep_alive and plan.framing != "close"
        lines.append("connection: keep-alive" if keep else "connection: close")
        await peer.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

        kind = fault.kind if fault is not None else None
        cut_bytes = fault.at_byte if fault is not None and kind == "cut" else None
        cut_events = fault.after_events if fault is not None and kind == "cut" else None
        stall = fault if fault is not None and kind == "stall" else None
        chunked = plan.framing == "chunked"

        async def write(piece: bytes, sent: int) -> None:
            if record is not None:
                record.bytes_sent = sent + len(piece)
            if not piece:
                return
            if chunked:
                await peer.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                await peer.send(piece)

        async def drop(mode: Literal["close", "rst"]) -> Literal[False]:
            if record is not None:
                record.cut = True
            await peer.abort(mode)
            return False

        async def checkpoint(done_events: int) -> bool:
            """Apply event-count faults; False once the connection has been dropped."""
            if stall is not None and stall.after_events == done_events:
                await peer.wait(stall.seconds)
                if stall.then == "close":
                    return await drop(stall.mode)
            if cut_events is not None and cut_events == done_events and fault is not None:
                return await drop(fault.mode)
            return True

        sent = 0
        for index, event in enumerate(plan.events):
            pause = reply.first_delay if index == 0 else _pause(reply.delay, index)
            if pause > 0:
                await peer.wait(pause)
            if not await checkpoint(index):
                return False
            for piece in _pieces(event, reply.split):
                if cut_bytes is not None and fault is not None and sent + len(piece) >= cut_bytes:
                    await write(piece[: cut_bytes - sent], sent)
                    return await drop(fault.mode)
                await write(piece, sent)
                sent += len(piece)
        count = len(plan.events)
        if stall is not None and stall.after_events is not None and stall.after_events >= count:
            stall = replace(stall, after_events=count)
        if cut_events is not None and cut_events > count:
            cut_events = count
        if not await checkpoint(count):
            return False
        if cut_bytes is not None and fault is not None:  # cut at or past the end of the body
            return await drop(fault.mode)
        if record is not None:
            record.complete = True
        if chunked:
            await peer.send(b"0\r\n\r\n")
        elif plan.framing == "close":
            await peer.abort("close")
            return False
        return keep


def _pause(delay: float | Sequence[float], index: int) -> float:
    """The pause before event *index* (>= 1)."""
    if isinstance(delay, (int, float)):
        return float(delay)
    return float(delay[index - 1]) if index - 1 < len(delay) else 0.0


def _pieces(event: bytes, split: Literal["event", "byte"] | int) -> Iterator[bytes]:
    if split == "event":
        yield event
        return
    size = 1 if split == "byte" else int(split)
    for start in range(0, len(event), size):
        yield event[start : start + size]


def _iter_headers(headers: Mapping[str, HeaderValue]) -> Iterator[tuple[str, str]]:
    for name, value in headers.items():
        if isinstance(value, str):
            yield name, value
        else:
            for item in value:
                yield name, str(item)


def _merge_headers(
    defaults: list[tuple[str, str]], extra: Mapping[str, HeaderValue]
) -> list[tuple[str, str]]:
    """*defaults* overridden by *extra* (case-insensitive); framing headers are dropped."""
    given = list(_iter_headers(extra))
    overridden = {name.lower() for name, _ in given}
    merged = [(k, v) for k, v in defaults if k.lower() not in overridden]
    merged.extend(
        (name, value)
        for name, value in given
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    )
    return merged


def _apply_body_fault(events: list[bytes], fault: Fault) -> list[bytes]:
    """Apply the faults that change the SSE events themselves."""
    if fault.kind == "no_done":
        return [e for e in events if not _is_done_event(e)]
    if fault.kind == "invalid_json":
        k = min(fault.after_events or 0, len(events))
        return [*events[:k], b"data: " + (fault.body or b"{") + b"\n\n", *events[k:]]
    if fault.kind == "error_event":
        k = min(fault.after_events or 0, len(events))
        return [*(e for e in events[:k] if not _is_done_event(e)), _error_event(fault)]
    return events


def _error_event(fault: Fault) -> bytes:
    error: dict[str, Any] = (
        dict(fault.error)
        if fault.error is not None
        else {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    )
    if fault.status_in_body is not None:
        error["code"] = fault.status_in_body
    if fault.style == "object":
        payload: dict[str, Any] = {
            "object": "error",
            "message": error.get("message", "Internal server error"),
            "type": error.get("type", "InternalServerError"),
            "param": error.get("param"),
            "code": error.get("code"),
        }
        return _data_event(payload)
    event = _data_event({"error": error})
    return b"event: error\n" + event if fault.style == "event" else event
