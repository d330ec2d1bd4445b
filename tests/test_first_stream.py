"""The first stream after instrument() does not wait for the tokenizer to load.

The load is made slow deterministically: a hook holds the loader thread until the test lets
it go, so a stream that waited for it would never finish (and the test fails on its bound).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import streamtap
from streamtap._core import tokens as _tokens
from streamtap._tokenizer import encodings as _encodings
from streamtap._tokenizer import pending as _pending
from streamtap.testing import FakeServer, Reply

MSG = [{"role": "user", "content": "hi"}]
ANSWER = "Streaming starts at once; the tokenizer loads meanwhile, and the count stays exact."
BOUND = 10.0  # seconds: far above a real stream here, far below a hung one


@pytest.fixture
def slow_loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """No encoding loaded yet, and the loader waits until the returned event is set."""
    release = threading.Event()
    saved = dict(_encodings.loaded)
    _encodings.reset_for_tests()
    _tokens._FACTORIES.clear()
    _pending.reset_for_tests()

    def hold() -> None:
        release.wait(60)

    monkeypatch.setattr(_pending, "before_load", hold)
    try:
        yield release
    finally:
        release.set()
        for job in list(_pending._jobs.values()):
            job.done.wait(BOUND)
        _encodings.loaded.update(saved)
        _tokens._FACTORIES.clear()
        _pending.reset_for_tests()


def exact(text: str) -> int:
    enc = _encodings.load_encoding("o200k_base", None)
    return len(enc.encode_ordinary(text))


def wait_for_summary(events: Any) -> dict[str, Any]:
    deadline = time.monotonic() + BOUND
    while not events.summaries and time.monotonic() < deadline:
        time.sleep(0.01)
    return events.one()


def stream_sync(client: openai.OpenAI) -> tuple[str, Any]:
    """The answer and the stream; in a thread, bounded (a stream that waited for a held
    loader would never end: the bound is far above a real stream, and no verdict on speed)."""
    out: list[Any] = []

    def work() -> None:
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        text = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
        out.append(("".join(text), stream))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(BOUND)
    assert out, "the stream waited for the tokenizer to load"
    result: tuple[str, Any] = out[0]
    return result


def test_first_stream_does_not_wait_for_the_tokenizer(
    slow_loader: threading.Event, events: Any
) -> None:
    """The whole stream is delivered while the loader is held; the summary waits for the
    count, and once the encoder is there the count is exact (the text delivered before the
    load included). stats() says `estimate` meanwhile, then the exact count."""
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(text=ANSWER, chunk_size=3, model="gpt-4o"))
        text, stream = stream_sync(client)
        assert text == ANSWER  # delivered in full while the loader is still held
        assert not slow_loader.is_set()
        assert events.summaries == []  # its count is not known yet
        during = streamtap.stats(stream)
        assert (during.token_source, during.outcome) == ("estimate", "ok")
        assert during.tokens == _tokens.estimate_tokens(ANSWER)

        slow_loader.set()
        ev = wait_for_summary(events)
    assert ev["streamtap.tokens.counted"] == exact(ANSWER)
    assert (ev["streamtap.tokens.source"], ev["streamtap.tokens.encoding"]) == (
        "tokenizer",
        "o200k_base",
    )
    assert ev["streamtap.outcome"] == "ok"
    after = streamtap.stats(stream)
    assert (after.tokens, after.token_source) == (exact(ANSWER), "tokenizer")


def test_first_async_stream_does_not_wait_for_the_tokenizer(
    slow_loader: threading.Event, events: Any
) -> None:
    """The same through AsyncOpenAI: the event loop is never blocked by the load."""

    async def main(base_url: str) -> str:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        return "".join(parts)

    with FakeServer() as server:
        server.enqueue(Reply(text=ANSWER, chunk_size=3, model="gpt-4o"))
        text = asyncio.run(asyncio.wait_for(main(server.base_url), BOUND))
        assert text == ANSWER
        assert events.summaries == []
        slow_loader.set()
        ev = wait_for_summary(events)
    assert ev["streamtap.tokens.counted"] == exact(ANSWER)
    assert ev["streamtap.tokens.source"] == "tokenizer"


def test_a_load_that_never_ends_is_bounded(
    slow_loader: threading.Event,
    events: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past MAX_WAIT the summary goes out with the estimate and one warning; the load that
    finishes later serves the streams after it."""
    monkeypatch.setattr(_pending, "MAX_WAIT", 0.3)
    with FakeServer() as server, caplog.at_level("INFO", "streamtap"):
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(text=ANSWER, chunk_size=3, model="gpt-4o"))
        assert stream_sync(client)[0] == ANSWER
        ev = wait_for_summary(events)
        assert (ev["streamtap.tokens.source"], ev["streamtap.tokens.counted"]) == (
            "estimate",
            _tokens.estimate_tokens(ANSWER),
        )
        assert any("did not load within 0.3s" in r.getMessage() for r in caplog.records)

        slow_loader.set()
        for job in list(_pending._jobs.values()):
            job.done.wait(BOUND)
        _tokens.counter_factory("gpt-4o")  # the real load has finished by now
        server.enqueue(Reply(text=ANSWER, chunk_size=3, model="gpt-4o"))
        events.summaries.clear()
        assert stream_sync(client)[0] == ANSWER
        assert events.one()["streamtap.tokens.counted"] == exact(ANSWER)


def test_the_encoder_is_built_after_the_stream_in_flight(
    slow_loader: threading.Event, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building tiktoken's encoder holds the GIL for a fifth of a second: the loader waits for
    the stream in flight to end before it does (the stream still gets an exact count)."""
    import tiktoken

    built: list[float] = []
    real = tiktoken.Encoding

    class Recorded(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(time.perf_counter())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tiktoken, "Encoding", Recorded)
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(text=ANSWER, chunk_size=3, model="gpt-4o", delay=0.02))
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        parts = []
        for chunk in stream:
            if not parts:
                slow_loader.set()  # the load runs while the rest of the stream arrives
            parts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        ended = time.perf_counter()
        assert "".join(parts) == ANSWER
        ev = wait_for_summary(events)
    assert built and min(built) > ended
    assert ev["streamtap.tokens.counted"] == exact(ANSWER)


EXIT_SCRIPT = """
import threading
import time
import openai
import streamtap
from streamtap._tokenizer import pending
from streamtap.testing import FakeServer, Reply

# The load starts once the script has ended (the main thread is done when the exit begins).
pending.before_load = lambda: threading.main_thread().join()


def slow_hook(summary):
    time.sleep(0.5)  # a hook that takes its time (a collector over the network)
    print("summary", summary["streamtap.tokens.source"], flush=True)


with FakeServer() as server:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    streamtap.instrument(client, hooks=[slow_hook])
    server.enqueue(Reply(text="The last words of a short script.", model="gpt-4o"))
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for _ in stream:
        pass
print("end", flush=True)
"""


def test_a_short_scripts_last_summary_is_not_lost_at_exit() -> None:
    """A script that ends while its summary waits for the tokenizer: the exit waits until the
    summary has gone out (its hooks run in full), not merely until the load ended (the hooks
    run on the loader's daemon thread, which the interpreter stops at exit)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["end", "summary tokenizer"]
