"""The Responses API through the real SDK over loopback HTTP: buffering, what a held event looks
like, sequence numbers, in-band failures, a cut, every entry point, the summary event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

if not hasattr(openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9"), "responses"):
    pytest.skip(
        f"openai {openai.__version__} has no Responses API (added in openai 1.66)",
        allow_module_level=True,
    )

MODEL = "gpt-4o-mini"
RESP = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "status": "in_progress",
    "output": [],
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
}
USAGE = {
    "input_tokens": 5,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 12,
}


def body(events: list[dict[str, Any]]) -> str:
    """An SSE body of OpenAI's shape: named events, numbered from 0."""
    out = []
    for n, e in enumerate(events):
        e = {"sequence_number": n, **e}
        out.append(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n")
    return "".join(out)


def message(pieces: list[str], *, end: str = "completed", index: int = 0) -> list[dict[str, Any]]:
    """A message item streaming `pieces`, and the response's end (`end`: a terminal status, or
    "" for none)."""
    text = "".join(pieces)
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    where = {"item_id": "msg_1", "output_index": index, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": RESP},
        {"type": "response.in_progress", "response": RESP},
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {"type": "response.content_part.added", **where, "part": part},
        *[
            {"type": "response.output_text.delta", **where, "delta": p, "logprobs": []}
            for p in pieces
        ],
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": text}},
        {
            "type": "response.output_item.done",
            "output_index": index,
            "item": {
                **item,
                "status": "completed",
                "content": [{**part, "text": text}],
            },
        },
    ]
    done_item = events[-1]["item"]
    if end == "completed":
        final = {**RESP, "status": "completed", "output": [done_item], "usage": USAGE}
        events.append({"type": "response.completed", "response": final})
    elif end == "incomplete":
        final = {
            **RESP,
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "output": [done_item],
            "usage": {**USAGE, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        }
        events.append({"type": "response.incomplete", "response": final})
    return events


@pytest.fixture
def client(server: FakeServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    streamtap.instrument(c, hold_max_seconds=30)
    yield c
    c.close()


def seen(stream: Any) -> list[tuple[str, Any, Any]]:
    return [
        (e.type, getattr(e, "sequence_number", None), getattr(e, "delta", None)) for e in stream
    ]


def test_a_held_event_is_delivered_empty_and_its_text_comes_before_the_done_event(
    server: FakeServer, client: openai.OpenAI, events: Any
) -> None:
    """Text is released at word boundaries; an event whose text is all held comes with
    `delta == ""`; the tail comes in a copy of the lane's last delta, numbered like the event
    before it, right before `response.output_text.done`, which is unchanged."""
    server.enqueue(Reply(raw=body(message(["Hel", "lo wor", "ld"]))))
    got = seen(client.responses.create(model=MODEL, input="hi", stream=True))
    deltas = [(t, n, d) for t, n, d in got if t == "response.output_text.delta"]
    assert deltas == [
        ("response.output_text.delta", 4, ""),
        ("response.output_text.delta", 5, "Hello "),
        ("response.output_text.delta", 6, ""),
        ("response.output_text.delta", 6, "world"),
    ]
    types = [t for t, _, _ in got]
    assert types.index("response.output_text.done") == types.index("response.output_text.delta") + 4
    numbers = [n for _, n, _ in got]
    assert numbers == sorted(numbers)
    ev = events.one()
    assert ev["openai.api.type"] == "responses"
    assert ev["gen_ai.operation.name"] == "chat"
    assert ev["streamtap.response.status"] == "completed"
    assert ev["gen_ai.response.id"] == "resp_1"
    assert ev["gen_ai.usage.output_tokens"] == 7
    assert ev["streamtap.tokens.counted"] == 2  # "Hello world"
    assert ev["streamtap.outcome"] == "ok"


def test_the_done_event_and_the_final_response_are_never_changed(
    server: FakeServer, client: openai.OpenAI
) -> None:
    """The helper's accumulated final response has the text once; `.done` carries it whole."""
    server.enqueue(Reply(raw=body(message(["Hel", "lo wor", "ld"]))))
    with client.responses.stream(model=MODEL, input="hi") as stream:
        dones = [e.text for e in stream if e.type == "response.output_text.done"]
        final = stream.get_final_response()
    assert dones == ["Hello world"]
    assert final.output_text == "Hello world"


def test_function_call_arguments_pass_through_untouched(
    server: FakeServer, client: openai.OpenAI
) -> None:
    """Arguments are not text a reader shows: no buffering, every delta as sent."""
    item = {"id": "fc_1", "type": "function_call", "call_id": "c", "name": "f", "arguments": ""}
    args = ['{"ci', 'ty": "Par', 'is"}']
    events = [
        {"type": "response.created", "response": RESP},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        *[
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1",
             "output_index": 0, "delta": a}
            for a in args
        ],
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0,
         "arguments": "".join(args)},
        {"type": "response.completed", "response": {**RESP, "status": "completed",
                                                    "usage": USAGE}},
    ]  # fmt: skip
    server.enqueue(Reply(raw=body(events)))
    got = seen(client.responses.create(model=MODEL, input="hi", stream=True))
    assert [d for t, _, d in got if t.endswith("arguments.delta")] == args


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_held_text_goes_out_before_an_error_event(
    server: FakeServer, mode: str, events: Any
) -> None:
    """An in-band `error` event: the SDK yields it as an event; the caller gets the held text
    first, then the error event as the SDK gave it; the summary records the failure."""
    pieces = message(["Hello wor"], end="")[:5]
    error = {"type": "error", "code": "server_error", "message": "boom", "param": None}
    server.enqueue(Reply(raw=body([*pieces, error])))
    got = _read(server, mode, lambda c: c.responses.create(model=MODEL, input="hi", stream=True))
    assert got == [
        ("response.created", 0, None),
        ("response.in_progress", 1, None),
        ("response.output_item.added", 2, None),
        ("response.content_part.added", 3, None),
        ("response.output_text.delta", 4, "Hello "),
        ("response.output_text.delta", 4, "wor"),
        ("error", 5, None),
    ]
    ev = events.one()
    assert ev["streamtap.outcome"] == "error"
    assert ev["error.type"] == "server_error"
    assert ev["streamtap.end"] == "exhausted"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_error_the_sdk_raises_comes_after_the_held_text(
    server: FakeServer, mode: str, events: Any
) -> None:
    """An error event with a nested `error` object: the SDK raises `APIError` for it (1.x to
    3.x); the caller gets every character that arrived, then that very exception."""
    pieces = message(["Hello wor"], end="")[:5]
    nested = {"type": "error", "error": {"code": "server_error", "message": "boom"}}
    raw = body([*pieces, nested])

    def create(c: Any) -> Any:
        return c.responses.create(model=MODEL, input="hi", stream=True)

    server.enqueue(Reply(raw=raw))
    ref_error = _error(server, mode, create, instrumented=False)
    server.enqueue(Reply(raw=raw))
    got: list[Any] = []
    error = _error(server, mode, create, instrumented=True, into=got)
    assert isinstance(ref_error, openai.APIError)
    assert type(error) is type(ref_error) and str(error) == str(ref_error)
    assert [d for t, _, d in got if t == "response.output_text.delta"] == ["Hello ", "wor"]
    ev = events.one()
    assert (ev["streamtap.outcome"], ev["error.type"]) == ("error", "openai.APIError")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_response_failed_is_delivered_after_the_held_text(
    server: FakeServer, mode: str, events: Any
) -> None:
    """`response.failed`: the held text first, the event unchanged; status and error code."""
    pieces = message(["Hello wor"], end="")[:5]
    failed = {
        **RESP,
        "status": "failed",
        "error": {"code": "server_error", "message": "The model failed."},
    }
    server.enqueue(Reply(raw=body([*pieces, {"type": "response.failed", "response": failed}])))
    got = _read(server, mode, lambda c: c.responses.create(model=MODEL, input="hi", stream=True))
    assert [d for t, _, d in got if t == "response.output_text.delta"] == ["Hello ", "wor"]
    assert got[-1][0] == "response.failed"
    ev = events.one()
    assert ev["streamtap.response.status"] == "failed"
    assert ev["gen_ai.response.finish_reasons"] == ["failed"]
    assert (ev["streamtap.outcome"], ev["error.type"]) == ("error", "server_error")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_cut_surfaces_as_the_sdk_exception_after_the_held_text(
    server: FakeServer, mode: str, events: Any
) -> None:
    """With resume off, a dropped connection raises what the raw SDK raises, after every
    character that arrived; no second request is sent."""
    raw = body(message(["Hello wor", "ld, and more"]))

    def create(c: Any) -> Any:
        return c.responses.create(model=MODEL, input="hi", stream=True)

    server.enqueue(Reply(raw=raw, fault=Fault.cut(after_events=5)))
    ref_error = _error(server, mode, create, instrumented=False)
    server.enqueue(Reply(raw=raw, fault=Fault.cut(after_events=5)))
    got: list[Any] = []
    error = _error(server, mode, create, instrumented=True, into=got)
    assert type(error) is type(ref_error) and str(error) == str(ref_error)
    assert "".join(d for t, _, d in got if t == "response.output_text.delta") == "Hello wor"
    assert len(server.requests) == 2
    ev = events.one()
    assert ev["streamtap.outcome"] == "error"
    assert ev["streamtap.retries"] == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_body_without_its_terminal_event_ends_incomplete(
    server: FakeServer, mode: str, events: Any
) -> None:
    server.enqueue(Reply(raw=body(message(["Hello wor", "ld"], end=""))))
    got = _read(server, mode, lambda c: c.responses.create(model=MODEL, input="hi", stream=True))
    assert "".join(d for t, _, d in got if t == "response.output_text.delta") == "Hello world"
    ev = events.one()
    assert ev["streamtap.outcome"] == "incomplete"
    assert "streamtap.response.status" not in ev


def test_incomplete_with_zero_usage_keeps_streamtaps_count(
    server: FakeServer, client: openai.OpenAI, events: Any
) -> None:
    """`response.incomplete` is an end, not a failure; usage of all zeros is no bill."""
    server.enqueue(Reply(raw=body(message(["Hello ", "world"], end="incomplete"))))
    list(client.responses.create(model=MODEL, input="hi", stream=True))
    ev = events.one()
    assert ev["streamtap.outcome"] == "ok"
    assert ev["streamtap.response.status"] == "incomplete"
    assert ev["streamtap.response.incomplete_reason"] == "max_output_tokens"
    assert ev["gen_ai.response.finish_reasons"] == ["max_output_tokens"]
    assert ev["streamtap.usage.source"] == "streamtap"
    assert ev["gen_ai.usage.output_tokens"] == ev["streamtap.tokens.counted"] == 2


def test_async_hold_bound_releases_while_the_next_event_is_late(
    server: FakeServer, events: Any
) -> None:
    """The hold bound fires between events: the copy carrying the text is numbered like the
    event before it, and numbers never go down."""

    async def main() -> list[tuple[str, Any, Any]]:
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(c, hold_max_seconds=0.05)
        events_ = message(["Hello wor", "ld"])
        delays = [0.0] * len(events_)
        delays[4] = 0.4  # between the two deltas
        server.enqueue(Reply(raw=body(events_), delay=delays))
        out = []
        async for e in await c.responses.create(model=MODEL, input="hi", stream=True):
            out.append((e.type, getattr(e, "sequence_number", None), getattr(e, "delta", None)))
        await c.close()
        return out

    got = asyncio.run(main())
    deltas = [(n, d) for t, n, d in got if t == "response.output_text.delta"]
    assert deltas[0] == (4, "Hello ")
    assert deltas[1][0] == 4 and deltas[1][1].startswith("wo")  # a copy, before event 5
    assert "".join(d for _, d in deltas) == "Hello world"
    numbers = [n for _, n, _ in got]
    assert numbers == sorted(numbers)


_PIECES = st.lists(
    st.text(alphabet=st.sampled_from("ab ,.\n\u00e9\u4e2d"), min_size=1, max_size=6),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(summary=_PIECES, answer=_PIECES, interleave=st.lists(st.booleans(), max_size=16))
def test_any_split_and_interleaving_reaches_the_caller_whole(
    server: FakeServer,
    client: openai.OpenAI,
    summary: list[str],
    answer: list[str],
    interleave: list[bool],
) -> None:
    """Property: deltas of a reasoning summary and of the answer, split anyhow and interleaved
    anyhow (OpenRouter opens the message before the reasoning ends): per lane the caller gets
    the server's text, every event the server sent in order, copies only before a non-delta
    event or at the end, and sequence numbers that never go down."""
    reasoning_item = {"id": "rs_1", "type": "reasoning", "summary": []}
    rs = {"item_id": "rs_1", "output_index": 0, "summary_index": 0}
    msg = {"item_id": "msg_1", "output_index": 1, "content_index": 0}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    deltas = ([("r", p) for p in summary], [("m", p) for p in answer])
    order: list[tuple[str, str]] = []
    r, m = list(deltas[0]), list(deltas[1])
    for pick in interleave:
        source = r if pick else m
        if source:
            order.append(source.pop(0))
    order += r + m
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": RESP},
        {"type": "response.output_item.added", "output_index": 0, "item": reasoning_item},
        {"type": "response.output_item.added", "output_index": 1, "item": item},
        {"type": "response.content_part.added", **msg, "part": part},
    ]
    for lane, text in order:
        kind = "reasoning_summary_text" if lane == "r" else "output_text"
        events.append({"type": f"response.{kind}.delta", **(rs if lane == "r" else msg),
                       "delta": text})  # fmt: skip
    events.append({"type": "response.output_text.done", **msg, "text": "".join(answer)})
    events.append({"type": "response.reasoning_summary_text.done", **rs, "text": "".join(summary)})
    events.append({"type": "response.completed", "response": {**RESP, "status": "completed"}})
    server.enqueue(Reply(raw=body(events)))
    got = [e.model_dump() for e in client.responses.create(model=MODEL, input="hi", stream=True)]
    sent = [{"sequence_number": n, **e} for n, e in enumerate(events)]
    texts: dict[str, str] = {}
    j = 0
    for n, e in enumerate(got):
        key = e["type"]
        if key.endswith(".delta"):
            texts[key] = texts.get(key, "") + e["delta"]
        if j < len(sent) and e["sequence_number"] == sent[j]["sequence_number"]:
            assert e["type"] == sent[j]["type"]
            j += 1
        else:  # a copy: right before a non-delta event (or the end), numbered like the one before
            assert key.endswith(".delta") and e["delta"]
            assert j == len(sent) or not sent[j]["type"].endswith(".delta")
            assert e["sequence_number"] == got[n - 1]["sequence_number"]
    assert j == len(sent)
    assert texts.get("response.output_text.delta", "") == "".join(answer)
    assert texts.get("response.reasoning_summary_text.delta", "") == "".join(summary)


# -- entry points -------------------------------------------------------------------------------


HELD = ["", "Hello ", "", "world"]  # what a caller sees of ["Hel", "lo wor", "ld"]


def test_with_raw_response_and_with_streaming_response(
    server: FakeServer, client: openai.OpenAI, events: Any
) -> None:
    raw = body(message(["Hel", "lo wor", "ld"]))
    server.enqueue(Reply(raw=raw))
    response = client.responses.with_raw_response.create(model=MODEL, input="hi", stream=True)
    assert [d for t, _, d in seen(response.parse()) if t.endswith("text.delta")] == HELD
    server.enqueue(Reply(raw=raw))
    with client.responses.with_streaming_response.create(
        model=MODEL, input="hi", stream=True
    ) as response:
        assert [d for t, _, d in seen(response.parse()) if t.endswith("text.delta")] == HELD
    assert [e["openai.api.type"] for e in events.summaries] == ["responses", "responses"]


def test_async_entry_points(server: FakeServer, events: Any) -> None:
    raw = body(message(["Hel", "lo wor", "ld"]))

    async def main() -> list[str]:
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(c, hold_max_seconds=30)
        first = []
        server.enqueue(Reply(raw=raw), Reply(raw=raw), Reply(raw=raw))
        async for e in await c.responses.create(model=MODEL, input="hi", stream=True):
            first.append(e)
        r = await c.responses.with_raw_response.create(model=MODEL, input="hi", stream=True)
        parsed = r.parse()  # (the legacy raw response parses synchronously)
        async for e in await parsed if asyncio.iscoroutine(parsed) else parsed:
            first.append(e)
        async with c.responses.stream(model=MODEL, input="hi") as s:
            async for e in s:
                first.append(e)
            final = await s.get_final_response()
        await c.close()
        assert final.output_text == "Hello world"
        return [e.delta for e in first if e.type == "response.output_text.delta"]

    deltas = asyncio.run(main())
    assert deltas == ["", "Hello ", "", "world"] * 3
    assert len(events.summaries) == 3


def test_retrieve_stream_is_instrumented_and_a_plain_retrieve_is_not(
    server: FakeServer, client: openai.OpenAI, events: Any
) -> None:
    """`retrieve(id, stream=True, starting_after=N)` re-attaches to a background response."""
    events_ = message(["Hel", "lo wor", "ld"])[3:]
    server.enqueue(Reply(raw=body(events_)))
    got = seen(client.responses.retrieve("resp_1", stream=True, starting_after=2))
    assert [d for t, _, d in got if t.endswith("text.delta")] == ["", "Hello ", "", "world"]
    query = server.requests[-1].query
    assert "starting_after=2" in query and "stream=true" in query
    ev = events.one()
    assert ev["streamtap.response.status"] == "completed"
    final = {**RESP, "status": "completed", "usage": USAGE}
    server.enqueue(Reply(raw=json.dumps(final), headers={"content-type": "application/json"}))
    assert client.responses.retrieve("resp_1").status == "completed"
    assert len(events.summaries) == 1


def test_a_plain_create_is_logged_like_a_chat_completion(
    server: FakeServer, client: openai.OpenAI, events: Any
) -> None:
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hello world", "annotations": []}],
    }
    final = {**RESP, "status": "completed", "output": [item], "usage": USAGE}
    server.enqueue(Reply(raw=json.dumps(final), headers={"content-type": "application/json"}))
    response = client.responses.create(model=MODEL, input="hi")
    assert response.output_text == "Hello world"
    ev = events.one()
    assert ev["streamtap.end"] == "response"
    assert ev["streamtap.stream"] is False
    assert ev["openai.api.type"] == "responses"
    assert ev["gen_ai.usage.output_tokens"] == 7
    assert ev["streamtap.tokens.counted"] == 2


