"""The shell through the real SDK over loopback HTTP: call paths, stream ends, the summary event."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

import openai
import pytest
import structlog
from pydantic import BaseModel

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

MSG = [{"role": "user", "content": "hi"}]
TEXT = "The quick brown fox jumps over the lazy dog. Then it naps in the warm sun."


def client_for(server: FakeServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key="sk-test-SECRET-0123", max_retries=0, **kw
    )


def aclient_for(server: FakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test-SECRET-0123", max_retries=0
    )


def texts(chunks: list[Any], index: int = 0) -> str:
    return "".join((c.delta.content or "") for ch in chunks for c in ch.choices if c.index == index)


def wait_closed(server: FakeServer, timeout: float = 2.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if server.open_connections() == 0:
            return 0
        time.sleep(0.02)
    return server.open_connections()


# -- instrument() itself ----------------------------------------------------------------------


def test_instrument_rejects_non_clients() -> None:
    """A wrong argument fails at instrument() time with a message naming what was expected."""
    with pytest.raises(TypeError, match=r"expects an openai\.OpenAI.*got dict"):
        streamtap.instrument({})


def test_bad_options_fail_at_instrument_time(server: FakeServer) -> None:
    """Bad configuration raises when instrumenting, naming the option, not at request time."""
    client = client_for(server)
    with pytest.raises(ValueError, match="buffering must be one of"):
        streamtap.instrument(client, buffering="words")
    with pytest.raises(TypeError, match="unknown option"):
        streamtap.instrument(client, bufering="word")
    with pytest.raises(ValueError, match="idle_timeout"):
        streamtap.instrument(client, idle_timeout=-1)
    with pytest.raises(ValueError, match="buffering must be one of"):
        with streamtap.options(buffering="nope"):
            pass
    assert not streamtap.is_instrumented(client)


def test_instrument_twice_is_a_noop_and_uninstrument_restores(
    server: FakeServer, events: Any
) -> None:
    """A second instrument() changes nothing; uninstrument() puts the SDK back as it was."""
    from openai.resources.chat.completions import Completions

    original = Completions.__dict__["create"]
    client = client_for(server)
    assert streamtap.instrument(client) is client
    streamtap.instrument(client, buffering="off")  # ignored: already instrumented
    server.enqueue(Reply(text=TEXT, chunk_size=3))
    list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert len(events.summaries) == 1
    assert events.one()["streamtap.buffering.mode"] == "word"
    streamtap.uninstrument()
    assert Completions.__dict__["create"] is original
    server.enqueue(Reply(text=TEXT))
    list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert len(events.summaries) == 1


def test_uninstrument_one_client(server: FakeServer, events: Any) -> None:
    """uninstrument(client) stops that client only."""
    a, b = client_for(server), client_for(server)
    streamtap.instrument(a)
    streamtap.instrument(b)
    streamtap.uninstrument(a)
    for c in (a, b):
        server.enqueue(Reply(text=TEXT))
        list(c.chat.completions.create(model="m", messages=MSG, stream=True))
    assert len(events.summaries) == 1


def test_derived_clients_stay_instrumented(server: FakeServer, events: Any) -> None:
    """with_options() and copy() return clients that are instrumented too."""
    client = client_for(server)
    streamtap.instrument(client)
    for derived in (client.with_options(timeout=5), client.copy(max_retries=0)):
        assert streamtap.is_instrumented(derived)
        server.enqueue(Reply(text=TEXT))
        stream = derived.chat.completions.create(model="m", messages=MSG, stream=True)
        assert texts(list(stream)) == TEXT
    assert len(events.summaries) == 2


def test_instrument_everything_covers_new_and_module_clients(
    server: FakeServer, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """instrument() with no client covers clients made later and `openai.chat.completions`."""
    streamtap.instrument()
    server.enqueue(Reply(text=TEXT))
    later = client_for(server)
    assert texts(list(later.chat.completions.create(model="m", messages=MSG, stream=True))) == TEXT
    monkeypatch.setattr(openai, "api_key", "sk-module")
    monkeypatch.setattr(openai, "base_url", server.base_url + "/")
    monkeypatch.setattr(openai, "max_retries", 0)
    monkeypatch.setattr(openai, "_client", None)
    server.enqueue(Reply(text=TEXT))
    chunks = list(openai.chat.completions.create(model="m", messages=MSG, stream=True))
    assert texts(chunks) == TEXT
    assert len(events.summaries) == 2


# -- the stream proxy ---------------------------------------------------------------------------


def test_stream_is_transparent_and_logged(server: FakeServer, events: Any) -> None:
    """The caller gets an openai.Stream with the same text; one event with checked values."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=5, model="gpt-4o-2024-08-06", id="chatcmpl-abc"))
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200
    chunks = list(stream)
    assert texts(chunks) == TEXT
    # Word buffering: every piece but the last ends at a word boundary.
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert all(p[-1] in " .," or p is pieces[-1] for p in pieces), pieces
    # The injected usage chunk is hidden from a caller who did not ask for usage.
    assert all(c.choices for c in chunks)
    ev = events.one()
    assert ev["streamtap.outcome"] == "ok"
    assert ev["streamtap.end"] == "exhausted"
    assert ev["gen_ai.request.model"] == "gpt-4o"
    assert ev["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert ev["gen_ai.response.id"] == "chatcmpl-abc"
    assert ev["gen_ai.response.finish_reasons"] == ["stop"]
    assert ev["server.address"] == "127.0.0.1"
    assert ev["server.port"] == int(server.base_url.split(":")[2].split("/")[0])
    assert ev["http.response.status_code"] == 200
    assert ev["streamtap.request_id"].startswith("req_")
    assert ev["streamtap.schema_version"] == 1
    assert ev["gen_ai.provider.name"] == "openai"
    assert ev["streamtap.stream"] is True
    # Chunks from the server: one per piece, plus role, finish and usage chunks.
    sent = server.requests[-1]
    assert sent.json["stream_options"] == {"include_usage": True}
    assert ev["streamtap.chunk_count"] >= len(TEXT) // 5
    assert ev["gen_ai.usage.output_tokens"] > 0
    assert ev["streamtap.usage.source"] == "server"
    assert ev["gen_ai.usage.input_tokens"] > 0
    assert 0 <= ev["streamtap.gap.mean"] <= ev["streamtap.gap.max"]
    assert ev["streamtap.gap.p95"] <= ev["streamtap.gap.max"] * 1.0001
    assert ev["streamtap.duration"] >= ev["gen_ai.response.time_to_first_chunk"] > 0
    assert not events.errors()


def test_time_to_first_token_matches_server_delay(server: FakeServer, events: Any) -> None:
    """TTFT reflects a known server delay before the first token, and the gaps the pacing."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=10, first_delay=0.4, delay=0.05))
    t0 = time.perf_counter()
    first_text_at = None
    for chunk in client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True):
        if first_text_at is None and chunk.choices and chunk.choices[0].delta.content:
            first_text_at = time.perf_counter() - t0
    ended_at = time.perf_counter() - t0
    ev = events.one()
    # Bracketed by order, not by a guessed slack: streamtap's readings fall between the
    # caller's (its start after t0, the first token's arrival before the caller got it).
    assert first_text_at is not None
    assert 0.4 <= ev["streamtap.time_to_first_token"] <= first_text_at
    assert ev["streamtap.duration"] <= ended_at
    assert ev["streamtap.gap.max"] >= 0.04
    assert 0.03 <= ev["streamtap.gap.p95"] <= ev["streamtap.gap.max"] * 1.0001
    assert ev["streamtap.decode_duration"] >= 0.05 * (len(TEXT) // 10 - 2)
    assert ev["streamtap.time_per_output_token"] > 0
    assert ev["streamtap.output_tokens_per_second"] > 0


def test_break_records_cancelled_and_releases_connection(server: FakeServer, events: Any) -> None:
    """An early break is recorded once (cancelled/break) and the connection is released."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT * 20, chunk_size=4, delay=0.002))
    for i, _chunk in enumerate(
        client.chat.completions.create(model="m", messages=MSG, stream=True)
    ):
        if i == 3:
            break
    ev = events.one()
    assert ev["streamtap.outcome"] == "cancelled"
    assert ev["streamtap.end"] == "break"
    assert wait_closed(server) == 0


def test_break_then_continue_like_the_sdk(server: FakeServer, events: Any) -> None:
    """After a break the caller can keep iterating the same stream, as with the SDK."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    stream = client.chat.completions.create(model="m", messages=MSG, stream=True)
    first = []
    for chunk in stream:
        first.append(chunk)
        if len(first) == 2:
            break
    rest = list(stream)
    assert texts(first + rest) == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


def test_close_and_context_manager(server: FakeServer, events: Any) -> None:
    """`with` returns the proxy itself; close() and context exit are recorded once each."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT * 10, chunk_size=4, delay=0.002))
    with client.chat.completions.create(model="m", messages=MSG, stream=True) as stream:
        assert isinstance(stream, openai.Stream)
        assert type(stream).__name__ == "StreamProxy"
        next(stream)
    server.enqueue(Reply(text=TEXT * 10, chunk_size=4, delay=0.002))
    s2 = client.chat.completions.create(model="m", messages=MSG, stream=True)
    next(s2)
    s2.close()
    s2.close()
    assert [e["streamtap.end"] for e in events.summaries] == ["exit", "close"]
    assert {e["streamtap.outcome"] for e in events.summaries} == {"cancelled"}
    assert wait_closed(server) == 0


def test_abandoned_stream(server: FakeServer, events: Any) -> None:
    """A stream dropped without being iterated is recorded as abandoned, and closed."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT))
    client.chat.completions.create(model="m", messages=MSG, stream=True)
    gc.collect()
    ev = events.one()
    assert ev["streamtap.outcome"] == "abandoned"
    assert ev["streamtap.end"] == "gc"
    assert wait_closed(server) == 0


def test_connection_cut_flushes_held_text_then_raises(server: FakeServer, events: Any) -> None:
    """A cut mid-stream: held text reaches the caller before the SDK's own exception."""
    client = client_for(server)
    streamtap.instrument(client, retry=False)
    server.enqueue(Reply(text=TEXT, chunk_size=3, fault=Fault.cut(after_events=8)))
    got: list[Any] = []
    with pytest.raises(Exception) as info:
        for chunk in client.chat.completions.create(model="m", messages=MSG, stream=True):
            got.append(chunk)
    assert not isinstance(info.value, streamtap.StreamtapInternalError)
    text = texts(got)
    assert TEXT.startswith(text) and len(text) >= 3 * 6  # nothing the server sent was held back
    ev = events.one()
    assert ev["streamtap.outcome"] == "error"
    assert ev["error.type"] in (
        "httpx.RemoteProtocolError",
        "openai.APIConnectionError",
        "httpx2.RemoteProtocolError",
    )


def test_incomplete_stream_without_finish_reason(server: FakeServer, events: Any) -> None:
    """A stream that ends without any finish_reason is `incomplete`; held text still arrives."""
    client = client_for(server)
    streamtap.instrument(client, retry=False)
    server.enqueue(Reply(text=TEXT, chunk_size=3, fault=Fault.no_finish_reason()))
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert texts(chunks) == TEXT
    assert events.one()["streamtap.outcome"] == "incomplete"


def test_http_error_passes_through_unchanged(server: FakeServer, events: Any) -> None:
    """An HTTP error reaches the caller as the SDK's own exception, and is logged."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(
        Reply(fault=Fault.http_error(401, body={"error": {"message": "bad key", "type": "auth"}}))
    )
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="m", messages=MSG, stream=True)
    assert info.value.status_code == 401
    ev = events.one()
    assert ev["streamtap.outcome"] == "error"
    assert ev["error.type"] == "openai.AuthenticationError"
    assert ev["http.response.status_code"] == 401


# -- other call paths ---------------------------------------------------------------------------


def test_with_raw_response(server: FakeServer, events: Any) -> None:
    """with_raw_response: headers readable, parse() returns the instrumented stream."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MSG, stream=True)
    assert raw.headers["x-request-id"].startswith("req_")
    stream = raw.parse()
    assert stream is raw.parse()
    assert isinstance(stream, openai.Stream)
    assert texts(list(stream)) == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


def test_raw_response_wrapper_made_before_instrument(server: FakeServer, events: Any) -> None:
    """A with_raw_response accessed before instrument() is still covered afterwards."""
    client = client_for(server)
    assert client.chat.completions.with_raw_response is not None  # cached by the SDK
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MSG, stream=True)
    assert texts(list(raw.parse())) == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


