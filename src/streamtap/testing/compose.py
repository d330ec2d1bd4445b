"""What a chat-completions answer contains (choices, reasoning, refusal, tool calls, usage),
composed from a reply and the request."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .answers import (
    DEFAULT_MODEL,
    TokenCounter,
    _chunk_text,
    _continuation_fallback,
    _digest,
    _drop_prefix,
    _message_text,
    _prefill_prefix,
    _take_prefix,
    _truncate,
    generate_answer,
)
from .replies import Reply


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


def _chunker(reply: Reply) -> Callable[[str], list[str]]:
    """The reply's delta splitter."""

    def chunk(text: str) -> list[str]:
        return _chunk_text(
            text, chunk_size=reply.chunk_size, tokens_per_chunk=reply.tokens_per_chunk
        )

    return chunk


class AnswerMemory:
    """Model-mode answers served lately, so a prefill request can continue any of them
    (shared by the server's connections: guarded by the server's lock)."""

    def __init__(self, lock: threading.Lock, size: int) -> None:
        self._lock = lock
        self._entries: deque[tuple[int, str]] = deque(maxlen=size)

    def remember(self, key: int, text: str) -> None:
        with self._lock:
            self._entries.append((key, text))

    def known(self, key: int) -> list[str]:
        """The answers remembered under *key*, newest first."""
        with self._lock:
            return [text for k, text in reversed(self._entries) if k == key]


@dataclass(frozen=True)
class _Asked:
    """What request *number* asks for, as composition reads it."""

    body: Mapping[str, Any]
    messages: list[Mapping[str, Any]]
    model: str
    number: int


@dataclass(frozen=True)
class Composer:
    """The server's settings that shape an answer, read once per request."""

    token_counter: TokenCounter
    answer_length: int | None
    nondeterministic: bool
    memory: AnswerMemory

    def compose(self, reply: Reply, body: dict[str, Any], number: int) -> _Content:
        """The answer to request *number* with *body*, as *reply* scripts it."""
        counter = reply.token_counter or self.token_counter
        messages_any = body.get("messages")
        messages: list[Mapping[str, Any]] = [
            m
            for m in (messages_any if isinstance(messages_any, list) else [])
            if isinstance(m, Mapping)
        ]
        model = str(body.get("model") or DEFAULT_MODEL)
        asked = _Asked(body, messages, model, number)
        limit = _token_limit(body)
        chunk = _chunker(reply)
        choices = []
        for index in range(_choice_count(reply, body)):
            text, pieces = self._choice_text(reply, asked, index)
            choices.append(_limited_choice(reply, text, pieces, limit, counter))
        content = _Content(
            id=reply.id or f"chatcmpl-{hashlib.sha256(f'id:{number}'.encode()).hexdigest()[:29]}",
            created=reply.created if reply.created is not None else int(time.time()),
            model=reply.model or model,
            choices=choices,
            reasoning=reply.reasoning,
            reasoning_pieces=chunk(reply.reasoning or ""),
            refusal=reply.refusal,
            refusal_pieces=chunk(reply.refusal or ""),
            tool_calls=_tool_calls(reply, number),
            usage={},
            system_fingerprint=reply.system_fingerprint,
        )
        content.usage = (
            dict(reply.usage) if reply.usage is not None else _usage(messages, content, counter)
        )
        return content

    def _choice_text(self, reply: Reply, asked: _Asked, index: int) -> tuple[str | None, list[str]]:
        """One choice's whole text and its deltas, before any token limit."""
        if reply.is_model_mode:
            return self._model_text(reply, asked, index)
        if reply.pieces is not None:
            pieces = [p for p in reply.pieces if p]
            return "".join(pieces), pieces
        if reply.text is not None:
            text = (
                reply.text if isinstance(reply.text, str) else reply.text[index % len(reply.text)]
            )
            return text, _chunker(reply)(text)
        return None, []

    def _model_text(self, reply: Reply, asked: _Asked, choice: int) -> tuple[str, list[str]]:
        """Model-mode text and deltas for one choice (the continuation, for prefill)."""
        body, messages, model, number = asked.body, asked.messages, asked.model, asked.number
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
            self.memory.remember(key, full)
            return full, chunk(full)
        for candidate in [full, *self.memory.known(key)]:
            if candidate.startswith(prefix):
                rest = _drop_prefix(chunk(candidate), len(prefix))
                return candidate[len(prefix) :], rest
        rest_text = _continuation_fallback(key, prefix, length)
        return rest_text, chunk(rest_text)


def _choice_count(reply: Reply, body: Mapping[str, Any]) -> int:
    if reply.n is not None:
        return reply.n
    if reply.text is not None and not isinstance(reply.text, str):
        return len(reply.text)
    requested = body.get("n")
    return min(requested, 128) if isinstance(requested, int) and requested > 0 else 1


def _token_limit(body: Mapping[str, Any]) -> int | None:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return limit if isinstance(limit, int) and limit > 0 else None


def _limited_choice(
    reply: Reply, text: str | None, pieces: list[str], limit: int | None, counter: TokenCounter
) -> _Choice:
    """The choice, cut to *limit* tokens (finish reason ``length``) when it is longer."""
    truncated = False
    if limit is not None and text:
        cut_text, truncated = _truncate(text, limit, counter)
        if truncated:
            pieces = _take_prefix(pieces, len(cut_text))
            text = cut_text
    return _Choice(text, pieces, _finish_reason(reply, truncated))


def _finish_reason(reply: Reply, truncated: bool) -> str | None:
    if reply.fault is not None and reply.fault.kind == "no_finish_reason":
        return None
    if truncated:
        return "length"
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _tool_calls(reply: Reply, number: int) -> list[_ToolCall]:
    chunk = _chunker(reply)
    calls: list[_ToolCall] = []
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
        calls.append(
            _ToolCall(str(call_id), str(spec.get("name", "")), arguments, chunk(arguments))
        )
    return calls
