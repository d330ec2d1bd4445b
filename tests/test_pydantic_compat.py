"""pydantic 1 and 2: the SDK's models read and written through `streamtap._sdk.pydantic_compat`.

These run on every CI line; on the `pydantic>=1.10,<2` line (openai 1.x) they are the regression
tests for "every chunk logs an ERROR and the last word is lost".
"""

from __future__ import annotations

from typing import Any

import openai
import pydantic
import pytest

import streamtap
from streamtap._sdk import pydantic_compat as _pydantic
from streamtap.testing import FakeServer, Fault, Reply

MSG = [{"role": "user", "content": "hi"}]
TEXT = "The quick brown fox jumps over the lazy dog. Then it naps in the warm sun."
THOUGHT = "First the fox, then the dog; count the words twice."


def client_for(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)


def field_text(chunks: list[Any], name: str) -> str:
    return "".join(getattr(c.delta, name, None) or "" for ch in chunks for c in ch.choices)


def test_the_accessors_match_the_installed_pydantic() -> None:
    assert _pydantic.PYDANTIC_V1 == pydantic.VERSION.startswith("1.")


def test_accessors_on_sdk_parsed_chunks(server: FakeServer) -> None:
    """Fields set, extra fields and copies, on chunks the SDK itself built from the wire."""
    client = client_for(server)
    server.enqueue(Reply(text="Hi there", reasoning="hmm", chunk_size=4))
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    reasoning = next(
        c for c in chunks if c.choices and getattr(c.choices[0].delta, "reasoning_content", None)
    )
    delta = reasoning.choices[0].delta
    assert _pydantic.extras(delta) == {"reasoning_content": "hmm"}
    assert "content" in _pydantic.fields_set(delta)
    content = next(c for c in chunks if c.choices and c.choices[0].delta.content == "Hi t")
    assert not _pydantic.extras(content.choices[0].delta)
    assert _pydantic.fields_set(content.choices[0].delta) >= {"content"}
    # Writing an extra field: the SDK's own attribute access and dump see it.
    _pydantic.set_extra(delta, "reasoning_content", "changed")
    assert delta.reasoning_content == "changed"
    assert delta.model_dump(exclude_unset=True)["reasoning_content"] == "changed"
    # A copy with fields replaced, the original untouched.
    copy = _pydantic.copy_model(content, {"usage": None, "choices": []})
    assert copy.choices == [] and content.choices and copy.id == content.id
    assert _pydantic.dump(copy)["id"] == content.id


def test_stream_loses_nothing_and_logs_no_error(server: FakeServer, events: Any) -> None:
    """The last word arrives (it is released by the flush at the end), reasoning and content
    each whole, and not one internal error (the suite runs strict: it would raise)."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, reasoning=THOUGHT, chunk_size=3))
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert field_text(chunks, "content") == TEXT
    assert field_text(chunks, "reasoning_content") == THOUGHT
    # Word-boundary buffering still happened in both channels.
    for name in ("content", "reasoning_content"):
        pieces = [getattr(c.delta, name, None) for ch in chunks for c in ch.choices]
        pieces = [p for p in pieces if p]
        assert all(p[-1] in " .;," for p in pieces[:-1]), pieces
    assert not events.errors()
    ev = events.one()
    assert ev["streamtap.outcome"] == "ok"
    assert ev["gen_ai.usage.output_tokens"] > 0


async def test_async_stream_ending_with_held_text(server: FakeServer, events: Any) -> None:
    """No finish chunk to carry the held tail: it comes in a synthetic chunk, a copy of the
    last chunk received (`copy_model`)."""
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    streamtap.instrument(client, hold_max_seconds=10, retry=False)
    text = "no finish chunk carries this tail"
    server.enqueue(Reply(text=text, chunk_size=5, fault=Fault.no_finish_reason()))
    got: list[Any] = []
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    async for chunk in stream:
        got.append(chunk)
    assert field_text(got, "content") == text
    assert got[-1].choices[0].delta.content == "tail"
    assert got[-1].id == got[-2].id
    assert not events.errors()
    await client.close()


def test_resume_after_a_cut(server: FakeServer, events: Any) -> None:
    """A cut mid-stream, resumed by replay: the splice reads and trims through the accessors."""
    client = client_for(server)
    streamtap.instrument(client, backoff_initial=0.01, backoff_max=0.02)
    server.default = Reply.model_mode(length=60, fault=None)
    reference = "".join(
        c.choices[0].delta.content or ""
        for c in openai.OpenAI(
            base_url=server.base_url, api_key="k", max_retries=0
        ).chat.completions.create(model="m", messages=MSG, stream=True, seed=3)
        if c.choices
    )
    server.enqueue(Reply.model_mode(length=60, fault=Fault.cut(at_byte=700)))
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True, seed=3))
    assert field_text(chunks, "content") == reference
    assert events.one()["streamtap.retries"] == 1
    assert not events.errors()


@pytest.mark.skipif(not _pydantic.PYDANTIC_V1, reason="the pydantic 1 routing only")
def test_pydantic1_takes_the_full_path() -> None:
    from streamtap._sdk import chat as _chat

    assert _chat.process_chunk is _chat._process_chunk_full
