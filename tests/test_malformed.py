"""Malformed input from the server: in-band error objects and fields streamtap cannot read.

Through the real SDK over loopback HTTP. Whatever goes wrong inside streamtap, the caller gets
every character the server sent, once, in order; an error object arrives once, as the raw SDK
shows it; and one bad field repeated on every chunk is logged once per stream, with a count.
"""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

MSG = [{"role": "user", "content": "hi"}]


def chunk(delta: dict[str, Any], **choice: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    c.update(choice)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [c],
    }


async def collect(server: FakeServer, mode: str, instrument: bool = True) -> list[Any]:
    """Every chunk the caller's loop receives (sync client in sync mode, async otherwise)."""
    if mode == "sync":
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        if instrument:
            streamtap.instrument(client)
        try:
            return list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
        finally:
            client.close()
    aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    if instrument:
        streamtap.instrument(aclient)
    try:
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        return [c async for c in stream]
    finally:
        await aclient.close()


def content(chunks: list[Any]) -> str:
    """The answer as a loop that skips error objects reads it."""
    return "".join(
        c.choices[0].delta.content or ""
        for c in chunks
        if c.object != "error" and c.choices and c.choices[0].delta
    )


# -- an {"object": "error"} chunk ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_error_object_arrives_once_after_the_held_text(
    server: FakeServer, events: Any, mode: str
) -> None:
    """Text held when a vLLM-style error object comes is released in a normal chunk first; the
    error object itself is delivered once, exactly as the raw SDK shows it."""
    fault = Fault.error_event(after_events=3, style="object", status_in_body=400)
    reply = Reply(pieces=["Hel", "lo wor"], fault=fault)
    server.enqueue(reply)
    raw = await collect(server, mode, instrument=False)
    server.enqueue(reply)
    got = await collect(server, mode)

    errors = [c for c in got if c.object == "error"]
    assert len(errors) == 1
    assert errors[0].model_dump() == raw[-1].model_dump()
    assert got[-1] is errors[0]
    assert content(got) == content(raw) == "Hello wor"
    stamp = (got[0].id, got[0].created, got[0].model)
    assert all(c.object == "chat.completion.chunk" for c in got[:-1])
    assert all((c.id, c.created, c.model) == stamp for c in got[:-1])  # the stream's, not new
    assert len(server.requests) == 2  # one each: a 400 in the body is not resumed
    assert events.summaries[-1]["streamtap.outcome"] in ("ok", "incomplete")
    assert not events.errors()


# -- internal errors never reorder text ------------------------------------------------------

# Fields a sloppy server sends that streamtap's chunk handler cannot read: the index as a
# string fails before the chunk's text reaches the word buffer, logprobs' content as a number
# after it did.
BAD_FIELDS = {
    "index-string": {"index": "0"},
    "logprobs-number": {"logprobs": {"content": 5}},
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("bad", sorted(BAD_FIELDS))
async def test_internal_error_keeps_text_in_order(
    server: FakeServer, events: Any, monkeypatch: pytest.MonkeyPatch, mode: str, bad: str
) -> None:
    """A chunk streamtap fails on while it holds text: held text, then the chunk's own text,
    then the rest (passed through from then on), each character once."""
    monkeypatch.setenv("STREAMTAP_STRICT", "0")
    server.enqueue(
        Reply(
            chunks=[
                chunk({"role": "assistant", "content": ""}),
                chunk({"content": "Hel"}),
                chunk({"content": "lo world"}, **BAD_FIELDS[bad]),
                chunk({"content": " and the"}),
                chunk({"content": " end"}),
                chunk({}, finish_reason="stop"),
            ]
        )
    )
    got = await collect(server, mode)
    assert content(got) == "Hello world and the end"
    errors = events.errors()
    assert len(errors) == 1 and "processing a chunk" in errors[0].getMessage()
    assert events.one()["streamtap.internal_errors"] == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_repeated_internal_error_is_logged_once_per_stream(
    server: FakeServer, events: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """One malformed field on every one of 1,000 chunks: one ERROR record with its traceback,
    one record with the count, and the count in the summary event."""
    monkeypatch.setenv("STREAMTAP_STRICT", "0")
    words = [f"w{i} " for i in range(1000)]
    server.enqueue(
        Reply(
            chunks=[
                *(chunk({"content": w}, index="0") for w in words),
                chunk({}, finish_reason="stop"),
            ]
        )
    )
    got = await collect(server, mode)
    assert content(got) == "".join(words)
    errors = events.errors()
    assert len(errors) == 1 and errors[0].exc_info is not None
    repeats = [
        r
        for r in events.records
        if r.levelno == logging.WARNING and "internal error" in r.getMessage()
    ]
    assert len(repeats) == 1 and "1000 times" in repeats[0].getMessage()
    assert events.one()["streamtap.internal_errors"] == 1000


async def test_strict_mode_still_raises(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the test suite's strict mode the same chunk raises streamtap's internal error."""
    monkeypatch.setenv("STREAMTAP_STRICT", "1")
    server.enqueue(Reply(chunks=[chunk({"content": "Hel"}), chunk({"content": "lo"}, index="0")]))
    with pytest.raises(streamtap.StreamtapInternalError):
        await collect(server, "sync")


def test_internal_error_anywhere_keeps_every_character_once(
    server: FakeServer, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unreadable chunk at every position of the stream, for each kind of bad field, the
    finish chunk included: the caller's text is the server's, character for character."""
    monkeypatch.setenv("STREAMTAP_STRICT", "0")
    pieces = ["The qu", "ick br", "own fox", " jum", "ps over", " the la", "zy dog."]
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    streamtap.instrument(client)
    try:
        for bad in sorted(BAD_FIELDS):
            for k in range(len(pieces) + 1):
                chunks = [chunk({"content": p}) for p in pieces]
                chunks.append(chunk({}, finish_reason="stop"))
                chunks[k]["choices"][0].update(BAD_FIELDS[bad])
                server.enqueue(Reply(chunks=chunks))
                got = list(
                    client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
                )
                assert content(got) == "".join(pieces), (bad, k)
    finally:
        client.close()
    # (An index streamtap cannot read on a chunk with no text is no error: it is ignored.)
    failed = [e.get("streamtap.internal_errors") for e in events.summaries]
    assert failed.count(1) >= 2 * len(pieces) and set(failed) <= {1, None}
