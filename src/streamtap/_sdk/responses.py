"""The Responses API adapter: reads and rewrites the SDK's typed Responses stream events.

A Responses stream is a sequence of typed events (`response.created`, ...,
`response.output_text.delta`, ..., `response.completed`). The text a reader shows travels in
four kinds of delta event; each (kind, output item, part) is a lane of its own, word-buffered
like a chat choice's content. Everything else (function and tool call arguments, built-in tool
progress, the `.done` events with the full text, the lifecycle events) passes through untouched.

What the caller sees (docs/events.md, "The Responses API"):

- a delta event whose text is all held is delivered with `delta == ""`; text released later goes
  out in a copy of the lane's last delta event carrying it (`logprobs` empty: the tokens' own
  logprobs stayed on the events that brought them);
- held text is released before the next event that is not a text delta (the lane's `.done`,
  `response.completed`, an annotation, the next output item, ...), and at the end of the stream
  or before its exception;
- a released copy carries the `sequence_number` of the event delivered just before it: the
  numbers a caller sees never go down, and `starting_after=<the last number seen>` stays right
  (the copy's text came from events up to that number).

All lanes belong to choice 0 (a Response is one answer): the stream is complete when a terminal
event (`response.completed` / `response.incomplete` / `response.failed`) arrived.
"""

from __future__ import annotations

from typing import Any

from .._core import machine
from .._core.machine import fast_text
from .._core.state import CONTENT, REASONING, REFUSAL, SUMMARY, Lane, StreamState, lane_key
from .adapter import DELIVER, ERROR, RELEASE, flat_usage
from .pydantic_compat import copy_model, dump, extras

# The buffered delta events: type -> (the field naming the part within the item, channel).
_BUFFERED: dict[str, tuple[str, int]] = {
    "response.output_text.delta": ("content_index", CONTENT),
    "response.refusal.delta": ("content_index", REFUSAL),
    "response.reasoning_text.delta": ("content_index", REASONING),
    "response.reasoning_summary_text.delta": ("summary_index", SUMMARY),
}
_IDENTITY = frozenset({"response.created", "response.queued", "response.in_progress"})
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesAdapter:
    """One stream's adapter (`adapter.Adapter`): lanes by (event type, output item, part), and
    what a released copy is made from."""

    __slots__ = (
        "hot_field",
        "hot_index",
        "hot_item",
        "hot_kind",
        "hot_lane",
        "items",
        "lanes",
        "last",
        "next_last",
        "templates",
        "texted",
    )

    def __init__(self) -> None:
        self.lanes: dict[tuple[str, Any, Any], Lane] = {}
        # Each lane's latest delta event that left text held (what a copy is made from).
        self.templates: dict[Lane, Any] = {}
        self.items: dict[Any, Any] = {}  # output index -> the item's id (a replay keeps them)
        self.last: Any = None  # the latest event delivered (its sequence number goes on copies)
        self.next_last: Any = None  # the event that becomes `last` once held text went out
        self.texted = False  # some text went through the machine (the first token is timed)
        # The lane of the latest text delta: nearly every event is the next delta of the same
        # lane, told apart by three comparisons (no hashing of the fresh type string, no key).
        self.hot_kind: str | None = None
        self.hot_item: int = -1
        self.hot_field = ""
        self.hot_index: Any = None
        self.hot_lane: Any = None  # (a Lane whenever hot_kind is set)

    def process_chunk(self, state: StreamState, event: Any, now: float, hide_usage: bool) -> int:
        """Feed one event to the machine and rewrite its delta in place."""
        try:
            d = event.__dict__
            kind = d["type"]
        except (AttributeError, KeyError):  # not an SDK event model: pass it on
            return DELIVER
        if (
            kind == self.hot_kind
            and d.get("output_index") == self.hot_item
            and d.get(self.hot_field) == self.hot_index
        ):
            lane = self.hot_lane
        else:
            buffered = _BUFFERED.get(kind)
            if buffered is None:
                return self._other(state, event, d, kind, now)
            lane = self._lane(state, d, kind, buffered)
        self.last = event
        text = d.get("delta")
        if type(text) is str and text:
            if self.texted:
                out = fast_text(state, lane, text, now)
            else:
                machine.chunk(state, now)
                out = machine.text(state, lane, text, now)
                self.texted = True
            if out is not text:
                d["delta"] = out
                # (Text held after this event means it changed: an event passed through whole
                # leaves nothing held, and needs no copy.)
                self.templates[lane] = event
            logprobs = d.get("logprobs")
            if logprobs:  # the server's own tokens, one entry each: an exact count
                machine.exact_tokens(state, len(logprobs))
        else:
            machine.chunk(state, now)
        return DELIVER

    def _lane(
        self, state: StreamState, d: dict[str, Any], kind: str, buffered: tuple[str, int]
    ) -> Lane:
        """The lane of a text delta (made on first use), remembered as the hot one."""
        field, channel = buffered
        item = d.get("output_index")
        index = d.get(field)
        key = (kind, item if item is not None else d.get("item_id"), index)
        lane = self.lanes.get(key)
        if lane is None:
            lane = state.lane(0, channel, "delta", key=lane_key(len(self.lanes), channel))
            self.lanes[key] = lane
        if type(item) is int:  # (no output_index: an item_id key, found the long way)
            self.hot_kind, self.hot_item, self.hot_field = kind, item, field
            self.hot_index, self.hot_lane = index, lane
        else:
            self.hot_kind = None
        return lane

    def _other(
        self, state: StreamState, event: Any, d: dict[str, Any], kind: Any, now: float
    ) -> int:
        """Any event but a buffered text delta: held text goes out before it."""
        machine.chunk(state, now)
        if kind in _IDENTITY or kind in TERMINAL:
            _record_response(state, d.get("response"), kind)
            if kind == "response.failed":
                # A failure on the server's side, like an `error` event: resumed when its
                # cause is one a new attempt may not meet (`error_object` gives the cause).
                self.next_last = event
                return ERROR
        elif kind == "response.output_item.added":
            item = d.get("item")
            if item is not None:
                self.items[d.get("output_index")] = item.__dict__.get("id")
        elif kind == "error":
            code = d.get("code")
            state.error_type = str(code) if code else "error"
            self.next_last = event
            return ERROR  # the drivers release held text, then deliver it (`_surface`)
        elif isinstance(kind, str) and kind.endswith(".delta"):
            machine.other(state, now)  # arguments of a call, code: the first token, too
        if state.held_lanes():
            self.next_last = event
            return RELEASE
        self.last = event
        return DELIVER

    def flush_chunks(
        self,
        state: StreamState,
        last_chunk: Any,
        now: float | None = None,
        lanes: list[Lane] | None = None,
    ) -> list[Any]:
        """Copies of each held lane's latest delta event carrying its held text: all of it
        (`now` None) or what the hold bound says is due by `now`."""
        try:
            held = state.held_lanes() if lanes is None else lanes
            if not held:
                return []
            seq = _sequence_number(self.last)
            out = []
            for lane in held:
                template = self.templates.get(lane)
                text = state.release(lane, now)
                if text and template is not None:
                    out.append(_copy_with(template, text, seq))
            return out
        finally:
            if self.next_last is not None:
                self.last, self.next_last = self.next_last, None

    def salvage(self, state: StreamState, event: Any) -> list[Any]:
        """After an internal error on `event`: held text on the side of it where it belongs
        (see `chat.salvage`), and the rest of the stream unbuffered."""
        n = state.chunk_count
        held = state.held_lanes()
        before = self.flush_chunks(state, event, lanes=[ln for ln in held if ln.last_at != n])
        after = self.flush_chunks(state, event, lanes=[ln for ln in held if ln.last_at == n])
        for lane in state.lanes.values():
            lane.seg = None
        return [*before, event, *after]

    def error_object(self, event: Any) -> Exception:
        """The exception standing for an in-band `error` event (delivered as the SDK gave it)."""
        from .._exceptions import ErrorObject

        d = event.__dict__
        if d.get("type") == "response.failed":  # the cause is the response's error
            response = d.get("response")
            error = response.__dict__.get("error") if response is not None else None
            return ErrorObject(event, dump(error) if error is not None else {})
        body = dict(d)
        extra = extras(event)
        if extra:
            body.update(extra)
        return ErrorObject(event, body)


