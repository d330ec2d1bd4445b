"""Real client libraries through an instrumented SDK client, against the local fake server.

litellm's OpenAI provider calls the client's low-level `post("/chat/completions", stream=True,
stream_cls=...)` (bypassing `Completions.create`); langchain-openai, pydantic-ai and instructor
call `create`. Each must get streamtap's event, word-boundary buffering and resume, and work
unchanged. The libraries are in the `clients` extra (instructor in its own, see pyproject.toml);
where one cannot install on a CI line (pydantic 1; instructor beside recent openai 3.x) its
tests skip saying so. The bare `post` tests need no library and run everywhere.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

# litellm fetches a model price map from the internet at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MSG = [{"role": "user", "content": "hi"}]
TEXT = "The quick brown fox jumps over the lazy dog. Then it naps in the warm afternoon sun."
NO_PYDANTIC2 = (
    "it is in the `clients` extra, which needs pydantic 2 (the pydantic 1 CI line runs without it)"
)


def need(module: str, why: str = NO_PYDANTIC2) -> Any:
    """The library, or a skip that says why it is missing or broken on this CI line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            pytest.skip(f"{module} is installed but cannot import on this line: {exc!r}")
        pytest.skip(f"{module} is not installed: {why}")
    except ImportError as exc:
        pytest.skip(f"{module} is installed but cannot import on this line: {exc!r}")


def client_for(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)


def aclient_for(server: FakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)


def assert_word_pieces(pieces: list[str], text: str) -> None:
    """Every piece of text ends on a word boundary (but the last), and nothing is lost."""
    pieces = [p for p in pieces if p]
    assert "".join(pieces) == text
    assert all(p[-1] in " .," for p in pieces[:-1]), pieces


def assert_one_summary(events: Any, requests: int = 1, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = events.one()
    assert ev["streamtap.outcome"] == "ok", ev
    assert ev["streamtap.retries"] == requests - 1
    for name, value in fields.items():
        assert ev[name.replace("__", ".")] == value, (name, ev)
    assert not events.errors()
    return ev


# -- the SDK's own low-level post (no library needed) --------------------------------------------


def test_bare_post_stream_is_instrumented(server: FakeServer, events: Any) -> None:
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    stream = client.post(
        "/chat/completions",
        body={"model": "m", "messages": MSG, "stream": True},
        cast_to=ChatCompletion,
        stream=True,
        stream_cls=openai.Stream[ChatCompletionChunk],
    )
    got = list(stream)
    assert_word_pieces([c.choices[0].delta.content or "" for c in got if c.choices], TEXT)
    assert all(c.choices for c in got)  # the usage chunk streamtap asked for is hidden
    assert server.requests[0].json["stream_options"] == {"include_usage": True}
    assert_one_summary(events, streamtap__stream=True, streamtap__usage__source="server")


def test_create_is_instrumented_once(server: FakeServer, events: Any) -> None:
    """`create` goes through `post` too: one event, one request, for each call path."""
    client = client_for(server)
    streamtap.instrument(client)
    for make in (
        lambda: client.chat.completions.create(model="m", messages=MSG, stream=True),
        lambda: client.chat.completions.with_raw_response.create(
            model="m", messages=MSG, stream=True
        ).parse(),
    ):
        events.summaries.clear()
        server.clear()
        server.enqueue(Reply(text=TEXT, chunk_size=4))
        got = list(make())
        assert_word_pieces([c.choices[0].delta.content or "" for c in got if c.choices], TEXT)
        assert len(server.requests) == 1
        assert_one_summary(events)


def test_bare_post_uninstrumented_client_is_untouched(server: FakeServer, events: Any) -> None:
    client = client_for(server)
    streamtap.instrument(client_for(server))  # another client
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    stream = client.post(
        "/chat/completions",
        body={"model": "m", "messages": MSG, "stream": True},
        cast_to=ChatCompletion,
        stream=True,
        stream_cls=openai.Stream[ChatCompletionChunk],
    )
    assert [c.choices[0].delta.content for c in stream if c.choices][1] == TEXT[:4]
    assert "stream_options" not in server.requests[0].json
    assert not events.summaries


async def test_bare_async_post_raw_response_resumes_after_a_cut(
    server: FakeServer, events: Any
) -> None:
    """As litellm sends it: the raw-response marker, then `.parse()`; a cut mid-stream is
    resumed with a follow-up request that asks for a plain stream."""
    from openai._constants import RAW_RESPONSE_HEADER

    client = aclient_for(server)
    streamtap.instrument(client, backoff_initial=0.01, backoff_max=0.02)
    server.enqueue(Reply(text=TEXT, chunk_size=4, fault=Fault.cut(at_byte=900)))
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    raw = await client.post(
        "/chat/completions",
        body={"model": "m", "messages": MSG, "stream": True},
        cast_to=ChatCompletion,
        options={"headers": {RAW_RESPONSE_HEADER: "true"}},
        stream=True,
        stream_cls=openai.AsyncStream[ChatCompletionChunk],
    )
    assert raw.headers["x-request-id"]
    pieces = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
    assert_word_pieces(pieces, TEXT)
    assert len(server.requests) == 2
    assert_one_summary(events, requests=2)
    await client.close()


# -- litellm (its OpenAI provider posts directly) ------------------------------------------------


def litellm_module() -> Any:
    litellm = need("litellm")
    litellm.telemetry = False
    litellm.disable_streaming_logging = True
    return litellm


def litellm_text(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content or "" for c in chunks if c.choices]


def test_litellm_stream(server: FakeServer, events: Any) -> None:
    litellm = litellm_module()
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    chunks = list(
        litellm.completion(
            model="openai/gpt-4o-mini",
            api_base=server.base_url,
            api_key="k",
            messages=MSG,
            stream=True,
            client=client,
        )
    )
    assert_word_pieces(litellm_text(chunks), TEXT)
    assert server.requests[0].json["stream_options"] == {"include_usage": True}
    assert_one_summary(
        events, gen_ai__request__model="gpt-4o-mini", streamtap__usage__source="server"
    )


def test_litellm_with_every_client_instrumented(server: FakeServer, events: Any) -> None:
    """`streamtap.instrument()` without a client covers the clients litellm makes itself."""
    litellm = litellm_module()
    streamtap.instrument()
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    chunks = list(
        litellm.completion(
            model="openai/gpt-4o-mini",
            api_base=server.base_url,
            api_key="k",
            messages=MSG,
            stream=True,
        )
    )
    assert_word_pieces(litellm_text(chunks), TEXT)
    assert_one_summary(events)


def test_litellm_resumes_after_a_cut(server: FakeServer, events: Any) -> None:
    litellm = litellm_module()
    client = client_for(server)
    streamtap.instrument(client, backoff_initial=0.01, backoff_max=0.02)
    server.enqueue(Reply(text=TEXT, chunk_size=4, fault=Fault.cut(at_byte=900)))
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    chunks = list(
        litellm.completion(
            model="openai/gpt-4o-mini",
            api_base=server.base_url,
            api_key="k",
            messages=MSG,
            stream=True,
            client=client,
        )
    )
    assert_word_pieces(litellm_text(chunks), TEXT)
    assert len(server.requests) == 2
    ev = assert_one_summary(events, requests=2)
    assert ev["streamtap.resume.strategy"] == "replay"


async def test_litellm_async_stream(server: FakeServer, events: Any) -> None:
    litellm = litellm_module()
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    stream = await litellm.acompletion(
        model="openai/gpt-4o-mini",
        api_base=server.base_url,
        api_key="k",
        messages=MSG,
        stream=True,
        client=client,
    )
    chunks = [c async for c in stream]
    assert_word_pieces(litellm_text(chunks), TEXT)
    assert_one_summary(events)
    await client.close()


# -- langchain-openai ------------------------------------------------------------------------------


def test_langchain_openai_stream(server: FakeServer, events: Any) -> None:
    need("langchain_openai")
    from langchain_openai import ChatOpenAI

    streamtap.instrument()  # the clients ChatOpenAI makes for itself
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="k", max_retries=0)
    pieces = [str(m.content) for m in llm.stream("hi")]
    assert_word_pieces(pieces, TEXT)
    assert_one_summary(events)


