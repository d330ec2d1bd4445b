"""Tests for the fake server's Responses API (``POST /v1/responses``, ``GET /v1/responses/{id}``).

Everything goes through the raw ``openai`` SDK (no streamtap) over real sockets: the SDK parses
the fake's streams into its typed events, the ``responses.stream()`` helper accumulates them,
and a background response is re-attached with ``responses.retrieve(id, stream=True,
starting_after=N)``. The faults are the chat path's, as Responses events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from streamtap.testing import FakeServer, Fault, Reply, generate_answer

if not hasattr(openai.OpenAI, "responses"):  # before openai 1.66
    pytest.skip("this openai release has no Responses API", allow_module_level=True)

from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseTextDeltaEvent,
)

OPENAI_MAJOR = int(openai.__version__.split(".")[0])
QUESTION = "Tell me about caching in distributed systems."
TEXT = "Déjà vu: a stream of words, with an emoji 🚀 in the middle, and more words after it."


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture
def client(server: FakeServer) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def collect(client: openai.OpenAI, **kwargs: Any) -> list[Any]:
    """Stream one response to its end; every event the SDK yields."""
    params: dict[str, Any] = {"model": "m", "input": QUESTION, "stream": True, **kwargs}
    return list(client.responses.create(**params))


def collect_until_error(client: openai.OpenAI, **kwargs: Any) -> tuple[list[Any], Exception]:
    """Stream one response that must break; the events before the break and the error."""
    events: list[Any] = []
    params: dict[str, Any] = {"model": "m", "input": QUESTION, "stream": True, **kwargs}
    with pytest.raises(Exception) as info:
        for event in client.responses.create(**params):
            events.append(event)
    assert isinstance(info.value, Exception)
    return events, info.value


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def assert_transport_error(exc: Exception) -> None:
    if OPENAI_MAJOR >= 3:
        assert isinstance(exc, openai.APIConnectionError)
    else:
        assert type(exc).__name__ in ("RemoteProtocolError", "ReadError")


# ----------------------------------------------------------------------------- the stream


def test_stream_is_typed_events_in_order(server: FakeServer, client: openai.OpenAI) -> None:
    """A scripted text arrives as OpenAI's event sequence, numbered from 0, in typed events."""
    server.enqueue(Reply(text=TEXT))
    events = collect(client)
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert isinstance(events[0], ResponseCreatedEvent)
    assert all(isinstance(e, ResponseTextDeltaEvent) for e in events[4:-4])
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert text_of(events) == TEXT
    assert events[-4].text == TEXT
    final = events[-1].response
    assert final.status == "completed" and final.id == events[0].response.id
    assert final.output_text == TEXT
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens
    # The raw body: named events, no [DONE]; the record reads its text back.
    record = server.responses[-1]
    assert record.sse and record.complete
    assert all(e.startswith(b"event: response.") for e in record.events)
    assert b"[DONE]" not in b"".join(record.events)
    assert record.text() == TEXT


def test_same_reply_scripts_both_protocols(server: FakeServer, client: openai.OpenAI) -> None:
    """The pieces of a reply are the deltas of a chat stream and of a Responses stream alike."""
    pieces = ["Hel", "lo, ", "wörld", "! 🚀"]
    server.enqueue(Reply(pieces=pieces), Reply(pieces=pieces))
    chat = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chat_deltas = [c.choices[0].delta.content for c in chat if c.choices]
    deltas = [e.delta for e in collect(client) if e.type == "response.output_text.delta"]
    assert deltas == pieces == [d for d in chat_deltas if d]


def test_model_mode_answers_the_input(server: FakeServer, client: openai.OpenAI) -> None:
    """Model mode answers a Responses request as the chat request it amounts to: the same
    input gives the same text, whichever form it takes."""
    messages = [{"role": "user", "content": QUESTION}]
    expected = generate_answer(messages, model="m")
    assert text_of(collect(client, input=QUESTION)) == expected
    as_items = [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]
    assert text_of(collect(client, input=as_items)) == expected
    with_instructions = text_of(collect(client, instructions="Be brief."))
    system = [{"role": "system", "content": "Be brief."}, *messages]
    assert with_instructions == generate_answer(system, model="m") != expected


def test_stream_helper_final_response(server: FakeServer, client: openai.OpenAI) -> None:
    """``responses.stream()`` accumulates the events into a final response with the text."""
    server.enqueue(Reply(text=TEXT))
    with client.responses.stream(model="m", input=QUESTION) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == TEXT
    assert final.output_text == TEXT
    assert final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0


