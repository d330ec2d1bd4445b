"""One runtime object, one reset: `uninstrument()` forgets every client and every endpoint.

Each per-endpoint memory is learned through the real SDK against the local server, then shown
forgotten after `uninstrument()` + `instrument()`: the endpoint is asked again (requests are
counted on the server)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import openai

import streamtap
from streamtap._runtime import Runtime, runtime
from streamtap.testing import FakeServer, Fault, Reply, generate_answer

MSG = [{"role": "user", "content": "Tell me about rivers."}]
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05}
REJECT = {"error": {"message": "Unrecognized argument.", "param": "stream_options"}}


def client_for(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)


def stream(client: openai.OpenAI) -> str:
    chunks = client.chat.completions.create(model="m", messages=MSG, stream=True)  # type: ignore[arg-type]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _chunk(content: str, role: str | None = None) -> dict[str, Any]:
    delta = {"content": content, **({"role": role} if role else {})}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


def asked_usage(server: FakeServer) -> list[bool]:
    return ["stream_options" in r.json for r in server.requests]


def test_endpoint_that_rejected_stream_options_is_asked_again_after_uninstrument(
    server: FakeServer,
) -> None:
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Fault.http_error(422, REJECT))
    assert stream(client)
    assert stream(client)  # remembered: not asked again
    assert asked_usage(server) == [True, False, False]
    streamtap.uninstrument()
    streamtap.instrument(client)
    server.enqueue(Fault.http_error(422, REJECT))
    assert stream(client)
    assert asked_usage(server)[3:] == [True, False]


def test_endpoint_without_finish_reason_is_resumed_again_after_uninstrument() -> None:
    """A body that ends without [DONE] or finish_reason, twice at the same place: the endpoint
    is remembered as one that sends none (no resume request); forgotten after uninstrument."""
    hello = Reply(chunks=[_chunk("Hello", role="assistant"), _chunk(" world")], done=False)
    with FakeServer(default=hello) as server:
        client = client_for(server)
        streamtap.instrument(client, **FAST)
        stream(client)
        assert len(server.requests) == 2  # the first clean end is resumed once
        stream(client)
        assert len(server.requests) == 3  # learned: no resume
        streamtap.uninstrument()
        streamtap.instrument(client, **FAST)
        stream(client)
        assert len(server.requests) == 5


def test_endpoint_that_rejected_prefill_is_tried_again_after_uninstrument() -> None:
    with FakeServer(answer_length=60, supports_prefill=False) as server:
        client = client_for(server)
        full = generate_answer(MSG, model="m", length=60)

        def cut_stream() -> int:
            before = len(server.requests)
            server.enqueue(Reply.model_mode(length=60, fault=Fault.cut(after_events=8)))
            assert stream(client) == full
            return len(server.requests) - before

        streamtap.instrument(client, resume_strategy="prefill", **FAST)
        assert cut_stream() == 3  # cut, rejected prefill, replay
        assert cut_stream() == 2  # cut, replay: the rejection is remembered
        streamtap.uninstrument()
        streamtap.instrument(client, resume_strategy="prefill", **FAST)
        assert cut_stream() == 3


def test_uninstrument_forgets_clients_and_unpatches(server: FakeServer) -> None:
    client = client_for(server)
    streamtap.instrument(client)
    streamtap.instrument()
    with streamtap.options(buffering="off"):
        server.enqueue(Reply(text="Hello world"))
        stream(client)
    assert runtime.patched and runtime.derived and runtime.global_options is not None
    streamtap.uninstrument()
    assert not streamtap.is_instrumented(client)
    assert not runtime.patched and not runtime.derived and runtime.global_options is None
    from openai.resources.chat.completions import Completions

    assert "FunctionWrapper" not in type(Completions.__dict__["create"]).__name__


# Attributes that are not state: the locks.
_NOT_STATE = {"lock", "derived_lock"}
# The time seam: reset() puts the real clock and sleeps back.
_TIME = {"clock": time.perf_counter, "sleep": time.sleep, "async_sleep": asyncio.sleep}


def test_reset_clears_every_attribute() -> None:
    """Every piece of state on Runtime is cleared by reset(): a new attribute added without
    its line in reset() fails here (kept state belongs elsewhere, see the module docstring)."""
    rt = Runtime()

    class Client:
        pass

    client = Client()

    def original() -> None:
        pass

    class Patched:
        attr = staticmethod(original)

    for name in Runtime.__slots__:
        value = getattr(rt, name)
        if name in _NOT_STATE:
            assert isinstance(value, type(threading.Lock())) or hasattr(value, "acquire")
        elif name == "global_options":
            rt.global_options = object()  # type: ignore[assignment]
        elif name == "clients":
            rt.clients[client] = object()  # type: ignore[assignment]
        elif name == "patched":
            Patched.attr = staticmethod(lambda: None)
            rt.patched.append((Patched, "attr", staticmethod(original)))
        elif name in _TIME:
            setattr(rt, name, lambda *a: 0.0)  # a test's fake clock or sleep
        elif isinstance(value, set):
            value.add("http://127.0.0.1:1/v1")
        elif isinstance(value, dict):
            value["k"] = []  # type: ignore[index]
        else:
            raise AssertionError(f"Runtime.{name}: unknown kind of state, teach this test")
    rt.reset()
    for name in Runtime.__slots__:
        if name in _TIME:
            assert getattr(rt, name) is _TIME[name], name  # the real one is back
        elif name not in _NOT_STATE:
            assert not getattr(rt, name), name
    assert Patched.attr is original  # the patch was undone
