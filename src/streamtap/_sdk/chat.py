"""The chat-completions adapter: the only module that reads and rewrites chunk objects.

It parses a `ChatCompletionChunk` into the events of the pure stream machine (`_machine`),
writes the text the caller may see back into the chunk, and builds the rare synthetic chunks
that carry text released at the end of a stream (`flush_chunks`). The drivers (`_drivers`) reach
it as `run.adapter` (see `_adapter.Adapter`): a second protocol is a second module like this one.

Fields are read from the models' `__dict__` and, for extra fields and the
fields set, through `_pydantic` (pydantic 1 and 2 store them differently) directly: that is what
pydantic stores, it works for chunks with missing keys, and it is several times cheaper than
attribute access on the hot path.
"""

from __future__ import annotations

import time
from typing import Any

from .._core import machine
from .._core.machine import fast_text
from .._core.state import CONTENT, REASONING, REFUSAL, Lane, StreamState, lane_key
from .adapter import DELIVER, ERROR, RELEASE, SKIP, flat_usage
from .pydantic_compat import PYDANTIC_V1, copy_model, dump, extras, fields_set, set_extra

_REASONING_FIELDS = ("reasoning_content", "reasoning")
_CONTENT_ONLY = frozenset({"content"})
_ONLY_CHOICE_0 = frozenset({0})


def process_chunk(state: StreamState, chunk: Any, now: float, hide_usage: bool) -> int:
    """Parse one chunk into machine events and rewrite its text in place.

    Returns DELIVER, SKIP (the hidden usage chunk) or ERROR: the "chunk" is an in-band error
    object (`{"object": "error", ...}`, as vLLM sends), which the SDK does not raise for.

    """
    lane = state.fast
    if lane is not None:
        # The short path: nearly every chunk of nearly every stream has the common shape (one
        # choice at index 0, a `content`-only delta, no finish, usage or logprobs). Five reads
        # tell it apart; anything else, missing keys included, takes the full path below.
        text = None
        d = chunk.__dict__
        try:
            choices = d["choices"]
            # (An `{"object": "error"}` chunk has no choices: it takes the full path.)
            if len(choices) == 1 and d["usage"] is None:
                cd = choices[0].__dict__
                delta = cd["delta"]
                if (
                    cd["finish_reason"] is None
                    and cd["logprobs"] is None
                    and cd["index"] == 0
                    and (
                        # One field set, and `content` is a string below: it is that field.
                        (len(delta.__pydantic_fields_set__) == 1 and not delta.__pydantic_extra__)
                        or _only_content(delta)
                    )
                ):
                    dd = delta.__dict__
                    text = dd["content"]
        except (KeyError, TypeError, AttributeError):
            pass
        if type(text) is str:
            # One call into the machine, not an inlined copy: callgrind measured no gain from
            # inlining it (-0.02 points sync, +0.15 async, within heap-layout noise).
            out = fast_text(state, lane, text, now)
            if out is not text:
                dd["content"] = out
            return DELIVER
    return _process_chunk(state, chunk, now, hide_usage)


def _process_chunk_full(state: StreamState, chunk: Any, now: float, hide_usage: bool) -> int:
    """`process_chunk` on pydantic 1: the short path reads pydantic 2's attributes directly
    (one field set, no extras), so every chunk takes the full path, which handles every shape
    through `_pydantic`: 3-4 us per chunk instead of 1-3 us (measured with openai 1.109), next
    to the ~200 us the SDK itself spends parsing a chunk on pydantic 1."""
    return _process_chunk(state, chunk, now, hide_usage)


if PYDANTIC_V1:  # chosen once, at import: no version test per chunk
    process_chunk = _process_chunk_full


def _only_content(delta: Any) -> bool:
    """Content is the only text and nothing else needs the full path, in the dialects of servers
    that send more fields on every chunk: a repeated `role` (Ollama, OpenRouter), null
    `reasoning_content` (DeepSeek), empty `reasoning` (Ollama), `token_id` (Together), nulls.
    Short path only, so pydantic 2 only."""
    dd = delta.__dict__
    if dd.get("refusal") or dd.get("tool_calls") or dd.get("function_call") or dd.get("audio"):
        return False
    extra = delta.__pydantic_extra__
    if extra:
        for field in _REASONING_FIELDS:
            if extra.get(field):
                return False
        if extra.get("audio"):
            return False
    return True


