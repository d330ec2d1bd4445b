"""Resume never repeats or invents anything: every field reaches the caller exactly once.

Through the real SDK over loopback HTTP (the project's fake server): raw-response paths, fields
other than text (finish_reason, usage, role, logprobs) across a resume, the default strategy on a
nondeterministic model, stalls on close-delimited bodies, corrupt bodies, clean ends (`[DONE]`
without a finish_reason, bodies that always end early), and how a failed resume reads in a
traceback.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import select
import socket
import ssl
import threading
import traceback
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

import streamtap
from streamtap.testing import FakeServer, Fault, Reply, generate_answer
from test_resume import MODEL, MSG, aclient_for, client_for, no_open_connections

# -- helpers ----------------------------------------------------------------------------------


def raw_events(length: int | None = None, **create: Any) -> list[Any]:
    """The chunks an uninstrumented client gets for a model-mode request (to aim cuts)."""
    with FakeServer(answer_length=length) as probe:
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


# -- every field once -------------------------------------------------------------------------


def body_events(length: int, **create: Any) -> int:
    """Events in a model-mode body: its chunks (role, pieces, finish, usage) and `[DONE]`."""
    return len(raw_events(length, **create)) + 1


@pytest.mark.parametrize("before_end", [1, 2], ids=["after-usage", "after-finish"])
def test_break_after_the_finish_chunk_repeats_nothing(before_end: int, events: Any) -> None:
    """A break after the finish chunk (before usage or `[DONE]`): the answer is complete, so
    no request is sent again, and finish_reason and usage reach the caller at most once."""
    usage_asked = {"stream_options": {"include_usage": True}}
    n = body_events(40, **usage_asked)
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=40)
        server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=n - before_end)))
        chunks = list(
            client.chat.completions.create(model=MODEL, messages=MSG, stream=True, **usage_asked)
        )
        assert texts_by_choice(chunks) == {0: full}
        assert finishes_by_choice(chunks) == {0: ["stop"]}
        assert len(usages(chunks)) == (1 if before_end == 1 else 0)
        assert len(server.requests) == 1
        ev = events.one()
        assert ev["streamtap.outcome"] == "ok"
        assert ev["streamtap.attempts"][0]["outcome"] == "complete"


async def test_async_break_after_the_finish_chunk_repeats_nothing(events: Any) -> None:
    usage_asked = {"stream_options": {"include_usage": True}}
    n = body_events(40, **usage_asked)
    with FakeServer(answer_length=40) as server:
        client = aclient_for(server)
        server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=n - 1)))
        stream = await client.chat.completions.create(
            model=MODEL, messages=MSG, stream=True, **usage_asked
        )
        chunks = [c async for c in stream]
        assert finishes_by_choice(chunks) == {0: ["stop"]}
        assert len(usages(chunks)) == 1
        assert len(server.requests) == 1


def _cut_after_first_finish(create: dict[str, Any]) -> int:
    """Events to send so that one choice has finished and the other has not."""
    chunks = raw_events(**create)
    for i, c in enumerate(chunks):
        if any(ch.finish_reason for ch in c.choices):
            rest = chunks[i + 1 :]
            assert any(ch.delta.content for r in rest for ch in r.choices), "no text after"
            return i + 1
    raise AssertionError("no finish chunk")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_n2_choice_that_finished_is_not_finished_again(mode: str, events: Any) -> None:
    """n=2, a break after choice 0 (or 1) finished but not the other: the replay completes the
    other choice; the finished one gets no second finish_reason and no text."""
    create = {"n": 2, "stream_options": {"include_usage": True}}
    k = _cut_after_first_finish(create)
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(fault=Fault.cut(after_events=k)))
        if mode == "sync":
            chunks = list(
                client_for(server).chat.completions.create(
                    model=MODEL, messages=MSG, stream=True, **create
                )
            )
        else:
            stream = await aclient_for(server).chat.completions.create(
                model=MODEL, messages=MSG, stream=True, **create
            )
            chunks = [c async for c in stream]
        want = {i: server.answer_for(MSG, model=MODEL, choice=i) for i in (0, 1)}
        assert texts_by_choice(chunks) == want
        assert finishes_by_choice(chunks) == {0: ["stop"], 1: ["stop"]}
        assert len(usages(chunks)) == 1
        assert roles(chunks) == [(0, "assistant"), (1, "assistant")]
        assert len(server.requests) == 2
        assert events.one()["streamtap.outcome"] == "ok"


LOGPROB_CHUNKS = [
    chunk("", role="assistant"),
    chunk("Hello", logprobs=["Hello"]),
    chunk(" big", logprobs=[" big"]),
    chunk(" world", logprobs=[" world"]),
    chunk(finish="stop"),
]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_logprobs_are_delivered_once_and_counted_once(k: int, events: Any) -> None:
    """logprobs=True: a replay does not deliver again the logprobs the caller has (of the text
    delivered, and of the text the word buffer held at the break), and the exact count is the
    answer's."""
    with FakeServer() as server:
        client = client_for(server)
        server.enqueue(Reply(chunks=LOGPROB_CHUNKS, fault=Fault.cut(after_events=k)))
        server.enqueue(Reply(chunks=LOGPROB_CHUNKS))
        chunks = list(
            client.chat.completions.create(model=MODEL, messages=MSG, stream=True, logprobs=True)
        )
        assert texts_by_choice(chunks) == {0: "Hello big world"}
        tokens = [
            e.token for c in chunks for ch in c.choices if ch.logprobs for e in ch.logprobs.content
        ]
        assert tokens == ["Hello", " big", " world"]
        assert finishes_by_choice(chunks) == {0: ["stop"]}
        assert len(server.requests) == 2
        ev = events.one()
        assert ev["streamtap.tokens.source"] == "exact"
        assert ev["streamtap.tokens.counted"] == 3


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_role_arrives_exactly_once(k: int, mode: str, events: Any) -> None:
    """A break before the first chunk (k=0), right after the role chunk, or after the first
    text: `delta.role == "assistant"` reaches the caller once, first."""
    with FakeServer(answer_length=30) as server:
        server.enqueue(Reply.model_mode(length=30, fault=Fault.cut(after_events=k)))
        create = dict(model=MODEL, messages=MSG, stream=True)
        if mode == "sync":
            chunks = list(client_for(server).chat.completions.create(**create))
        else:
            chunks = [c async for c in await aclient_for(server).chat.completions.create(**create)]
        assert roles(chunks) == [(0, "assistant")]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert texts_by_choice(chunks) == {0: generate_answer(MSG, model=MODEL, length=30)}
        assert len(server.requests) == 2