class Weather(BaseModel):
    city: str
    degrees: int


WEATHER = '{"city": "Paris", "degrees": 21}'


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_parse_is_logged_like_a_plain_create(mode: str, server: FakeServer, events: Any) -> None:
    """`responses.parse(text_format=...)` posts by itself, not through `create`: one event, with
    the latency and the usage, and the parsed output unchanged."""
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": WEATHER, "annotations": []}],
    }
    final = {**RESP, "status": "completed", "output": [item], "usage": USAGE}
    server.enqueue(Reply(raw=json.dumps(final), headers={"content-type": "application/json"}))
    if mode == "sync":
        c = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(c)
        parsed = c.responses.parse(model=MODEL, input="weather?", text_format=Weather)
    else:
        a = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(a)
        parsed = asyncio.run(a.responses.parse(model=MODEL, input="weather?", text_format=Weather))
    assert parsed.output_parsed == Weather(city="Paris", degrees=21)
    ev = events.one()
    assert ev["streamtap.stream"] is False
    assert ev["streamtap.outcome"] == "ok"
    assert ev["openai.api.type"] == "responses"
    assert ev["gen_ai.request.model"] == MODEL
    assert ev["gen_ai.usage.output_tokens"] == 7
    assert server.requests[-1].json["text"]["format"]["type"] == "json_schema"