def test_reasoning_summary_and_function_call(server: FakeServer, client: openai.OpenAI) -> None:
    """A reply's reasoning streams as a reasoning summary item, its tool calls as function
    call items whose argument deltas add up to the arguments."""
    server.enqueue(
        Reply(
            text="Let me look that up.",
            reasoning="The user wants the weather; call the tool.",
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
        )
    )
    with client.responses.stream(model="m", input="Weather in Paris?") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary == "The user wants the weather; call the tool."
    assert types.index("response.reasoning_summary_text.delta") < types.index(
        "response.output_text.delta"
    )
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "Paris"}
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    call = final.output[2]
    assert call.type == "function_call"
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert final.output_text == "Let me look that up."


def test_refusal_part(server: FakeServer, client: openai.OpenAI) -> None:
    """A reply's refusal is a refusal content part with its own deltas."""
    server.enqueue(Reply(refusal="I can't help with that."))
    events = collect(client)
    refusal = "".join(e.delta for e in events if e.type == "response.refusal.delta")
    assert refusal == "I can't help with that."
    done = [e for e in events if e.type == "response.refusal.done"]
    assert len(done) == 1 and done[0].refusal == refusal


def test_max_output_tokens_gives_incomplete(server: FakeServer, client: openai.OpenAI) -> None:
    """``max_output_tokens`` cuts the text and ends with ``response.incomplete``."""
    events = collect(client, max_output_tokens=16)
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    full = generate_answer([{"role": "user", "content": QUESTION}], model="m")
    assert full.startswith(text_of(events)) and len(text_of(events)) < len(full)


def test_not_streamed_is_a_response_object(server: FakeServer, client: openai.OpenAI) -> None:
    server.enqueue(Reply(text=TEXT))
    response = client.responses.create(model="m", input=QUESTION)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == TEXT
    assert response.usage is not None and response.usage.output_tokens > 0


def test_requests_are_recorded(server: FakeServer, client: openai.OpenAI) -> None:
    collect(client, max_output_tokens=50)
    request = server.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/responses")
    assert request.json["input"] == QUESTION and request.json["stream"] is True
    assert server.responses[-1].request_id == request.request_id


def test_scripted_bodies_are_sent_verbatim(server: FakeServer, client: openai.OpenAI) -> None:
    """A reply's ``raw`` body (a recording) answers a POST or a GET as it is, quirks included
    (here ``data:`` before ``event:`` and a trailing ``[DONE]``); its faults still apply."""
    response = {"id": "resp_rec", "object": "response", "status": "in_progress", "output": []}
    objects = [
        {"type": "response.created", "response": response, "sequence_number": 0},
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hi!",
            "sequence_number": 1,
        },
        {
            "type": "response.completed",
            "response": {**response, "status": "completed"},
            "sequence_number": 2,
        },
    ]
    raw = "".join(f"data: {json.dumps(o)}\nevent: {o['type']}\n\n" for o in objects)
    raw += "data: [DONE]\n\n"
    server.enqueue(Reply(raw=raw), Reply(raw=raw), Reply(raw=raw, fault=Fault.no_done()))
    assert [e.type for e in collect(client)] == [o["type"] for o in objects]
    again = list(client.responses.retrieve("resp_rec", stream=True, starting_after=0))
    assert (
        text_of(again) == "Hi!"
        and server.responses[-1].events[0] == raw.split("\n\n")[0].encode() + b"\n\n"
    )
    assert [e.type for e in collect(client)][-1] == "response.output_text.delta"


# ------------------------------------------------------------------------------------ faults


def test_cut_after_events(server: FakeServer, client: openai.OpenAI) -> None:
    """``Fault.cut(after_events=k)``: exactly k events, then the connection drops."""
    server.enqueue(Reply(pieces=["a", "b", "c", "d"], fault=Fault.cut(after_events=6)))
    events, error = collect_until_error(client)
    assert_transport_error(error)
    assert [e.sequence_number for e in events] == list(range(6))
    assert text_of(events) == "ab"
    assert server.responses[-1].cut


@pytest.mark.parametrize("where", ["utf8", "json"])
def test_cut_at_byte(server: FakeServer, client: openai.OpenAI, where: str) -> None:
    """A cut inside a UTF-8 character or a JSON document: the SDK raises, the events before
    it arrived whole, and the server sent exactly the bytes asked for."""
    server.enqueue(Reply(text=TEXT, id="resp_fixed", created=1))
    collect(client)
    body = b"".join(server.responses[-1].events)
    if where == "utf8":
        at = body.index("🚀".encode()) + 2
    else:
        at = body.index(b'"delta":"') + 3
    server.enqueue(Reply(text=TEXT, id="resp_fixed", created=1, fault=Fault.cut(at_byte=at)))
    events, error = collect_until_error(client)
    assert_transport_error(error)
    record = server.responses[-1]
    assert record.bytes_sent == at and record.cut
    assert len(events) == record.events_sent
    assert TEXT.startswith(text_of(events)) and text_of(events) != TEXT


