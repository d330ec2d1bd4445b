"""Resuming Responses API streams: the fault matrix through the real SDK over loopback HTTP.

A background response (`background=True`) is re-attached with `GET /v1/responses/{id}
?stream=true&starting_after=N`, nothing generated again; any other stream is replayed (the
request sent again, its text checked against what the caller has). The server's model mode is
deterministic per request, or nondeterministic to make a replay diverge.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

import streamtap
from streamtap.testing import FakeServer, Fault, Reply, generate_answer

if not hasattr(openai.OpenAI, "responses"):  # before openai 1.66
    pytest.skip("this openai release has no Responses API", allow_module_level=True)

OPENAI_MAJOR = int(openai.__version__.split(".")[0])
QUESTION = "Explain caching in distributed systems."  # its answer has a dash and an emoji
MODEL = "m"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}
ANSWER = generate_answer([{"role": "user", "content": QUESTION}], model=MODEL, length=120)

# Each fault breaks the first attempt once the text has started (event 4 is the first delta).
FAULTS: dict[str, Fault | None] = {  # None: a byte cut placed by `fault_for`
    "cut_event": Fault.cut(after_events=12),
    "cut_utf8": None,
    "cut_json": None,
    "rst": Fault.cut(after_events=15, mode="rst"),
    "stall": Fault.stall(after_events=14, seconds=5, then="close"),
    "error_event": Fault.error_event(after_events=13),
    "response_failed": Fault.response_failed(after_events=13),
    "missing_end": Fault.no_done(),
}
IN_BAND = {"error_event", "response_failed"}


def client_for(server: FakeServer, **opts: Any) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=10)
    return streamtap.instrument(client, **{**FAST, "idle_timeout": 0.3, **opts})


def aclient_for(server: FakeServer, **opts: Any) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=10)
    return streamtap.instrument(client, **{**FAST, "idle_timeout": 0.3, **opts})


def stream(mode: str, server: FakeServer, opts: dict[str, Any], **kw: Any) -> list[Any]:
    """Every event of one streamed response, read by a sync or an async instrumented client."""
    params: dict[str, Any] = {"model": MODEL, "input": QUESTION, "stream": True, **kw}
    if mode == "sync":
        return list(client_for(server, **opts).responses.create(**params))

    async def read() -> list[Any]:
        client = aclient_for(server, **opts)
        return [e async for e in await client.responses.create(**params)]

    return asyncio.run(read())


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def fault_for(name: str, background: bool = False) -> Fault:
    """FAULTS[name]; a byte cut inside a UTF-8 character or inside an event's JSON, after some
    text went out, placed in the body the server will send."""
    fault = FAULTS[name]
    if fault is not None:
        return fault
    with FakeServer() as probe:  # the same answer, as the first request of a server
        probe.enqueue(Reply.model_mode(length=120))
        client = openai.OpenAI(base_url=probe.base_url, api_key="k", max_retries=0)
        list(
            client.responses.create(model=MODEL, input=QUESTION, stream=True, background=background)
        )
        body = b"".join(probe.responses[-1].events)
    text = body.index(b"response.output_text.delta")
    if name == "cut_utf8":
        return Fault.cut(at_byte=body.index("—".encode(), text) + 1)
    at = body.index(b'"delta":"', body.index(b"response.output_text.delta", text + 2000))
    return Fault.cut(at_byte=at + 4)


def check_one_answer(events: list[Any]) -> None:
    """The caller saw one response: one id, numbers never going down, one terminal event."""
    ids = {e.response.id for e in events if getattr(e, "response", None) is not None}
    assert len(ids) == 1
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers)
    assert [e.type for e in events].count("response.created") == 1
    assert events[-1].type == "response.completed"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_replay_resumes_every_fault(mode: str, name: str) -> None:
    """Not a background response: the request is sent again and the caller gets the answer
    once, whatever broke the first attempt."""
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(length=120, fault=fault_for(name)))
        server.default = Reply.model_mode(length=120)
        events = stream(mode, server, {})
        assert text_of(events) == ANSWER
        check_one_answer(events)
        assert [r.method for r in server.requests] == ["POST", "POST"]
        assert server.errors == []


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_background_reattaches(mode: str, name: str, events: Any) -> None:
    """A background response is re-attached where it broke (no second generation), unless it
    failed on the server, which only a new request can get past."""
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(length=120, fault=fault_for(name, True)))
        server.default = Reply.model_mode(length=120)
        got = stream(mode, server, {}, background=True)
        assert text_of(got) == ANSWER
        check_one_answer(got)
        requests = server.requests
        if name in IN_BAND:
            assert [r.method for r in requests] == ["POST", "POST"]
            strategy = "replay"
        else:
            assert [r.method for r in requests] == ["POST", "GET"]
            assert "starting_after=" in requests[1].query
            strategy = "reattach"
        summary = events.one()
        assert summary["streamtap.resume.strategy"] == strategy
        assert summary["streamtap.retries"] == 1
        assert server.errors == []


def test_reattach_starts_after_the_last_event_read() -> None:
    """`starting_after` is the number of the last event read: the held text went out first."""
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(length=120, fault=Fault.cut(after_events=10)))
        got = stream("sync", server, {}, background=True)
        assert server.requests[1].query.endswith("starting_after=9") or (
            "starting_after=9&" in server.requests[1].query
        )
        assert text_of(got) == ANSWER


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_repeated_failures(mode: str) -> None:
    """Each attempt breaks somewhere else; the third one completes the answer."""
    with FakeServer() as server:
        server.enqueue(
            Reply.model_mode(length=120, fault=Fault.cut(after_events=8)),
            Reply.model_mode(length=120, fault=Fault.cut(after_events=20)),
        )
        server.default = Reply.model_mode(length=120)
        got = stream(mode, server, {})
        assert text_of(got) == ANSWER
        check_one_answer(got)
        assert len(server.requests) == 3


def test_background_repeated_failures_reattach_each_time() -> None:
    with FakeServer() as server:
        server.enqueue(
            Reply.model_mode(length=120, fault=Fault.cut(after_events=8)),
            Fault.cut(after_events=5),
            Fault.stall(after_events=4, seconds=5, then="close"),
        )
        got = stream("sync", server, {"max_attempts": 4}, background=True)
        assert text_of(got) == ANSWER
        check_one_answer(got)
        assert [r.method for r in server.requests] == ["POST", "GET", "GET", "GET"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_budget_spent_raises_with_the_text_delivered(mode: str) -> None:
    with FakeServer() as server:
        server.default = Reply.model_mode(length=120, fault=Fault.cut(after_events=12))
        got: list[Any] = []
        with pytest.raises(streamtap.StreamInterrupted) as info:
            if mode == "sync":
                client = client_for(server, max_attempts=2)
                for event in client.responses.create(model=MODEL, input=QUESTION, stream=True):
                    got.append(event)
            else:

                async def read() -> None:
                    client = aclient_for(server, max_attempts=2)
                    s = await client.responses.create(model=MODEL, input=QUESTION, stream=True)
                    async for event in s:
                        got.append(event)

                asyncio.run(read())
        delivered = text_of(got)
        assert ANSWER.startswith(delivered) and delivered
        assert info.value.delivered == delivered
        assert len(server.requests) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_diverged_replay_never_repeats_text(mode: str) -> None:
    """A model that answers differently each time: the replay does not match what the caller
    has, so it raises with exactly the text the first answer sent, nothing repeated (the text
    held at the break included: no attempt sent it again)."""
    with FakeServer(nondeterministic=True) as server:
        server.enqueue(Reply.model_mode(length=120, fault=Fault.cut(after_events=15)))
        server.default = Reply.model_mode(length=120)
        got: list[Any] = []
        with pytest.raises(streamtap.StreamInterrupted) as info:
            if mode == "sync":
                client = client_for(server)
                for event in client.responses.create(model=MODEL, input=QUESTION, stream=True):
                    got.append(event)
            else:

                async def read() -> None:
                    client = aclient_for(server)
                    s = await client.responses.create(model=MODEL, input=QUESTION, stream=True)
                    async for event in s:
                        got.append(event)

                asyncio.run(read())
        delivered = text_of(got)
        assert delivered == server.responses[0].text(sent=True)
        assert info.value.delivered == delivered


def test_incomplete_is_not_an_interruption() -> None:
    """`response.incomplete` (a token limit) is the end: one request."""
    with FakeServer() as server:
        got = stream("sync", server, {}, max_output_tokens=20)
        assert got[-1].type == "response.incomplete"
        assert len(server.requests) == 1


def test_error_not_worth_retrying_reaches_the_caller() -> None:
    """An in-band error a new attempt would meet again is delivered as the server sent it."""
    with FakeServer() as server:
        error = {"code": "invalid_prompt", "message": "Your prompt was flagged."}
        server.enqueue(Reply.model_mode(length=120, fault=Fault.error_event(12, error=error)))
        got = stream("sync", server, {})
        assert got[-1].type == "error" and got[-1].code == "invalid_prompt"
        assert len(server.requests) == 1


def test_stream_helper_after_a_replay_and_a_reattach() -> None:
    """`responses.stream()` accumulates a resumed stream into an intact final response."""
    with FakeServer() as server:
        server.enqueue(
            Reply.model_mode(length=120, fault=Fault.cut(after_events=3)),
            Reply.model_mode(length=120, fault=Fault.cut(after_events=9)),
        )
        server.default = Reply.model_mode(length=120)
        client = client_for(server)
        for background in (False, True):
            with client.responses.stream(model=MODEL, input=QUESTION, background=background) as s:
                for _ in s:
                    pass
                final = s.get_final_response()
            assert final.output_text == ANSWER
            assert final.status == "completed"


SCRIPTED = Reply(
    text="Let me look that up for you, it will only take a moment.",
    reasoning="The user wants the weather in Paris; I should call the weather tool.",
    tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}],
    chunk_size=4,
)


def summary_and_arguments(events: list[Any]) -> tuple[str, str]:
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    return summary, arguments


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_background_reattach_continues_a_function_call(mode: str) -> None:
    """A re-attach continues anything exactly, a half-sent function call included."""
    with FakeServer() as server:
        server.enqueue(SCRIPTED.with_fault(Fault.cut(after_events=50)))
        got = stream(mode, server, {}, background=True)
        assert [r.method for r in server.requests] == ["POST", "GET"]
        summary, arguments = summary_and_arguments(got)
        assert summary == SCRIPTED.reasoning
        assert arguments == '{"city": "Paris", "unit": "celsius"}'
        assert text_of(got) == SCRIPTED.text
        check_one_answer(got)


def test_replay_never_splices_a_function_call() -> None:
    """Not a background response, and a function call was half sent: the SDK's error reaches
    the caller after everything delivered (like a chat tool call)."""
    with FakeServer() as server:
        server.enqueue(SCRIPTED.with_fault(Fault.cut(after_events=50)), SCRIPTED)
        got: list[Any] = []
        with pytest.raises(Exception) as info:  # the type depends on the SDK major
            for event in client_for(server).responses.create(
                model=MODEL, input=QUESTION, stream=True
            ):
                got.append(event)
        assert not isinstance(info.value, streamtap.StreamInterrupted)  # the SDK's own error
        if OPENAI_MAJOR >= 3:
            assert isinstance(info.value, openai.APIConnectionError)
        else:
            assert type(info.value).__name__ == "RemoteProtocolError"
        assert len(server.requests) == 1
        summary, arguments = summary_and_arguments(got)
        assert summary == SCRIPTED.reasoning and arguments


def test_replay_checks_the_reasoning_summary_too() -> None:
    """A replay broken inside the reasoning summary continues it, checked, exactly once."""
    with FakeServer() as server:
        scripted = Reply(text="Paris is the capital.", reasoning=SCRIPTED.reasoning, chunk_size=4)
        server.enqueue(scripted.with_fault(Fault.cut(after_events=9)), scripted)
        got = stream("sync", server, {})
        assert summary_and_arguments(got)[0] == SCRIPTED.reasoning
        assert text_of(got) == "Paris is the capital."
        check_one_answer(got)
        assert len(server.requests) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_callers_own_reattach_is_resumed(mode: str) -> None:
    """`retrieve(id, stream=True, starting_after=N)` that breaks is re-attached again."""
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(length=120), Fault.cut(after_events=10))
        server.default = Reply.model_mode(length=120)
        if mode == "sync":
            client = client_for(server)
            queued = client.responses.create(model=MODEL, input=QUESTION, background=True)
            got = list(client.responses.retrieve(queued.id, stream=True, starting_after=2))
        else:

            async def read() -> list[Any]:
                client = aclient_for(server)
                queued = await client.responses.create(model=MODEL, input=QUESTION, background=True)
                s = await client.responses.retrieve(queued.id, stream=True, starting_after=2)
                return [e async for e in s]

            got = asyncio.run(read())
        assert text_of(got) == ANSWER
        assert got[0].sequence_number == 3
        assert [r.method for r in server.requests] == ["POST", "GET", "GET"]
        assert "starting_after=12" in server.requests[2].query


def test_a_failure_early_in_a_replay_is_seen(events: Any) -> None:
    """A replay that fails before reaching the break still reports it (it is not among the
    events the caller has, which a replay leaves out)."""
    with FakeServer() as server:
        server.enqueue(
            Reply.model_mode(length=120, fault=Fault.cut(after_events=15)),
            Reply.model_mode(length=120, fault=Fault.response_failed(after_events=5)),
        )
        server.default = Reply.model_mode(length=120)
        got = stream("sync", server, {})
        assert text_of(got) == ANSWER
        check_one_answer(got)
        causes = [a.get("cause") for a in events.one()["streamtap.attempts"]]
        assert causes[:2] == ["transport", "in_band_error"]  # (not a clean end: `incomplete`)
        assert len(server.requests) == 3


def test_background_replays_until_caught_up_then_reattaches(events: Any) -> None:
    """A background response that failed is sent again; a replay that breaks before catching up
    with what the caller has is replayed again; once caught up, the new response is re-attached
    (by its own id), and the caller still sees the first response's id throughout."""
    with FakeServer() as server:
        server.enqueue(
            Reply.model_mode(length=120, fault=Fault.error_event(after_events=20)),
            Reply.model_mode(length=120, fault=Fault.cut(after_events=10)),
            Reply.model_mode(length=120, fault=Fault.cut(after_events=40)),
        )
        server.default = Reply.model_mode(length=120)
        got = stream("sync", server, {"max_attempts": 5}, background=True)
        assert text_of(got) == ANSWER
        check_one_answer(got)
        requests = server.requests
        assert [r.method for r in requests] == ["POST", "POST", "POST", "GET"]
        third = server.responses[2].chunks()[0]["response"]["id"]
        assert requests[3].path.endswith(third) and "starting_after=39" in requests[3].query
        strategies = [a["strategy"] for a in events.one()["streamtap.attempts"]]
        assert strategies == ["initial", "replay", "replay", "reattach"]