# -- stalls on close-delimited bodies ------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 6])
def test_stall_on_a_close_delimited_body_is_resumed(after: int, events: Any) -> None:
    """A body without length or chunked framing ends when the connection closes: when the
    watchdog shuts a stalled one, the SDK sees a clean end. streamtap closed it: a stall."""
    with FakeServer(answer_length=60) as server:
        client = client_for(server, idle_timeout=0.3, first_chunk_timeout=0.6)
        full = generate_answer(MSG, model=MODEL, length=60)
        server.enqueue(
            Reply.model_mode(
                length=60, close_delimited=True, fault=Fault.stall(after_events=after, seconds=20)
            )
        )
        chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
        assert texts_by_choice(chunks) == {0: full}
        assert roles(chunks) == [(0, "assistant")]
        ev = events.one()
        assert ev["streamtap.attempts"][0]["cause"] == "stall"
        assert ev["streamtap.outcome"] == "ok"
        assert len(server.requests) == 2
        assert no_open_connections(server)


async def test_async_stall_on_a_close_delimited_body_is_resumed(events: Any) -> None:
    with FakeServer(answer_length=60) as server:
        client = aclient_for(server, idle_timeout=0.3)
        full = generate_answer(MSG, model=MODEL, length=60)
        server.enqueue(
            Reply.model_mode(
                length=60, close_delimited=True, fault=Fault.stall(after_events=5, seconds=20)
            )
        )
        stream = await client.chat.completions.create(model=MODEL, messages=MSG, stream=True)
        chunks = [c async for c in stream]
        assert texts_by_choice(chunks) == {0: full}
        assert events.one()["streamtap.attempts"][0]["cause"] == "stall"


