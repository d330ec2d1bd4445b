"""Tests for streamtap.testing: the fake OpenAI-compatible server.

The SDK side uses the real ``openai`` package of whichever venv runs the suite (1.x, 2.x or
3.x); byte-level checks use raw sockets or ``http.client``.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from streamtap.testing import (
    DEFAULT_MODEL,
    FakeServer,
    Fault,
    Reply,
    estimate_tokens,
    generate_answer,
    load_cassettes,
    split_tokens,
)

CASSETTES = Path(__file__).resolve().parent / "data" / "streams.jsonl"
MSGS = [{"role": "user", "content": "Tell me about caching in distributed systems."}]
OPENAI_MAJOR = int(openai.__version__.split(".")[0])


# ---------------------------------------------------------------------------- fixtures/helpers


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """A running server; the test fails if the server hit an internal error."""
    with FakeServer() as srv:
        yield srv
        assert srv.errors == []


@pytest.fixture
def client(server: FakeServer) -> Iterator[openai.OpenAI]:
    """A real SDK client pointed at the server, without SDK retries."""
    sdk = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def stream_text(client: openai.OpenAI, **kwargs: Any) -> tuple[dict[int, str], list[Any]]:
    """Run one streamed request; return the text per choice index and all chunks."""
    params: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS, "stream": True}
    params.update(kwargs)
    texts: dict[int, str] = {}
    chunks = []
    for chunk in client.chat.completions.create(**params):
        chunks.append(chunk)
        for choice in chunk.choices or []:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    return texts, chunks


class RawResponse:
    """A response read off a raw socket, with the chunked framing decoded by hand."""

    def __init__(self, data: bytes) -> None:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunk_sizes: list[int] = []
        self.complete = False
        if self.headers.get("transfer-encoding") == "chunked":
            body = b""
            while rest:
                size_line, sep, after = rest.partition(b"\r\n")
                if not sep:
                    break
                size = int(size_line, 16)
                if size == 0:
                    self.complete = after.startswith(b"\r\n")
                    break
                body += after[:size]
                self.chunk_sizes.append(size)
                rest = after[size + 2 :]
            self.body = body
        else:
            length = int(self.headers.get("content-length", len(rest)))
            self.body = rest[:length]
            self.complete = len(rest) >= length

    def events(self) -> list[str]:
        """The SSE events of the body, as text blocks."""
        return [e for e in self.body.decode().split("\n\n") if e]

    def data(self) -> list[Any]:
        """The JSON payloads of the ``data:`` lines (``[DONE]`` kept as a string)."""
        out = []
        for event in self.events():
            for line in event.split("\n"):
                if line.startswith("data: "):
                    payload = line[6:]
                    out.append(payload if payload == "[DONE]" else json.loads(payload))
        return out


def raw_post(server: FakeServer, body: dict[str, Any], timeout: float = 10.0) -> RawResponse:
    """POST with ``connection: close`` on a fresh socket and read until the server closes."""
    payload = json.dumps(body).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )
    data = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
    return RawResponse(data)


def stream_body(**extra: Any) -> dict[str, Any]:
    """A streamed request body."""
    return {"model": "gpt-4o-mini", "messages": MSGS, "stream": True, **extra}


# ------------------------------------------------------------------------------- text and chunks


def test_scripted_text_arrives_intact(server: FakeServer, client: openai.OpenAI) -> None:
    """Concatenated deltas equal the scripted text, after an OpenAI-style role chunk."""
    text = "Héllo wörld — naïve café, 100% sure 🚀! Second sentence.\n\nNew paragraph."
    server.enqueue(Reply(text=text))
    texts, chunks = stream_text(client)
    assert texts == {0: text}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].model == "gpt-4o-mini"
    assert len(chunks) > 5  # really split into several deltas


def test_request_is_recorded(server: FakeServer, client: openai.OpenAI) -> None:
    """Requests are recorded with method, path, lower-case headers and parsed JSON."""
    server.enqueue(Reply(text="ok"))
    stream_text(client, seed=7)
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test"
    assert request.headers["content-type"] == "application/json"
    assert request.json["messages"] == MSGS
    assert request.json["seed"] == 7
    assert request.request_id == "req_1"
    assert request.received_at <= time.perf_counter()


def test_explicit_pieces_and_chunk_size(server: FakeServer, client: openai.OpenAI) -> None:
    """``pieces`` are sent as the exact deltas; ``chunk_size`` splits by characters."""
    server.enqueue(Reply(pieces=["Hel", "lo", " wo", "rld"], role_chunk=False))
    _, chunks = stream_text(client)
    assert [c.choices[0].delta.content for c in chunks[:-1]] == ["Hel", "lo", " wo", "rld"]
    server.enqueue(Reply(text="abcdefghij", chunk_size=4))
    _, chunks = stream_text(client)
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["abcd", "efgh", "ij"]


def test_default_chunking_is_deterministic_word_pieces(
    server: FakeServer, client: openai.OpenAI
) -> None:
    """Default deltas are 1-3 crude tokens, the same every time; no character is lost."""
    text = "I don't know—naïve café 12345 internationalization 你好世界 e\u0301 👩\u200d💻."
    assert "".join(split_tokens(text)) == text
    assert estimate_tokens("Hello, world!") == 4
    runs = []
    for _ in range(2):
        server.enqueue(Reply(text=text))
        _, chunks = stream_text(client)
        runs.append([c.choices[0].delta.content for c in chunks[1:-1]])
    assert runs[0] == runs[1] and "".join(runs[0]) == text
    assert all(1 <= len(split_tokens(piece)) <= 3 for piece in runs[0])


def test_n2_choices_interleave(server: FakeServer, client: openai.OpenAI) -> None:
    """n=2 gives chunks with one choice each, indexes interleaved, each text intact."""
    server.enqueue(Reply(text=["First answer, quite long.", "Second one, also long."]))
    texts, chunks = stream_text(client)  # one text per choice implies n=2
    assert texts == {0: "First answer, quite long.", 1: "Second one, also long."}
    indexes = [c.choices[0].index for c in chunks]
    assert indexes[:4] == [0, 1, 0, 1]
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks}
    assert finishes == {0: "stop", 1: "stop"}


def test_n2_from_request_in_model_mode(server: FakeServer, client: openai.OpenAI) -> None:
    """Model mode honours the request's ``n`` with a different answer per choice."""
    texts, _ = stream_text(client, n=2)
    assert texts[0] == generate_answer(MSGS, model="gpt-4o-mini")
    assert texts[1] == generate_answer(MSGS, model="gpt-4o-mini", choice=1)
    assert texts[0] != texts[1]


