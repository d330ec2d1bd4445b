"""Response plans: status, headers and body events for each route, and request validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .bodies import completion, stream_events
from .compose import Composer
from .faults import Fault, _openai_error
from .headers import HeaderValue, _merge_headers
from .http import _Plan
from .replies import Reply
from .sse import _DONE, _apply_body_fault, _data_event, _dumps, _split_events


def json_plan(
    status: int, body: bytes, request_id: str, extra: Mapping[str, HeaderValue] = {}
) -> _Plan:
    """A JSON answer with a content-length (errors, model lists, non-streamed answers)."""
    headers = _merge_headers(
        [("content-type", "application/json"), ("x-request-id", request_id)], extra
    )
    return _Plan(status, headers, [body], "length", True)


def refusal(
    body: dict[str, Any], *, supports_prefill: bool, supports_stream_options: bool
) -> bytes | None:
    """The 400 error body for a request using something this server refuses, else None."""
    if "stream_options" in body:
        error = _stream_options_error(body, supports_stream_options)
        if error is not None:
            return error
    if not supports_prefill:
        error = _prefill_unsupported_error(body)
        if error is not None:
            return error
    if body.get("continue_final_message") is True:
        return _continue_final_message_error(body)
    return None


def _stream_options_error(body: Mapping[str, Any], supported: bool) -> bytes | None:
    if not supported:
        return _openai_error("Unrecognized request argument supplied: stream_options")
    if body["stream_options"] is not None and body.get("stream") is not True:
        return _openai_error(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return None


def _prefill_unsupported_error(body: Mapping[str, Any]) -> bytes | None:
    """OpenAI's error for the prefill arguments of vLLM (flags) or DeepSeek (``prefix``)."""
    flags = [k for k in ("add_generation_prompt", "continue_final_message") if k in body]
    if flags:
        noun = "argument" if len(flags) == 1 else "arguments"
        return _openai_error(f"Unrecognized request {noun} supplied: {', '.join(flags)}")
    messages = body.get("messages")
    prefixed = [
        i
        for i, m in enumerate(messages if isinstance(messages, list) else [])
        if isinstance(m, Mapping) and "prefix" in m
    ]
    if prefixed:
        i = prefixed[0]
        return _openai_error(
            f"Additional properties are not allowed ('prefix' was unexpected) - 'messages.{i}'",
            param=f"messages.[{i}]",
        )
    return None


def _continue_final_message_error(body: Mapping[str, Any]) -> bytes | None:
    """vLLM's errors for a ``continue_final_message`` request it cannot continue."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if body.get("add_generation_prompt") is not False:
        return _openai_error(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            param="continue_final_message",
        )
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        return _openai_error(
            "continue_final_message is set but the final message is not from the assistant.",
            param="messages",
        )
    return None


def chat_plan(
    reply: Reply, body: dict[str, Any], number: int, request_id: str, composer: Composer
) -> _Plan:
    """The plan answering chat-completions request *number* with *reply*, body faults applied."""
    fault = reply.fault
    failed = fault_plan(fault, request_id)
    if failed is not None:
        return failed
    plan = _content_plan(reply, body, number, request_id, composer)
    if plan.framing == "chunked" and fault is not None:
        plan.events = _apply_body_fault(plan.events, fault)
    return plan


def fault_plan(fault: Fault | None, request_id: str) -> _Plan | None:
    """The plan of a fault that replaces the answer (an HTTP error, garbage), else None."""
    if fault is not None and fault.kind == "http_error":
        return json_plan(fault.status, fault.body or b"", request_id, fault.headers)
    if fault is not None and fault.kind == "garbage":
        headers = [("content-type", fault.content_type), ("x-request-id", request_id)]
        return _Plan(fault.status, headers, [fault.body or b""], "length", True)
    return None


def _content_plan(
    reply: Reply, body: dict[str, Any], number: int, request_id: str, composer: Composer
) -> _Plan:
    """The plan for the reply's content: raw SSE, given chunks, or a composed answer."""
    if reply.raw is not None:
        raw = reply.raw.encode() if isinstance(reply.raw, str) else bytes(reply.raw)
        return sse_plan(reply, request_id, _split_events(raw))
    if reply.chunks is not None:
        events = [_data_event(chunk) for chunk in reply.chunks]
        if reply.done:
            events.append(_DONE)
        return sse_plan(reply, request_id, events)
    content = composer.compose(reply, body, number)
    if body.get("stream") is True:
        return sse_plan(reply, request_id, stream_events(reply, body, content))
    json_headers = [("content-type", "application/json"), ("x-request-id", request_id)]
    return _Plan(
        reply.status,
        _merge_headers(json_headers, reply.headers),
        [_dumps(completion(reply, content))],
        "length",
        True,
    )


def sse_plan(reply: Reply, request_id: str, events: list[bytes]) -> _Plan:
    sse_headers: list[tuple[str, str]] = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("x-request-id", request_id),
    ]
    return _Plan(reply.status, _merge_headers(sse_headers, reply.headers), events, "chunked", True)