def test_stall_then_continue(server: FakeServer, client: openai.OpenAI) -> None:
    # A first stream warms the client up (lazy imports, model classes built on first use: a
    # few tenths of a second in a fresh process), so that it reads faster than the stall.
    server.enqueue(Reply(pieces=["a", "b", "c"]))
    collect(client)
    server.enqueue(Reply(pieces=["a", "b", "c"], fault=Fault.stall(after_events=5, seconds=0.3)))
    times: list[float] = []
    sent: list[int] = []  # events the server had written when the client got each one
    start = time.perf_counter()
    events = []
    for event in client.responses.create(model="m", input="x", stream=True):
        times.append(time.perf_counter() - start)
        sent.append(server.responses[-1].events_sent)
        events.append(event)
    assert text_of(events) == "abc"
    # Where the pause is, by order (the 6th event held back while the client had the 5th);
    # how long, from below only (a busy machine only makes the client later).
    assert sent[4] == 5
    assert times[5] >= 0.3


def test_stall_hits_client_read_timeout(server: FakeServer) -> None:
    sdk = openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0, timeout=0.3)
    server.enqueue(Reply(text=TEXT, fault=Fault.stall(after_events=5, seconds=5)))
    with pytest.raises(Exception) as info:
        for _ in sdk.responses.create(model="m", input="x", stream=True):
            pass
    if OPENAI_MAJOR >= 3:
        assert isinstance(info.value, openai.APITimeoutError)
    else:
        assert type(info.value).__name__ == "ReadTimeout"
    sdk.close()


def test_error_event(server: FakeServer, client: openai.OpenAI) -> None:
    """An in-band ``error`` event in OpenAI's shape: a typed event with the next sequence
    number, and the body ends there."""
    server.enqueue(Reply(text=TEXT, fault=Fault.error_event(after_events=5, status_in_body=503)))
    events = collect(client)
    assert len(events) == 6
    error = events[-1]
    assert error.type == "error" and error.sequence_number == 5
    # (`code` is a string in the SDK's model: pydantic 1 coerces the 503 the server sent)
    assert str(error.code) == "503" and "server had an error" in error.message
    assert server.responses[-1].events[-1].startswith(b"event: error\n")


def test_error_event_nested_raises(server: FakeServer, client: openai.OpenAI) -> None:
    """The nested shape (``{"type": "error", "error": {...}}``) makes the SDK raise."""
    server.enqueue(Reply(text=TEXT, fault=Fault.error_event(after_events=5, style="object")))
    events, error = collect_until_error(client)
    assert isinstance(error, openai.APIError)
    assert len(events) == 5


def test_response_failed(server: FakeServer, client: openai.OpenAI) -> None:
    """``Fault.response_failed``: a ``response.failed`` event with the server error ends it."""
    server.enqueue(Reply(text=TEXT, fault=Fault.response_failed(after_events=6)))
    events = collect(client)
    failed = events[-1]
    assert failed.type == "response.failed" and failed.sequence_number == 6
    assert failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.code == "server_error"
    assert failed.response.id == events[0].response.id


def test_missing_end(server: FakeServer, client: openai.OpenAI) -> None:
    """``Fault.no_done``: the body ends cleanly without its terminal event."""
    server.enqueue(Reply(text=TEXT, fault=Fault.no_done()))
    events = collect(client)
    assert text_of(events) == TEXT
    assert events[-1].type == "response.output_item.done"
    assert not any(e.type.startswith("response.complete") for e in events)


def test_http_error_and_repeated_failures(server: FakeServer, client: openai.OpenAI) -> None:
    """Each request takes the next fault: an HTTP error, two cuts, then the answer."""
    server.enqueue(
        Fault.http_error(503),
        Reply(text=TEXT, fault=Fault.cut(after_events=4)),
        Reply(text=TEXT, fault=Fault.cut(at_byte=300, mode="rst")),
        Reply(text=TEXT),
    )
    with pytest.raises(openai.InternalServerError):
        collect(client)
    collect_until_error(client)
    collect_until_error(client)
    assert text_of(collect(client)) == TEXT


