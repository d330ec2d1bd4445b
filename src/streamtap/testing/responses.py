"""The JSON of a Responses API answer: its streamed events (``response.created`` ...
``response.completed``, each with its ``sequence_number``) or one ``response`` object.

The content comes from the same composition as a chat completion (:mod:`.compose`), so every
reply script (text, pieces, chunking, reasoning, refusal, tool calls, model mode, token limits)
serves both protocols; a Responses request is read as the chat request it amounts to.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .answers import DEFAULT_MODEL, _message_text
from .compose import _Content, _ToolCall
from .replies import Reply

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions request a Responses request amounts to, for composing its answer:
    ``instructions`` and ``input`` as messages, ``max_output_tokens`` as the token limit."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        messages.extend(_input_message(item) for item in given if isinstance(item, Mapping))
    return {
        "messages": messages,
        "model": body.get("model"),
        "max_tokens": body.get("max_output_tokens"),
        "n": 1,
    }


def _input_message(item: Mapping[str, Any]) -> dict[str, Any]:
    """One input item as a chat message (role and text; tool outputs as tool messages)."""
    if item.get("type") == "function_call_output":
        return {"role": "tool", "content": str(item.get("output", ""))}
    if item.get("type") == "function_call":
        return {"role": "assistant", "content": str(item.get("arguments", ""))}
    content = item.get("content", "")
    if isinstance(content, list):  # input parts: their text, so every form of an input is one
        content = _message_text({"content": content})
    return {"role": str(item.get("role", "user")), "content": content}


@dataclass(frozen=True)
class ResponseMeta:
    """What a Responses answer says about itself apart from its content."""

    id: str
    """``resp_...``: the reply's own, or derived from the request number (stable per run)."""
    created_at: int
    background: bool
    """Asked with ``background: true``: answered at once, re-attachable with ``GET``."""
    request: Mapping[str, Any]
    """The request body: model, instructions, tools and the other fields the answer echoes."""

    @classmethod
    def of(cls, reply: Reply, body: Mapping[str, Any], number: int) -> ResponseMeta:
        rid = reply.id or "resp_" + _hex(f"resp:{number}", 48)
        created = reply.created if reply.created is not None else int(time.time())
        return cls(rid, created, body.get("background") is True, body)


def _hex(seed: str, size: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:size]


# -- the response object ----------------------------------------------------------------------