# -- helpers ------------------------------------------------------------------------------------


def _read(server: FakeServer, mode: str, create: Any) -> list[tuple[str, Any, Any]]:
    """Read a stream instrumented with resume off: these tests check what a caller sees of an
    in-band failure that is not resumed (resuming is docs/resume.md's and its tests')."""
    if mode == "sync":
        c = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(c, hold_max_seconds=30, retry=False)
        try:
            return seen(create(c))
        finally:
            c.close()

    async def main() -> list[tuple[str, Any, Any]]:
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(c, hold_max_seconds=30, retry=False)
        out = []
        async for e in await create(c):
            out.append((e.type, getattr(e, "sequence_number", None), getattr(e, "delta", None)))
        await c.close()
        return out

    return asyncio.run(main())


def _error(
    server: FakeServer,
    mode: str,
    create: Any,
    *,
    instrumented: bool,
    into: list[Any] | None = None,
) -> BaseException:
    into = [] if into is None else into

    def sync() -> BaseException:
        c = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        if instrumented:
            streamtap.instrument(c, hold_max_seconds=30, retry=False)
        try:
            for e in create(c):
                into.append((e.type, e.sequence_number, getattr(e, "delta", None)))
        except Exception as exc:
            return exc
        finally:
            c.close()
        raise AssertionError("no exception")

    async def main() -> BaseException:
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        if instrumented:
            streamtap.instrument(c, hold_max_seconds=30, retry=False)
        try:
            async for e in await create(c):
                into.append((e.type, e.sequence_number, getattr(e, "delta", None)))
        except Exception as exc:
            return exc
        finally:
            await c.close()
        raise AssertionError("no exception")

    return sync() if mode == "sync" else asyncio.run(main())
