"""What streamtap adds to a request (`stream_options.include_usage`) and what follows from it:
the usage the server sends unasked stays visible, and a 400 is re-sent only when it is about
`stream_options`. Requests are counted on the server."""

from __future__ import annotations

from typing import Any

import openai
import pytest

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

MSG = [{"role": "user", "content": "hi"}]
TEXT = "Bouvet Island is in the South Atlantic Ocean."


def client_for(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)


def aclient_for(server: FakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)


def unasked_usage_reply() -> Reply:
    """An OpenAI-style stream whose server sends the `choices: []` usage chunk unasked."""
    return Reply(text=TEXT, include_usage=True)


def raw_chunks(server: FakeServer, reply: Reply) -> list[Any]:
    server.enqueue(reply)
    return list(client_for(server).chat.completions.create(model="m", messages=MSG, stream=True))


def shape(chunks: list[Any]) -> list[tuple[int, Any]]:
    """What a caller can tell apart: choices per chunk and the usage each carries."""
    return [(len(c.choices), c.usage.total_tokens if c.usage else None) for c in chunks]


# -- usage the server sends unasked ------------------------------------------------------------


def test_stream_helper_keeps_the_servers_unasked_usage(server: FakeServer, events: Any) -> None:
    """`.stream()`: the final completion has the usage the raw SDK's has, from the first stream."""
    for _ in range(2):  # raw, then instrumented
        server.enqueue(unasked_usage_reply())
    plain = client_for(server)
    with plain.chat.completions.stream(model="m", messages=MSG) as raw:
        want = raw.get_final_completion()
    assert want.usage is not None
    client = client_for(server)
    streamtap.instrument(client)
    with client.chat.completions.stream(model="m", messages=MSG) as s:
        got = s.get_final_completion()
    assert got.usage == want.usage
    assert got.choices[0].message.content == TEXT
    # As the caller wrote it: the helper's requests get no stream_options.
    assert "stream_options" not in server.requests[-1].json
    ev = events.summaries[-1]
    assert ev["gen_ai.usage.output_tokens"] == want.usage.completion_tokens
    assert ev["streamtap.usage.source"] == "server"


def test_stream_helper_without_usage_from_the_server(server: FakeServer, events: Any) -> None:
    """A server that sends usage only when asked: the helper's completion has none, as raw."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT))
    with client.chat.completions.stream(model="m", messages=MSG) as s:
        got = s.get_final_completion()
    assert got.usage is None
    assert got.choices[0].message.content == TEXT
    ev = events.one()
    assert ev["streamtap.usage.source"] == "streamtap"
    assert ev["gen_ai.usage.output_tokens"] > 0


async def test_async_stream_helper_keeps_unasked_usage(server: FakeServer, events: Any) -> None:
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(unasked_usage_reply())
    async with client.chat.completions.stream(model="m", messages=MSG) as s:
        got = await s.get_final_completion()
    assert got.usage is not None and got.usage.completion_tokens > 0
    assert "stream_options" not in server.requests[-1].json
    await client.close()


def test_create_shows_unasked_usage_once_the_endpoint_is_known(
    server: FakeServer, events: Any
) -> None:
    """create(stream=True): once a stream that did not ask for usage got it anyway (here the
    helper's), streamtap stops asking on that endpoint and hides nothing: chunk for chunk what
    the raw SDK shows, usage chunk included."""
    want = shape(raw_chunks(server, unasked_usage_reply()))
    assert want[-1] == (0, want[-1][1]) and want[-1][1] is not None
    client = client_for(server)
    streamtap.instrument(client, buffering="off")
    server.enqueue(unasked_usage_reply())
    with client.chat.completions.stream(model="m", messages=MSG) as s:
        s.get_final_completion()
    for _ in range(2):
        server.enqueue(unasked_usage_reply())
        got = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
        assert shape(got) == want
        assert "stream_options" not in server.requests[-1].json
    assert events.summaries[-1]["streamtap.usage.source"] == "server"


def test_create_on_an_unknown_endpoint_hides_the_usage_it_asked_for(
    server: FakeServer, events: Any
) -> None:
    """The documented default: an endpoint not known to send usage unasked is asked, and the
    chunk that brings it is hidden (this server sends usage only when asked)."""
    want = shape(raw_chunks(server, Reply(text=TEXT)))
    client = client_for(server)
    streamtap.instrument(client, buffering="off")
    server.enqueue(Reply(text=TEXT))
    got = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert shape(got) == want
    assert server.requests[-1].json["stream_options"] == {"include_usage": True}
    assert events.one()["streamtap.usage.source"] == "server"


def test_a_caller_who_decided_teaches_nothing(server: FakeServer, events: Any) -> None:
    """Only streams on which nobody decided about usage teach the endpoint."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(unasked_usage_reply())
    list(
        client.chat.completions.create(
            model="m", messages=MSG, stream=True, stream_options={"include_usage": False}
        )
    )
    server.enqueue(unasked_usage_reply())
    got = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert server.requests[-1].json["stream_options"] == {"include_usage": True}
    assert got[-1].choices  # hidden: the endpoint is still unknown


# -- a 400 is re-sent only when it is about stream_options ---------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_unrelated_client_error_is_sent_once(server: FakeServer, events: Any, status: int) -> None:
    client = client_for(server)
    streamtap.instrument(client)
    body = {"error": {"message": "Invalid value for 'temperature'.", "param": "temperature"}}
    server.enqueue(Fault.http_error(status, body))
    error = openai.BadRequestError if status == 400 else openai.UnprocessableEntityError
    with pytest.raises(error) as raised:
        client.chat.completions.create(model="m", messages=MSG, stream=True, temperature=9)
    assert len(server.requests) == 1
    assert raised.value.param == "temperature"
    assert events.one()["streamtap.outcome"] == "error"
    # Not remembered as "rejects stream_options": the next request still asks for usage.
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert server.requests[-1].json["stream_options"] == {"include_usage": True}


async def test_async_unrelated_400_is_sent_once(server: FakeServer, events: Any) -> None:
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Fault.http_error(400))
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="m", messages=MSG, stream=True)
    assert len(server.requests) == 1
    await client.close()


@pytest.mark.parametrize(
    "error",
    [
        # vLLM / FastAPI: a validation detail naming the field.
        {"detail": [{"loc": ["body", "stream_options"], "msg": "extra fields not permitted"}]},
        # OpenAI-style, with param.
        {"error": {"message": "Unrecognized argument.", "param": "stream_options.include_usage"}},
    ],
)
def test_stream_options_rejection_is_retried_once_without_it(
    server: FakeServer, events: Any, error: dict[str, Any]
) -> None:
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Fault.http_error(422, error))
    got = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert [("stream_options" in r.json) for r in server.requests] == [True, False]