def response_object(
    meta: ResponseMeta,
    content: _Content,
    status: str,
    output: list[dict[str, Any]] | None = None,
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object in *status* (``queued``, ``in_progress``, ``completed``, ...)."""
    request = meta.request
    finished = status in ("completed", "incomplete", "failed")
    reason = _incomplete_reason(content) if status == "incomplete" else None
    return {
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status,
        "background": meta.background,
        "completed_at": meta.created_at + 1 if finished else None,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": content.model or DEFAULT_MODEL,
        "output": output or [],
        "parallel_tool_calls": True,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": request.get("store", True) is not False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": list(request.get("tools") or []),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": dict(usage) if usage is not None else None,
        "user": None,
        "metadata": dict(request.get("metadata") or {}),
    }


def final_status(content: _Content) -> str:
    """``incomplete`` when the answer was cut (token limit, content filter), else ``completed``."""
    return "incomplete" if _incomplete_reason(content) else "completed"


def _incomplete_reason(content: _Content) -> str | None:
    reason = content.choices[0].finish_reason if content.choices else None
    if reason == "length":
        return "max_output_tokens"
    if reason == "content_filter":
        return "content_filter"
    return None


def responses_usage(content: _Content) -> dict[str, Any]:
    """The Responses usage object (a reply's own usage in that shape is sent as given)."""
    usage = content.usage
    if "input_tokens" in usage or "prompt_tokens" not in usage:
        return dict(usage)
    details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": details.get("reasoning_tokens", 0)},
        "total_tokens": usage.get("total_tokens", 0),
    }


# -- the events ------------------------------------------------------------------------------


class _Events:
    """Collects events, numbering them as they come."""

    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> None:
        self.out.append({"type": kind, **fields, "sequence_number": len(self.out)})


def stream_objects(reply: Reply, meta: ResponseMeta, content: _Content) -> list[dict[str, Any]]:
    """The events of a streamed answer, in order: the response's lifecycle, then each output
    item (reasoning summary, message with its text and refusal parts, function calls) with its
    deltas, then ``response.completed`` (``response.incomplete`` when cut by a token limit)."""
    events = _Events()
    first = "queued" if meta.background else "in_progress"
    events.add("response.created", response=response_object(meta, content, first))
    if meta.background:
        events.add("response.queued", response=response_object(meta, content, "queued"))
    events.add("response.in_progress", response=response_object(meta, content, "in_progress"))
    items = _output_items(events, content, meta)
    status = final_status(content)
    final = response_object(meta, content, status, items, responses_usage(content))
    events.add(f"response.{status}", response=final)
    return events.out


def _output_items(events: _Events, content: _Content, meta: ResponseMeta) -> list[dict[str, Any]]:
    """Stream every output item; returns the finished items (the final response's output)."""
    items: list[dict[str, Any]] = []
    if content.reasoning is not None:
        items.append(_reasoning_item(events, len(items), content, meta))
    choice = content.choices[0] if content.choices else None
    has_text = choice is not None and choice.text is not None
    if has_text or content.refusal is not None or not content.tool_calls:
        items.append(_message_item(events, len(items), content, meta))
    for j, call in enumerate(content.tool_calls):
        items.append(_function_call_item(events, len(items), call, f"{meta.id}:{j}"))
    return items


def _reasoning_item(
    events: _Events, index: int, content: _Content, meta: ResponseMeta
) -> dict[str, Any]:
    item_id = "rs_" + _hex(f"rs:{meta.id}", 48)
    text = content.reasoning or ""
    where = {"item_id": item_id, "output_index": index, "summary_index": 0}
    events.add(
        "response.output_item.added",
        item={"id": item_id, "type": "reasoning", "summary": []},
        output_index=index,
    )
    events.add("response.reasoning_summary_part.added", **where, part=_summary(""))
    for piece in content.reasoning_pieces:
        events.add("response.reasoning_summary_text.delta", **where, delta=piece)
    events.add("response.reasoning_summary_text.done", **where, text=text)
    events.add("response.reasoning_summary_part.done", **where, part=_summary(text))
    item = {"id": item_id, "type": "reasoning", "summary": [_summary(text)]}
    events.add("response.output_item.done", item=item, output_index=index)
    return item


def _summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _message_item(
    events: _Events, index: int, content: _Content, meta: ResponseMeta
) -> dict[str, Any]:
    item_id = "msg_" + _hex(f"msg:{meta.id}", 48)
    head = {"id": item_id, "type": "message", "role": "assistant"}
    events.add(
        "response.output_item.added",
        item={**head, "status": "in_progress", "content": []},
        output_index=index,
    )
    choice = content.choices[0] if content.choices else None
    parts: list[dict[str, Any]] = []
    where = {"item_id": item_id, "output_index": index}
    if choice is not None and choice.text is not None:
        parts.append(_text_part(events, where, len(parts), choice.text, choice.pieces))
    if content.refusal is not None:
        parts.append(_refusal_part(events, where, len(parts), content))
    status = "incomplete" if final_status(content) == "incomplete" else "completed"
    item = {**head, "status": status, "content": parts}
    events.add("response.output_item.done", item=item, output_index=index)
    return item


def _text_part(
    events: _Events, where: dict[str, Any], part: int, text: str, pieces: list[str]
) -> dict[str, Any]:
    at = {**where, "content_index": part}
    events.add("response.content_part.added", **at, part=_output_text(""))
    for piece in pieces:
        events.add("response.output_text.delta", **at, delta=piece, logprobs=[])
    events.add("response.output_text.done", **at, text=text, logprobs=[])
    events.add("response.content_part.done", **at, part=_output_text(text))
    return _output_text(text)


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _refusal_part(
    events: _Events, where: dict[str, Any], part: int, content: _Content
) -> dict[str, Any]:
    at = {**where, "content_index": part}
    text = content.refusal or ""
    events.add("response.content_part.added", **at, part={"type": "refusal", "refusal": ""})
    for piece in content.refusal_pieces:
        events.add("response.refusal.delta", **at, delta=piece)
    events.add("response.refusal.done", **at, refusal=text)
    events.add("response.content_part.done", **at, part={"type": "refusal", "refusal": text})
    return {"type": "refusal", "refusal": text}


def _function_call_item(events: _Events, index: int, call: _ToolCall, seed: str) -> dict[str, Any]:
    item_id = "fc_" + _hex(f"fc:{seed}", 48)
    head = {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name}
    events.add(
        "response.output_item.added",
        item={**head, "status": "in_progress", "arguments": ""},
        output_index=index,
    )
    where = {"item_id": item_id, "output_index": index}
    for piece in call.pieces:
        events.add("response.function_call_arguments.delta", **where, delta=piece)
    events.add(
        "response.function_call_arguments.done", **where, name=call.name, arguments=call.arguments
    )
    item = {**head, "status": "completed", "arguments": call.arguments}
    events.add("response.output_item.done", item=item, output_index=index)
    return item


def is_terminal(kind: object) -> bool:
    """Whether an event type ends a Responses stream."""
    return kind in _TERMINAL
