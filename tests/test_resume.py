"""Resume on interruption: the fault matrix, through the real SDK over loopback HTTP.

The server's model mode is deterministic per request (the same messages and seed give the same
answer), really continues a partial assistant message when asked the vLLM or DeepSeek way, and
can be made nondeterministic to force a replay to diverge.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import random
import time
from typing import Any

import openai
import pytest

import streamtap
from streamtap.testing import FakeServer, Fault, Reply, estimate_tokens, generate_answer

MSG = [{"role": "user", "content": "Tell me about rivers."}]
MODEL = "m"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


def _httpx() -> Any:
    """The httpx flavour this openai uses (httpx2 for 3.x, httpx before)."""
    return importlib.import_module(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])


def client_for(server: FakeServer, **opts: Any) -> openai.OpenAI:
    # No keep-alive: any connection still open at the end was leaked, not pooled.
    http_client = openai.DefaultHttpxClient(limits=_httpx().Limits(max_keepalive_connections=0))
    client = openai.OpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, http_client=http_client
    )
    streamtap.instrument(client, **{**FAST, **opts})
    return client


def aclient_for(server: FakeServer, **opts: Any) -> openai.AsyncOpenAI:
    # No keep-alive: any connection still open at the end was leaked, not pooled.
    http_client = openai.DefaultAsyncHttpxClient(
        limits=_httpx().Limits(max_keepalive_connections=0)
    )
    client = openai.AsyncOpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, http_client=http_client
    )
    streamtap.instrument(client, **{**FAST, **opts})
    return client


def collect(client: openai.OpenAI, **kw: Any) -> tuple[str, list[Any]]:
    chunks = list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


async def acollect(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, list[Any]]:
    stream = await client.chat.completions.create(model=MODEL, messages=MSG, stream=True, **kw)
    chunks = [c async for c in stream]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def no_open_connections(server: FakeServer) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        gc.collect()
        if server.open_connections() == 0:
            return True
        time.sleep(0.02)
    return False


def event_count(length: int) -> int:
    """Chunks of a model-mode answer (role chunk, one per piece, finish, usage)."""
    with FakeServer(answer_length=length) as probe:
        client = openai.OpenAI(base_url=probe.base_url, api_key="k", max_retries=0)
        return len(list(client.chat.completions.create(model=MODEL, messages=MSG, stream=True)))


@pytest.mark.parametrize(
    ("opts", "strategy"),
    [({}, "replay"), ({"prefill": "vllm"}, "prefill"), ({"prefill": "prefix"}, "prefill")],
)
def test_cut_at_every_chunk_position(opts: dict[str, Any], strategy: str, events: Any) -> None:
    """A cut after any event of a short answer is resumed into exactly the original answer."""
    n = event_count(40)
    with FakeServer(answer_length=40) as server:
        client = client_for(server, **opts)
        full = generate_answer(MSG, model=MODEL, length=40)
        for k in range(1, n + 1):
            server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=k)))
            text, chunks = collect(client)
            assert text == full, f"cut after event {k}"
            ev = events.summaries[-1]
            assert ev["streamtap.outcome"] == "ok", k
            assert len({c.id for c in chunks}) == 1  # the first attempt's id throughout
            if ev["streamtap.retries"]:
                # Before any text there is nothing to continue: a plain new request.
                delivered = ev["streamtap.attempts"][0]["chars"]
                assert ev["streamtap.resume.strategy"] == (strategy if delivered else "replay")
                assert ev["streamtap.attempts"][0]["cause"] == "transport"
        # Cuts before the last chunk or two (finish, usage) need a resume; later ones may not.
        assert sum(e["streamtap.retries"] for e in events.summaries) >= n - 2
        assert no_open_connections(server)
        if strategy == "prefill":
            flagged = [
                r.json
                for r in server.requests
                if r.json.get("messages", [])[-1]["role"] == "assistant"
            ]
            assert flagged, "prefill requests were sent"
            if opts["prefill"] == "vllm":
                assert all(b["continue_final_message"] is True for b in flagged)
            else:
                assert all(b["messages"][-1]["prefix"] is True for b in flagged)


@pytest.mark.parametrize("mode", ["close", "rst"])
def test_cut_at_random_byte_offsets(mode: str, events: Any) -> None:
    """Cuts mid-UTF-8 and mid-JSON of a long answer: the caller still gets the exact answer."""
    rng = random.Random(7)
    with FakeServer(answer_length=300) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=300)
        assert any(ord(ch) > 127 for ch in full)  # multi-byte characters to cut inside
        body_len = len(full.encode()) * 3
        for _ in range(12):
            at = rng.randrange(50, body_len)
            server.enqueue(Reply.model_mode(length=300, fault=Fault.cut(at_byte=at, mode=mode)))
            text, _ = collect(client)
            assert text == full, f"cut at byte {at}"
            assert events.summaries[-1]["streamtap.outcome"] == "ok"
        assert no_open_connections(server)


def test_stall_is_detected_and_resumed(events: Any) -> None:
    """A stream that goes quiet mid-answer is resumed after idle_timeout, not after 10 minutes.

    Real time over a real socket, judged by what happened, not how long it took: had the
    watchdog not cut the stall, the server would have gone on after its 20 s and the stream
    would have ended with no resume."""
    with FakeServer(answer_length=60) as server:
        client = client_for(server, idle_timeout=0.3)
        full = generate_answer(MSG, model=MODEL, length=60)
        server.enqueue(Reply.model_mode(length=60, fault=Fault.stall(after_events=6, seconds=20)))
        text, _ = collect(client)
        assert len(server.requests) == 2
    assert text == full
    ev = events.one()
    assert ev["streamtap.attempts"][0]["cause"] == "stall"
    assert ev["streamtap.retries"] == 1


def test_first_chunk_deadline_is_separate(events: Any) -> None:
    """Before the first chunk, first_chunk_timeout applies (reasoning models think first)."""
    with FakeServer(answer_length=30) as server:
        client = client_for(server, idle_timeout=0.2, first_chunk_timeout=1.5)
        full = generate_answer(MSG, model=MODEL, length=30)
        server.enqueue(Reply.model_mode(length=30, first_delay=0.6))  # slow, not stalled
        assert collect(client)[0] == full
        assert events.summaries[-1]["streamtap.retries"] == 0
        server.enqueue(Reply.model_mode(length=30, fault=Fault.stall(after_events=0, seconds=20)))
        t0 = time.monotonic()
        assert collect(client)[0] == full
        # Bounded from below only: the watchdog is never early, so a cut before 1.5 s would
        # be idle_timeout (0.2 s) applied before the first chunk. How late it may be is no
        # verdict on a shared machine; that the stall was cut at all is (see the cause).
        assert time.monotonic() - t0 >= 1.5
        assert events.summaries[-1]["streamtap.attempts"][0]["cause"] == "stall"


def test_slow_caller_is_not_a_stall(events: Any) -> None:
    """Time the caller spends between chunks never counts as the server stalling."""
    with FakeServer(answer_length=20) as server:
        client = client_for(server, idle_timeout=0.2)
        full = generate_answer(MSG, model=MODEL, length=20)
        pieces = []
        for chunk in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
            pieces.append(chunk.choices[0].delta.content or "")
            if len(pieces) == 3:
                time.sleep(0.6)
        assert "".join(pieces) == full
        assert events.one()["streamtap.retries"] == 0


def test_steady_gaps_under_the_idle_timeout_are_no_stall(events: Any) -> None:
    """Chunks 0.12 s apart with idle_timeout=0.25 s: the watchdog times each wait on its own
    (never adds them up), so a slow but steady stream is never cut."""
    with FakeServer(answer_length=12) as server:
        client = client_for(server, idle_timeout=0.25)
        full = generate_answer(MSG, model=MODEL, length=12)
        server.enqueue(Reply.model_mode(length=12, delay=0.12))
        assert collect(client)[0] == full
        assert events.one()["streamtap.retries"] == 0


async def test_async_slow_caller_with_read_ahead_is_not_a_stall(events: Any) -> None:
    """Async with the word buffer reads ahead in a task: chunks it has read but the caller has
    not taken yet are progress, so a caller busy for longer than idle_timeout is no stall."""
    with FakeServer(answer_length=20) as server:
        client = aclient_for(server, idle_timeout=0.2)
        full = generate_answer(MSG, model=MODEL, length=20)
        server.enqueue(Reply.model_mode(length=20, delay=0.05))
        pieces = []
        stream = await client.chat.completions.create(model=MODEL, messages=MSG, stream=True)
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if len(pieces) == 2:
                await asyncio.sleep(0.7)
        assert "".join(pieces) == full
        assert events.one()["streamtap.retries"] == 0


@pytest.mark.parametrize("style", ["data", "event", "object"])
def test_retryable_in_band_errors_are_resumed(style: str, events: Any) -> None:
    """An overload/5xx error event after HTTP 200 is resumed, in every server's style."""
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=40)
        server.enqueue(
            Reply.model_mode(
                length=40,
                fault=Fault.error_event(
                    after_events=5,
                    error={
                        "message": "The server is overloaded",
                        "type": "server_error",
                        "code": 503,
                    },
                    status_in_body=503,
                    style=style,
                ),
            )
        )
        text, _ = collect(client)
    assert text == full
    ev = events.one()
    assert ev["streamtap.attempts"][0]["cause"] == "in_band_error"
    assert ev["streamtap.outcome"] == "ok"