def test_with_streaming_response(server: FakeServer, events: Any) -> None:
    """with_streaming_response: the context manager and parse() work and are logged."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSG, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert texts(list(response.parse())) == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


def test_stream_helper(server: FakeServer, events: Any) -> None:
    """The SDK's chat.completions.stream() helper sees whole words and the full text."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=3))
    with client.chat.completions.stream(model="m", messages=MSG) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
        assert streamtap.stats(stream).chunks > 0
    assert "".join(deltas) == TEXT
    assert final.choices[0].message.content == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


def test_non_streaming_call_is_logged(server: FakeServer, events: Any) -> None:
    """A plain create() is passed through and logged with its latency and usage."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT))
    completion = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert completion.choices[0].message.content == TEXT
    assert "stream_options" not in server.requests[-1].json
    ev = events.one()
    assert ev["streamtap.stream"] is False
    assert ev["streamtap.outcome"] == "ok"
    assert ev["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert ev["streamtap.duration"] > 0


class Weather(BaseModel):
    city: str
    degrees: int


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_parse_is_logged_like_a_plain_create(mode: str, server: FakeServer, events: Any) -> None:
    """`chat.completions.parse(response_format=...)` posts by itself, not through `create`: one
    event with its latency and usage, the parsed message unchanged, nothing added to the
    request."""
    server.enqueue(Reply(text='{"city": "Paris", "degrees": 21}'))
    if mode == "sync":
        client = client_for(server)
        streamtap.instrument(client)
        completion = client.chat.completions.parse(
            model="gpt-4o", messages=MSG, response_format=Weather
        )
    else:
        aclient = aclient_for(server)
        streamtap.instrument(aclient)
        completion = asyncio.run(
            aclient.chat.completions.parse(model="gpt-4o", messages=MSG, response_format=Weather)
        )
    assert completion.choices[0].message.parsed == Weather(city="Paris", degrees=21)
    assert "stream_options" not in server.requests[-1].json
    ev = events.one()
    assert ev["streamtap.stream"] is False
    assert ev["streamtap.outcome"] == "ok"
    assert ev["gen_ai.request.model"] == "gpt-4o"
    assert ev["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens


# -- usage injection ----------------------------------------------------------------------------


def test_usage_chunk_shown_when_caller_asked(server: FakeServer, events: Any) -> None:
    """A caller who asked for usage gets the usage chunk unchanged."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT))
    chunks = list(
        client.chat.completions.create(
            model="m", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert events.one()["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens


def test_stream_options_rejected_falls_back_once_per_endpoint(events: Any) -> None:
    """A server that answers 400 to stream_options is retried without it, and remembered."""
    with FakeServer(supports_stream_options=False) as server:
        client = client_for(server)
        streamtap.instrument(client)
        for _ in range(2):
            server.enqueue(Reply(text=TEXT))
            assert (
                texts(list(client.chat.completions.create(model="m", messages=MSG, stream=True)))
                == TEXT
            )
        bodies = [r.json for r in server.requests]
    assert ["stream_options" in b for b in bodies] == [True, False, False]
    assert [e["streamtap.outcome"] for e in events.summaries] == ["ok", "ok"]
    assert events.summaries[0]["streamtap.usage.source"] == "streamtap"


# -- options, logging, hooks, stats -------------------------------------------------------------


def test_per_request_options(server: FakeServer, events: Any) -> None:
    """streamtap.options(...) changes one block's requests only."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=3))
    with streamtap.options(buffering="off"):
        chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert pieces[0] == TEXT[:3]  # unbuffered: the server's own pieces
    assert events.summaries[0]["streamtap.buffering.mode"] == "off"
    server.enqueue(Reply(text=TEXT, chunk_size=3))
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert events.summaries[1]["streamtap.buffering.mode"] == "word"


def test_structlog_logger_and_hooks(server: FakeServer) -> None:
    """A structlog logger receives the event; hooks get it too; a failing hook breaks nothing."""
    seen: list[dict[str, Any]] = []

    def bad_hook(summary: Any) -> None:
        raise RuntimeError("user hook bug")

    client = client_for(server)
    streamtap.instrument(
        client, logger=structlog.get_logger("app"), hooks=[lambda s: seen.append(dict(s)), bad_hook]
    )
    server.enqueue(Reply(text=TEXT))
    with structlog.testing.capture_logs() as logs:
        chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert texts(chunks) == TEXT
    summary = [e for e in logs if e["event"] == "streamtap.stream.summary"]
    assert len(summary) == 1 and summary[0]["streamtap.outcome"] == "ok"
    assert seen and seen[0]["streamtap.chunk_count"] == summary[0]["streamtap.chunk_count"]


def test_no_secrets_and_no_content_by_default(server: FakeServer, events: Any, caplog: Any) -> None:
    """API keys, auth headers and text never reach the log unless content logging is on."""
    client = client_for(server)
    streamtap.instrument(client)
    caplog.set_level(logging.DEBUG, logger="streamtap")
    server.enqueue(Reply(text=TEXT))
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    dumped = repr(events.summaries) + caplog.text
    assert "SECRET" not in dumped and "Bearer" not in dumped
    assert "quick brown" not in dumped
    streamtap.uninstrument()
    streamtap.instrument(client, log_content=True)
    server.enqueue(Reply(text=TEXT))
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert events.summaries[-1]["streamtap.content.output"] == TEXT
    assert events.summaries[-1]["streamtap.content.input"] == MSG


def test_live_stats(server: FakeServer, fake_time: Any) -> None:
    """stats() reports chunks and times while the stream runs, on the stream's clock (the
    injected one: the first chunk is read 0.5 s after the request, the second 0.25 s later)."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    stream = client.chat.completions.create(model="m", messages=MSG, stream=True)
    before = streamtap.stats(stream)
    assert before.chunks == 0 and before.outcome is None
    assert (before.time_to_first_chunk, before.elapsed) == (None, 0.0)
    fake_time.advance(0.5)
    next(stream)
    fake_time.advance(0.25)
    next(stream)
    mid = streamtap.stats(stream)
    assert (mid.chunks, mid.time_to_first_chunk, mid.elapsed) == (2, 0.5, 0.75)
    list(stream)
    after = streamtap.stats(stream)
    assert after.outcome == "ok" and after.tokens > 0
    with pytest.raises(TypeError, match="instrumented client"):
        streamtap.stats(object())


def test_per_chunk_debug_events(server: FakeServer, events: Any) -> None:
    """With DEBUG enabled, every chunk gets a debug event; at INFO none are made."""
    client = client_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=8))
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert not [r for r in events.records if r.getMessage() == "streamtap.stream.chunk"]
    logging.getLogger("streamtap").setLevel(logging.DEBUG)
    server.enqueue(Reply(text=TEXT, chunk_size=8))
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    debug = [r for r in events.records if r.getMessage() == "streamtap.stream.chunk"]
    assert len(debug) == events.summaries[-1]["streamtap.chunk_count"]


