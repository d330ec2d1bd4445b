"""The JSON of an answer: streamed ``chat.completion.chunk`` events or one ``chat.completion``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .compose import _Choice, _Content
from .replies import Reply
from .sse import _DONE, _data_event


def _chunk_obj(
    content: _Content, choices: list[dict[str, Any]], include_usage: bool
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


def stream_events(reply: Reply, body: Mapping[str, Any], content: _Content) -> list[bytes]:
    """The SSE events of a streamed answer: the choices' chunks interleaved, the usage chunk
    if asked for, then ``[DONE]``."""
    options = body.get("stream_options")
    requested = isinstance(options, Mapping) and options.get("include_usage") is True
    include_usage = reply.include_usage if reply.include_usage is not None else requested
    per_choice = [
        _choice_entries(index, choice, _choice_deltas(reply, content, choice))
        for index, choice in enumerate(content.choices)
    ]
    objects: list[dict[str, Any]] = []
    longest = max((len(c) for c in per_choice), default=0)
    for step in range(longest):  # round-robin interleave of the choices
        for entries in per_choice:
            if step < len(entries):
                objects.append(_chunk_obj(content, [entries[step]], include_usage))
    if include_usage:
        if reply.usage_on_finish and objects:
            objects[-1]["usage"] = content.usage
        else:
            usage_obj = _chunk_obj(content, [], include_usage)
            usage_obj["usage"] = content.usage
            objects.append(usage_obj)
    events = [_data_event(obj) for obj in objects]
    if reply.done:
        events.append(_DONE)
    return events


def _choice_entries(
    index: int, choice: _Choice, deltas: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One chunk ``choices`` entry per delta, then the one carrying the finish reason."""
    entries: list[dict[str, Any]] = [
        {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        for delta in deltas
    ]
    entries.append(
        {"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.finish_reason}
    )
    return entries


def _choice_deltas(reply: Reply, content: _Content, choice: _Choice) -> list[dict[str, Any]]:
    """The deltas of one choice: role, reasoning, text, refusal, then tool calls."""
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
    has_text = bool(choice.pieces)
    deltas: list[dict[str, Any]] = []
    if reply.role_chunk:
        deltas.append(_role_delta(reply, content, has_text, first_frags))
    for piece in content.reasoning_pieces:
        deltas.append({"content": None, reply.reasoning_field: piece})
    for piece in choice.pieces:
        deltas.append({"content": piece})
    for piece in content.refusal_pieces:
        deltas.append({"refusal": piece})
    # Like OpenAI: a lone tool call with nothing else opens in the role delta itself.
    merged = (
        reply.role_chunk
        and len(tools) == 1
        and not (has_text or content.reasoning or content.refusal)
    )
    for j, call in enumerate(tools):
        if not merged:
            deltas.append({"tool_calls": [first_frags[j]]})
        for piece in call.pieces:
            deltas.append({"tool_calls": [{"index": j, "function": {"arguments": piece}}]})
    return deltas


def _role_delta(
    reply: Reply, content: _Content, has_text: bool, first_frags: list[dict[str, Any]]
) -> dict[str, Any]:
    role: dict[str, Any] = {"role": "assistant"}
    if content.reasoning:
        role.update({"content": None, reply.reasoning_field: ""})
    elif has_text:
        role.update({"content": "", "refusal": None})
    elif content.refusal:
        role.update({"content": None, "refusal": ""})
    else:
        role.update({"content": None})
        if len(first_frags) == 1:
            role["tool_calls"] = [first_frags[0]]
    return role


def completion(reply: Reply, content: _Content) -> dict[str, Any]:
    """The body of a non-streamed answer (``chat.completion``)."""
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