def test_close_delimited_body_that_ends_is_not_resumed(events: Any) -> None:
    """The same framing without a stall: the end of the body is the end."""
    with FakeServer(answer_length=30) as server:
        client = client_for(server, idle_timeout=0.3)
        server.enqueue(Reply.model_mode(length=30, close_delimited=True))
        chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
        assert texts_by_choice(chunks) == {0: generate_answer(MSG, model=MODEL, length=30)}
        assert len(server.requests) == 1
        assert events.one()["streamtap.retries"] == 0


# -- corrupt bodies -------------------------------------------------------------------------------


def corrupt_gzip_body(chunks: list[dict[str, Any]]) -> bytes:
    """A gzip body whose first events decode, then a deflate block of an invalid type.

    Stored (uncompressed) deflate blocks, flushed after each event, keep every event's blank
    line visible in the raw body, so the server writes (and paces) them one by one.
    """
    comp = zlib.compressobj(0, zlib.DEFLATED, 31)
    out = b""
    for c in chunks:
        out += comp.compress(b"data: " + json.dumps(c).encode() + b"\n\n")
        out += comp.flush(zlib.Z_SYNC_FLUSH)
    return out + b"\x06not deflate at all"


def _chain(exc: BaseException | None) -> list[str]:
    names = []
    while exc is not None:
        names.append(type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    return names


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_corrupt_gzip_body_surfaces_unchanged(mode: str, events: Any) -> None:
    """A body that does not decode (bad gzip) is not a cut a replay fixes: the SDK's own error
    reaches the caller unchanged, after the text that did decode; no request is sent again."""
    cs = [chunk("", role="assistant"), chunk("Hello"), chunk(" there"), chunk(" world")]
    reply = Reply(raw=corrupt_gzip_body(cs), headers={"content-encoding": "gzip"}, delay=0.02)

    async def run(instrumented: bool) -> tuple[list[str], BaseException]:
        with FakeServer(default=reply) as server:
            create = dict(model=MODEL, messages=MSG, stream=True)
            got: list[str] = []
            with pytest.raises(Exception) as info:
                if mode == "sync":
                    plain = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
                    client = client_for(server) if instrumented else plain
                    for c in client.chat.completions.create(**create):
                        got.append(c.choices[0].delta.content or "")
                else:
                    aplain = openai.AsyncOpenAI(
                        base_url=server.base_url, api_key="k", max_retries=0
                    )
                    aclient = aclient_for(server) if instrumented else aplain
                    async for c in await aclient.chat.completions.create(**create):
                        got.append(c.choices[0].delta.content or "")
            assert len(server.requests) == 1
            return got, info.value

    raw_got, raw_err = await run(False)
    got, err = await run(True)
    assert "DecodingError" in _chain(err)
    assert not isinstance(err, streamtap.StreamInterrupted)
    assert type(err) is type(raw_err) and str(err) == str(raw_err)
    assert "".join(got) == "".join(raw_got) == "Hello there world"
    ev = events.one()
    assert ev["streamtap.outcome"] == "error"
    assert ev["streamtap.retries"] == 0


# -- clean ends -------------------------------------------------------------------------------

HELLO = [chunk("", role="assistant"), chunk("Hello"), chunk(" world")]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_done_without_finish_reason_is_the_end(mode: str, events: Any) -> None:
    """`data: [DONE]` with no finish_reason (the openai SDK's own fixtures, some servers): the
    server has finished. One request, no exception, as with the raw SDK."""
    with FakeServer(default=Reply(chunks=HELLO)) as server:
        create = dict(model=MODEL, messages=MSG, stream=True)
        if mode == "sync":
            chunks = list(client_for(server).chat.completions.create(**create))
        else:
            chunks = [c async for c in await aclient_for(server).chat.completions.create(**create)]
        assert texts_by_choice(chunks) == {0: "Hello world"}
        assert len(server.requests) == 1
        ev = events.one()
        assert ev["streamtap.outcome"] == "incomplete"  # no finish_reason: as documented
        assert ev["streamtap.retries"] == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_body_that_always_ends_early_ends_like_the_sdk(mode: str, events: Any) -> None:
    """No `[DONE]`, no finish_reason, and the resume ends at the same place: the endpoint just
    does not send them. The stream ends as the raw SDK's does (outcome `incomplete`, no
    exception), and later streams to the endpoint cost no extra request."""
    with FakeServer(default=Reply(chunks=HELLO, done=False)) as server:
        create = dict(model=MODEL, messages=MSG, stream=True)
        sync_client = client_for(server)
        async_client = aclient_for(server)

        async def one() -> list[Any]:
            if mode == "sync":
                return list(sync_client.chat.completions.create(**create))
            return [c async for c in await async_client.chat.completions.create(**create)]

        chunks = await one()
        assert texts_by_choice(chunks) == {0: "Hello world"}
        assert len(server.requests) == 2
        ev = events.summaries[-1]
        assert ev["streamtap.outcome"] == "incomplete"
        assert [(a["cause"], a["outcome"]) for a in ev["streamtap.attempts"]] == [
            ("incomplete", "interrupted"),
            ("incomplete", "incomplete"),
        ]
        chunks = await one()
        assert texts_by_choice(chunks) == {0: "Hello world"}
        assert len(server.requests) == 3
        ev = events.summaries[-1]
        assert ev["streamtap.outcome"] == "incomplete" and ev["streamtap.retries"] == 0


def test_clean_end_then_diverging_replay_ends_like_the_sdk(events: Any) -> None:
    """The first body ended cleanly (the raw SDK would end there), the replay differs: end with
    the text the first body had, all of it, and no exception."""
    with FakeServer() as server:
        client = client_for(server)
        server.enqueue(Reply(chunks=HELLO, done=False))
        server.enqueue(Reply(chunks=[chunk("", role="assistant"), chunk("Goodbye")], done=False))
        chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
        assert texts_by_choice(chunks) == {0: "Hello world"}
        assert len(server.requests) == 2
        ev = events.one()
        assert ev["streamtap.outcome"] == "incomplete"
        assert "error.type" not in ev


def test_clean_end_then_budget_spent_ends_like_the_sdk(events: Any) -> None:
    """Each resume ends a little further on, still without finish_reason, until the budget is
    spent: end with everything delivered, no exception (the raw SDK ends cleanly too)."""
    full = generate_answer(MSG, model=MODEL, length=40)
    pieces = [full[:10], full[10:20], full[20:30]]

    def reply(k: int) -> Reply:
        return Reply(
            chunks=[chunk("", role="assistant")] + [chunk(p) for p in pieces[:k]], done=False
        )

    with FakeServer() as server:
        client = client_for(server, max_attempts=3)
        server.enqueue(reply(1), reply(2), reply(3))
        chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
        assert texts_by_choice(chunks) == {0: "".join(pieces)}
        assert len(server.requests) == 3
        assert events.one()["streamtap.outcome"] == "incomplete"


# -- the exception a caller reads --------------------------------------------------------------


def test_failed_resume_reads_well_in_a_traceback(events: Any) -> None:
    """StreamInterrupted is named so in tracebacks, says what was delivered and why streamtap
    gave up, is still caught as the openai and original exception types, and pickles."""
    with FakeServer(answer_length=80) as server:
        client = client_for(server, max_attempts=2)
        for k in (6, 3):
            server.enqueue(Reply.model_mode(length=80, fault=Fault.cut(after_events=k)))
        with pytest.raises(openai.APIConnectionError) as info:
            for _ in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
                pass
    err = info.value
    assert isinstance(err, streamtap.StreamInterrupted)
    assert isinstance(err, type(err.original))
    assert (type(err).__module__, type(err).__qualname__) == ("streamtap", "StreamInterrupted")
    line = traceback.format_exception_only(type(err), err)[-1]
    assert line.startswith("streamtap.StreamInterrupted: the stream broke after ")
    assert f"{len(err.delivered):,} characters of the answer" in line
    assert "all 2 attempts (max_attempts) were used" in line
    assert "(causes: transport, transport)" in line
    assert repr(err).startswith("StreamInterrupted(")
    ev = events.one()
    assert ev["error.type"] == "streamtap.StreamInterrupted"
    assert [a["outcome"] for a in ev["streamtap.attempts"]] == ["interrupted", "failed"]
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, streamtap.StreamInterrupted)
    assert isinstance(again, openai.APIConnectionError)
    assert str(again) == str(err) and again.delivered == err.delivered