async def test_langchain_openai_async_stream(server: FakeServer, events: Any) -> None:
    need("langchain_openai")
    from langchain_openai import ChatOpenAI

    streamtap.instrument()
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="k", max_retries=0)
    pieces = [str(m.content) async for m in llm.astream("hi")]
    assert_word_pieces(pieces, TEXT)
    assert_one_summary(events)


# -- pydantic-ai -----------------------------------------------------------------------------------


async def test_pydantic_ai_stream(server: FakeServer, events: Any) -> None:
    need("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models import openai as models
    from pydantic_ai.providers.openai import OpenAIProvider

    client = aclient_for(server)
    streamtap.instrument(client)
    model_cls = getattr(models, "OpenAIChatModel", None) or models.OpenAIModel
    model = model_cls("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    agent = Agent(model)
    async with agent.run_stream("hi") as result:
        pieces = [p async for p in result.stream_text(delta=True)]
    assert "".join(pieces) == TEXT
    assert_one_summary(events)
    await client.close()


# -- instructor ------------------------------------------------------------------------------------


def test_instructor_partial_stream(server: FakeServer, events: Any) -> None:
    need(
        "instructor",
        "it is in the `instructor` extra, installed on the openai 1.x and 2.x CI lines (it pins "
        "jiter<0.15, which recent openai 3.x cannot install with)",
    )
    import instructor
    import pydantic

    class Person(pydantic.BaseModel):
        name: str
        city: str

    client = client_for(server)
    streamtap.instrument(client)
    wire = '{"name": "Ada Lovelace", "city": "London"}'
    server.enqueue(Reply(text=wire, chunk_size=3))
    patched = instructor.from_openai(client, mode=instructor.Mode.JSON)
    partials = list(
        patched.chat.completions.create_partial(
            model="gpt-4o-mini", messages=MSG, response_model=Person
        )
    )
    final = partials[-1]
    assert (final.name, final.city) == ("Ada Lovelace", "London")
    assert_one_summary(events)