def _sequence_number(event: Any) -> Any:
    return None if event is None else event.__dict__.get("sequence_number")


def _copy_with(template: Any, text: str, seq: Any) -> Any:
    """A copy of a delta event carrying `text`, numbered `seq` (when events are numbered)."""
    d = template.__dict__
    update: dict[str, Any] = {"delta": text}
    if seq is not None and "sequence_number" in d:
        update["sequence_number"] = seq
    if d.get("logprobs"):
        update["logprobs"] = []
    return copy_model(template, update)


def _record_response(state: StreamState, response: Any, kind: str) -> None:
    """The facts of a lifecycle event's `response`: identity, and at the end status and usage."""
    if response is None:
        return
    d = response.__dict__
    machine.response(state, d.get("id"), d.get("created_at"), d.get("model"))
    machine.choice_seen(state, 0)  # (a Response is one answer)
    if kind not in TERMINAL:
        return
    status = d.get("status") or kind.rpartition(".")[2]
    reason = None
    details = d.get("incomplete_details")
    if details is not None:
        reason = dump(details).get("reason")
    state.request["streamtap.response.status"] = status
    if reason:
        state.request["streamtap.response.incomplete_reason"] = reason
    machine.finish(state, 0, reason or status)
    error = d.get("error")
    if status == "failed":
        code = dump(error).get("code") if error is not None else None
        state.error_type = str(code) if code else "response.failed"
    usage = d.get("usage")
    if usage is not None:
        counts = usage_dict(usage)
        if any(counts.values()):  # (all zeros, as on some incomplete responses: no bill at all)
            machine.usage(state, counts)


def usage_dict(usage: Any) -> dict[str, int]:
    """Responses usage in the flat names the summary reads (those of chat completions)."""
    return flat_usage(dump(usage), _USAGE_TOTALS, "input_tokens_details", "output_tokens_details")


_USAGE_TOTALS = (
    ("input_tokens", "prompt_tokens"),
    ("output_tokens", "completion_tokens"),
    ("total_tokens", "total_tokens"),
)


def record_response(state: StreamState, response: Any) -> None:
    """Account for a non-streamed `Response`."""
    d = response.__dict__
    _record_response(state, response, "response.completed")
    for item in d.get("output") or ():
        idd = item.__dict__
        if idd.get("type") != "message":
            continue
        for part in idd.get("content") or ():
            pd = part.__dict__
            kind = pd.get("type")
            text = pd.get("text") if kind == "output_text" else pd.get("refusal")
            if isinstance(text, str) and text:
                channel = CONTENT if kind == "output_text" else REFUSAL
                lane = state.lane(0, channel, "text", key=lane_key(len(state.lanes), channel))
                lane.pending.append(text)