@pytest.mark.parametrize("count", [1, 3])
def test_tool_calls_assemble(server: FakeServer, client: openai.OpenAI, count: int) -> None:
    """Tool-call fragments assemble into valid JSON arguments, OpenAI style."""
    calls = [
        {"name": f"get_weather_{i}", "arguments": {"city": f"Zürich {i}", "unit": "celsius"}}
        for i in range(count)
    ]
    server.enqueue(Reply(tool_calls=calls))
    _, chunks = stream_text(client)
    assembled: dict[int, dict[str, str]] = {}
    first_fragments = []
    for chunk in chunks:
        for tc in chunk.choices[0].delta.tool_calls or []:
            if tc.id is not None:
                first_fragments.append(tc)
                assembled[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
            assembled[tc.index]["arguments"] += tc.function.arguments or ""
    assert len(first_fragments) == count
    assert all(f.type == "function" and f.function.arguments == "" for f in first_fragments)
    for i in range(count):
        assert assembled[i]["name"] == f"get_weather_{i}"
        assert json.loads(assembled[i]["arguments"]) == calls[i]["arguments"]
        assert assembled[i]["id"].startswith("call_")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    first_delta = chunks[0].choices[0].delta
    assert first_delta.role == "assistant" and first_delta.content is None
    # OpenAI puts a single call's first fragment in the role chunk, but not parallel calls.
    assert bool(first_delta.tool_calls) == (count == 1)


def test_include_usage(server: FakeServer, client: openai.OpenAI) -> None:
    """With include_usage every chunk has usage null, then a choices-less usage chunk."""
    raw = raw_post(server, stream_body(stream_options={"include_usage": True}))
    data = raw.data()
    assert data[-1] == "[DONE]"
    *chunks, usage_chunk = data[:-1]
    assert all("usage" in c and c["usage"] is None for c in chunks)
    assert usage_chunk["choices"] == []
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == estimate_tokens(text)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    _, sdk_chunks = stream_text(client, stream_options={"include_usage": True})
    assert sdk_chunks[-1].choices == [] and sdk_chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in sdk_chunks[:-1])

    without = raw_post(server, stream_body()).data()
    assert all("usage" not in c for c in without[:-1])


def test_usage_on_finish_chunk_and_custom_counter(server: FakeServer) -> None:
    """``usage_on_finish`` puts usage on the finish chunk; ``token_counter`` is pluggable."""
    server.enqueue(
        Reply(text="one two three", usage_on_finish=True, token_counter=lambda s: len(s))
    )
    data = raw_post(server, stream_body(stream_options={"include_usage": True})).data()
    finish = data[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"]["completion_tokens"] == len("one two three")


def test_reasoning_refusal_and_non_stream(server: FakeServer, client: openai.OpenAI) -> None:
    """Reasoning streams first in its own field; refusal deltas; non-stream JSON bodies."""
    server.enqueue(
        Reply(text="Answer.", reasoning="Let me think about it.", reasoning_field="reasoning")
    )
    data = raw_post(server, stream_body()).data()
    deltas = [c["choices"][0]["delta"] for c in data[:-1]]
    assert "".join(d.get("reasoning") or "" for d in deltas) == "Let me think about it."
    assert "".join(d.get("content") or "" for d in deltas) == "Answer."
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(not d.get("reasoning") for d in deltas[first_content:])

    server.enqueue(Reply(refusal="I can't help with that."))
    data = raw_post(server, stream_body()).data()
    assert "".join(c["choices"][0]["delta"].get("refusal") or "" for c in data[:-1]) == (
        "I can't help with that."
    )

    server.enqueue(Reply(text="Plain JSON answer.", reasoning="hmm"))
    completion = client.chat.completions.create(model="m", messages=MSGS)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Plain JSON answer."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == (
        estimate_tokens("Plain JSON answer.") + estimate_tokens("hmm")
    )
    assert completion.usage.completion_tokens_details.reasoning_tokens == estimate_tokens("hmm")