def test_internal_errors_are_swallowed_outside_strict_mode(
    server: FakeServer, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in streamtap's bookkeeping is logged, and the caller still gets every chunk."""
    import streamtap._sdk.chat as chat

    def broken(*args: Any) -> bool:
        raise ZeroDivisionError("bookkeeping bug")

    client = client_for(server)
    streamtap.instrument(client)
    monkeypatch.setattr(chat, "process_chunk", broken)
    monkeypatch.setenv("STREAMTAP_STRICT", "0")
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert texts(chunks) == TEXT
    assert any("bookkeeping bug" in r.getMessage() for r in events.errors())
    monkeypatch.setenv("STREAMTAP_STRICT", "1")
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    with pytest.raises(streamtap.StreamtapInternalError):
        list(client.chat.completions.create(model="m", messages=MSG, stream=True))


def test_configure_logging_json(server: FakeServer, capsys: Any) -> None:
    """configure_logging() prints one JSON object per event, with the schema's field names."""
    import json

    handler = streamtap.configure_logging(json=True)
    try:
        client = client_for(server)
        streamtap.instrument(client)
        server.enqueue(Reply(text=TEXT))
        list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    finally:
        logging.getLogger("streamtap").removeHandler(handler)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert lines[-1]["event"] == "streamtap.stream.summary"
    assert lines[-1]["streamtap.outcome"] == "ok"
    assert lines[-1]["timestamp"].endswith("Z")


# -- async ----------------------------------------------------------------------------------------


async def test_async_stream(server: FakeServer, events: Any) -> None:
    """AsyncOpenAI: an AsyncStream proxy with the same text and one event."""
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=3))
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    assert isinstance(stream, openai.AsyncStream)
    chunks = [c async for c in stream]
    assert texts(chunks) == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