def test_non_retryable_in_band_error_surfaces_unchanged(events: Any) -> None:
    """A 400-class error event reaches the caller as the SDK's own APIError, unchanged."""
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        error = {"message": "Token limit reached", "type": "invalid_request_error", "code": 400}
        server.enqueue(
            Reply.model_mode(length=40, fault=Fault.error_event(after_events=4, error=error))
        )
        got = []
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
                got.append(chunk.choices[0].delta.content or "")
        assert not isinstance(info.value, streamtap.StreamInterrupted)
        assert info.value.message == "Token limit reached"
        assert len(server.requests) == 1
        assert generate_answer(MSG, model=MODEL, length=40).startswith("".join(got))
        assert events.one()["streamtap.outcome"] == "error"


def test_content_filter_error_is_not_resumed(events: Any) -> None:
    """Content filtering is never retried."""
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        error = {
            "message": "blocked by the content filter",
            "type": "content_filter",
            "code": "content_filter",
        }
        server.enqueue(
            Reply.model_mode(length=40, fault=Fault.error_event(after_events=4, error=error))
        )
        with pytest.raises(openai.APIError):
            collect(client)
        assert len(server.requests) == 1


def test_clean_end_without_finish_reason_is_resumed(events: Any) -> None:
    """A body that just ends (no [DONE], no finish_reason, no usage) is resumed."""
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=40)
        head = full[: len(full) // 2]
        chunks = [
            {
                "id": "chatcmpl-x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": MODEL,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            for piece in (head[:10], head[10:])
        ]
        server.enqueue(Reply(chunks=chunks, done=False))
        text, _ = collect(client)
    assert text == full
    assert events.one()["streamtap.attempts"][0]["cause"] == "incomplete"


def test_second_failure_during_resumed_attempt(events: Any) -> None:
    """The resumed attempt breaks too: resumed again, the answer is still exact."""
    with FakeServer(answer_length=80) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=80)
        server.enqueue(Reply.model_mode(length=80, fault=Fault.cut(after_events=6)))
        server.enqueue(Reply.model_mode(length=80, fault=Fault.cut(after_events=14)))
        text, _ = collect(client)
        assert text == full
        ev = events.one()
        assert ev["streamtap.retries"] == 2
        assert [a.get("cause") for a in ev["streamtap.attempts"][:2]] == ["transport", "transport"]
        assert no_open_connections(server)


def test_budget_spent_raises_catchable_error_with_delivered_text(events: Any) -> None:
    """When attempts run out, the caller gets one exception its handlers already catch."""
    with FakeServer(answer_length=80) as server:
        client = client_for(server, max_attempts=2)
        for k in (6, 3):
            server.enqueue(Reply.model_mode(length=80, fault=Fault.cut(after_events=k)))
        got = []
        with pytest.raises(openai.APIConnectionError) as info:
            for chunk in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
                got.append(chunk.choices[0].delta.content or "")
        err = info.value
        assert isinstance(err, streamtap.StreamInterrupted)
        assert isinstance(err, type(err.original))  # the original type's handlers catch it too
        assert err.delivered == "".join(got)
        assert generate_answer(MSG, model=MODEL, length=80).startswith(err.delivered)
        assert len(err.attempts) == 2
        ev = events.one()
        assert ev["streamtap.outcome"] == "error"
        assert ev["streamtap.retries"] == 1
        assert no_open_connections(server)


def test_tool_call_stream_is_never_spliced(events: Any) -> None:
    """A break inside a streamed tool call surfaces instead of splicing arguments."""
    with FakeServer() as server:
        client = client_for(server)
        server.enqueue(
            Reply(
                tool_calls=[
                    {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}
                ],
                fault=Fault.cut(after_events=4),
            )
        )
        with pytest.raises(Exception) as info:
            collect(client)
        assert not isinstance(info.value, streamtap.StreamtapInternalError)
        assert len(server.requests) == 1
        assert events.one()["streamtap.outcome"] == "error"


def test_diverging_replay_raises_by_default(events: Any) -> None:
    """A nondeterministic model: by default the replay's divergence is detected before anything
    of it is delivered, and the caller gets StreamInterrupted with exactly what one real answer
    (the first) contained, never a splice of two answers."""
    with FakeServer(nondeterministic=True, answer_length=60) as server:
        client = client_for(server)
        server.enqueue(Reply.model_mode(length=60, fault=Fault.cut(after_events=8)))
        got: list[str] = []
        with pytest.raises(openai.APIConnectionError) as info:
            for chunk in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
                got.append(chunk.choices[0].delta.content or "")
        err = info.value
        assert isinstance(err, streamtap.StreamInterrupted)
        first = generate_answer(
            [*MSG, {"role": "system", "content": "#nondeterministic 1"}], model=MODEL, length=60
        )
        text = "".join(got)
        assert text and err.delivered == text and first.startswith(text)
        assert "did not reproduce" in str(err)
        assert len(server.requests) == 2
        ev = events.one()
        assert ev["streamtap.outcome"] == "error"
        assert [a.get("cause") for a in ev["streamtap.attempts"]] == ["transport", "diverged"]


def test_continuation_only_when_asked_for(events: Any) -> None:
    """resume_strategy="continuation" (lossy, opt-in): the delivered text goes back as an
    assistant message and the model continues it; a repeated overlap is cut."""
    with FakeServer(nondeterministic=True, answer_length=60) as server:
        client = client_for(server, resume_strategy="continuation")
        server.enqueue(Reply.model_mode(length=60, fault=Fault.cut(after_events=8)))
        got: list[str] = []
        for chunk in client.chat.completions.create(model=MODEL, messages=MSG, stream=True):
            got.append(chunk.choices[0].delta.content or "")
        ev = events.one()
        assert ev["streamtap.resume.strategy"] == "continuation"
        assert ev["streamtap.outcome"] == "ok"
        text = "".join(got)
        first = server.requests[0]
        assert len(text) > 0
        cont = server.requests[-1].json["messages"]
        assert cont[-2]["role"] == "assistant" and cont[-1]["role"] == "user"
        delivered = cont[-2]["content"]
        assert text.startswith(delivered)
        rest = text[len(delivered) :]
        # No duplicated overlap: the continuation does not start by repeating the tail.
        assert not (len(rest) >= 12 and delivered.endswith(rest[:12]))
        assert first.json["messages"] == MSG


def test_retry_after_and_max_tokens(events: Any, fake_time: Any) -> None:
    """A 429 on the resume request waits Retry-After; prefill lowers max_tokens.

    The waits are asked of the injected clock: the backoff first (equal jitter under
    backoff_initial), then the server's Retry-After, which is longer than the backoff."""
    with FakeServer(answer_length=80) as server:
        client = client_for(server, prefill="vllm", backoff_max=2.0)
        server.enqueue(Reply.model_mode(length=80, fault=Fault.cut(after_events=10)))
        server.enqueue(Reply(fault=Fault.http_error(429, retry_after=0.5)))
        text, _ = collect(client, max_tokens=500)
        assert text == generate_answer(MSG, model=MODEL, length=80)
        limits = [r.json.get("max_tokens") for r in server.requests]
        assert limits[0] == 500 and all(x < 500 for x in limits[1:])
        ev = events.one()
        assert ev["streamtap.retries"] == 2
    backoff, retry_after = fake_time.sleeps
    assert FAST["backoff_initial"] / 2 <= backoff <= FAST["backoff_initial"]
    assert retry_after == 0.5
    waits = [a["wait"] for a in ev["streamtap.attempts"] if "wait" in a]
    assert waits == [round(backoff, 4), 0.5]  # the history reports what was waited


CUT_EVERY_TIME = {"backoff_initial": 1.0, "backoff_max": 4.0, "max_attempts": 5}


def _budget_spent_as_asked(fake_time: Any, ev: dict[str, Any], err: BaseException) -> None:
    """Each of the 4 resumes waited what equal jitter allows for its attempt (ceiling 1, 2, 4,
    then backoff_max 4), no 5th was tried, and the stream's duration is the time slept: the
    clock moves only when streamtap sleeps, so this is exact, on any machine."""
    ceilings = [1.0, 2.0, 4.0, 4.0]
    assert len(fake_time.sleeps) == len(ceilings)
    for wait, ceiling in zip(fake_time.sleeps, ceilings):
        assert ceiling / 2 <= wait <= ceiling, fake_time.sleeps
    assert ev["streamtap.retries"] == 4
    assert ev["streamtap.duration"] == pytest.approx(sum(fake_time.sleeps))
    assert "all 5 attempts (max_attempts) were used" in str(err)


def test_backoff_waits_follow_the_equal_jitter_budget(events: Any, fake_time: Any) -> None:
    """A stream cut on every attempt: the sync driver sleeps exactly what the budget asks."""
    with FakeServer(answer_length=40) as server:
        for _ in range(6):
            server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=5)))
        client = client_for(server, **CUT_EVERY_TIME)
        with pytest.raises(openai.APIConnectionError) as info:
            collect(client)
        assert isinstance(info.value, streamtap.StreamInterrupted)
        assert len(server.requests) == 5
    _budget_spent_as_asked(fake_time, events.one(), info.value)


