"""Replies: what the server answers one request with (text, chunks, raw body, pacing)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .answers import TokenCounter
from .faults import Fault
from .headers import _HOP_BY_HOP, HeaderValue


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