def test_explicit_chunks_raw_and_done_flag(server: FakeServer, client: openai.OpenAI) -> None:
    """``chunks`` are sent as given (``done=False`` drops [DONE]); ``raw`` verbatim."""
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    server.enqueue(Reply(chunks=[chunk]))
    assert raw_post(server, stream_body()).data() == [chunk, "[DONE]"]
    server.enqueue(Reply(chunks=[chunk], done=False))
    assert raw_post(server, stream_body()).data() == [chunk]
    body = ": keep-alive\n\ndata: " + json.dumps(chunk) + "\n\ndata: [DONE]\n\n"
    server.enqueue(Reply(raw=body))
    raw = raw_post(server, stream_body())
    assert raw.body == body.encode()
    server.enqueue(Reply(raw=body))
    texts, _ = stream_text(client)
    assert texts == {0: "hi"}


def test_headers_and_framing(server: FakeServer) -> None:
    """Streams are chunked SSE with an x-request-id; extra headers are added or override."""
    server.enqueue(Reply(text="hi", headers={"x-custom": "1", "Content-Type": "text/event-stream"}))
    raw = raw_post(server, stream_body())
    assert raw.status == 200 and raw.complete
    assert raw.headers["transfer-encoding"] == "chunked"
    assert raw.headers["content-type"] == "text/event-stream"
    assert raw.headers["x-custom"] == "1"
    assert raw.headers["x-request-id"] == "req_1"
    assert raw.headers["connection"] == "close"  # the request asked for it


def test_split_bytes(server: FakeServer, client: openai.OpenAI) -> None:
    """``split=N`` writes N-byte HTTP chunks (mid-UTF-8, mid-JSON); clients still reassemble."""
    text = "Grüße aus Köln 🚀 und 你好!"
    server.enqueue(Reply(text=text, split=7))
    raw = raw_post(server, stream_body())
    assert raw.complete and max(raw.chunk_sizes) <= 7 and len(raw.chunk_sizes) > 20
    server.enqueue(Reply(text=text, split="byte"))
    raw = raw_post(server, stream_body())
    assert set(raw.chunk_sizes) == {1}
    server.enqueue(Reply(text=text, split="byte"))
    assert stream_text(client)[0] == {0: text}


def test_pacing(server: FakeServer, client: openai.OpenAI) -> None:
    """``first_delay`` delays the first event after headers; ``delay`` spaces the rest."""
    server.enqueue(Reply(pieces=["a", "b", "c"], role_chunk=False, first_delay=0.15, delay=0.05))
    start = time.perf_counter()
    stream = client.chat.completions.create(model="m", messages=MSGS, stream=True)
    arrivals = [time.perf_counter() - start for _ in stream]
    assert arrivals[0] >= 0.15
    assert arrivals[-1] >= 0.15 + 0.05 * 3  # a, b, c, then the finish chunk
    server.enqueue(Reply(pieces=["a", "b"], role_chunk=False, delay=[0.2, 0.0]))
    start = time.perf_counter()
    arrivals = [
        time.perf_counter() - start
        for _ in client.chat.completions.create(model="m", messages=MSGS, stream=True)
    ]
    assert arrivals[1] >= 0.2


# --------------------------------------------------------------------------------------- faults


def test_cut_at_byte_mid_utf8_exact_prefix(server: FakeServer) -> None:
    """A cut sends exactly the first N body bytes (here mid-UTF-8) and no chunked end."""
    text = "Ünïcödé 🚀 text that goes on for a while, with more words after."
    reply = Reply(text=text, id="chatcmpl-fixed", created=1_700_000_000)
    server.enqueue(reply)
    full = raw_post(server, stream_body()).body
    emoji = "🚀".encode()
    cut = full.index(emoji) + 2  # inside the 4-byte emoji
    server.enqueue(
        Reply(text=text, id="chatcmpl-fixed", created=1_700_000_000, fault=Fault.cut(at_byte=cut))
    )
    raw = raw_post(server, stream_body())
    assert raw.body == full[:cut]
    assert not raw.complete
    with pytest.raises(UnicodeDecodeError):
        raw.body.decode()