async def test_async_backoff_waits_follow_the_equal_jitter_budget(
    events: Any, fake_time: Any
) -> None:
    """The same through the async driver, which waits with `async_sleep`."""
    with FakeServer(answer_length=40) as server:
        for _ in range(6):
            server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=5)))
        client = aclient_for(server, **CUT_EVERY_TIME)
        with pytest.raises(openai.APIConnectionError) as info:
            await acollect(client)
        assert isinstance(info.value, streamtap.StreamInterrupted)
        assert len(server.requests) == 5
    _budget_spent_as_asked(fake_time, events.one(), info.value)


def test_retry_deadline_counts_the_waits(events: Any, fake_time: Any) -> None:
    """retry_deadline=2.5 s with waits of 0.5-1 s: resumes go on while the time slept plus the
    next wait stays under the deadline, then the budget is spent. In the injected clock: the
    test takes no 2.5 s, and the verdict does not depend on how busy the machine is."""
    with FakeServer(answer_length=40) as server:
        for _ in range(10):
            server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=5)))
        client = client_for(
            server, backoff_initial=1.0, backoff_max=1.0, max_attempts=10, retry_deadline=2.5
        )
        with pytest.raises(openai.APIConnectionError) as info:
            collect(client)
        assert len(server.requests) == len(fake_time.sleeps) + 1
    sleeps = fake_time.sleeps
    assert all(0.5 <= w <= 1.0 for w in sleeps), sleeps
    assert len(sleeps) >= 2  # two waits of at most 1 s fit in 2.5 s
    assert sum(sleeps) < 2.5
    assert "the retry_deadline (2.5 s after the request) has passed" in str(info.value)
    assert events.one()["streamtap.duration"] == pytest.approx(sum(sleeps))


