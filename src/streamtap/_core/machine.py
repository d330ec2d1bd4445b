"""The stream machine: what one stream's events mean, decided without any I/O or SDK object.

Sans-IO and protocol-neutral, like h11 and wsproto: a protocol adapter (`_chat` for chat
completion chunks) parses what the SDK hands over into the events below and renders what they
return; the drivers (`_drivers`) read, deliver and carry out the decisions. The machine's state is
a `StreamState` (lanes with their segmenter and token counter, timing, usage, finish reasons).

Events and what they return:

- `chunk(state, now)`: a unit of the stream arrived (counted and timed, text or not).
- `text(state, lane, text, now)` -> the text the caller may see now ("" while it is held).
- `fast_text(...)`: the same for the one-lane common case (the adapter's short path).
- `response(...)`, `usage(...)`, `exact_tokens(...)`: facts about the answer.
- `other(state, now)`: a payload that is not text (a tool call, audio): held text goes first.
- `opaque(state, index, payload)`: content the lanes cannot read, passed through and remembered.
- `finish(state, index, reason)`: a choice ended; its held text is released with it.
- `release(state, index)` -> [(lane, text)]: held text to deliver now (the adapter renders it);
  `due(state, now)`: what the hold bound says is due while the next chunk is late.
- `resume(state)`: a resumed attempt begins; held text is dropped (it will come again).
- `give_up(state, now)`: no attempt follows; dropped text no attempt sent again is held again.
- `end_of_body(...)` -> END / CUT / STALL: what a clean end of the body stands for.
- `after_failure(kind)` -> CONTINUE / END / RAISE: what follows a failure not resumed.

Resume decisions are in `_resume` (pure too); the steps of a resume are carried out by the
drivers (`_resume.Step`).
"""

from __future__ import annotations

from typing import Literal

from .state import Lane, StreamState

# Arrival times and delivered text are accounted for in batches, every 512 chunks (and before
# anything reads them).
SETTLE_MASK = 511

EndOfBody = Literal["end", "cut", "stall"]
END: EndOfBody = "end"  # the answer ends here
CUT: EndOfBody = "cut"  # text, then nothing: a cut that looks like an end
STALL: EndOfBody = "stall"  # the watchdog shut a silent connection

AfterFailure = Literal["continue", "end", "raise"]


def chunk(state: StreamState, now: float) -> None:
    """A chunk arrived (every chunk, whatever it carries)."""
    n = state.chunk_count + 1
    state.chunk_count = n
    timing = state.timing
    if timing.first_chunk is None:
        timing.first_chunk = now
    state.arrivals.append(now)
    if not n & SETTLE_MASK:
        state.settle()


def fast_text(state: StreamState, lane: Lane, text: str, now: float) -> str:
    """`chunk` and `text` for the common case: one lane, the stream's first token already seen
    (`state.fast` is only set then). Returns what the caller may see now.

    Kept as one call for the adapter's short path: nearly every chunk of nearly every stream
    comes through here, and everything the general path does that this case does not need
    would be paid per chunk."""
    n = state.chunk_count + 1
    state.chunk_count = n
    state.arrivals.append(now)
    seg = lane.seg
    out = seg.push(text, now) if seg is not None else text
    if out:
        lane.pending.append(out)
        lane.last_at = n
    if not n & SETTLE_MASK:
        state.settle()
    return out


def text(state: StreamState, lane: Lane, piece: str, now: float) -> str:
    """Text for a lane: what the caller may see now; the rest is held (see `release`)."""
    return state.text(lane, piece, now)


def response(state: StreamState, rid: str | None, created: object, model: str | None) -> None:
    """The answer's identity, as the server reports it (first non-empty values win)."""
    if state.response_id is None:
        if rid:
            state.response_id = rid
        if state.response_created is None:
            state.response_created = created
    # Apart from the id: some servers send `id: ""` on every chunk but a real model.
    if state.response_model is None and model:
        state.response_model = model
        state.adopt_response_model(model)


def choice_seen(state: StreamState, index: int) -> None:
    if index not in state.choice_indexes:
        state.choice_indexes.add(index)


def other(state: StreamState, now: float) -> None:
    """A payload that is not text (a tool call, audio): it counts as the first token, and
    ends the short path (text before it must be released before it: see `release`)."""
    if state.timing.first_token is None:
        state.timing.first_token = now
    state.tool_calls_seen = True