# -------------------------------------------------------------------------------- background


def test_background_resume_by_get(server: FakeServer, client: openai.OpenAI) -> None:
    """A background response cut mid-stream is re-attached with ``retrieve(stream=True,
    starting_after=N)``: the events after N, nothing generated again."""
    server.enqueue(Reply(text=TEXT, fault=Fault.cut(after_events=9)))
    events, error = collect_until_error(client, background=True)
    assert_transport_error(error)
    assert [e.type for e in events[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert events[0].response.status == "queued" and events[0].response.background is True
    last = events[-1].sequence_number
    response_id = events[0].response.id
    rest = list(client.responses.retrieve(response_id, stream=True, starting_after=last))
    assert rest[0].sequence_number == last + 1
    assert rest[-1].type == "response.completed"
    assert text_of(events) + text_of(rest) == TEXT
    get = server.requests[-1]
    assert get.method == "GET" and get.path == f"/v1/responses/{response_id}"
    assert "starting_after=" in get.query and "stream=true" in get.query
    # The object itself, and the whole stream again without starting_after.
    assert client.responses.retrieve(response_id).status == "completed"
    again = list(client.responses.retrieve(response_id, stream=True))
    assert again[0].sequence_number == 0 and text_of(again) == TEXT


def test_faults_apply_to_the_get(server: FakeServer, client: openai.OpenAI) -> None:
    """A streamed GET takes the next reply's fault: cut it, then re-attach again."""
    server.enqueue(
        Reply(text=TEXT, fault=Fault.cut(after_events=8)),
        Fault.cut(after_events=3),
        Fault.error_event(after_events=2),
    )
    first, _ = collect_until_error(client, background=True)
    response_id = first[0].response.id
    second: list[Any] = []
    with pytest.raises(Exception):  # noqa: B017 - the type depends on the SDK major
        for event in client.responses.retrieve(
            response_id, stream=True, starting_after=first[-1].sequence_number
        ):
            second.append(event)
    assert len(second) == 3
    third = list(
        client.responses.retrieve(
            response_id, stream=True, starting_after=second[-1].sequence_number
        )
    )
    assert third[-1].type == "error"
    assert third[-1].sequence_number == second[-1].sequence_number + 3
    rest = list(
        client.responses.retrieve(
            response_id, stream=True, starting_after=third[-2].sequence_number
        )
    )
    assert text_of(first) + text_of(second) + text_of(third[:-1]) + text_of(rest) == TEXT


def test_background_not_streamed_then_retrieved(server: FakeServer, client: openai.OpenAI) -> None:
    """A background request not streamed answers ``queued`` at once; its events stream later."""
    server.enqueue(Reply(text=TEXT))
    queued = client.responses.create(model="m", input=QUESTION, background=True)
    assert queued.status == "queued" and queued.output == []
    assert text_of(list(client.responses.retrieve(queued.id, stream=True))) == TEXT
    assert client.responses.retrieve(queued.id).output_text == TEXT


def test_get_errors(server: FakeServer, client: openai.OpenAI) -> None:
    """Unknown ids are a 404; streaming a response that was not a background one, a 400."""
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")
    server.enqueue(Reply(text=TEXT))
    events = collect(client)
    with pytest.raises(openai.BadRequestError):
        list(client.responses.retrieve(events[0].response.id, stream=True, starting_after=2))
    assert client.responses.retrieve(events[0].response.id).output_text == TEXT


# ------------------------------------------------------------------------------------- async


async def test_async_stream_cut_and_background_resume() -> None:
    async with FakeServer() as srv:
        sdk = openai.AsyncOpenAI(base_url=srv.base_url, api_key="t", max_retries=0, timeout=10)
        srv.enqueue(Reply(text=TEXT, split=3))
        stream = await sdk.responses.create(model="m", input=QUESTION, stream=True)
        assert text_of([e async for e in stream]) == TEXT

        srv.enqueue(Reply(text=TEXT, fault=Fault.cut(at_byte=2500)))
        events: list[Any] = []
        with pytest.raises(Exception) as info:
            stream = await sdk.responses.create(
                model="m", input=QUESTION, stream=True, background=True
            )
            async for event in stream:
                events.append(event)
        assert_transport_error(info.value)
        rest_stream = await sdk.responses.retrieve(
            events[0].response.id, stream=True, starting_after=events[-1].sequence_number
        )
        rest = [e async for e in rest_stream]
        assert text_of(events) + text_of(rest) == TEXT
        await sdk.close()
        assert srv.errors == []