def test_usage_is_summed_over_attempts(events: Any) -> None:
    """Server usage from every attempt is summed; the count of the answer stays exact."""
    with FakeServer(answer_length=60) as server:
        client = client_for(server)
        full = generate_answer(MSG, model=MODEL, length=60)
        server.enqueue(Reply.model_mode(length=60, fault=Fault.cut(after_events=9)))
        collect(client)
        ev = events.one()
        assert ev["gen_ai.usage.output_tokens"] == estimate_tokens(full)


def test_retry_can_be_turned_off_per_request(events: Any) -> None:
    """streamtap.options(retry=False) lets the SDK's error through for one block."""
    with FakeServer(answer_length=40) as server:
        client = client_for(server)
        server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=5)))
        with streamtap.options(retry=False), pytest.raises(Exception) as info:
            collect(client)
        assert not isinstance(info.value, streamtap.StreamInterrupted)
        assert len(server.requests) == 1


# -- async ----------------------------------------------------------------------------------------


async def test_async_cut_positions_and_stall(events: Any) -> None:
    """Async: cuts at several positions and a stall are resumed into the exact answer."""
    with FakeServer(answer_length=40) as server:
        client = aclient_for(server, idle_timeout=0.3)
        full = generate_answer(MSG, model=MODEL, length=40)
        for k in (1, 2, 5, 9, 15):
            server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=k)))
            assert (await acollect(client))[0] == full
        server.enqueue(Reply.model_mode(length=40, fault=Fault.stall(after_events=4, seconds=20)))
        assert (await acollect(client))[0] == full
        # (cut by the watchdog, not waited out: the server would have gone on after 20 s)
        assert events.summaries[-1]["streamtap.attempts"][0]["cause"] == "stall"
        assert events.summaries[-1]["streamtap.retries"] == 1
        await asyncio.sleep(0.05)
        assert no_open_connections(server)