@pytest.mark.parametrize("mode", ["close", "rst"])
def test_cut_raises_in_sdk(server: FakeServer, client: openai.OpenAI, mode: str) -> None:
    """A cut mid-UTF-8 raises in the caller's loop (the type depends on the SDK major)."""
    text = "Déjà vu: the stream breaks inside 🚀 this emoji, and the rest never arrives."
    fixed = {"text": text, "id": "chatcmpl-fixed", "created": 1, "model": "m"}
    server.enqueue(Reply(**fixed))
    full = raw_post(server, stream_body()).body
    server.enqueue(
        Reply(**fixed, fault=Fault.cut(at_byte=full.index("🚀".encode()) + 1, mode=mode))
    )
    received = ""
    with pytest.raises(Exception) as info:
        for chunk in client.chat.completions.create(model="m", messages=MSGS, stream=True):
            received += chunk.choices[0].delta.content or ""
    if OPENAI_MAJOR >= 3:
        assert isinstance(info.value, openai.APIConnectionError)
    elif mode == "close":
        assert type(info.value).__name__ == "RemoteProtocolError"
    else:
        assert type(info.value).__name__ == "ReadError"
    assert text.startswith(received) and "🚀" not in received


def test_cut_after_events(server: FakeServer, client: openai.OpenAI) -> None:
    """``Fault.cut(after_events=k)`` delivers exactly k events first."""
    server.enqueue(
        Reply(pieces=["a", "b", "c", "d"], role_chunk=False, fault=Fault.cut(after_events=2))
    )
    raw = raw_post(server, stream_body())
    assert [d["choices"][0]["delta"]["content"] for d in raw.data()] == ["a", "b"]
    assert not raw.complete
    server.enqueue(
        Reply(pieces=["a", "b", "c", "d"], role_chunk=False, fault=Fault.cut(after_events=2))
    )
    received = []
    with pytest.raises(Exception):  # noqa: B017 - the type depends on the SDK major
        for chunk in client.chat.completions.create(model="m", messages=MSGS, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["a", "b"]


def test_disconnect_before_headers(server: FakeServer, client: openai.OpenAI) -> None:
    """``Fault.disconnect()`` drops the connection before any response byte."""
    server.enqueue(Fault.disconnect())
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MSGS, stream=True)


def test_stall_then_continue(server: FakeServer, client: openai.OpenAI) -> None:
    """A stall pauses the stream for at least its duration, then the text completes."""
    server.enqueue(Reply(text="warm"))  # the client's first stream costs more than the stall
    list(client.chat.completions.create(model="m", messages=MSGS, stream=True))
    server.enqueue(
        Reply(
            pieces=["a", "b", "c", "d"],
            role_chunk=False,
            fault=Fault.stall(after_events=2, seconds=0.3),
        )
    )
    times = []
    contents = []
    sent = []  # events the server had written when the client got each chunk
    start = time.perf_counter()
    for chunk in client.chat.completions.create(model="m", messages=MSGS, stream=True):
        times.append(time.perf_counter() - start)
        sent.append(server.responses[-1].events_sent)
        contents.append(chunk.choices[0].delta.content)
    assert contents == ["a", "b", "c", "d", None]
    # Where the pause is, by order (the server held the 3rd event back while the client had
    # the 2nd); how long, from below only (a busy machine only makes the client later).
    assert sent[1] == 2
    assert times[2] >= 0.3


def test_stall_hits_client_read_timeout(server: FakeServer) -> None:
    """A stall longer than the read timeout raises a timeout error in the caller's loop."""
    sdk = openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0, timeout=0.3)
    server.enqueue(Reply(pieces=["a", "b"], fault=Fault.stall(after_events=2, seconds=5)))
    start = time.perf_counter()
    with pytest.raises(Exception) as info:
        for _ in sdk.chat.completions.create(model="m", messages=MSGS, stream=True):
            pass
    elapsed = time.perf_counter() - start
    # From below only: that it did not wait the 5 s out is the exception itself (a stream
    # that outlived the stall would have ended cleanly).
    assert elapsed >= 0.29
    if OPENAI_MAJOR >= 3:
        assert isinstance(info.value, openai.APITimeoutError)
    else:
        assert type(info.value).__name__ == "ReadTimeout"
    sdk.close()
    # The server noticed the hang-up during the stall and released the connection.
    assert server.wait_for_open_connections(0, timeout=2)


def test_stall_then_close(server: FakeServer) -> None:
    """``then="close"`` drops the connection after the stall."""
    server.enqueue(
        Reply(
            pieces=["a", "b"],
            role_chunk=False,
            fault=Fault.stall(after_events=1, seconds=0.1, then="close"),
        )
    )
    start = time.perf_counter()
    raw = raw_post(server, stream_body())
    assert time.perf_counter() - start >= 0.1
    assert len(raw.data()) == 1 and not raw.complete