async def test_async_context_manager_and_close(server: FakeServer, events: Any) -> None:
    """`async with` returns the proxy; aclose is awaited; the connection is released."""
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT * 10, chunk_size=4, delay=0.002))
    async with await client.chat.completions.create(model="m", messages=MSG, stream=True) as stream:
        assert type(stream).__name__ == "AsyncStreamProxy"
        await stream.__anext__()
    ev = events.one()
    assert (ev["streamtap.outcome"], ev["streamtap.end"]) == ("cancelled", "exit")
    await asyncio.sleep(0.05)
    assert wait_closed(server) == 0


async def test_async_break(server: FakeServer, events: Any) -> None:
    """An early break out of `async for` is recorded and the connection released."""
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT * 10, chunk_size=4, delay=0.002))
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    async for _ in stream:
        break
    await stream.close()
    ev = events.one()
    assert (ev["streamtap.outcome"], ev["streamtap.end"]) == ("cancelled", "close")
    assert wait_closed(server) == 0


async def test_async_task_cancellation(server: FakeServer, events: Any) -> None:
    """Cancelling the task that iterates records `cancelled` and re-raises CancelledError."""
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4, delay=0.5))
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ev = events.one()
    assert (ev["streamtap.outcome"], ev["streamtap.end"]) == ("cancelled", "cancelled")


