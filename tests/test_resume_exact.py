"""Resume never repeats or invents anything: every field reaches the caller exactly once.

Through the real SDK over loopback HTTP (the project's fake server): raw-response paths, fields
other than text (finish_reason, usage, role, logprobs) across a resume, the default strategy on a
nondeterministic model, stalls on close-delimited bodies, corrupt bodies, clean ends (`[DONE]`
without a finish_reason, bodies that always end early), and how a failed resume reads in a
traceback.
"""

from __future__ import annotations

import gzip
import traceback
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from test_resume import MODEL, MSG, aclient_for, client_for, no_open_connections

import streamtap
from streamtap.testing import FakeServer, Fault, Reply, generate_answer

# -- helpers ----------------------------------------------------------------------------------


def raw_events(**create: Any) -> list[Any]:
    """The chunks an uninstrumented client gets for a model-mode request (to aim cuts)."""
    with FakeServer() as probe:
        client = openai.OpenAI(base_url=probe.base_url, api_key="k", max_retries=0)
        return list(
            client.chat.completions.create(model=MODEL, messages=MSG, stream=True, **create)
        )


def texts_by_choice(chunks: list[Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            out[ch.index] = out.get(ch.index, "") + (ch.delta.content or "")
    return out


def finishes_by_choice(chunks: list[Any]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for c in chunks:
        for ch in c.choices:
            if ch.finish_reason:
                out.setdefault(ch.index, []).append(ch.finish_reason)
    return out


def usages(chunks: list[Any]) -> list[Any]:
    return [c.usage for c in chunks if c.usage is not None]


def roles(chunks: list[Any]) -> list[tuple[int, str]]:
    return [(ch.index, ch.delta.role) for c in chunks for ch in c.choices if ch.delta.role]


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    logprobs: list[str] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    lp = None
    if logprobs is not None:
        lp = {
            "content": [
                {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []}
                for t in logprobs
            ],
            "refusal": None,
        }
    return {
        "id": "chatcmpl-fixed",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}],
    }


# -- raw-response paths -----------------------------------------------------------------------


def _sync_raw(client: openai.OpenAI, form: str) -> Iterator[Any]:
    create = dict(model=MODEL, messages=MSG, stream=True)
    if form == "raw":
        yield from client.chat.completions.with_raw_response.create(**create).parse()
    else:
        with client.chat.completions.with_streaming_response.create(**create) as response:
            yield from response.parse()


async def _async_raw(client: openai.AsyncOpenAI, form: str) -> AsyncIterator[Any]:
    create = dict(model=MODEL, messages=MSG, stream=True)
    if form == "raw":
        response = await client.chat.completions.with_raw_response.create(**create)
        async for c in response.parse():  # the legacy raw response parses synchronously
            yield c
    else:
        async with client.chat.completions.with_streaming_response.create(**create) as response:
            async for c in await response.parse():
                yield c


@pytest.mark.parametrize("form", ["raw", "streaming"])
def test_raw_response_paths_resume(form: str, events: Any) -> None:
    """`with_raw_response` / `with_streaming_response` streams resume into the exact answer (the
    follow-up request must not carry the SDK's raw-response marker)."""
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=40)
        server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=6)))
        chunks = list(_sync_raw(client, form))
        assert texts_by_choice(chunks) == {0: full}
        assert len(server.requests) == 2
        assert "x-stainless-raw-response" not in server.requests[1].headers
        ev = events.one()
        assert ev["streamtap.outcome"] == "ok" and ev["streamtap.retries"] == 1
        assert no_open_connections(server)


@pytest.mark.parametrize("form", ["raw", "streaming"])
async def test_async_raw_response_paths_resume(form: str, events: Any) -> None:
    """Async twins of the raw-response paths resume too."""
    with FakeServer(answer_length=40) as server:
        client = aclient_for(server)
        full = generate_answer(MSG, model=MODEL, length=40)
        server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=6)))
        chunks = [c async for c in _async_raw(client, form)]
        assert texts_by_choice(chunks) == {0: full}
        assert len(server.requests) == 2
        assert "x-stainless-raw-response" not in server.requests[1].headers
        assert events.one()["streamtap.outcome"] == "ok"