def test_stall_does_not_block_shutdown() -> None:
    """Closing the server during a long stall returns promptly."""
    srv = FakeServer().start()
    srv.enqueue(Reply(text="a b c", fault=Fault.stall(after_events=1, seconds=60)))
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    payload = json.dumps(stream_body()).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    start = time.perf_counter()
    srv.close()
    # A handler the close did not wake is waited for 2 s, then cancelled: "prompt" is below
    # that (the stall itself would be 60 s); no tighter bound, a shared machine is slow.
    assert time.perf_counter() - start < 1.9
    assert srv.open_connections() == 0
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


@pytest.mark.parametrize("style", ["data", "event", "object"])
def test_error_event_styles(server: FakeServer, client: openai.OpenAI, style: str) -> None:
    """In-band errors after HTTP 200: raw shapes, no [DONE]; the SDK raises for data/event."""
    fault = Fault.error_event(
        after_events=2,
        error={"message": "Overloaded", "type": "server_error"},
        status_in_body=503,
        style=style,
    )
    server.enqueue(Reply(pieces=["a", "b", "c"], role_chunk=False, fault=fault))
    raw = raw_post(server, stream_body())
    assert raw.complete
    events = raw.events()
    assert len(events) == 3 and "[DONE]" not in raw.body.decode()
    last = json.loads(events[-1].split("data: ", 1)[1])
    if style == "object":
        assert last == {
            "object": "error",
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": 503,
        }
    else:
        assert last == {"error": {"message": "Overloaded", "type": "server_error", "code": 503}}
        assert events[-1].startswith("event: error\n") == (style == "event")

    server.enqueue(Reply(pieces=["a", "b", "c"], role_chunk=False, fault=fault))
    received = []
    if style == "object":
        # The SDK does not recognise vLLM's error object: it yields it as a chunk.
        for chunk in client.chat.completions.create(model="m", messages=MSGS, stream=True):
            received.append(chunk)
        assert received[-1].object == "error" and not received[-1].choices
    else:
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(model="m", messages=MSGS, stream=True):
                received.append(chunk)
        assert "Overloaded" in str(info.value)
        assert info.value.body == {"message": "Overloaded", "type": "server_error", "code": 503}
        assert len(received) == 2


def test_no_done_and_no_finish_reason(server: FakeServer, client: openai.OpenAI) -> None:
    """``no_done`` ends the body cleanly without [DONE]; ``no_finish_reason`` nulls it."""
    server.enqueue(Reply(text="Some text here.", fault=Fault.no_done()))
    raw = raw_post(server, stream_body())
    assert raw.complete and "[DONE]" not in raw.body.decode()
    server.enqueue(Reply(text="Some text here.", fault=Fault.no_done()))
    texts, _ = stream_text(client)
    assert texts == {0: "Some text here."}
    server.enqueue(Reply(text="Some text here.", fault=Fault.no_finish_reason()))
    texts, chunks = stream_text(client)
    assert texts == {0: "Some text here."}
    assert all(c.choices[0].finish_reason is None for c in chunks)


def test_invalid_json_event(server: FakeServer, client: openai.OpenAI) -> None:
    """An event with invalid JSON makes the SDK raise a JSON decode error (not an APIError)."""
    server.enqueue(Reply(text="a b c", fault=Fault.invalid_json(after_events=1)))
    with pytest.raises(json.JSONDecodeError):
        stream_text(client)


def test_http_error_429_with_retry_after(server: FakeServer, client: openai.OpenAI) -> None:
    """A 429 carries retry-after and an OpenAI-style error body; the queue moves on."""
    server.enqueue(Fault.http_error(429), Reply(text="after the error"))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert stream_text(client)[0] == {0: "after the error"}


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_http_errors(
    server: FakeServer, client: openai.OpenAI, status: int, exc: type[Exception]
) -> None:
    """HTTP errors map to the SDK's status exceptions."""
    server.enqueue(Fault.http_error(status, headers={"x-should-retry": "false"}, retry_after=0.5))
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert info.value.response.headers["retry-after"] == "0.5"  # type: ignore[attr-defined]


def test_sdk_retries_through_scripted_errors(server: FakeServer) -> None:
    """With SDK retries on, a 503 then a good stream yields the good stream (2 requests)."""
    sdk = openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=2)
    server.enqueue(Fault.http_error(503, headers={"retry-after-ms": "10"}), Reply(text="fine"))
    texts, _ = stream_text(sdk)
    assert texts == {0: "fine"}
    assert len(server.requests) == 2
    sdk.close()


def test_garbage_body(server: FakeServer, client: openai.OpenAI) -> None:
    """A 200 text/html body instead of a stream: SSE parsing finds no events."""
    server.enqueue(Fault.garbage())
    raw = raw_post(server, stream_body())
    assert raw.status == 200 and raw.headers["content-type"] == "text/html"
    assert raw.body.startswith(b"<html>")
    server.enqueue(Fault.garbage())
    assert stream_text(client) == ({}, [])


