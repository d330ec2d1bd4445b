"""Token counting: the counters (pure; no SDK, no loading).

``_SegmentCounter`` counts a growing text by hard-break segments (see ``_tokens_breaks``): each
finished segment is counted once, short ones through a segment cache shared by the counters of
one factory (``_CountCache``); ``_FinishOnlyCounter`` counts everything at ``finish()`` (an
encoding whose pattern the hard breaks were not proven for); ``_CallableCounter`` calls a user's
counter on every delta. ``estimate_tokens`` is the heuristic used when no tokenizer can be had.
Factories that build them: ``_tokens``.

Cost. A feed classifies only the new text plus one character (ASCII: ``bytes.translate``;
otherwise ``str.translate`` through the memo), runs one small ``re`` search on it, never re-reads
the pending tail, and encodes each finished segment once (short segments through a bounded
cache per factory). So the cost per chunk does not grow with the stream, and a single huge piece
(100k spaces, a long base64 blob) costs one tiktoken call when it ends -- the same call a
whole-text encode makes (tiktoken's BPE is close to linear there: ~30 ms for 100k spaces).
Until a hard break arrives its tokens are not final, and are reported later (at the latest by
``finish()``). Measured (``benchmarks/bench_tokens.py``, 1-3 token deltas, a shared and busy
2-core machine): ``feed`` ~0.8-1.0 us per delta with a warm segment cache, ~2 us cold; ``add``
~0.5-1.0 us, about what tiktoken itself takes to encode the same text once.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any, Final, Literal, Protocol, get_args

from .._errors import strict
from .._tokenizer.encodings import warn_once as _warn_once
from .tokens_breaks import (
    _ASCII_CLASSES,
    _CLASSES,
    _MARK,
    _search_last_break,
    _search_last_break_ascii,
    _words,
)

Source = Literal["exact", "tokenizer", "estimate"]
"""Where a count comes from: ``exact`` -- the server's own tokens (the shell counts logprobs
entries); ``tokenizer`` -- the model's tokenizer run locally (tiktoken, or a user tokenizer that
says so); ``estimate`` -- a heuristic."""

_SOURCES: Final[frozenset[str]] = frozenset(get_args(Source))


class TokenCounter(Protocol):
    """Counts the tokens of one growing text (one choice index, one text channel)."""

    @property
    def source(self) -> Source:
        """Where the count comes from (see ``Source``)."""
        ...

    @property
    def encoding(self) -> str:
        """``"o200k_base"`` | ``"cl100k_base"`` | a user counter's name | ``"estimate"``."""
        ...

    @property
    def total(self) -> int:
        """Tokens counted so far: everything final, plus the tail once ``finish()`` ran."""
        ...

    def feed(self, text: str) -> int:
        """Add the next delta; return the tokens that became final with it (``>= 0``)."""
        ...

    def add(self, text: str) -> None:
        """Like ``feed`` without a per-delta result: batched, cheaper; ``total`` stays exact."""
        ...

    def peek(self) -> int:
        """``total`` as if ``finish()`` were called now, without changing anything."""
        ...

    def finish(self) -> int:
        """Count the pending tail and return it. Further calls return 0 until more text."""
        ...


_BATCH_CHARS: Final = 256


