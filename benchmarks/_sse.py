"""Realistic OpenAI chat-completion SSE bodies, built deterministically.

Every chunk is shaped like what api.openai.com sends today for `stream=True` with
`stream_options={"include_usage": true}`: `chat.completion.chunk` objects with `service_tier`,
`system_fingerprint`, `"usage": null`, an `obfuscation` padding field, a role chunk first,
1-3-token English deltas (" the", " quick", "ization"), a finish chunk, a usage chunk
(`choices: []`) and `data: [DONE]`. All variants of a benchmark read the very same bytes.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Iterator

MODEL = "gpt-4o-mini-2024-07-18"
CHUNK_ID = "chatcmpl-BenchStreamtap0123456789abcd"
CREATED = 1755097721

_PROSE = (
    "Streaming responses arrive as many small deltas, and each delta is usually a single token "
    "such as the or quick, sometimes punctuation, and now and then a new paragraph. When the "
    "caller prints them as they come, a word can be cut in half and the output flickers. "
    "Buffering until a word boundary fixes that without adding noticeable latency, because the "
    "held tail is rarely longer than one word. Internationalization, tokenization and "
    "instrumentation are long words that tokenizers split into several pieces; numbers like "
    "3.14159 or 2,048 and contractions like don't and it's must stay whole. In practice, the "
    "network layer handles the overall latency, while a careful engineer measures the time to "
    "first token, the gaps between chunks and the throughput of each request. The quick brown "
    "fox jumps over the lazy dog, and the library quietly retries a stream that breaks mid-way "
    "so that the user sees one continuous answer with nothing lost and nothing repeated.\n\n"
    "Here are a few points to keep in mind:\n1. Keep the hot path small.\n2. Measure with "
    "instruction counts on a noisy machine.\n3. Compare against the raw SDK side by side.\n\n"
)

# GPT-like pieces: an optional leading space, then a run of letters (split every 6), digits
# (every 3) or punctuation; newlines on their own.
_PIECE = re.compile(r"\n+| ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]+| +")


def _pieces(text: str) -> list[str]:
    out: list[str] = []
    for m in _PIECE.finditer(text):
        tok = m.group()
        core = tok.lstrip(" ")
        lead = tok[: len(tok) - len(core)]
        step = 6 if core.isalpha() else 3 if core.isdigit() else 0
        if step and len(core) > step + 2:
            parts = [core[i : i + step] for i in range(0, len(core), step)]
            parts[0] = lead + parts[0]
            out.extend(parts)
        else:
            out.append(tok)
    return out


_CORPUS: list[str] = []


def corpus() -> str:
    """Varied English: the Python reference text that ships with CPython (`pydoc_data`),
    re-flowed into paragraphs (~450k characters, ~3,700 distinct words, prose, lists and code),
    so token caches see a realistic vocabulary; `_PROSE` if it is missing."""
    if not _CORPUS:
        try:
            from pydoc_data.topics import topics

            raw = "\n\n".join(topics[k] for k in sorted(topics))
            paragraphs = [
                " ".join(line.strip() for line in block.splitlines() if line.strip())
                for block in re.split(r"\n\s*\n", raw)
            ]
            text = "\n\n".join(p for p in paragraphs if p) + "\n\n"
        except ImportError:
            text = _PROSE
        _CORPUS.append(text)
    return _CORPUS[0]


_PIECES: list[str] = []


def deltas(n: int, seed: int = 7) -> list[str]:
    """*n* content deltas of 1-3 token-like pieces each, in order through the corpus."""
    rng = random.Random(seed)
    if not _PIECES:
        _PIECES.extend(_pieces(corpus()))
    pieces = _PIECES
    out: list[str] = []
    i = 0
    while len(out) < n:
        k = rng.choice((1, 1, 1, 2, 2, 3))
        group = [pieces[(i + j) % len(pieces)] for j in range(k)]
        i += k
        out.append("".join(group))
    return out


def _obfuscation(rng: random.Random, content_len: int) -> str:
    # OpenAI pads every chunk so that the body length leaks less about the text.
    size = max(1, 16 - content_len + rng.randint(0, 4))
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _chunk(choices: list, usage: object, obf: str) -> dict:
    return {
        "id": CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_560af6e559",
        "choices": choices,
        "usage": usage,
        "obfuscation": obf,
    }


def _content_event(text: str, obf: str) -> bytes:
    # Byte-for-byte what _event(_chunk([...content...], None, obf)) gives, built faster.
    return b"".join(
        (
            _HEAD,
            json.dumps(text, ensure_ascii=False).encode(),
            _MID,
            json.dumps(obf).encode(),
            b"}\n\n",
        )
    )


_HEAD = (
    b'data: {"id":"'
    + CHUNK_ID.encode()
    + b'","object":"chat.completion.chunk","created":'
    + str(CREATED).encode()
    + b',"model":"'
    + MODEL.encode()
    + b'","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,'
    b'"delta":{"content":'
)
_MID = b'},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":'


def iter_events(n: int, seed: int = 7) -> Iterator[bytes]:
    """The SSE events of one answer with *n* content chunks (n + 4 events in all)."""
    rng = random.Random(seed * 7919 + n)
    yield _event(
        _chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            None,
            _obfuscation(rng, 0),
        )
    )
    for text in deltas(n, seed):
        yield _content_event(text, _obfuscation(rng, len(text)))
    yield _event(
        _chunk(
            [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
            None,
            _obfuscation(rng, 0),
        )
    )
    completion = n * 2
    yield _event(
        _chunk(
            [],
            {
                "prompt_tokens": 24,
                "completion_tokens": completion,
                "total_tokens": 24 + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            _obfuscation(rng, 0),
        )
    )
    yield b"data: [DONE]\n\n"


def events(n: int, seed: int = 7) -> list[bytes]:
    return list(iter_events(n, seed))


def body(n: int, seed: int = 7, protocol: str = "chat") -> bytes:
    if protocol == "responses":
        return b"".join(iter_response_events(n, seed))
    return b"".join(events(n, seed))


# -- the Responses API ---------------------------------------------------------------------------

RESPONSE_ID = "resp_0bench5treamtap0123456789abcdef0123456789abcd"
ITEM_ID = "msg_0bench5treamtap0123456789abcdef0123456789abcd"


def _named(obj: dict) -> bytes:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return b"event: " + obj["type"].encode() + b"\ndata: " + data + b"\n\n"


def _response(status: str, output: list, usage: object) -> dict:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


def iter_response_events(n: int, seed: int = 7) -> Iterator[bytes]:
    """A Responses API stream (`responses.create(stream=True)`) with *n* text deltas, as
    api.openai.com sends it: named events with sequence numbers, `obfuscation` and empty
    `logprobs` on each delta, one message item, usage in `response.completed` (n + 8 events)."""
    rng = random.Random(seed * 7919 + n)
    seq = iter(range(n + 16))
    where = {"item_id": ITEM_ID, "output_index": 0, "content_index": 0}
    item = {"id": ITEM_ID, "type": "message", "status": "in_progress", "content": [],
            "role": "assistant"}  # fmt: skip
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    for kind in ("response.created", "response.in_progress"):
        yield _named({"type": kind, "sequence_number": next(seq),
                      "response": _response("in_progress", [], None)})  # fmt: skip
    yield _named({"type": "response.output_item.added", "sequence_number": next(seq),
                  "output_index": 0, "item": item})  # fmt: skip
    yield _named({"type": "response.content_part.added", "sequence_number": next(seq),
                  **where, "part": part})  # fmt: skip
    texts = deltas(n, seed)
    for text in texts:
        yield _named({"type": "response.output_text.delta", "sequence_number": next(seq),
                      **where, "delta": text, "logprobs": [],
                      "obfuscation": _obfuscation(rng, len(text))})  # fmt: skip
    whole = "".join(texts)
    done_part = {**part, "text": whole}
    done_item = {**item, "status": "completed", "content": [done_part]}
    yield _named({"type": "response.output_text.done", "sequence_number": next(seq), **where,
                  "text": whole, "logprobs": []})  # fmt: skip
    yield _named({"type": "response.content_part.done", "sequence_number": next(seq), **where,
                  "part": done_part})  # fmt: skip
    yield _named({"type": "response.output_item.done", "sequence_number": next(seq),
                  "output_index": 0, "item": done_item})  # fmt: skip
    output_tokens = n * 2 + 1
    usage = {"input_tokens": 24, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 24 + output_tokens}  # fmt: skip
    yield _named({"type": "response.completed", "sequence_number": next(seq),
                  "response": _response("completed", [done_item], usage)})  # fmt: skip


def text_of(n: int, seed: int = 7) -> str:
    return "".join(deltas(n, seed))


def blocks(data: bytes, size: int = 16384) -> list[bytes]:
    """*data* cut into network-read-sized blocks (what a socket read would return)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def lazy_blocks(
    n: int, seed: int = 7, size: int = 16384, protocol: str = "chat"
) -> Iterator[bytes]:
    """The body of :func:`events` in blocks, each event built when needed (no body in memory;
    only the list of delta strings)."""
    buf = bytearray()
    source = iter_response_events if protocol == "responses" else iter_events
    for event in source(n, seed):
        buf += event
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