# ---------------------------------------------------------------------------------- model mode


def test_model_mode_is_deterministic(server: FakeServer, client: openai.OpenAI) -> None:
    """Same messages and seed give byte-identical text, matching generate_answer."""
    first, _ = stream_text(client, seed=42)
    second, _ = stream_text(client, seed=42)
    other_seed, _ = stream_text(client, seed=43)
    assert first == second
    assert first[0] == generate_answer(MSGS, seed=42, model="gpt-4o-mini")
    assert first[0] == server.answer_for(MSGS, seed=42, model="gpt-4o-mini")
    assert other_seed != first
    assert len(first[0].split(". ")) >= 3  # a multi-sentence answer
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, seed=42)
    assert completion.choices[0].message.content == first[0]


def test_model_mode_length_and_default_model() -> None:
    """``length`` sets the approximate size; the default model name is used if none given."""
    short = generate_answer(MSGS, length=20)
    long = generate_answer(MSGS, length=400)
    assert 20 <= estimate_tokens(short) < 60
    assert estimate_tokens(long) >= 400
    assert generate_answer(MSGS) == generate_answer(MSGS, model=DEFAULT_MODEL)


def test_nondeterministic_server() -> None:
    """``nondeterministic=True`` gives a different answer to every identical request."""
    with FakeServer(nondeterministic=True) as srv:
        sdk = openai.OpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
        first, _ = stream_text(sdk, seed=1)
        second, _ = stream_text(sdk, seed=1)
        assert first != second
        sdk.close()


def test_max_tokens_gives_length(server: FakeServer, client: openai.OpenAI) -> None:
    """``max_tokens`` truncates the answer at a token boundary, finish_reason "length"."""
    full = generate_answer(MSGS, model="gpt-4o-mini")
    texts, chunks = stream_text(client, max_tokens=10, stream_options={"include_usage": True})
    assert full.startswith(texts[0]) and len(texts[0]) < len(full)
    assert estimate_tokens(texts[0]) == 10
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 10


def prefill_cases(full: str) -> list[str]:
    """Prefixes to resume from: empty, mid-word, at a space, after a newline, almost all."""
    return [
        "",
        full[:1],
        full[:37],
        full[: full.index(" ", 50) + 1],
        full[: full.index("\n") + 1],
        full[:-1],
        full,
    ]


def test_prefill_vllm_continuation_splices(server: FakeServer, client: openai.OpenAI) -> None:
    """vLLM/llama.cpp prefill: prefix + continuation == the original answer, exactly."""
    original, _ = stream_text(client, seed=5)
    full = original[0]
    for prefix in prefill_cases(full):
        texts, chunks = stream_text(
            client,
            seed=5,
            messages=[*MSGS, {"role": "assistant", "content": prefix}],
            extra_body={"continue_final_message": True, "add_generation_prompt": False},
        )
        assert prefix + texts.get(0, "") == full
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_prefix_deepseek_continuation_splices(server: FakeServer, client: openai.OpenAI) -> None:
    """DeepSeek/Mistral ``prefix: true``: the continuation splices exactly, with max_tokens."""
    full = generate_answer(MSGS, model="deepseek-chat")
    prefix = full[:50]
    texts, chunks = stream_text(
        client,
        model="deepseek-chat",
        messages=[*MSGS, {"role": "assistant", "content": prefix, "prefix": True}],
    )
    assert prefix + texts[0] == full
    texts, chunks = stream_text(
        client,
        model="deepseek-chat",
        max_tokens=5,
        messages=[*MSGS, {"role": "assistant", "content": prefix, "prefix": True}],
    )
    assert full.startswith(prefix + texts[0]) and estimate_tokens(texts[0]) <= 5
    assert chunks[-1].choices[0].finish_reason == "length"


def test_prefill_unknown_prefix_is_plausible(server: FakeServer, client: openai.OpenAI) -> None:
    """A prefix that is no known answer's still gets a plausible, deterministic continuation."""
    messages = [*MSGS, {"role": "assistant", "content": "Something else entirely", "prefix": True}]
    first, _ = stream_text(client, messages=messages)
    second, _ = stream_text(client, messages=messages)
    assert first == second and first[0].startswith(" ") and len(first[0]) > 20


def test_prefill_on_nondeterministic_server_continues_served_answer() -> None:
    """With a nondeterministic server, prefill continues the answer that was actually served."""
    with FakeServer(nondeterministic=True) as srv:
        sdk = openai.OpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
        served, _ = stream_text(sdk)
        prefix = served[0][:80]
        texts, _ = stream_text(
            sdk, messages=[*MSGS, {"role": "assistant", "content": prefix, "prefix": True}]
        )
        assert prefix + texts[0] == served[0]
        sdk.close()