def _process_chunk(state: StreamState, chunk: Any, now: float, hide_usage: bool) -> int:
    machine.chunk(state, now)
    d = chunk.__dict__
    if d.get("object") == "error":
        return ERROR
    machine.response(state, d.get("id"), d.get("created"), d.get("model"))
    choices = d.get("choices")
    parts = False
    if choices:
        for choice in choices:
            parts = _process_choice(state, choice, now) or parts
    usage = d.get("usage")
    if usage is None:
        extra = extras(chunk)
        if extra and "x_groq" in extra:  # (OpenAI's `obfuscation` fills extra on every chunk)
            usage = _groq_usage(extra)
    if usage is not None:
        machine.usage(state, usage_dict(usage))
    # The short path may take the next chunk when this one left the common shape in place.
    machine.update_fast(state, state.choice_indexes == _ONLY_CHOICE_0)
    if usage is not None and hide_usage and not choices:
        return SKIP
    if parts and state.held_lanes():
        return RELEASE  # the text held before content parts goes out first, in chunks of its own
    return DELIVER


def _process_choice(state: StreamState, choice: Any, now: float) -> bool:
    """Feed one choice to the machine; True if its content is a list of parts (see
    `machine.opaque`), which held text cannot be appended to."""
    cd = choice.__dict__
    index = cd.get("index") or 0
    machine.choice_seen(state, index)
    delta = cd.get("delta")
    parts = False
    if delta is not None:
        content = delta.__dict__.get("content")
        parts = bool(content) and type(content) is not str
    if delta is not None and _process_delta(state, index, delta, now):
        machine.other(state, now)  # (a tool call or audio)
        release = True
    else:
        release = False
    logprobs = cd.get("logprobs")
    if logprobs is not None:
        # The server's own tokens, one logprobs entry each: an exact count per chunk.
        entries = logprobs.__dict__.get("content")
        if entries:
            machine.exact_tokens(state, len(entries))
    reason = cd.get("finish_reason")
    if reason:
        machine.finish(state, index, reason)
        release = True
    if release and state.lanes and not parts:
        _release_into(state, index, choice)
    return parts


def _process_delta(state: StreamState, index: int, delta: Any, now: float) -> bool:
    """Feed a delta's text to its lanes, rewriting it; True if it carries a tool call or audio
    (text held before it goes out with it)."""
    dd = delta.__dict__
    text = dd.get("content")
    if text and type(text) is str:
        lane = state.lanes.get(lane_key(index, CONTENT)) or state.lane(index, CONTENT, "content")
        out = machine.text(state, lane, text, now)
        if out is not text:
            dd["content"] = out
    elif text:  # content parts (Mistral's thinking): no text to buffer, delivered as they are
        machine.opaque(state, index, text)
    extra = extras(delta)
    if extra:
        for field in _REASONING_FIELDS:
            r = extra.get(field)
            if r and type(r) is str:
                lane = state.lane(index, REASONING, field)
                out = machine.text(state, lane, r, now)
                if out is not r:
                    set_extra(delta, field, out)
    other = bool(extra and extra.get("audio"))  # openai 1.x has no `audio` field on deltas
    # Most deltas carry only `content`: then there is no refusal, tool call or audio to look
    # for (extra fields are not in the set on pydantic 2; the reasoning check above covers them).
    if fields_set(delta) != _CONTENT_ONLY:
        refusal = dd.get("refusal")
        if refusal:
            lane = state.lane(index, REFUSAL, "refusal")
            out = machine.text(state, lane, refusal, now)
            if out is not refusal:
                dd["refusal"] = out
        if dd.get("tool_calls") or dd.get("function_call") or dd.get("audio"):
            other = True
    return other


def _release_into(state: StreamState, index: int, choice: Any) -> None:
    """Append every lane of this choice's held text to the choice's delta."""
    for lane, out in machine.release(state, index):
        delta = choice.__dict__.get("delta")
        if delta is None:
            delta = _delta_type()(**{lane.field: None})
            choice.__dict__["delta"] = delta
        _append_text(delta, lane, out)


def _append_text(delta: Any, lane: Lane, text: str) -> None:
    if lane.field in ("content", "refusal"):
        dd = delta.__dict__
        dd[lane.field] = (dd.get(lane.field) or "") + text
        fields_set(delta).add(lane.field)
    else:
        extra = extras(delta) or {}
        set_extra(delta, lane.field, (extra.get(lane.field) or "") + text)