async def test_async_raw_and_streaming_response(server: FakeServer, events: Any) -> None:
    """Async with_raw_response and with_streaming_response both yield instrumented streams."""
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    raw = await client.chat.completions.with_raw_response.create(
        model="m", messages=MSG, stream=True
    )
    stream = raw.parse()
    assert texts([c async for c in stream]) == TEXT
    server.enqueue(Reply(text=TEXT, chunk_size=4))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSG, stream=True
    ) as response:
        stream2 = await response.parse()
        assert texts([c async for c in stream2]) == TEXT
    assert [e["streamtap.outcome"] for e in events.summaries] == ["ok", "ok"]


async def test_async_stream_helper(server: FakeServer, events: Any) -> None:
    """The async .stream() helper works on an instrumented client."""
    client = aclient_for(server)
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT, chunk_size=3))
    async with client.chat.completions.stream(model="m", messages=MSG) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
    assert "".join(deltas) == TEXT
    assert events.one()["streamtap.outcome"] == "ok"


def test_azure_client(server: FakeServer, events: Any) -> None:
    """AzureOpenAI clients are instrumented and labelled as Azure."""
    client = openai.AzureOpenAI(
        api_key="k", api_version="2024-06-01", base_url=server.base_url, max_retries=0
    )
    streamtap.instrument(client)
    server.enqueue(Reply(text=TEXT))
    assert (
        texts(list(client.chat.completions.create(model="dep", messages=MSG, stream=True))) == TEXT
    )
    assert events.one()["gen_ai.provider.name"] == "azure.ai.openai"