def test_prefill_unsupported_gives_400() -> None:
    """``supports_prefill=False`` refuses prefill flags with an OpenAI-style 400."""
    with FakeServer(supports_prefill=False) as srv:
        sdk = openai.OpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
        srv.enqueue(Reply(text="kept for later"))
        with pytest.raises(openai.BadRequestError) as info:
            sdk.chat.completions.create(
                model="m",
                messages=[*MSGS, {"role": "assistant", "content": "Hi"}],
                stream=True,
                extra_body={"continue_final_message": True, "add_generation_prompt": False},
            )
        assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
        assert "continue_final_message" in info.value.message
        with pytest.raises(openai.BadRequestError) as info:
            sdk.chat.completions.create(
                model="m",
                messages=[*MSGS, {"role": "assistant", "content": "Hi", "prefix": True}],  # type: ignore[list-item]
                stream=True,
            )
        assert info.value.body["param"] == "messages.[1]"  # type: ignore[index]
        assert srv.queued == 1  # refused requests do not consume a queued reply
        assert stream_text(sdk)[0] == {0: "kept for later"}
        sdk.close()


def test_vllm_flag_validation(server: FakeServer, client: openai.OpenAI) -> None:
    """Like vLLM, ``continue_final_message`` needs ``add_generation_prompt=False``."""
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m",
            messages=[*MSGS, {"role": "assistant", "content": "Hi"}],
            stream=True,
            extra_body={"continue_final_message": True},
        )


def test_stream_options_unsupported_gives_400() -> None:
    """``supports_stream_options=False`` answers 400 to requests with stream_options."""
    with FakeServer(supports_stream_options=False) as srv:
        sdk = openai.OpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            sdk.chat.completions.create(
                model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}
            )
        assert "stream_options" in info.value.message
        assert stream_text(sdk)[0]  # without stream_options it works
        sdk.close()


# ---------------------------------------------------------------------------- cassettes


def test_cassette_replay_is_byte_identical(server: FakeServer) -> None:
    """Every recorded stream is replayed byte for byte, with its status and headers."""
    records = load_cassettes(CASSETTES)
    assert len(records) >= 75
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for record in records:
        reply = Reply.from_cassette(record)
        assert not {k.lower() for k in reply.headers} & {
            "content-length",
            "transfer-encoding",
            "connection",
        }
        server.enqueue(reply)
        conn.request(
            "POST", "/v1/chat/completions", body=json.dumps(record["request"] or {"stream": True})
        )
        response = conn.getresponse()
        body = response.read()
        assert body == record["sse"].encode(), record["id"]
        assert response.status == record["status"]
        recorded = {k.lower(): v for k, v in record["response_headers"].items()}
        if "content-type" in recorded:
            assert response.getheader("content-type") == recorded["content-type"]
        if "x-request-id" in recorded:
            assert response.getheader("x-request-id") == recorded["x-request-id"]
    conn.close()
    assert len({r.connection_id for r in server.requests}) == 1  # one kept-alive connection


def test_cassette_replay_through_sdk_split_bytes(server: FakeServer, client: openai.OpenAI) -> None:
    """A cassette replayed in 5-byte writes parses in the SDK like the original."""
    record = next(r for r in load_cassettes(CASSETTES) if r["id"] == "oai-text-short-gpt4omini")
    expected = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in record["sse"].split("\n")
        if line.startswith("data: {")
    )
    server.enqueue(Reply.from_cassette(record, split=5))
    assert stream_text(client)[0] == {0: expected}


# ------------------------------------------------------------------------- connections, misc


def test_keep_alive_and_connection_release(server: FakeServer) -> None:
    """The SDK reuses one connection for several requests; closing the client frees it."""
    sdk = openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0)
    for _ in range(3):
        sdk.chat.completions.create(model="m", messages=MSGS)
    assert len({r.connection_id for r in server.requests}) == 1
    assert server.open_connections() == 1
    sdk.close()
    assert server.wait_for_open_connections(0, timeout=2)