# A self-signed certificate for 127.0.0.1 (valid until 2126), for the loopback TLS proxy below
# only: a test fixture, not a secret.
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIBkDCCATagAwIBAgIUTrUjA63KDLg0Y4gqXQ5sNz2mj0cwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwMjA2MDI1N1oYDzIxMjYxMTA4
MDYwMjU3WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQsMvFGMjMJ/6Nm1WdvN85uQ5unhqGYfjcNz2vAUTwgtOrgmf7D/1V0
SWjpgLNVNKoD2Yz98dC+MDsLWSsob8n4o2QwYjAdBgNVHQ4EFgQU5ihMKF0dPb9L
8y106ImvRV0aAhQwHwYDVR0jBBgwFoAU5ihMKF0dPb9L8y106ImvRV0aAhQwDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC
IC3nvsVftTDE4o2O8j1Hv8jOtPGURgPIgvXIxuTGLDZnAiEA7h8cv2X/4vTm+n9h
ukg7GR5nZ2wZeRIIZ/5oW9hcTrs=
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrC+bmwtaHrCD90vy
ZlY6wBlLwbu3ngBfnEbcQw5q7vKhRANCAAQsMvFGMjMJ/6Nm1WdvN85uQ5unhqGY
fjcNz2vAUTwgtOrgmf7D/1V0SWjpgLNVNKoD2Yz98dC+MDsLWSsob8n4
-----END PRIVATE KEY-----
"""


class CorruptingTLSProxy:
    """TLS in front of a FakeServer that flips one byte of a TLS record once `after` bytes of
    the response went through: the client's TLS layer fails the record's integrity check in
    the middle of the body (an `ssl.SSLError`, bad record MAC), as with a faulty middlebox."""

    def __init__(self, upstream: FakeServer, after: int, tmp: Any) -> None:
        (tmp / "cert.pem").write_text(TEST_CERT)
        (tmp / "key.pem").write_text(TEST_KEY)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
        self.upstream = upstream.port
        self.after = after
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.listener.getsockname()[1]}/v1"

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.ctx.wrap_bio(inc, out, server_side=True)
        upstream = None
        try:
            while True:  # the handshake, by hand over the memory BIOs
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    client.sendall(out.read())
                    data = client.recv(65536)
                    if not data:
                        return
                    inc.write(data)
            client.sendall(out.read())
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self._forward(tls, upstream)  # the request may have come with the handshake
            client.sendall(out.read())
            sent = 0
            corrupted = False
            while not self.stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.05)
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    inc.write(data)
                    self._forward(tls, upstream)
                    client.sendall(out.read())
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    tls.write(data)
                    records = bytearray(out.read())
                    if sent >= self.after and not corrupted:
                        records[-1] ^= 0x55  # in the last record's authentication tag
                        corrupted = True
                    client.sendall(records)
                    sent += len(data)
        except (OSError, ssl.SSLError):
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    @staticmethod
    def _forward(tls: ssl.SSLObject, upstream: socket.socket) -> None:
        try:
            while plain := tls.read(65536):
                upstream.sendall(plain)
        except ssl.SSLWantReadError:
            pass


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_tls_record_failing_its_check_surfaces_unchanged(
    mode: str, events: Any, tmp_path: Any
) -> None:
    """A TLS record that fails its integrity check mid-body: not a cut a replay fixes. The SDK's
    own error reaches the caller unchanged, after the text before it; one request."""

    async def run(instrumented: bool) -> tuple[str, BaseException, int]:
        with FakeServer(default=Reply.model_mode(length=60, delay=0.02)) as server:
            proxy = CorruptingTLSProxy(server, after=900, tmp=tmp_path)
            got: list[str] = []
            try:
                with pytest.raises(Exception) as info:
                    if mode == "sync":
                        client = openai.OpenAI(
                            base_url=proxy.base_url,
                            api_key="k",
                            max_retries=0,
                            http_client=openai.DefaultHttpxClient(verify=False),
                        )
                        if instrumented:
                            streamtap.instrument(client, backoff_initial=0.01)
                        for c in client.chat.completions.create(
                            model=MODEL, messages=MSG, stream=True
                        ):
                            got.append(c.choices[0].delta.content or "")
                    else:
                        aclient = openai.AsyncOpenAI(
                            base_url=proxy.base_url,
                            api_key="k",
                            max_retries=0,
                            http_client=openai.DefaultAsyncHttpxClient(verify=False),
                        )
                        if instrumented:
                            streamtap.instrument(aclient, backoff_initial=0.01)
                        async for c in await aclient.chat.completions.create(
                            model=MODEL, messages=MSG, stream=True
                        ):
                            got.append(c.choices[0].delta.content or "")
            finally:
                proxy.close()
            return "".join(got), info.value, len(server.requests)

    _, raw_err, raw_requests = await run(False)
    text, err, requests = await run(True)
    assert "SSLError" in _chain(err), _chain(err)
    assert not isinstance(err, streamtap.StreamInterrupted)
    assert type(err) is type(raw_err) and str(err) == str(raw_err)
    assert text and generate_answer(MSG, model=MODEL, length=60).startswith(text)
    assert raw_requests == requests == 1
    ev = events.one()
    assert ev["streamtap.outcome"] == "error" and ev["streamtap.retries"] == 0


def test_n2_cuts_at_random_byte_offsets_deliver_every_field_once(events: Any) -> None:
    """n=2 with usage asked for, cut anywhere in the body: each choice's text exactly, one
    role and one finish_reason per choice, usage at most once."""
    rng = random.Random(11)
    create = {"n": 2, "stream_options": {"include_usage": True}}
    with FakeServer(answer_length=50) as server:
        client = client_for(server)
        want = {i: server.answer_for(MSG, model=MODEL, choice=i) for i in (0, 1)}
        body_len = sum(len(t.encode()) for t in want.values()) * 4
        for _ in range(10):
            at = rng.randrange(40, body_len)
            server.enqueue(Reply.model_mode(length=50, fault=Fault.cut(at_byte=at)))
            chunks = list(
                client.chat.completions.create(model=MODEL, messages=MSG, stream=True, **create)
            )
            assert texts_by_choice(chunks) == want, at
            assert finishes_by_choice(chunks) == {0: ["stop"], 1: ["stop"]}, at
            assert sorted(roles(chunks)) == [(0, "assistant"), (1, "assistant")], at
            assert len(usages(chunks)) <= 1, at
            assert events.summaries[-1]["streamtap.outcome"] == "ok", at
        assert no_open_connections(server)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_azure_filter_results_chunk_arrives_once(k: int, events: Any) -> None:
    """Azure starts with a `choices: []` chunk carrying prompt_filter_results: a break before
    any chunk delivers the new attempt's copy, a later one does not repeat it."""
    filters = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    cs = [filters, *HELLO, chunk(finish="stop")]
    with FakeServer() as server:
        client = client_for(server)
        server.enqueue(Reply(chunks=cs, fault=Fault.cut(after_events=k)), Reply(chunks=cs))
        chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True))
        assert [c for c in chunks if not c.choices] == chunks[:1]
        assert getattr(chunks[0], "prompt_filter_results", None)  # an extra field, pydantic 1 or 2
        assert texts_by_choice(chunks) == {0: "Hello world"}
        assert roles(chunks) == [(0, "assistant")]
        assert len(server.requests) == 2


