"""The Responses adapter's side of a resume (`adapter.ResumeAdapter`): re-attach to a background
response, or send the request again and verify the replay.

- A background response (`background=True`, or a stream the caller re-attached itself with
  `retrieve(id, stream=True)`) lives on the server: a broken stream is re-attached with
  `retrieve(id, stream=True, starting_after=N)`, N the sequence number of the last event read
  (strategy `reattach`). Nothing is generated or billed again, tool calls included. The text
  the word buffer held at the break goes out first: the server has it for good.
- Otherwise, and after an in-band failure (`error`, `response.failed`: a re-attach would only
  replay it), the request is sent again: the chat path's verified replay (the Responses API
  cannot prefill an assistant message). Per lane the new text must start with the text the
  caller has; the events the caller has are dropped; the rest continues the stream with the
  first attempt's response and item ids, and sequence numbers that never go down.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._core.resume import Send
from .._core.state import StreamState
from .._exceptions import Diverged
from .adapter import checked_splice
from .responses import _BUFFERED, TERMINAL, ResponsesAdapter

REATTACH = "reattach"
_STRATEGIES = frozenset({"auto", "replay"})
# Failures a re-attach continues exactly (an in-band failure is the response's own: replay).
_REATTACH_CAUSES = frozenset({"transport", "stall", "timeout", "incomplete"})
# What a re-attach keeps of the request that created the response.
_PASSED_ON = ("extra_headers", "extra_query", "timeout")
_LIFECYCLE = frozenset({"response.created", "response.queued", "response.in_progress"})
# A text lane's `.done` event -> its delta event.
_DONE: dict[str, str] = {
    "response.output_text.done": "response.output_text.delta",
    "response.refusal.done": "response.refusal.delta",
    "response.reasoning_text.done": "response.reasoning_text.delta",
    "response.reasoning_summary_text.done": "response.reasoning_summary_text.delta",
}

Key = tuple[Any, Any, Any]  # a lane: (delta event type, output item, part), as the adapter's


class ResponsesResume:
    """Resuming one Responses stream: built per stream with its adapter (`patch`)."""

    __slots__ = (
        "adapter",
        "args",
        "background",
        "create",
        "find_retrieve",
        "held_out",
        "ids",
        "is_retrieve",
        "prefill_style",
        "retrieve",
        "server_id",
        "server_seq",
        "splicing",
        "upto",
    )

    strategies = _STRATEGIES

    def __init__(
        self,
        adapter: ResponsesAdapter,
        create: Any,
        args: Any,
        kwargs: dict[str, Any],
        find_retrieve: Callable[[], Any],
        is_retrieve: bool = False,
    ) -> None:
        self.adapter = adapter
        self.create = create
        self.args = args
        self.find_retrieve = find_retrieve  # the uninstrumented `responses.retrieve`, or None
        self.retrieve: Any = None
        self.is_retrieve = is_retrieve  # the stream is itself a re-attach
        self.background = is_retrieve or kwargs.get("background") is True
        self.prefill_style: str | None = None  # a Response cannot be prefilled
        self.server_id: Any = None  # the response generating on the server now
        if is_retrieve:  # a re-attach names it from the start
            self.server_id = kwargs.get("response_id", args[0] if args else None)
        self.server_seq: int | None = None  # the last event read of it
        self.upto: int | None = None  # the caller has the answer's events up to this number
        self.held_out: list[Any] = []  # held text released for a re-attach, not delivered yet
        self.ids: dict[Any, Any] = {}  # a replay's item ids -> the ids the caller has
        self.splicing: ResponsesSplice | None = None

    @classmethod
    def of(
        cls, adapter: ResponsesAdapter, call: Any, create: Any, args: Any, mark: Any
    ) -> ResponsesResume:
        """The resume of `call`'s stream (`call.Call`); `mark` makes a follow-up request
        uninstrumented. It re-attaches with the SDK's own `retrieve`, looked up at the first
        re-attach (most streams never need it)."""
        if call.retrieving:
            return cls(adapter, create, args, call.kwargs, lambda: create, True)
        resource = call.resource

        def retrieve() -> Any:
            found = sdk_method(resource, "retrieve")
            return None if found is None else mark(found)

        return cls(adapter, create, args, call.kwargs, retrieve)

    def interrupted(self, state: StreamState, last_chunk: Any, cause: str) -> None:
        """Where the server's stream stopped (its response id, the last event read), and how
        far the caller has the answer's events."""
        splice = self.splicing
        if splice is None:  # the first attempt
            self.server_id = state.response_id or self.server_id
            self.server_seq = _seq(last_chunk, state.chunk_count - 1)
        else:
            self.server_id = splice.server_id or self.server_id
            self.server_seq = splice.server_seq
        if self.server_seq is not None and (self.upto is None or self.server_seq > self.upto):
            self.upto = self.server_seq

    def exact_resume(self, cause: str) -> str | None:
        """`reattach`, for a background response whose stream has caught up with what the
        caller has (a replay that broke earlier than the first attempt is replayed again)."""
        seq = self.server_seq
        ready = self.server_id is not None and seq is not None and seq == self.upto
        if not (self.background and ready and cause in _REATTACH_CAUSES):
            return None
        if self.retrieve is None:
            self.retrieve = self.find_retrieve()
        return REATTACH if self.retrieve is not None else None

    def refused(self, strategy: str, status: int) -> bool:
        """A re-attach the server refuses (the response expired or is unknown there): the
        stream is replayed from now on."""
        if strategy == REATTACH and status in (400, 404, 410):
            self.background = False
            return True
        return False

    def answer_complete(self, state: StreamState) -> bool:
        """A terminal event arrived, and it was not `response.failed`."""
        reason = state.finish_reasons.get(0)
        return reason is not None and reason != "failed"

    def request(self, state: StreamState, strategy: str, kwargs: dict[str, Any]) -> Send:
        if strategy != REATTACH:
            return Send(self.create, self.args, kwargs)
        if self.is_retrieve:
            passed = {k: v for k, v in kwargs.items() if k not in ("response_id", "starting_after")}
        else:
            passed = {k: kwargs[k] for k in _PASSED_ON if k in kwargs}
        passed.update(stream=True, starting_after=self.server_seq)
        return Send(self.retrieve, (self.server_id,), passed)

    def splice(self, state: StreamState, strategy: str) -> ResponsesSplice:
        state.settle(keep_latest=False)
        if strategy == REATTACH:
            # The held text is final (the server keeps the response): it goes out first, in the
            # splice's first delivery, rather than dropped to come again.
            self.held_out.extend(self.adapter.flush_chunks(state, None))
        # The in-band failure of the last attempt is history now (the attempts record it).
        state.error_type = None
        splice = ResponsesSplice(self, state, strategy)
        self.splicing = splice
        return splice


