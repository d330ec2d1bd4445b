"""Model-mode answers: a crude tokenizer, the deterministic answer generator, and how an
answer is cut into deltas and truncated to a token budget."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DEFAULT_MODEL = "gpt-4o-mini"
"""Model name used when a request names none."""


TokenCounter = Callable[[str], int]
"""A function that counts the tokens of a text."""


# --------------------------------------------------------------------------------------------
# Crude tokenizer
# --------------------------------------------------------------------------------------------

# A GPT-2-like pre-tokenizer: contractions, letter runs, up to 3 digits, punctuation runs, each
# with an optional leading space; whitespace runs. Every character falls in some branch, so
# "".join(split_tokens(text)) == text.
_TOKEN_RE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+| ?_+|\s+(?!\S)|\s+")


def split_tokens(text: str) -> list[str]:
    """Split *text* into crude token-like pieces whose concatenation is *text*.

    Words are one piece (long words several: ASCII every 6 letters, other scripts every 2
    characters), numbers are split every 3 digits, punctuation runs are one piece, and a single
    leading space sticks to the following piece, roughly like a BPE tokenizer. This is what the
    default chunking and :func:`estimate_tokens` use.
    """
    out: list[str] = []
    for piece in _TOKEN_RE.findall(text):
        core = piece.lstrip(" ")
        if core[:1].isalpha() and len(core) > (8 if core.isascii() else 3):
            step = 6 if core.isascii() else 2
            lead = piece[: len(piece) - len(core)]
            parts = [core[i : i + step] for i in range(0, len(core), step)]
            parts[0] = lead + parts[0]
            out.extend(parts)
        else:
            out.append(piece)
    return out


def estimate_tokens(text: str) -> int:
    """A crude token count of *text* (the default ``token_counter``): ``len(split_tokens(text))``.

    It is roughly in line with OpenAI's tokenizers for English prose, and exactly consistent
    with how the server chunks and truncates text, so ``max_tokens=k`` yields ``k`` tokens.
    """
    return len(split_tokens(text))


# --------------------------------------------------------------------------------------------
# Deterministic answer generation ("model mode")
# --------------------------------------------------------------------------------------------

_OPENERS = (
    "In short, ",
    "Generally speaking, ",
    "In practice, ",
    "That said, ",
    "For example, ",
    "On the other hand, ",
    "As a rule of thumb, ",
    "Most of the time, ",
    "Interestingly, ",
    "In my experience, ",
    "",
    "",
    "",
    "",
)
_SUBJECTS = (
    "the system",
    "a careful engineer",
    "the first approach",
    "this method",
    "the underlying model",
    "a well-designed cache",
    "the network layer",
    "each request",
    "the final answer",
    "a small team",
    "the library",
    "a simple script",
    "the database",
    "your application",
    "the scheduler",
    "a naïve implementation",
    "the client",
    "it",
)
_VERBS = (
    "handles",
    "improves",
    "depends on",
    "reduces",
    "explains",
    "balances",
    "measures",
    "avoids",
    "simplifies",
    "protects",
    "tracks",
    "builds on",
    "replaces",
    "validates",
    "doesn't ignore",
    "can't always predict",
    "usually streams",
    "quietly retries",
)
_OBJECTS = (
    "the overall latency",
    "unexpected errors",
    "a large amount of data",
    "the user's experience",
    "several edge cases",
    "the cost of each call",
    "memory usage",
    "the order of events",
    "long-running tasks",
    "the results",
    "partial failures",
    "the time to first token",
    "concurrent requests",
    "its configuration",
    "the remaining budget",
    "the connection pool",
)
_TAILS = (
    "",
    "",
    "",
    " in most cases",
    " without much effort",
    " when the load is high",
    " over time",
    " for a fraction of the cost",
    " — at least in theory",
    " if you configure it correctly",
    " by about 30%",
    " at scale",
    " during peak hours",
    " in 2 or 3 steps",
    " 🚀",
)
_JOINERS = (", and ", ", but ", "; ", ", so ", ", while ")
_LIST_INTROS = (
    "Here are a few points to keep in mind:",
    "The main steps are:",
    "A few things matter most:",
)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _digest(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(_canonical(list(parts)).encode()).digest()[:8], "big")


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _clause(rng: random.Random) -> str:
    return (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}"
    )


def _sentence(rng: random.Random) -> str:
    body = _clause(rng)
    if rng.random() < 0.3:
        body += rng.choice(_JOINERS) + _clause(rng)
    opener = rng.choice(_OPENERS)
    end = "!" if rng.random() < 0.05 else "."
    return (opener + body if opener else _capitalize(body)) + end


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


_STOPWORDS = frozenset(
    "about above after again answer below briefly could describe detail explain hello "
    "please quick short should simple their there these thing think those tell using what "
    "where which while words would write".split()
)


def _topic(messages: Sequence[Mapping[str, Any]], rng: random.Random) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            found = re.findall(r"[A-Za-z]{5,}", _message_text(message))
            words = sorted({w.lower() for w in found} - _STOPWORDS)
            return rng.choice(words) if words else None
    return None


def _compose_text(rng: random.Random, topic: str | None, length: int | None) -> str:
    paragraphs: list[str] = []
    sentences: list[str] = []
    if topic:
        sentences.append(f"When it comes to {topic}, {_clause(rng)}.")
    if length is None:
        target_paragraphs = rng.randint(2, 3)
        list_at = rng.randrange(target_paragraphs) if rng.random() < 0.35 else -1
        for index in range(target_paragraphs):
            if index == list_at:
                items = [f"{i}. {_capitalize(_clause(rng))}." for i in range(1, rng.randint(3, 4))]
                paragraphs.append(rng.choice(_LIST_INTROS) + "\n" + "\n".join(items))
                continue
            sentences.extend(_sentence(rng) for _ in range(rng.randint(2, 4)))
            paragraphs.append(" ".join(sentences))
            sentences = []
        return "\n\n".join(paragraphs)
    # Grow sentence by sentence until the crude count reaches *length*.
    total = sum(estimate_tokens(" " + s) for s in sentences)
    for _ in range(max(1, length) * 2 + 8):  # bounded: every sentence adds >= 3 tokens
        if total >= length:
            break
        sentence = _sentence(rng)
        total += estimate_tokens(" " + sentence)
        sentences.append(sentence)
        if len(sentences) == 3:
            paragraphs.append(" ".join(sentences))
            sentences = []
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def generate_answer(
    messages: Sequence[Mapping[str, Any]],
    seed: int | None = None,
    model: str = DEFAULT_MODEL,
    length: int | None = None,
    *,
    choice: int = 0,
) -> str:
    """Return the full answer that model mode gives to a request.

    The text is a pure function of the arguments: a PRNG seeded from a hash of *messages*
    (exactly as sent), *seed*, *model* and *choice* writes a realistic multi-paragraph English
    answer (contractions, numbers, a list now and then, ``—``, ``ï`` and the odd emoji).

    Args:
        messages: the request's ``messages``.
        seed: the request's ``seed``.
        model: the request's ``model`` (``DEFAULT_MODEL`` if the request had none).
        length: approximate length in tokens (as counted by :func:`estimate_tokens`); ``None``
            lets the PRNG pick a natural length of about 60 to 200 tokens.
        choice: the choice index, for ``n > 1`` (choice 0 is the canonical answer).

    A request with ``max_tokens=k`` gets the first ``k`` tokens of this text (with
    ``finish_reason="length"``) when the text is longer.
    """
    rng = random.Random(_digest("answer", list(messages), seed, model, choice, length))
    return _compose_text(rng, _topic(messages, rng), length)


def _continuation_fallback(key: int, prefix: str, length: int | None) -> str:
    """A plausible continuation of an unknown *prefix* (used when it is no known answer's)."""
    rng = random.Random(_digest("continue", key, prefix))
    text = _compose_text(rng, None, length if length is not None else rng.randint(30, 60))
    if prefix and not prefix[-1].isspace():
        text = " " + text
    return text


# --------------------------------------------------------------------------------------------
# Chunking helpers
# --------------------------------------------------------------------------------------------


def _chunk_text(
    text: str, *, chunk_size: int | None, tokens_per_chunk: tuple[int, int]
) -> list[str]:
    """Split *text* into deltas, deterministically (the PRNG is seeded from the text)."""
    if not text:
        return []
    if chunk_size is not None:
        return [text[i : i + chunk_size] for i in range(0, len(text), chunk_size)]
    low, high = tokens_per_chunk
    rng = random.Random(_digest("chunks", text, low, high))
    tokens = split_tokens(text)
    out: list[str] = []
    index = 0
    while index < len(tokens):
        step = rng.randint(low, high)
        out.append("".join(tokens[index : index + step]))
        index += step
    return out


def _drop_prefix(pieces: Sequence[str], count: int) -> list[str]:
    """The pieces after the first *count* characters of their concatenation."""
    out: list[str] = []
    for piece in pieces:
        if count >= len(piece):
            count -= len(piece)
            continue
        out.append(piece[count:])
        count = 0
    return out


def _take_prefix(pieces: Sequence[str], count: int) -> list[str]:
    """The pieces making up the first *count* characters of their concatenation."""
    out: list[str] = []
    for piece in pieces:
        if count <= 0:
            break
        out.append(piece[:count])
        count -= len(piece)
    return out


def _truncate(text: str, limit: int, counter: TokenCounter) -> tuple[str, bool]:
    """The longest token-prefix of *text* that *counter* counts as at most *limit* tokens."""
    if counter(text) <= limit:
        return text, False
    tokens = split_tokens(text)
    low, high = 0, len(tokens)  # invariant: prefix of `low` tokens fits
    while low < high:
        mid = (low + high + 1) // 2
        if counter("".join(tokens[:mid])) <= max(0, limit):
            low = mid
        else:
            high = mid - 1
    return "".join(tokens[:low]), True


# --------------------------------------------------------------------------------------------
# Prefill continuation
# --------------------------------------------------------------------------------------------


def _prefill_prefix(body: Mapping[str, Any]) -> str | None:
    """The assistant prefix P if the request asks to continue its final message, else None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        return None
    vllm = body.get("continue_final_message") is True and body.get("add_generation_prompt") is False
    if vllm or last.get("prefix") is True:
        return _message_text(last)
    return None