def opaque(state: StreamState, index: int, payload: object) -> None:
    """Content the lanes cannot read (a list of parts), delivered as it came: remembered in
    order, so that a replay can skip exactly what the caller has (only a stream that may be
    resumed keeps them)."""
    if state.resolved.options.retry:
        state.opaque.setdefault(index, []).append(payload)


def exact_tokens(state: StreamState, n: int) -> None:
    """The server's own count of tokens in this chunk (logprobs entries)."""
    state.exact_tokens += n


def usage(state: StreamState, counts: dict[str, int]) -> None:
    state.usage = counts


def finish(state: StreamState, index: int, reason: str) -> None:
    """A choice ended (its held text must go out with this chunk: see `release`)."""
    state.finish_reasons[index] = reason


def release(state: StreamState, index: int | None = None) -> list[tuple[Lane, str]]:
    """Release all held text (of one choice, or of every choice), in lane order."""
    out = []
    for lane in list(state.lanes.values()):
        if lane.seg is None or not lane.seg.held_chars:
            continue
        if index is not None and lane.index != index:
            continue
        piece = state.release(lane)
        if piece:
            out.append((lane, piece))
    return out


def due(state: StreamState, now: float) -> list[tuple[Lane, str]]:
    """Held text the hold bound says must go out by `now` (the next chunk is late)."""
    out = []
    for lane in list(state.lanes.values()):
        if lane.seg is not None and lane.seg.held_chars:
            piece = state.release(lane, now)
            if piece:
                out.append((lane, piece))
    return out


def resume(state: StreamState) -> None:
    """A new attempt begins: the text held back (never seen by the caller) will come again."""
    state.settle(keep_latest=False)
    state.discard_held()


def give_up(state: StreamState, now: float) -> None:
    """No attempt follows (the stream raises or ends here): text dropped at the last break that
    no resumed attempt sent again is the caller's after all (see `StreamState.restore_dropped`)."""
    state.restore_dropped(now)


def update_fast(state: StreamState, only_choice_0: bool) -> None:
    """Whether the next chunk may take the short path: one content lane, one choice, no tool
    call, no finish, and the answer's identity known (nothing left for the general path)."""
    lanes = state.lanes
    state.fast = (
        lanes.get(0)
        if len(lanes) == 1
        and only_choice_0
        and not state.tool_calls_seen
        and not state.finish_reasons
        and state.response_id is not None
        and state.response_model is not None
        else None
    )


# -- decisions at the end of a body and after a failure ----------------------------------------


def complete(state: StreamState, expected: int = 0) -> bool:
    """Every choice seen (and the `expected` first ones) has its finish reason."""
    seen = {ln.index for ln in state.lanes.values()} | set(range(expected))
    if expected:
        seen |= state.choice_indexes
    return bool(state.finish_reasons) and seen <= set(state.finish_reasons)


def text_seen(state: StreamState) -> bool:
    """Some text arrived (delivered, pending or held)."""
    return any(
        ln.chars or ln.pending or (ln.seg is not None and ln.seg.held_chars)
        for ln in state.lanes.values()
    )


def end_of_body(
    state: StreamState,
    *,
    done: bool,
    stalled: bool,
    error_object_seen: bool,
    expects_finish: bool,
) -> EndOfBody:
    """A body ended cleanly (only asked when a resume could follow): what does it stand for?

    `done`: the server said so (`[DONE]`). `stalled`: the watchdog closed a silent connection.
    Without a finish reason, usage or an error object, an answer whose text stopped is a cut,
    unless the endpoint is known to end that way (`expects_finish` False)."""
    if done:
        return END
    if stalled:
        return STALL
    if error_object_seen or state.finish_reasons or state.usage is not None or not expects_finish:
        return END
    return CUT if text_seen(state) else END


def after_failure(error_object: bool, incomplete: bool) -> AfterFailure:
    """A failure that is not resumed, once held text is delivered: an in-band error object is
    delivered as the SDK gave it and reading goes on; a body that ended without its finish
    ends; anything else is raised."""
    if error_object:
        return "continue"
    if incomplete:
        return "end"
    return "raise"
