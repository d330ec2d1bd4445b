"""Per-chunk token counting: the pure core (no OpenAI SDK in here).

One counter per (choice index, text channel) of a stream::

    factory = counter_factory("gpt-4o")    # resolved once per (model, options), cached
    counter = factory.new()                 # cheap: one per choice index and channel
    n = counter.feed(delta)                 # tokens that became final with this delta, >= 0
    n = counter.finish()                    # the pending tail, at the end
    # sum(feed results) + finish() == len(enc.encode_ordinary(full_text))

For the shell: feed the deltas in order, each channel to its own counter; keep the same
counter across a resume (the continuation is the same text, and a ``finish()`` in between would
count a word cut by the interruption as two pieces); ``peek()`` gives the exact count of the text
so far without disturbing anything (for an attempt that was cut off); ``add()`` instead of
``feed()`` batches the work when per-chunk figures are not needed (``total`` stays exact).
A counter is not meant to be shared between threads; factories are.

Exact incremental counting
--------------------------
tiktoken cuts a text into *pieces* with a regex (the pre-tokenizer) and runs BPE inside each
piece; merges never cross a piece boundary. So if a text is cut at positions that are piece
boundaries of the whole text, and each part, encoded on its own, gets the same pieces it gets
inside the whole text, the token counts of the parts add up to the count of the whole.

We do **not** run tiktoken's pattern in Python to find those positions: the ``regex`` module and
the Rust ``regex`` crate inside tiktoken ship different Unicode versions (regex 2026.11: Unicode 17,
tiktoken 0.14: Unicode 16) and classify ~17,500 code points differently (``\\p{L}`` versus
unassigned), so pieces found in Python are not always tiktoken's pieces. Instead the counter cuts
only at *hard breaks*: positions where, looking only at the character before (x) and the one
after (y), both the cl100k_base and the o200k_base pattern must end a piece, whatever came before
and whatever comes after. Characters are put in classes:

    L letter (\\p{L})   N number (\\p{N})   M mark (\\p{M})   A the ASCII apostrophe
    R \\r or \\n      W other White_Space   O any other assigned character (punctuation,
    symbols, emoji, controls, private use)   ? uncertain (see below)

and the hard breaks are, with x the character before the cut and y the one after:

    R1  x in L N M O A,  y in W          R4  x in N,  y in L M O A W R
    R2  x in L N,        y in R          R5  x in L M O A,  y in N
    R3  x in L,          y in O

Why these are breaks, for every text. By what they may contain, the pieces of both patterns
are of five kinds: *letter* pieces (cl100k ``[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++``; o200k's first two
alternatives: one optional leading char that is not \\r, \\n, a letter or a number, then
letters -- o200k: letters and marks --, then in o200k an optional ASCII contraction ``'s``,
``'ll``...), *contraction* pieces (cl100k ``'(?i:[sdmt]|ll|ve|re)``), *number* pieces
(``\\p{N}{1,3}``), *punctuation* pieces (optional space, chars that are not whitespace, letters or
numbers, then \\r\\n -- o200k: \\r\\n and ``/``), and *whitespace* pieces (only whitespace).

(i) No piece contains x followed by y. R1: a whitespace char other than \\r\\n is never
preceded by a non-whitespace char inside a piece (it may only lead a letter or punctuation
piece, or be part of a whitespace piece). R2: letter, contraction and number pieces never
contain \\r\\n. R3: after a letter, a piece continues only with letters, marks or an apostrophe
contraction. R4/R5: only number pieces contain numbers, and they contain nothing else.

(ii) Encoding the part that ends with x on its own gives the same pieces. The pieces of a part
depend only on the part's own text (the patterns have no look-behind). The piece that ends with
x is a letter, contraction, number or punctuation piece (x is never whitespace: rules R1-R5 never
have x in W or R), and it ends because y is not in the class it was consuming; the end of the
text stops it the same way. The only constructs that tell "end of text" apart from "a character
that does not match" are ``$`` and ``(?!\\S)``, and both only follow a run of whitespace -- which
never ends at x. Earlier pieces, and the alternatives tried and abandoned on the way (o200k tries
an upper-case run, ``\\s*[\\r\\n]+`` scans a whitespace run), read runs of one class, which
stop at y or before, exactly as they stop at the end of the part. R4 also relies on the digit
grouping: groups of three are counted from the start of the digit run, and since there is
never a break between two numbers, the whole run is in the same part.

No break ever has whitespace as x: a whitespace run at the end of a part would be matched by
``\\s++$`` (cl100k) or ``\\s+(?!\\S)`` (o200k) differently than in the whole text.

Uncertain characters. A character gets class L, N, M, W or O only if it has that class both in
Unicode 3.2 (``unicodedata.ucd_3_2_0``, in every Python) and in the newest tables at hand (the
``regex`` module's); tiktoken's Rust tables lie in between. Everything else -- characters that
changed class, letters assigned after Unicode 3.2 (rare scripts, CJK extensions C-J), code
points unassigned today, lone surrogates -- is "?", and "?" is never next to a break. Emoji are
unassigned in 3.2 (other) and symbols today (other): class O. This assumes a class does not
change and then change back; Python 3.11's Unicode 14.0 tables agree with every class so given,
and the one known flip, U+180E (whitespace only in Unicode 4.0-6.2), predates any tiktoken.
Classes are computed lazily, once per distinct character, and memoised.

This argument is checked by tests: a Hypothesis fuzz of ``sum(feed) + finish() ==
len(encode_ordinary(text))`` for both encodings and arbitrary splits, and a sweep of every code
point through each rule. The proof covers these two patterns only; it is bound to them by the
SHA-256 of the pattern string (o200k_harmony shares o200k's pattern). An encoding with another
pattern is still counted exactly, but only at ``finish()``.

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

Encodings are loaded lazily, at most once per process each, without network unless allowed; see
:func:`counter_factory` and ``_encodings``. When no tokenizer can be had, an ``estimate`` counter
is used, with one warning per encoding. Streams never wait for a load: ``_pending``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Callable
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast, get_args

from . import _encodings
from ._encodings import warn_once as _warn_once
from ._errors import strict

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

__all__ = [
    "CounterFactory",
    "Source",
    "TokenCounter",
    "counter_factory",
    "encoding_for_model",
    "estimate_tokens",
]

Source = Literal["exact", "tokenizer", "estimate"]
"""Where a count comes from: ``exact`` -- the server's own tokens (the shell counts logprobs
entries); ``tokenizer`` -- the model's tokenizer run locally (tiktoken, or a user tokenizer that
says so); ``estimate`` -- a heuristic."""

_SOURCES: Final[frozenset[str]] = frozenset(get_args(Source))

logger = logging.getLogger("streamtap")


def _strict() -> bool:
    """Re-raise internal errors instead of degrading to the estimate (``STREAMTAP_STRICT=1``,
    which the test suite sets, so that bugs are not hidden)."""
    return strict()


# --------------------------------------------------------------------------------------------
# Public protocol and factory
# --------------------------------------------------------------------------------------------


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


class CounterFactory:
    """Makes counters for one resolved tokenizer. Creating a counter is cheap.

    ``loading`` is not None while the tokenizer is still loading in the background (see
    ``_pending``): meanwhile ``source`` and ``encoding`` say ``estimate`` and the counters keep
    their text; when it is loaded they take the loaded values and ``loading`` becomes None.
    """

    __slots__ = ("_make", "encoding", "loading", "source")

    def __init__(self, source: Source, encoding: str, make: Callable[[], TokenCounter]) -> None:
        self.source: Source = source
        self.encoding: str = encoding
        self._make = make
        self.loading: Any = None

    def new(self) -> TokenCounter:
        """A fresh counter (one per choice index and text channel)."""
        return self._make()

    def __repr__(self) -> str:
        return f"CounterFactory(source={self.source!r}, encoding={self.encoding!r})"


def counter_factory(
    model: str | None,
    *,
    encoding: str | None = None,
    counter: Callable[[str], int] | None = None,
    tiktoken_dir: str | os.PathLike[str] | None = None,
) -> CounterFactory:
    """Resolve how to count tokens for ``model``; cached per arguments. Never raises.

    - ``counter``: a callable ``text -> int`` (e.g. ``lambda t: len(hf_tok.encode(t))``),
      called on every delta. Its ``source`` attribute (default ``"estimate"``) and ``name``
      attribute (default: its ``__name__``) label the counts. Exactness then depends on the
      tokenizer being additive over deltas, which BPE tokenizers are not quite (a word split
      across two deltas is counted as two pieces). A ``tiktoken.Encoding`` may be passed too:
      it is counted exactly and incrementally like a built-in one.
    - ``encoding``: force a tiktoken encoding (``"cl100k_base"``, ``"o200k_base"``) for any model.
    - otherwise the encoding comes from :func:`encoding_for_model`; unknown models get the
      estimate.

    Encodings are looked up in this order, each source tried at most once per process:
    ``tiktoken_dir`` (a directory holding ``<encoding>.tiktoken``), ``$STREAMTAP_TIKTOKEN_DIR``,
    the copy of ``cl100k_base`` and ``o200k_base`` shipped with streamtap, tiktoken's own cache
    (only if the file is already there), then tiktoken's download -- unless
    ``STREAMTAP_TIKTOKEN_DOWNLOAD=0`` -- bounded by ``$STREAMTAP_TIKTOKEN_DOWNLOAD_TIMEOUT``
    seconds (default 5). Every file is checked against the SHA-256 pinned in tiktoken. If all
    fail: the estimate, and one warning per encoding. This call waits while an encoding loads
    (a fraction of a second for the shipped ones); ``_pending.factory_nowait`` does not.
    """
    try:
        key: tuple[Any, ...] | None = (
            model,
            encoding,
            counter,
            None if tiktoken_dir is None else os.fspath(tiktoken_dir),
        )
        hash(key)
    except Exception:
        key = None
    if key is not None:
        cached = _FACTORIES.get(key)
        if cached is not None:
            return cached
    try:
        factory = _resolve(model, encoding, counter, tiktoken_dir)
    except Exception as exc:
        if _strict():
            raise
        _warn_once(
            ("internal", "factory"),
            "streamtap: could not set up token counting (%r); using the estimate",
            exc,
        )
        factory = _ESTIMATE_FACTORY
    if key is not None:
        if len(_FACTORIES) >= _MAX_FACTORIES:
            _FACTORIES.clear()
        _FACTORIES[key] = factory
    return factory


_FACTORIES: dict[tuple[Any, ...], CounterFactory] = {}
_MAX_FACTORIES: Final = 1024


def _resolve(
    model: str | None,
    encoding: str | None,
    counter: Callable[[str], int] | None,
    tiktoken_dir: str | os.PathLike[str] | None,
) -> CounterFactory:
    if counter is not None:
        if hasattr(counter, "encode_ordinary") and hasattr(counter, "_pat_str"):
            return _tiktoken_factory(counter)
        if callable(counter):
            return _callable_factory(counter)
        _warn_once(
            ("counter", type(counter).__name__),
            "streamtap: counter=%r is not callable; using the estimate",
            counter,
        )
        return _ESTIMATE_FACTORY
    name = encoding if encoding is not None else encoding_for_model(model)
    if name is None:
        return _ESTIMATE_FACTORY
    enc = _encodings.load_encoding(name, tiktoken_dir)
    if enc is None:
        return _ESTIMATE_FACTORY
    return _tiktoken_factory(enc)


# --------------------------------------------------------------------------------------------
# Model -> encoding
# --------------------------------------------------------------------------------------------

# (prefix, encoding); a prefix matches when the name equals it or continues with - . : @ or _
# (dated and sized variants, OpenRouter's ":free"...). Order matters: the first match wins.
_MODEL_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),  # Azure's spelling of the model name
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)
_CONTINUATION: Final = frozenset("-.:@_")


def encoding_for_model(model: str | None) -> str | None:
    """The tiktoken encoding of an OpenAI model name, or ``None`` if it cannot be told.

    Dated and sized variants resolve (``gpt-4o-2024-08-06``, ``gpt-4.1-mini``), as do provider
    prefixes (``openai/gpt-4o``), OpenRouter suffixes (``:free``) and fine-tunes
    (``ft:gpt-4o-mini-2024-07-18:org::id``). Azure deployment names (``my-deployment``) cannot be
    resolved: the shell may try the model name the server answers with.
    """
    if not isinstance(model, str):
        return None
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    name = name.rsplit("/", 1)[-1]
    for prefix, enc in _MODEL_PREFIXES:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if rest and rest[0] not in _CONTINUATION:
            continue
        if prefix == "gpt-4" and rest.startswith("."):
            return None  # gpt-4.1 / gpt-4.5 matched above; any other gpt-4.x is unknown
        return enc
    return None


# --------------------------------------------------------------------------------------------
# Character classes and hard breaks
# --------------------------------------------------------------------------------------------

_UCD32 = unicodedata.ucd_3_2_0
_WS_CONTROLS_32: Final = frozenset("\t\n\x0b\x0c\r\x85")  # White_Space controls (Cc)
_NOW_CLASSES: Final = {1: "L", 2: "N", 3: "M", 4: "W", 5: "?", 6: "O"}
_now_pattern: Any = None


def _char_class(ch: str) -> str:
    """The hard-break class of one character (see the module docstring)."""
    global _now_pattern
    if ch in "\r\n":
        return "R"
    if ch == "'":
        return "A"
    cat = _UCD32.category(ch)
    then = "W" if cat[0] == "Z" or ch in _WS_CONTROLS_32 else cat[0] if cat[0] in "LNM" else "O"
    if _now_pattern is None:
        import regex

        _now_pattern = regex.compile(
            r"(\p{L})|(\p{N})|(\p{M})|(\p{White_Space})|(\p{Cn}|\p{Cs})|(.)", regex.DOTALL
        )
    now = _NOW_CLASSES[_now_pattern.match(ch).lastindex]
    return now if now == then else "?"


class _ClassMemo(dict[int, str]):
    """``str.translate`` table: code point -> class letter, filled on first sight."""

    def __missing__(self, cp: int) -> str:
        cls = _char_class(chr(cp))
        if len(self) < _CLASS_MEMO_MAX:
            self[cp] = cls
        return cls


_CLASS_MEMO_MAX: Final = 200_000  # distinct characters remembered (real text uses far fewer)
_CLASSES: Final = _ClassMemo()

# The break pairs (y, x) on the *reversed* class string: the first match there is the last
# break of the window. See R1-R5 in the module docstring.
_BREAK_PAIRS: Final = r"W[LNMOA]|R[LN]|OL|[LMOAWR]N|N[LMOA]"
_LAST_BREAK: Final = re.compile(_BREAK_PAIRS)
# ASCII fast path (most deltas): bytes.translate through a 256-byte table, no memo lookups.
_LAST_BREAK_ASCII: Final = re.compile(_BREAK_PAIRS.encode())


def _ascii_class(b: int) -> str:
    """The class of an ASCII character, without Unicode tables (tested equal to ``_char_class``)."""
    ch = chr(b)
    if ch in "\r\n":
        return "R"
    if ch == "'":
        return "A"
    if ch in " \t\x0b\x0c":
        return "W"
    if ch.isascii() and ch.isalpha():
        return "L"
    if ch.isascii() and ch.isdigit():
        return "N"
    return "O" if b < 128 else "?"


_ASCII_CLASSES: Final = bytes(ord(_ascii_class(b)) for b in range(256))


def _hard_breaks(text: str) -> Iterator[int]:
    """Every hard-break position of ``text``: ``text[:p]`` / ``text[p:]`` for each ``p``."""
    classes = text.translate(_CLASSES)
    for p in range(1, len(text)):
        if _LAST_BREAK.fullmatch(classes[p] + classes[p - 1]):
            yield p


# --------------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------------

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
                    mb = _LAST_BREAK_ASCII.search(window.encode().translate(_ASCII_CLASSES)[::-1])
                    pos = -1 if mb is None else mb.start()
                else:
                    ms = _LAST_BREAK.search(window.translate(_CLASSES)[::-1])
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
            if _strict():
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
        if _strict():
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
            if _strict():
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


def _tiktoken_factory(enc: Any) -> CounterFactory:
    name = str(getattr(enc, "name", "tiktoken"))
    count = _cached_encode_count(enc)
    pattern = str(getattr(enc, "_pat_str", ""))
    if hashlib.sha256(pattern.encode()).hexdigest() in _PROVEN_PATTERNS:
        return CounterFactory("tokenizer", name, lambda: _SegmentCounter("tokenizer", name, count))
    _warn_once(
        ("pattern", name),
        "streamtap: the pre-tokenizer pattern of %s is not one streamtap's incremental counting"
        " was proven for; its tokens are counted exactly, but only when the stream ends",
        name,
    )
    return CounterFactory("tokenizer", name, lambda: _FinishOnlyCounter(name, count))


# SHA-256 of the pattern strings the hard-break rules are proven (and tested) for.
_PROVEN_PATTERNS: Final = frozenset(
    {
        "f021c3d976978e62ee64cdad150cc3405c2e3d6e3b40407850bb9e8d9eb65899",  # cl100k_base
        "2d1b8dc11e89af71459b36004f698ab3693f59fd84f63e8ec2b49564ab857420",  # o200k_base (+harmony)
    }
)

_CACHE_MAX_ENTRIES: Final = 16384
_CACHE_MAX_CHARS: Final = 32


def _cached_encode_count(enc: Any) -> Callable[[str], int]:
    """``len(enc.encode_ordinary(segment))``, cached for short segments."""
    encode = enc.encode_ordinary
    return _cached(lambda segment: len(encode(segment)))


def _words(text: str, last: str) -> tuple[list[str], bool] | None:
    """``text`` cut before every space that has a hard break before it (R1: the space follows a
    letter, digit, mark or punctuation), with ``last`` the character before ``text``; None if
    ``text`` holds the mark character. Every piece but the first starts after a cut space,
    which the pieces leave out (``spaced`` counts it). ``str.split`` and ``str.replace`` do
    the work in C; Python looks only at the rare spaces after whitespace or non-ASCII.

    Spaces that are not cut are marked (`_MARK`) in the pieces; the flag says if any is.
    """
    if _MARK in text:
        return None
    t = text
    marked = False
    # Spaces after whitespace (indentation, double spaces) are no breaks: hide them from
    # split() behind a mark (the counts put the spaces back).
    for c, pair, marked_pair in _NO_BREAK_PAIRS:
        # (A one-character search is a memchr; most of these characters are not in the text.)
        if c in t and pair in t:
            t = t.replace(pair, marked_pair)
            marked = True
    if marked:
        while _MARK_SPACE in t:
            t = t.replace(_MARK_SPACE, _MARK + _MARK)
    if t[0] == " " and last and _CLASSES[ord(last)] not in _BEFORE_SPACE_OK:
        t = _MARK + t[1:]
        marked = True
    words = t.split(" ")
    if not t.isascii():
        # A space after non-ASCII whitespace or an uncertain character is no break either.
        # Look at each distinct last character once (in C: a set of one-character slices).
        ends = set(map(_LAST_CHAR, words))
        bad = {ch for ch in ends if ch and _CLASSES[ord(ch)] not in _BEFORE_SPACE_OK}
        if bad:
            merged = [words[0]]
            for w in islice(words, 1, None):
                prev = merged[-1]
                if prev and prev[-1] in bad:
                    merged[-1] = prev + _MARK + w
                else:
                    merged.append(w)
            words = merged
            marked = True
    return words, marked


# A space after whitespace: no hard break before it.
_NOT_BEFORE_SPACE: Final = " \t\n\r\x0b\x0c"
_LAST_CHAR: Final = itemgetter(slice(-1, None))
_BEFORE_SPACE_OK: Final = "LNMOA"  # classes x of rule R1
_MARK: Final = "\x01"  # never in the text when used (checked)
_MARK_SPACE: Final = _MARK + " "
# (whitespace character, it + a space, it + the mark) for each character of _NOT_BEFORE_SPACE
_NO_BREAK_PAIRS: Final = tuple((c, c + " ", c + _MARK) for c in _NOT_BEFORE_SPACE)


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


def _cached(count: Callable[[str], int]) -> Callable[[str], int]:
    return _CountCache(count)


def _callable_factory(fn: Callable[[str], int]) -> CounterFactory:
    source = getattr(fn, "source", "estimate")
    if source not in _SOURCES:
        source = "estimate"
    name = getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
    label = str(name)
    src = cast(Source, source)
    return CounterFactory(src, label, lambda: _CallableCounter(src, label, fn))


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


_cached_estimate: Final = _cached(estimate_tokens)


def _estimate_counter() -> TokenCounter:
    return _SegmentCounter("estimate", "estimate", _cached_estimate)


_ESTIMATE_FACTORY: Final = CounterFactory("estimate", "estimate", _estimate_counter)