@pytest.mark.parametrize("background", [False, True])
def test_raw_response_streams_are_resumed(background: bool) -> None:
    """`with_raw_response.create(stream=True)`: the follow-up request returns a plain stream."""
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(length=120, fault=Fault.cut(after_events=12)))
        server.default = Reply.model_mode(length=120)
        raw = client_for(server).responses.with_raw_response.create(
            model=MODEL, input=QUESTION, stream=True, background=background
        )
        got = list(raw.parse())
        assert text_of(got) == ANSWER
        check_one_answer(got)
        methods = [r.method for r in server.requests]
        assert methods == (["POST", "GET"] if background else ["POST", "POST"])
        assert all("x-stainless-raw-response" not in r.headers for r in server.requests[1:])


def test_a_refused_reattach_falls_back_to_a_replay(events: Any) -> None:
    """The server no longer has the background response (404 to the re-attach): the request
    is sent again and verified instead."""
    with FakeServer() as server:
        server.enqueue(
            Reply.model_mode(length=120, fault=Fault.cut(after_events=12)),
            Fault.http_error(404),
        )
        server.default = Reply.model_mode(length=120)
        got = stream("sync", server, {}, background=True)
        assert text_of(got) == ANSWER
        check_one_answer(got)
        assert [r.method for r in server.requests] == ["POST", "GET", "POST"]
        strategies = [a["strategy"] for a in events.one()["streamtap.attempts"]]
        assert strategies == ["initial", "reattach", "replay"]