class _SegmentCounter:
    """Counts a growing text by hard-break segments; ``count`` must be additive over them."""

    __slots__ = (
        "_batch",
        "_batch_len",
        "_count",
        "_last",
        "_parts",
        "_total",
        "encoding",
        "source",
    )

    def __init__(self, source: Source, encoding: str, count: Callable[[str], int] | None) -> None:
        self.source: Source = source
        self.encoding = encoding
        # None: pattern not proven -> no breaks, everything counted at finish().
        self._count = count
        self._parts: list[str] = []
        self._last = ""
        self._total = 0
        self._batch: list[str] = []
        self._batch_len = 0

    @property
    def total(self) -> int:
        if self._batch:
            self._flush()
        return self._total

    def feed(self, text: str) -> int:
        if self._batch:
            self._flush()
        if not text:
            return 0
        try:
            count = self._count
            if count is None:
                self._parts.append(text)
                return 0
            last = self._last
            spaced = count.spaced if isinstance(count, _CountCache) else None
            cut = _words(text, last) if spaced is not None else None
            if spaced is not None and cut is not None and len(cut[0]) > 1:
                words, marked = cut
                head = words[0]
                tail = " " + words.pop()
                if marked:
                    head = head.replace(_MARK, " ")
                    tail = tail.replace(_MARK, " ")
                parts = self._parts
                if parts:
                    head = "".join(parts) + head if head else "".join(parts)
                # `spaced` takes the marked words as they are: only _words makes its keys.
                n = count(head) + sum(map(spaced.__getitem__, islice(words, 1, None)))
            else:
                window = last + text
                if window.isascii():
                    mb = _search_last_break_ascii(window.encode().translate(_ASCII_CLASSES)[::-1])
                    pos = -1 if mb is None else mb.start()
                else:
                    ms = _search_last_break(window.translate(_CLASSES)[::-1])
                    pos = -1 if ms is None else ms.start()
                if pos < 0:
                    self._parts.append(text)
                    self._last = text[-1]
                    return 0
                k = len(text) - 1 - pos  # first index of the new pending tail, in text
                parts = self._parts
                n = count("".join(parts) + text[:k] if parts else text[:k])
                tail = text[k:]
            self._parts = [tail]  # only once counted: _degrade relies on it
            self._last = text[-1]
            self._total += n
            return n
        except Exception as exc:
            return self._degrade(exc, text)

    def add(self, text: str) -> None:
        if text:
            self._batch.append(text)
            self._batch_len += len(text)
            if self._batch_len >= _BATCH_CHARS:
                self._flush()

    def _flush(self) -> None:
        batch = self._batch
        self._batch = []
        self._batch_len = 0
        self.feed("".join(batch))

    def peek(self) -> int:
        total = self.total
        if not self._parts:
            return total
        try:
            tail = "".join(self._parts)
            return total + (self._final_count if self._count is None else self._count)(tail)
        except Exception as exc:
            if strict():  # STREAMTAP_STRICT=1 (the test suite): re-raise, hide no bug
                raise
            _warn_once(("internal", "counter"), _INTERNAL_MSG, exc, self.encoding)
            return total

    def finish(self) -> int:
        if self._batch:
            self._flush()
        if not self._parts:
            return 0
        tail = "".join(self._parts)
        self._parts = []
        self._last = ""
        try:
            n = (self._final_count if self._count is None else self._count)(tail)
        except Exception as exc:
            return self._degrade(exc, tail)
        self._total += n
        return n

    def _final_count(self, text: str) -> int:  # pragma: no cover - replaced per instance
        return 0

    def _degrade(self, exc: Exception, text: str) -> int:
        """Internal failure: one log line, then the estimate for this text and what follows."""
        if strict():
            raise exc
        _warn_once(("internal", "counter"), _INTERNAL_MSG, exc, self.encoding)
        try:
            pending = "".join(self._parts) + (text if isinstance(text, str) else "")
            self._parts = []
            self._last = ""
            self.source = "estimate"
            self.encoding = "estimate"
            self._count = estimate_tokens
            n = estimate_tokens(pending)
            self._total += n
            return n
        except Exception:
            return 0


_INTERNAL_MSG: Final = "streamtap: token counting failed (%r) for %s; estimating from now on"


class _FinishOnlyCounter(_SegmentCounter):
    """An encoding whose pattern the hard-break rules were not proven for: exact at finish."""

    __slots__ = ("_encode_count",)

    def __init__(self, encoding: str, count: Callable[[str], int]) -> None:
        super().__init__("tokenizer", encoding, None)
        self._encode_count = count

    def _final_count(self, text: str) -> int:
        return self._encode_count(text)