async def test_async_in_band_error_and_budget(events: Any) -> None:
    """Async: an overload event is resumed; a spent budget raises the catchable error."""
    with FakeServer(answer_length=40) as server:
        client = aclient_for(server, max_attempts=2)
        full = generate_answer(MSG, model=MODEL, length=40)
        server.enqueue(
            Reply.model_mode(length=40, fault=Fault.error_event(after_events=3, status_in_body=503))
        )
        assert (await acollect(client))[0] == full
        for k in (4, 4):
            server.enqueue(Reply.model_mode(length=40, fault=Fault.cut(after_events=k)))
        with pytest.raises(openai.APIConnectionError) as info:
            await acollect(client)
        assert isinstance(info.value, streamtap.StreamInterrupted)


def test_configured_prefill_rejected_falls_back_to_replay(events: Any) -> None:
    """resume_strategy="prefill" on an endpoint that answers 400 to it: one rejected prefill,
    then a replay (never the same rejected request again)."""
    with FakeServer(answer_length=60, supports_prefill=False) as server:
        client = client_for(server, resume_strategy="prefill")
        full = generate_answer(MSG, model=MODEL, length=60)
        server.enqueue(Reply.model_mode(length=60, fault=Fault.cut(after_events=8)))
        text, _ = collect(client)
        assert text == full
        assert len(server.requests) == 3
        assert events.one()["streamtap.resume.strategy"] == "replay"
