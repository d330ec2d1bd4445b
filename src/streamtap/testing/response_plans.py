"""Response plans for the Responses API: ``POST .../responses`` (streamed or not) and
``GET .../responses/{id}`` (the stored object, or a background response's events again after
``starting_after``), the store of responses served, and the faults as Responses events."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .compose import Composer
from .faults import Fault, _openai_error
from .headers import _merge_headers
from .http import _Plan
from .plans import fault_plan, json_plan, sse_plan
from .replies import Reply
from .responses import (
    ResponseMeta,
    chat_body,
    final_status,
    is_terminal,
    response_object,
    responses_usage,
    stream_objects,
)
from .sse import _apply_body_fault, _dumps, _is_done_event, _split_events

_SERVER_ERROR = {
    "code": "server_error",
    "message": "The server had an error while processing your request. Sorry about that!",
}


@dataclass(frozen=True)
class StoredResponse:
    """A response as the server generated it (before any fault): its events and its object."""

    events: tuple[dict[str, Any], ...]
    final: dict[str, Any]
    background: bool


class ResponseStore:
    """The responses served lately, by id, for ``GET .../responses/{id}`` (shared by the
    server's connections; bounded)."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, response_id: str, stored: StoredResponse) -> None:
        with self._lock:
            self._entries[response_id] = stored
            self._entries.move_to_end(response_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            return self._entries.get(response_id)


def responses_plan(
    reply: Reply,
    body: dict[str, Any],
    number: int,
    request_id: str,
    composer: Composer,
    store: ResponseStore,
) -> _Plan:
    """The plan answering Responses request *number* with *reply*, body faults applied."""
    fault = reply.fault
    plan = fault_plan(fault, request_id) or _scripted_plan(reply, request_id)
    if plan is not None:
        return plan
    content = composer.compose(reply, chat_body(body), number)
    meta = ResponseMeta.of(reply, body, number)
    objects = stream_objects(reply, meta, content)
    final = dict(objects[-1]["response"])
    store.put(meta.id, StoredResponse(tuple(objects), final, meta.background))
    if body.get("stream") is True:
        plan = sse_plan(reply, request_id, [_event(o) for o in objects])
        if fault is not None:
            plan.events = apply_fault(plan.events, fault)
        return plan
    if meta.background:  # answered at once; the answer is generated "in the background"
        answer = response_object(meta, content, "queued")
    else:
        answer = response_object(
            meta, content, final_status(content), final["output"], responses_usage(content)
        )
    json_headers = [("content-type", "application/json"), ("x-request-id", request_id)]
    return _Plan(
        reply.status, _merge_headers(json_headers, reply.headers), [_dumps(answer)], "length", True
    )


def _scripted_plan(reply: Reply, request_id: str) -> _Plan | None:
    """A reply's own body (``raw`` bytes, or ``chunks`` as named events), faults applied; None
    for a reply whose answer is composed."""
    if reply.raw is not None:
        raw = reply.raw.encode() if isinstance(reply.raw, str) else bytes(reply.raw)
        plan = sse_plan(reply, request_id, _split_events(raw))
    elif reply.chunks is not None:
        plan = sse_plan(reply, request_id, [_event(c) for c in reply.chunks])
    else:
        return None
    if reply.fault is not None:
        plan.events = apply_fault(plan.events, reply.fault)
    return plan


def retrieve_plan(
    reply: Reply, response_id: str, query: str, request_id: str, store: ResponseStore
) -> _Plan:
    """``GET .../responses/{id}``: the stored response object, or with ``stream=true`` its
    events after ``starting_after`` (a background response only), *reply*'s faults applied.
    A reply with its own body (``raw``, ``chunks``: a recorded re-attach) is sent instead."""
    fault = reply.fault
    plan = fault_plan(fault, request_id) or _scripted_plan(reply, request_id)
    if plan is not None:
        return plan
    stored = store.get(response_id)
    if stored is None:
        error = _openai_error(f"Response with id '{response_id}' not found.", param="response_id")
        return json_plan(404, error, request_id)
    params = parse_qs(query)
    if params.get("stream", [""])[-1].lower() != "true":
        return json_plan(200, _dumps(stored.final), request_id, reply.headers)
    if not stored.background:
        error = _openai_error(
            "This response cannot be streamed because it was not created with background=true.",
            param="stream",
        )
        return json_plan(400, error, request_id)
    after = _int(params.get("starting_after", [""])[-1])
    events = [_event(o) for o in stored.events if after is None or o["sequence_number"] > after]
    stream = sse_plan(reply, request_id, events)
    if fault is not None:
        stream.events = apply_fault(stream.events, fault)
    return stream


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _event(obj: Mapping[str, Any] | str) -> bytes:
    """One SSE event, named by its ``type`` like OpenAI's (a str is sent as the data verbatim)."""
    if isinstance(obj, str):
        return b"data: " + obj.encode() + b"\n\n"
    name = str(obj.get("type", "message")).encode()
    return b"event: " + name + b"\ndata: " + _dumps(obj) + b"\n\n"


# -- faults as Responses events ------------------------------------------------------------


def apply_fault(events: list[bytes], fault: Fault) -> list[bytes]:
    """Apply the faults that change a Responses stream's events: ``no_done`` drops the
    terminal event, ``error_event`` / ``response_failed`` end the body with an ``error`` /
    ``response.failed`` event carrying the next sequence number."""
    if fault.kind == "no_done":
        return [e for e in events if not _is_done_event(e) and not is_terminal(_type(e))]
    if fault.kind in ("error_event", "response_failed"):
        k = min(fault.after_events or 0, len(events))
        kept = [e for e in events[:k] if not _is_done_event(e)]
        sequence = _next_sequence(kept)
        if fault.kind == "error_event":
            return [*kept, _error_event(fault, sequence)]
        return [*kept, _failed_event(fault, sequence, events)]
    if fault.kind == "invalid_json":
        return _apply_body_fault(events, fault)
    return events


def _data(event: bytes) -> dict[str, Any] | None:
    lines = [ln[5:].lstrip(b" ") for ln in event.splitlines() if ln.startswith(b"data:")]
    try:
        obj = json.loads(b"\n".join(lines)) if lines else None
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _type(event: bytes) -> object:
    obj = _data(event)
    return obj.get("type") if obj is not None else None


def _next_sequence(events: list[bytes]) -> int:
    """The sequence number after the last event's (its position, in a stream without them)."""
    for event in reversed(events):
        obj = _data(event)
        if obj is not None and isinstance(obj.get("sequence_number"), int):
            return int(obj["sequence_number"]) + 1
    return len(events)


def _error_event(fault: Fault, sequence: int) -> bytes:
    error: dict[str, Any] = dict(fault.error) if fault.error is not None else dict(_SERVER_ERROR)
    error.setdefault("param", None)
    if fault.status_in_body is not None:
        error["code"] = fault.status_in_body
    if fault.style == "object":
        obj: dict[str, Any] = {"type": "error", "error": error, "sequence_number": sequence}
    else:
        obj = {"type": "error", **error, "sequence_number": sequence}
    return b"event: error\ndata: " + _dumps(obj) + b"\n\n"


def _failed_event(fault: Fault, sequence: int, events: list[bytes]) -> bytes:
    """``response.failed``: the stream's response object, failed with the fault's error."""
    response: dict[str, Any] = {"object": "response", "output": []}
    for event in events:
        obj = _data(event)
        if obj is not None and isinstance(obj.get("response"), dict):
            response = dict(obj["response"])
            break
    error = dict(fault.error) if fault.error is not None else dict(_SERVER_ERROR)
    response.update(status="failed", error=error, usage=None, completed_at=None)
    obj = {"type": "response.failed", "response": response, "sequence_number": sequence}
    return _event(obj)