class _CallableCounter:
    """A user counter, called on every delta as it is."""

    __slots__ = ("_fn", "_total", "encoding", "source")

    def __init__(self, source: Source, encoding: str, fn: Callable[[str], int]) -> None:
        self.source: Source = source
        self.encoding = encoding
        self._fn = fn
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def feed(self, text: str) -> int:
        if not text:
            return 0
        try:
            n = int(self._fn(text))
        except Exception as exc:
            if strict():
                raise
            _warn_once(
                ("counter", self.encoding),
                "streamtap: the token counter %s failed (%r); estimating those deltas",
                self.encoding,
                exc,
            )
            n = estimate_tokens(text) if isinstance(text, str) else 0
        n = max(n, 0)
        self._total += n
        return n

    def add(self, text: str) -> None:
        self.feed(text)

    def peek(self) -> int:
        return self._total

    def finish(self) -> int:
        return 0


_CACHE_MAX_ENTRIES: Final = 16384
_CACHE_MAX_CHARS: Final = 32


def _cached_encode_count(enc: Any) -> Callable[[str], int]:
    """``len(enc.encode_ordinary(segment))``, cached for short segments."""
    encode = enc.encode_ordinary
    return _CountCache(lambda segment: len(encode(segment)))


class _CountCache(dict[str, int]):
    """``count`` with a bounded cache for short segments (" the", ",", "\\n\\n"...), shared by
    the counters of one factory. Calling it is a plain dict lookup (C) on a hit, so a counter can
    ``sum(map(cache, segments))`` without running Python per segment; safe across threads."""

    __slots__ = ("_count", "spaced")

    def __init__(self, count: Callable[[str], int], spaced: bool = True) -> None:
        super().__init__()
        self._count = count
        # The same for " " + word, keyed by the word (so `str.split(" ")` output is the key).
        self.spaced = _CountCache(self._count_spaced, spaced=False) if spaced else None

    def _count_spaced(self, word: str) -> int:
        # Keys come from _words only: a mark in them always stands for a space.
        return self(" " + word.replace(_MARK, " "))

    __call__ = dict.__getitem__

    def __missing__(self, segment: str) -> int:
        n = self._count(segment)
        if len(segment) <= _CACHE_MAX_CHARS:
            if len(self) >= _CACHE_MAX_ENTRIES:
                self.clear()
            self[segment] = n
        return n


# --------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------

# Every match costs one token: Latin letters up to 8 (with the space in front); CJK ideographs,
# kana and Hangul syllables one each; letters of other scripts up to 2; digits in groups of 3;
# ASCII punctuation up to 4; any other symbol (emoji...) one each; up to 8 newlines; other
# whitespace up to 32. Tuned on prose, code, markdown, CJK, emoji and whitespace samples: within
# ~15% of o200k_base / cl100k_base on English prose, code and markdown, within ~40% on CJK and
# emoji (where the two encodings differ by that much from each other).
# Each alternative consumes characters of one hard-break class group only (besides one leading
# space), so no match crosses a hard break: the estimate of a text is the sum of the estimates of
# its hard-break segments, and the estimate counter is incremental and exactly additive.
_EST_SOURCE: Final = r"""
    [ ]?[\p{Latin}&&\p{L}]{1,8}
  | [[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]&&\p{L}]
  | [ ]?[[\p{L}\p{M}]--[\p{Latin}\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]]{1,2}
  | \p{M}{1,2}
  | \p{N}{1,3}
  | [ ]?[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]{1,4}
  | [ ]?[^\s\p{L}\p{N}\p{M}]
  | [\r\n]{1,8}
  | \s{1,32}
"""
_est_pattern: Any = None


def estimate_tokens(text: str) -> int:
    """A heuristic token count (see ``_EST_SOURCE``); never negative, additive at hard breaks."""
    global _est_pattern
    if _est_pattern is None:
        import regex

        _est_pattern = regex.compile(_EST_SOURCE, regex.VERBOSE | regex.V1)
    return len(_est_pattern.findall(text))


_cached_estimate: Final = _CountCache(estimate_tokens)
