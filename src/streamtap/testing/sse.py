"""Server-sent events: framing, splitting a raw body, and the faults that rewrite events."""

from __future__ import annotations

import json
import re
from typing import Any

from .faults import Fault

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


def _apply_body_fault(events: list[bytes], fault: Fault) -> list[bytes]:
    """Apply the faults that change the SSE events themselves."""
    if fault.kind == "no_done":
        return [e for e in events if not _is_done_event(e)]
    if fault.kind == "invalid_json":
        k = min(fault.after_events or 0, len(events))
        return [*events[:k], b"data: " + (fault.body or b"{") + b"\n\n", *events[k:]]
    if fault.kind in ("error_event", "response_failed"):
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