def test_other_routes(server: FakeServer) -> None:
    """``/models`` answers a list, unknown paths a 404 JSON error; neither uses the queue."""
    server.enqueue(Reply(text="unused"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/v1/models")
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["object"] == "list"
    conn.request("GET", "/v1/nope?x=1")
    response = conn.getresponse()
    assert response.status == 404 and "error" in json.loads(response.read())
    conn.request("POST", "/v1/chat/completions", body=b"{not json")
    response = conn.getresponse()
    assert (
        response.status == 400
        and json.loads(response.read())["error"]["type"] == "invalid_request_error"
    )
    conn.close()
    assert server.queued == 1
    assert server.requests[1].query == "x=1"


def test_azure_client_path(server: FakeServer) -> None:
    """Azure clients (deployment paths, api-version query) are served too."""
    azure = openai.AzureOpenAI(
        azure_endpoint=server.url, api_key="k", api_version="2024-10-21", max_retries=0
    )
    server.enqueue(Reply(text="from azure"))
    texts = "".join(
        c.choices[0].delta.content or ""
        for c in azure.chat.completions.create(model="dep", messages=MSGS, stream=True)
        if c.choices
    )
    assert texts == "from azure"
    assert server.requests[0].path == "/openai/deployments/dep/chat/completions"
    azure.close()


def test_malformed_requests_and_http10(server: FakeServer) -> None:
    """Malformed framing just closes the connection; HTTP/1.0 gets a close-delimited stream."""
    for junk in (
        b"nonsense\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: x\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(junk)
            assert sock.recv(100) == b""
    payload = json.dumps(stream_body()).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.0\r\ncontent-length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )
        data = b""
        for _ in range(10_000):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"connection: close" in head
    assert body.endswith(b"data: [DONE]\n\n")


def test_non_stream_cut(server: FakeServer, client: openai.OpenAI) -> None:
    """A cut applies to non-streamed JSON bodies too (content-length framing)."""
    server.enqueue(Reply(text="short answer", fault=Fault.cut(at_byte=40)))
    raw = raw_post(server, {"model": "m", "messages": MSGS})
    assert len(raw.body) == 40 and not raw.complete
    server.enqueue(Reply(text="short answer", fault=Fault.cut(at_byte=40)))
    with pytest.raises(Exception):  # noqa: B017 - the type depends on the SDK major
        client.chat.completions.create(model="m", messages=MSGS)


def test_reply_validation() -> None:
    """Contradictory replies and faults are refused early."""
    with pytest.raises(ValueError):
        Reply(text="a", raw="b")
    with pytest.raises(ValueError):
        Reply(text="ab", pieces=["a"])
    with pytest.raises(ValueError):
        Reply(split=0)
    with pytest.raises(ValueError):
        Fault.cut()
    with pytest.raises(ValueError):
        Fault.cut(at_byte=1, after_events=1)
    assert Reply().is_model_mode and not Reply(text="").is_model_mode
    assert Reply(text="a").with_fault(Fault.no_done()).fault == Fault.no_done()


def test_close_is_idempotent_and_prompt() -> None:
    """``close()`` with idle kept-alive connections returns fast; twice is fine."""
    srv = FakeServer().start()
    sdk = openai.OpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
    sdk.chat.completions.create(model="m", messages=MSGS)
    assert srv.open_connections() == 1
    start = time.perf_counter()
    srv.close()
    srv.close()
    assert time.perf_counter() - start < 1.9  # a handler not woken is waited for 2 s
    assert srv.open_connections() == 0
    sdk.close()


# ------------------------------------------------------------------------------------ async


async def test_async_stream_and_cut() -> None:
    """AsyncOpenAI streams scripted text intact, and a cut raises in its loop."""
    async with FakeServer() as srv:
        sdk = openai.AsyncOpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
        srv.enqueue(Reply(text="Async hello, wörld!", split=3))
        text = ""
        async for chunk in await sdk.chat.completions.create(model="m", messages=MSGS, stream=True):
            text += chunk.choices[0].delta.content or ""
        assert text == "Async hello, wörld!"

        srv.enqueue(Reply.model_mode(fault=Fault.cut(at_byte=400)))
        received = ""
        with pytest.raises(Exception) as info:
            async for chunk in await sdk.chat.completions.create(
                model="m", messages=MSGS, stream=True
            ):
                received += chunk.choices[0].delta.content or ""
        if OPENAI_MAJOR >= 3:
            assert isinstance(info.value, openai.APIConnectionError)
        assert generate_answer(MSGS, model="m").startswith(received)
        await sdk.close()
        assert srv.errors == []


async def test_async_stall_and_error_event() -> None:
    """AsyncOpenAI sees the stall's gap and raises APIError on an in-band error."""
    async with FakeServer() as srv:
        sdk = openai.AsyncOpenAI(base_url=srv.base_url, api_key="t", max_retries=0)
        srv.enqueue(Reply(text="warm"))  # a client's first stream costs more than the stall
        async for _ in await sdk.chat.completions.create(model="m", messages=MSGS, stream=True):
            pass
        srv.enqueue(
            Reply(
                pieces=["a", "b", "c"],
                role_chunk=False,
                fault=Fault.stall(after_events=1, seconds=0.2),
            )
        )
        times, sent = [], []
        start = time.perf_counter()
        async for _ in await sdk.chat.completions.create(model="m", messages=MSGS, stream=True):
            times.append(time.perf_counter() - start)
            sent.append(srv.responses[-1].events_sent)
        assert sent[0] == 1  # the 2nd event held back while the client had the 1st
        assert times[1] >= 0.2

        srv.enqueue(
            Reply(pieces=["a", "b"], fault=Fault.error_event(after_events=1, style="event"))
        )
        with pytest.raises(openai.APIError):
            async for _ in await sdk.chat.completions.create(model="m", messages=MSGS, stream=True):
                pass
        await sdk.close()
        assert srv.wait_for_open_connections(0, timeout=2)