# -- content parts (Mistral's thinking deltas) ----------------------------------------------------


def _thought(text: str) -> list[dict[str, Any]]:
    return [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]


def parts_chunk(text: str) -> dict[str, Any]:
    """A delta whose `content` is a list of parts, as Mistral's reasoning models send their
    thinking (tests/data/streams.jsonl, mistral-magistral-thinking)."""
    c = chunk()
    c["choices"][0]["delta"] = {"content": _thought(text)}
    return c


def sse_body(*chunks: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


PARTS_BODY = sse_body(
    chunk("", role="assistant"),
    parts_chunk("Let me"),
    parts_chunk(" think."),
    chunk(" Hello"),
    chunk(" wor"),
    parts_chunk(" (again)"),
    chunk("ld, again"),
    chunk(finish="stop"),
)


def seen_in_order(chunks: list[Any]) -> list[Any]:
    """What the caller read, in order: the text between parts joined, each part whole."""
    out: list[Any] = []
    for c in chunks:
        for ch in c.choices:
            content = ch.delta.content
            if isinstance(content, list):
                out.append(content)
            elif content:
                if out and isinstance(out[-1], str):
                    out[-1] += content
                else:
                    out.append(content)
    return out


def _read_all(client: Any, is_async: bool) -> list[Any]:
    create = dict(model=MODEL, messages=MSG, stream=True)
    if not is_async:
        return list(client.chat.completions.create(**create))

    async def main() -> list[Any]:
        return [c async for c in await client.chat.completions.create(**create)]

    import asyncio

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_content_parts_keep_their_place_and_reach_the_caller_once(mode: str, events: Any) -> None:
    """Cut at every event boundary and inside every event: after the replay the caller has read
    each thinking part once and the text once, in the server's order (text held by the word
    buffer goes out before a part, even mid-word)."""
    with FakeServer() as server:
        server.default = Reply(raw=PARTS_BODY)
        with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as raw:
            want = seen_in_order(
                list(raw.chat.completions.create(model=MODEL, messages=MSG, stream=True))
            )
        assert want == [
            _thought("Let me"),
            _thought(" think."),
            " Hello wor",
            _thought(" (again)"),
            "ld, again",
        ]
        client = (aclient_for if mode == "async" else client_for)(server)
        body = PARTS_BODY.encode()
        cuts = [i + 2 for i in range(len(body)) if body.startswith(b"\n\ndata:", i)]
        cuts += [m.start() + 5 for m in re.finditer(b'"thinking"', body)]  # mid-JSON
        for at in sorted(set(cuts)):
            events.summaries.clear()
            server.enqueue(Reply(raw=PARTS_BODY, fault=Fault.cut(at_byte=at)))
            got = _read_all(client, mode == "async")
            assert seen_in_order(got) == want, at
            assert events.one()["streamtap.outcome"] == "ok", at
        assert no_open_connections(server)


def test_a_replay_with_other_content_parts_is_a_divergence(events: Any) -> None:
    """The replay thinks differently: nothing of it reaches the caller, who gets the stream's
    error with the text delivered so far."""
    first = sse_body(chunk("", role="assistant"), parts_chunk("Plan A."), chunk(" Hello"))
    other = sse_body(
        chunk("", role="assistant"), parts_chunk("Plan B."), chunk(" Hello"), chunk(finish="stop")
    )
    with FakeServer() as server:
        client = client_for(server)
        server.enqueue(Reply(raw=first, fault=Fault.cut(at_byte=len(first) - 14)))
        server.default = Reply(raw=other)
        got: list[Any] = []
        with pytest.raises(streamtap.StreamInterrupted) as info:
            for c in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
                got.append(c)
        assert "replay diverged from the delivered content parts" in str(info.value)
        # ("Hello", held at the break, is delivered when no attempt sends it again.)
        assert seen_in_order(got) == [_thought("Plan A."), " Hello"]
        assert info.value.delivered == " Hello"
        assert len(server.requests) == 2


# -- text held at a break, when no attempt sends it again ---------------------------------------

HELD_BODY = sse_body(chunk("", role="assistant"), chunk(" Hello"), chunk(" wor"))
"""Cut after " wor": the caller has " Hello " and the word buffer holds "wor"."""


def _text_of(chunks: list[Any]) -> str:
    return texts_by_choice(chunks).get(0, "")


def _read_until_error(client: Any, is_async: bool) -> tuple[list[Any], BaseException | None]:
    got: list[Any] = []
    create = dict(model=MODEL, messages=MSG, stream=True)
    try:
        if is_async:

            async def main() -> None:
                async for c in await client.chat.completions.create(**create):
                    got.append(c)

            import asyncio

            asyncio.run(main())
        else:
            for c in client.chat.completions.create(**create):
                got.append(c)
    except Exception as exc:
        return got, exc
    return got, None


_AGAIN = sse_body(chunk("", role="assistant"), chunk(" Hello"), chunk(" world"), chunk(" and"))
HELD_CASES = [
    # The replay answers differently: the caller still gets every character the first attempt
    # sent, as the raw SDK would have given it, then the error.
    ("replay-diverges", Reply(raw=sse_body(chunk(" Goodbye"), chunk(finish="stop"))), 3, 2),
    # Every resumed attempt breaks before it gets back to new text: the text held at the first
    # break reaches the caller once, at the end.
    ("budget-spent", Reply(raw=HELD_BODY, fault=Fault.cut(after_events=2)), 3, 3),
    # The replay got past the delivered text and sent "world" (its own version of the held
    # "wor"), then broke for good: "wor" is not delivered twice.
    ("replay-sent-it-again", Reply(raw=_AGAIN, fault=Fault.cut(after_events=4)), 2, 2),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("case", "then", "attempts", "requests"), HELD_CASES)
def test_text_held_at_a_break_reaches_the_caller_once(
    mode: str, case: str, then: Reply, attempts: int, requests: int, events: Any
) -> None:
    """The word buffer holds "wor" when the first attempt breaks; the resume then fails."""
    want = " Hello world and" if case == "replay-sent-it-again" else " Hello wor"
    with FakeServer() as server:
        client = (aclient_for if mode == "async" else client_for)(server, max_attempts=attempts)
        server.enqueue(Reply(raw=HELD_BODY, fault=Fault.cut(after_events=3)))
        server.default = then
        got, err = _read_until_error(client, mode == "async")
        assert isinstance(err, streamtap.StreamInterrupted)
        assert _text_of(got) == want
        assert err.delivered == want
        assert len(server.requests) == requests
        assert events.one()["streamtap.retries"] == requests - 1
        # `err` is alive and its traceback holds the stream: streamtap closed the response.
        assert no_open_connections(server)