def _groq_usage(extra: dict[str, Any]) -> Any:
    x = extra.get("x_groq")
    if isinstance(x, dict):
        return x.get("usage")
    return None


def usage_dict(usage: Any) -> dict[str, int]:
    """Normalise usage (SDK model or plain dict) to flat ints."""
    return flat_usage(
        dump(usage), _USAGE_TOTALS, "prompt_tokens_details", "completion_tokens_details"
    )


_USAGE_TOTALS = tuple((k, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))


def flush_chunks(
    state: StreamState, last_chunk: Any, now: float | None = None, lanes: list[Lane] | None = None
) -> list[Any]:
    """Synthetic chunks carrying held text, one per choice index.

    All of it at the end of a stream or on an error (`now` None); what the hold bound says is
    due by `now` when an async stream's next chunk is late. `lanes`: only these lanes.
    """
    held = state.held_lanes() if lanes is None else lanes
    if not held or last_chunk is None:
        return []
    template = _text_template(state, last_chunk)
    by_index: dict[int, list[Lane]] = {}
    for lane in held:
        by_index.setdefault(lane.index, []).append(lane)
    chunks = []
    for index in sorted(by_index):
        delta = _delta_type()()
        released = False
        for lane in by_index[index]:
            out = state.release(lane, now)
            if out:
                _append_text(delta, lane, out)
                released = True
        if not released:
            continue
        choice = _choice_type()(index=index, delta=delta, finish_reason=None, logprobs=None)
        chunk = copy_model(template, {"choices": [choice], "usage": None})
        chunks.append(chunk)
    return chunks


def _text_template(state: StreamState, chunk: Any) -> Any:
    """The chunk that released text is copied from: never an `{"object": "error"}` chunk.

    A copy of the error object would carry the text in a chunk that a loop skipping errors
    drops. Its stand-in has the stream's id, `created` and model.
    """
    d = chunk.__dict__
    if d.get("object") != "error":
        return chunk
    created = state.response_created
    return _chunk_type().construct(
        id=state.response_id or "",
        choices=[],
        created=created if type(created) is int else int(time.time()),
        model=state.response_model or "",
        object="chat.completion.chunk",
    )


def salvage(state: StreamState, chunk: Any) -> list[Any]:
    """After an internal error on `chunk`: what the caller gets, in the order the text came.

    The error may have struck before or after the chunk's text went into the word buffer. A
    lane that took it this chunk (`last_at`) rewrote the chunk's text to what it released, so
    its held rest goes after the chunk; every other lane's held text came before the chunk's
    untouched text, so it goes first. From here on the stream is passed through unbuffered.
    """
    n = state.chunk_count
    held = state.held_lanes()
    before = flush_chunks(state, chunk, lanes=[ln for ln in held if ln.last_at != n])
    after = flush_chunks(state, chunk, lanes=[ln for ln in held if ln.last_at == n])
    for lane in state.lanes.values():
        lane.seg = None
    return [*before, chunk, *after]


def _chunk_type() -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk


def _delta_type() -> Any:
    from openai.types.chat.chat_completion_chunk import ChoiceDelta

    return ChoiceDelta


def _choice_type() -> Any:
    from openai.types.chat.chat_completion_chunk import Choice

    return Choice


def record_completion(state: StreamState, completion: Any) -> None:
    """Account for a non-streamed `ChatCompletion`."""
    d = completion.__dict__
    state.response_id = d.get("id") or None
    state.response_model = d.get("model") or None
    for choice in d.get("choices") or ():
        cd = choice.__dict__
        index = cd.get("index") or 0
        reason = cd.get("finish_reason")
        if reason:
            state.finish_reasons[index] = reason
        message = cd.get("message")
        if message is not None:
            text = message.__dict__.get("content")
            if isinstance(text, str) and text:
                lane = state.lane(index, CONTENT, "content")
                lane.pending.append(text)
    usage = d.get("usage")
    if usage is not None:
        state.usage = usage_dict(usage)


def error_object(chunk: Any) -> Exception:
    """The exception standing for an `{"object": "error"}` chunk."""
    from .._exceptions import ErrorObject

    d = dict(chunk.__dict__)
    extra = extras(chunk)
    if extra:
        d.update(extra)
    return ErrorObject(chunk, d)
