"""Word-boundary buffering through the real SDK over loopback HTTP."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import regex

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

MSG = [{"role": "user", "content": "hi"}]

ANSWERS = {
    "english": "Streaming APIs send text in pieces; a word can be split anywhere, even "
    "inside 'don't' or a hyphenated-word. Numbers like 3.14159 and 1,000,000 too!",
    "cjk": "流式输出不会卡住：每个汉字都是一个边界。"
    "日本語のテキストも、カタカナもひらがなも大丈夫です。한국어도 됩니다.",
    "thai": "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ แต่ต้องไม่ค้างอยู่ในบัฟเฟอร์นานเกินไป",
    "emoji": "Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵🇺🇸, skin tones 👍🏽👋🏿, rainbow 🏳️‍🌈, café, "
    "e\u0301, Hangul jamo \u1100\u1161\u11a8, CRLF\r\nend.",
    "code": "```python\ndef add(a: int, b: int) -> int:\n    return a + b  # sum\n```\n"
    "Then run `pytest -q` and see https://example.com/a/very/long/path?with=query&and=more.",
    "markdown": "# Title\n\n- **bold** item\n- _italic_ item\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
}


def graphemes_ok(pieces: list[str]) -> bool:
    """No piece boundary falls inside an extended grapheme cluster of the whole text."""
    whole = "".join(pieces)
    bounds = {m.end() for m in regex.finditer(r"\X", whole)} | {0}
    pos = 0
    for p in pieces[:-1]:
        pos += len(p)
        if pos not in bounds:
            return False
    return True


def stream_pieces(client: openai.OpenAI, index: int = 0, **kw: Any) -> tuple[list[str], list[Any]]:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True, **kw))
    pieces = [
        c.delta.content for ch in chunks for c in ch.choices if c.index == index and c.delta.content
    ]
    return pieces, chunks


@pytest.mark.parametrize("name", sorted(ANSWERS))
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7])
def test_answers_arrive_whole_and_lossless(name: str, chunk_size: int, events: Any) -> None:
    """Every script and cluster kind: lossless, grapheme-safe, word-aligned where possible."""
    text = ANSWERS[name]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, hold_max_seconds=10)
        server.enqueue(Reply(text=text, chunk_size=chunk_size))
        pieces, _ = stream_pieces(client)
    assert "".join(pieces) == text
    assert graphemes_ok(pieces), pieces
    if name == "english":
        # Every piece but the last ends after a space or punctuation: whole words only.
        assert all(not p[-1].isalnum() for p in pieces[:-1]), pieces
    if name == "cjk":
        # Ideographs are boundaries: no stalling until the end.
        assert len(pieces) >= len(text) // (chunk_size + 4)
    if name == "thai" and chunk_size <= 3:
        assert len(pieces) > 3  # Thai streams too, at grapheme boundaries
    ev = events.one()
    assert ev["streamtap.buffering.mode"] == "word"
    # (exact values in test_hold_and_timing_are_read_on_the_streams_clock; here, real time)
    assert 0 <= ev["streamtap.buffering.hold_max"] <= ev["streamtap.duration"]


def test_n2_choices_are_buffered_apart(events: Any) -> None:
    """n = 2: each choice has its own buffer; the texts never mix."""
    texts = ["First answer, with its own words.", "Second answer: completely different text!"]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, hold_max_seconds=10)  # boundaries, not the clock
        server.enqueue(Reply(text=texts, n=2, chunk_size=3))
        p0, chunks = stream_pieces(client, 0, n=2)
        p1 = [
            c.delta.content for ch in chunks for c in ch.choices if c.index == 1 and c.delta.content
        ]
    assert "".join(p0) == texts[0]
    assert "".join(p1) == texts[1]
    assert all(p[-1] in " ,.:!" for p in p0[:-1]) and all(p[-1] in " ,.:!" for p in p1[:-1])
    assert events.one()["gen_ai.response.finish_reasons"] == ["stop", "stop"]


def test_text_is_flushed_before_a_tool_call(events: Any) -> None:
    """Held text arrives before (or with) the first tool-call chunk, never after it."""
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(
            Reply(
                text="Let me check the weather",
                chunk_size=4,
                tool_calls=[{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
            )
        )
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    seen_text = ""
    args = ""
    for ch in chunks:
        for c in ch.choices:
            if c.delta.tool_calls:
                assert seen_text + (c.delta.content or "") == "Let me check the weather"
                args += c.delta.tool_calls[0].function.arguments or ""
            seen_text += c.delta.content or ""
    assert json.loads(args) == {"city": "Paris"}
    assert events.one()["gen_ai.response.finish_reasons"] == ["tool_calls"]


def test_reasoning_channel_has_its_own_buffer(events: Any) -> None:
    """reasoning_content is buffered separately from content and nothing is lost."""
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, hold_max_seconds=10)
        server.enqueue(
            Reply(text="The answer is 42.", reasoning="Let me think step by step.", chunk_size=3)
        )
        chunks = list(
            client.chat.completions.create(model="deepseek-reasoner", messages=MSG, stream=True)
        )
    reasoning = [
        getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices
    ]
    reasoning = [r for r in reasoning if r]
    assert "".join(reasoning) == "Let me think step by step."
    assert all(r[-1] in " ." for r in reasoning[:-1])
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "The answer is 42."


def test_interrupted_stream_flushes_held_text_before_the_error(events: Any) -> None:
    """With resume off, the held tail reaches the caller before the SDK's exception."""
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, retry=False)
        text = "Alpha beta gamma delta epsilon zeta eta theta"
        server.enqueue(Reply(pieces=["Alpha", " beta", " gam"], fault=Fault.cut(after_events=4)))
        got: list[str] = []
        with pytest.raises(Exception) as info:
            for ch in client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True):
                got.append(ch.choices[0].delta.content or "")
        assert not isinstance(info.value, streamtap.StreamtapInternalError)
    # Everything the server sent before the cut, including the half word " gam", arrived.
    assert "".join(got) == "Alpha beta gam"
    assert text.startswith("".join(got))