async def test_async_hold_bound_holds_when_next_chunk_is_late(
    server: FakeServer, events: Any
) -> None:
    """Async: held text is released by a timer when the next chunk is late."""
    client = aclient_for(server)
    streamtap.instrument(client, hold_max_seconds=0.1)
    pieces = ["The", " quick", " brown", " fox", " jumps."]
    server.enqueue(Reply(pieces=pieces, delay=[0.0, 0.0, 0.0, 0.0, 1.2, 0.0, 0.0]))
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    got: list[tuple[int, str]] = []  # (events the server had sent, text delivered)
    async for chunk in stream:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            got.append((server.responses[-1].events_sent, text))
    assert "".join(t for _, t in got) == "".join(pieces)
    # " fox" arrives at once and is held (the word may go on); the next chunk comes 1.2 s
    # later, but the bound releases the held text before that, all but its last grapheme
    # (the next code point could still extend it). Judged by order, not by the clock: what
    # the caller had while the server had sent no more than the role chunk and four pieces
    # (`events_sent` is updated before each write: it never lags what the client has).
    before_gap = "".join(t for sent, t in got if sent <= 5)
    assert before_gap == "The quick brown fo", got
    assert events.one()["streamtap.outcome"] == "ok"


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "assistant"},  # OpenRouter, Ollama: the role on every chunk
        {"reasoning": ""},  # Ollama
        {"reasoning_content": None},  # DeepSeek
        {"role": "assistant", "token_id": 7, "tool_calls": None},  # Together
        {"refusal": None, "reasoning_details": []},  # nulls, OpenRouter
    ],
)
def test_dialect_deltas_take_the_short_path(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]
) -> None:
    """Content deltas that carry other servers' empty fields are handled like OpenAI's plain
    `{"content": ...}` ones: only the first chunk and the finish chunk take the full path."""
    import streamtap._sdk.chat as o

    if o.PYDANTIC_V1:
        pytest.skip("pydantic 1: every chunk takes the full path (no short path, by design)")

    full: list[Any] = []
    real = o._process_chunk

    def spy(state: Any, chunk: Any, *args: Any) -> int:
        full.append(chunk)
        return real(state, chunk, *args)

    monkeypatch.setattr(o, "_process_chunk", spy)
    words = TEXT.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    body = [chunk({**extra, "content": p}) for p in pieces] + [chunk({}, "stop")]
    client = client_for(server)
    streamtap.instrument(client, count_tokens=False)
    server.enqueue(Reply(chunks=body))
    got = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert texts(got) == TEXT
    assert len(full) == 2, [c.choices for c in full]
    # Text in another channel is still the full path's: reasoning goes to its own lane.
    full.clear()
    body = [chunk({"content": p, "reasoning_content": "r"}) for p in pieces] + [chunk({}, "stop")]
    server.enqueue(Reply(chunks=body))
    got = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert texts(got) == TEXT
    assert len(full) == len(body)
    assert "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in got) == (
        "r" * len(pieces)
    )