class ResponsesSplice:
    """Makes a resumed attempt's events continue the stream the caller has (`Splicer`)."""

    __slots__ = (
        "after",
        "first_id",
        "last_seq",
        "owner",
        "pos",
        "position",
        "prefix",
        "server_id",
        "server_seq",
        "state",
        "strategy",
    )

    def __init__(self, owner: ResponsesResume, state: StreamState, strategy: str) -> None:
        self.owner = owner
        self.state = state
        self.strategy = strategy
        adapter = owner.adapter
        self.first_id = state.response_id  # the id the caller knows the response by
        self.after = owner.upto  # the caller has the events up to this one
        self.last_seq = _seq(adapter.last, None)  # the last number the caller saw
        self.server_id = owner.server_id
        self.server_seq = owner.server_seq
        self.position = 0
        self.prefix: dict[Key, str] = {}
        if strategy != REATTACH:
            for key, lane in adapter.lanes.items():
                if lane.chars and lane.captured is not None:
                    self.prefix[key] = lane.captured.getvalue()
        self.pos = dict.fromkeys(self.prefix, 0)

    def checked(self, event: Any) -> list[Any]:
        """`self(event)`, a failure of streamtap's own taken for a divergence (`checked_splice`)."""
        return checked_splice(self, event, self.state)

    def __call__(self, event: Any) -> list[Any]:
        d = event.__dict__
        kind = d.get("type")
        seq = _seq(event, self.position)
        self.position += 1
        self.server_seq = seq
        if kind in _LIFECYCLE or kind in TERMINAL:
            response = d.get("response")
            if response is not None:
                self.server_id = response.__dict__.get("id") or self.server_id
        if kind == "response.output_item.added":
            self._learn_id(d)
        # An in-band failure is no part of the answer: it reaches the driver, whose resume
        # decision it is, as sent.
        failure = kind == "error" or kind == "response.failed"
        if not failure and self.strategy != REATTACH and not self._replayed(d, kind, seq):
            self.state.chunk_count += 1  # received all the same
            self.state.timing.chunk(self.state.clock())
            return []
        self._stamp(d, kind)
        self._number(d)
        held, self.owner.held_out = self.owner.held_out, []
        return [*held, event]

    # -- a replay ------------------------------------------------------------------------------

    def _replayed(self, d: dict[str, Any], kind: Any, seq: int) -> bool:
        """Whether a replayed event still says something the caller does not have (its text
        checked against, and cut by, what the caller has)."""
        beyond = self.after is None or seq > self.after  # past what the caller had
        buffered = _BUFFERED.get(kind)
        if buffered is not None:
            keep = self._skip(d, _key(d, kind, buffered[0]))
            if keep and beyond and any(self.prefix.values()):
                raise Diverged("the replay went on before reproducing the text already delivered")
            return keep
        done = _DONE.get(kind)
        if done is not None:
            if self.prefix.get(_key(d, done, _BUFFERED[done][0])):
                raise Diverged("replay finished a text before reaching the delivered text")
        if not beyond:
            return False  # the caller has it
        if any(self.prefix.values()):
            raise Diverged("the replay went on before reproducing the text already delivered")
        return True

    def _skip(self, d: dict[str, Any], key: Key) -> bool:
        text = d.get("delta")
        want = self.prefix.get(key)
        if not isinstance(text, str) or not text or not want:
            return bool(text)
        pos = self.pos[key]
        n = min(len(text), len(want) - pos)
        if text[:n] != want[pos : pos + n]:
            raise Diverged(f"replay diverged from the delivered text at character {pos}")
        self.pos[key] = pos + n
        if self.pos[key] == len(want):
            self.prefix[key] = ""
        d["delta"] = text[n:]
        return bool(d["delta"])

    # -- what every resumed event carries --------------------------------------------------------

    def _learn_id(self, d: dict[str, Any]) -> None:
        """A replay's item at an output index the caller knows under another id: map it."""
        item = d.get("item")
        new = item.__dict__.get("id") if item is not None else None
        old = self.owner.adapter.items.get(d.get("output_index"))
        if new is not None and old is not None and new != old:
            self.owner.ids[new] = old

    def _stamp(self, d: dict[str, Any], kind: Any) -> None:
        """The ids the caller knows: the first attempt's response id, and its items' ids."""
        ids = self.owner.ids
        response = d.get("response")
        if response is not None and self.first_id is not None:
            rd = response.__dict__
            rd["id"] = self.first_id
            if ids:
                for item in rd.get("output") or ():
                    _map_id(item.__dict__, "id", ids)
        if not ids:
            return
        if "item_id" in d:
            _map_id(d, "item_id", ids)
        item = d.get("item")
        if item is not None:
            _map_id(item.__dict__, "id", ids)

    def _number(self, d: dict[str, Any]) -> None:
        """Sequence numbers the caller sees never go down (a replay's text the caller had not
        got yet comes in events numbered before the last one it saw)."""
        seq = d.get("sequence_number")
        if not isinstance(seq, int):
            return
        if self.last_seq is not None and seq < self.last_seq:
            d["sequence_number"] = self.last_seq
        else:
            self.last_seq = seq


def sdk_method(resource: Any, name: str) -> Any:
    """`resource.<name>` as the SDK defines it (not streamtap's wrapper), bound; None if absent."""
    try:
        attr = inspect.getattr_static(type(resource), name)
        function = getattr(attr, "__wrapped__", attr)
        return function.__get__(resource, type(resource))
    except Exception:
        return None


def _seq(event: Any, default: int | None) -> Any:
    seq = event.__dict__.get("sequence_number") if event is not None else None
    return seq if isinstance(seq, int) else default


def _key(d: dict[str, Any], kind: str, part_field: str) -> Key:
    item = d.get("output_index")
    if item is None:
        item = d.get("item_id")
    return (kind, item, d.get(part_field))


def _map_id(d: dict[str, Any], field: str, ids: dict[Any, Any]) -> None:
    old = ids.get(d.get(field))
    if old is not None:
        d[field] = old