def test_early_break_keeps_held_text_for_a_later_loop(events: Any) -> None:
    """Breaking out and iterating again loses nothing: the held tail comes next."""
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        text = "one two three four five six seven eight nine ten"
        server.enqueue(Reply(text=text, chunk_size=3))
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        got = []
        for ch in stream:
            got.append(ch.choices[0].delta.content or "")
            if len(got) == 4:
                break
        got += [ch.choices[0].delta.content or "" for ch in stream]
    assert "".join(got) == text


def test_sentence_line_and_custom_modes(events: Any) -> None:
    """sentence, line, a regex and a callable all keep the text lossless."""
    text = "First sentence. Second one!\nA new line? Yes.\nLast"
    modes: list[Any] = ["sentence", "line", regex.compile(r"[,;.!?]\s"), lambda s: s.rfind(" ") + 1]
    for mode in modes:
        with FakeServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
            streamtap.instrument(client, buffering=mode, hold_max_seconds=10)
            server.enqueue(Reply(text=text, chunk_size=2))
            pieces, _ = stream_pieces(client)
            streamtap.uninstrument()
        assert "".join(pieces) == text, mode
        if mode == "line":
            assert all(p.endswith("\n") for p in pieces[:-1]), pieces
        if mode == "sentence":
            assert pieces[0] == "First sentence. ", pieces


def test_hold_size_bound_releases_long_tokens(events: Any) -> None:
    """A long unbroken run (base64) is released once it exceeds hold_max_chars."""
    blob = "QUJD" * 200
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, hold_max_chars=64, hold_max_seconds=10)
        server.enqueue(Reply(text=blob, chunk_size=8))
        pieces, _ = stream_pieces(client)
    assert "".join(pieces) == blob
    assert len(pieces) >= len(blob) // 64 - 1
    assert max(len(p) for p in pieces) <= 64 + 8


def test_hold_and_timing_are_read_on_the_streams_clock(events: Any, fake_time: Any) -> None:
    """Every reading of a stream (arrivals, held text's push and release, the end-of-stream
    release, the end) comes from its clock, the injected one here. The caller moves it 1 s on
    before asking for each chunk, one word a chunk: each word is held until the next chunk
    shows it ended, so every hold, gap and the first chunk's wait is exactly 1 s, and the
    duration counts the caller's steps. Exact, on any machine: no stopwatch involved."""
    words = ["The", " quick", " brown", " fox", " jumps"]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, hold_max_seconds=10)
        server.enqueue(Reply(pieces=words))
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        pieces, steps = [], 0
        while True:
            fake_time.advance(1.0)
            steps += 1
            chunk = next(stream, None)
            if chunk is None:
                break
            pieces.append(chunk.choices[0].delta.content if chunk.choices else None)
    assert "".join(p or "" for p in pieces) == "".join(words)
    assert pieces[-1] == "jumps"  # the last word: held to the end of the body, then released
    ev = events.one()
    assert ev["streamtap.buffering.hold_max"] == 1.0
    assert ev["streamtap.buffering.hold_mean"] == 1.0
    assert ev["gen_ai.response.time_to_first_chunk"] == 1.0
    assert (ev["streamtap.gap.mean"], ev["streamtap.gap.max"]) == (1.0, 1.0)
    assert ev["streamtap.duration"] == steps
