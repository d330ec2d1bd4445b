"""Per-chunk token counting through the real SDK over loopback HTTP."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import tiktoken

import streamtap
from streamtap._core import tokens as _tokens
from streamtap._tokenizer import encodings as _encodings
from streamtap.testing import FakeServer, Fault, Reply

MSG = [{"role": "user", "content": "hi"}]

ANSWERS = {
    "english": "I don't think it's DON'T; they'll say we've done 12345 things, 3.14 times!",
    "code": "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # ok\n\n\n\tprint(f(10))\n",
    "cjk": "流式输出不会卡住，每个汉字都是一个边界。日本語のテキストも大丈夫です。",
    "emoji": "Family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 thumbs 👍🏽 and café e\u0301 🏳️‍🌈",
    "whitespace": "a    b\n\n\n   c\t\t d \r\n e      \n\n        f   ",
}


def exact_count(name: str, text: str) -> int:
    """tiktoken's own count (its encoder, on the genuine BPE files): the reference."""
    enc: tiktoken.Encoding = _encodings.load_encoding(name, None)
    assert enc is not None, "the encodings ship with streamtap"
    return len(enc.encode_ordinary(text))


@pytest.mark.parametrize(
    ("model", "enc"), [("gpt-4o", "o200k_base"), ("gpt-4-0613", "cl100k_base")]
)
@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_sum_of_chunk_counts_is_the_whole_text_count(
    model: str, enc: str, name: str, events: Any
) -> None:
    """Per-chunk counts add up to tiktoken's count of the full text; the server agrees."""
    text = ANSWERS[name]
    expected = exact_count(enc, text)
    with FakeServer(token_counter=lambda t: exact_count(enc, t)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(text=text, chunk_size=2, model=model))
        stream = client.chat.completions.create(model=model, messages=MSG, stream=True)
        per_chunk = []
        running = []
        for _chunk in stream:
            s = streamtap.stats(stream)
            per_chunk.append(s.last_chunk_tokens)
            running.append(s.tokens)
        final = streamtap.stats(stream)
    assert all(n >= 0 for n in per_chunk)
    assert running == sorted(running)  # the live total never goes down
    assert final.tokens == expected
    assert sum(per_chunk) <= expected  # the pending tail is counted at the end
    ev = events.one()
    assert ev["streamtap.tokens.counted"] == expected
    assert ev["streamtap.tokens.source"] == "tokenizer"
    assert ev["streamtap.tokens.encoding"] == enc
    assert ev["gen_ai.usage.output_tokens"] == expected
    assert ev["streamtap.tokens.diff"] == 0


def test_tiktoken_reference_agrees_with_the_counter() -> None:
    """The counter's whole-text count is tiktoken's own encode length (both encodings)."""
    for enc in ("o200k_base", "cl100k_base"):
        factory = _tokens.counter_factory(None, encoding=enc)
        for text in ANSWERS.values():
            c = factory.new()
            pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
            total = sum(c.feed(p) for p in pieces) + c.finish()
            reference = exact_count(enc, text)
            assert total == reference


def test_unknown_model_is_an_estimate(events: Any) -> None:
    """A model streamtap cannot map to a tokenizer is counted as an estimate, and says so."""
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(text=ANSWERS["english"], model="llama-3.1-70b"))
        list(client.chat.completions.create(model="llama-3.1-70b", messages=MSG, stream=True))
    ev = events.one()
    assert ev["streamtap.tokens.source"] == "estimate"
    assert ev["streamtap.tokens.counted"] > 0


def test_user_counter_and_forced_encoding(events: Any) -> None:
    """token_counter= and encoding= override the model mapping."""
    text = ANSWERS["english"]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, encoding="cl100k_base")
        server.enqueue(Reply(text=text, chunk_size=3))
        list(client.chat.completions.create(model="my-model", messages=MSG, stream=True))
        streamtap.uninstrument()
        streamtap.instrument(client, token_counter=lambda t: len(t.split()))
        server.enqueue(Reply(text=text, chunk_size=3))
        list(client.chat.completions.create(model="my-model", messages=MSG, stream=True))
    first, second = events.summaries
    assert first["streamtap.tokens.counted"] == exact_count("cl100k_base", text)
    assert first["streamtap.tokens.encoding"] == "cl100k_base"
    assert second["streamtap.tokens.counted"] > 0
    assert second["streamtap.tokens.source"] == "estimate"


def test_interrupted_stream_reports_its_running_count(events: Any) -> None:
    """A stream cut off (resume off) reports the tokens it delivered as its usage."""
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client, retry=False)
        server.enqueue(
            Reply(text=text, chunk_size=6, model="gpt-4o", fault=Fault.cut(after_events=6))
        )
        got = []
        with pytest.raises(Exception):  # noqa: B017 - whichever type this SDK raises
            for ch in client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True):
                got.append(ch.choices[0].delta.content or "")
    delivered = "".join(got)
    ev = events.one()
    assert ev["streamtap.outcome"] == "error"
    assert ev["streamtap.usage.source"] == "streamtap"
    assert ev["gen_ai.usage.output_tokens"] == exact_count("o200k_base", delivered)


def test_logprobs_give_exact_counts(events: Any) -> None:
    """With logprobs, each chunk's count is the server's own token count."""
    pieces = ["Hello", " world", "!"]
    chunks: list[dict[str, Any]] = [
        {
            "id": "chatcmpl-lp",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": p},
                    "logprobs": {
                        "content": [
                            {"token": p, "logprob": -0.1, "bytes": None, "top_logprobs": []}
                        ]
                    },
                    "finish_reason": "stop" if i == len(pieces) - 1 else None,
                }
            ],
        }
        for i, p in enumerate(pieces)
    ]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(chunks=chunks))
        out = list(
            client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True, logprobs=True)
        )
    assert "".join(c.choices[0].delta.content or "" for c in out) == "Hello world!"
    assert [len(c.choices[0].logprobs.content) for c in out] == [1, 1, 1]  # untouched
    ev = events.one()
    assert ev["streamtap.tokens.source"] == "exact"
    assert ev["streamtap.tokens.counted"] == 3


def test_groq_usage_and_usage_on_every_chunk(events: Any) -> None:
    """Usage under x_groq is read; usage repeated on every chunk is taken last, not summed."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "llama"}
    groq = [
        {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "x_groq": {
                "id": "req_1",
                "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
            },
        },
    ]
    every = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": i + 1, "total_tokens": 6 + i},
        }
        for i, w in enumerate(["a", " b", " c"])
    ] + [
        {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
    ]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        for chunks in (groq, every):
            server.enqueue(Reply(chunks=chunks))
            list(client.chat.completions.create(model="llama", messages=MSG, stream=True))
    g, e = events.summaries
    assert (g["gen_ai.usage.input_tokens"], g["gen_ai.usage.output_tokens"]) == (7, 2)
    assert (e["gen_ai.usage.input_tokens"], e["gen_ai.usage.output_tokens"]) == (5, 3)


def test_deployment_name_resolves_through_the_served_model(events: Any) -> None:
    """An Azure-style deployment name is counted with the tokenizer of the model served."""
    text = ANSWERS["english"]
    with FakeServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        streamtap.instrument(client)
        server.enqueue(Reply(text=text, chunk_size=3, model="gpt-4o-2024-08-06"))
        list(client.chat.completions.create(model="my-deployment", messages=MSG, stream=True))
    ev = events.one()
    assert ev["streamtap.tokens.source"] == "tokenizer"
    assert ev["streamtap.tokens.encoding"] == "o200k_base"
    assert ev["streamtap.tokens.counted"] == exact_count("o200k_base", text)
