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

Where the pieces live: ``_tokens_breaks`` (the hard breaks and why counts add up across them),
``_tokens_counters`` (the counters, their segment cache, the estimate), this module (which
counter a model gets: factories, the model table); loading: ``_encodings``, ``_pending``.

Encodings are loaded lazily, at most once per process each, without network unless allowed; see
:func:`counter_factory` and ``_encodings``. When no tokenizer can be had, an ``estimate`` counter
is used, with one warning per encoding. Streams never wait for a load: ``_pending``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any, Final, cast

from .._errors import strict
from .._tokenizer import encodings as _encodings
from .._tokenizer.encodings import warn_once as _warn_once

# (``name as name``: re-exported for the tests, which reach these internals through _tokens.)
from .tokens_breaks import _ASCII_CLASSES as _ASCII_CLASSES
from .tokens_breaks import _PROVEN_PATTERNS
from .tokens_breaks import _char_class as _char_class
from .tokens_breaks import _hard_breaks as _hard_breaks
from .tokens_counters import (
    _SOURCES,
    Source,
    TokenCounter,
    _cached_encode_count,
    _cached_estimate,
    _CallableCounter,
    _FinishOnlyCounter,
    _SegmentCounter,
    estimate_tokens,
)

__all__ = [
    "CounterFactory",
    "Source",
    "TokenCounter",
    "counter_factory",
    "encoding_for_model",
    "estimate_tokens",
]


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
        if strict():
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


def _callable_factory(fn: Callable[[str], int]) -> CounterFactory:
    source = getattr(fn, "source", "estimate")
    if source not in _SOURCES:
        source = "estimate"
    name = getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
    label = str(name)
    src = cast(Source, source)
    return CounterFactory(src, label, lambda: _CallableCounter(src, label, fn))


def _estimate_counter() -> TokenCounter:
    return _SegmentCounter("estimate", "estimate", _cached_estimate)


_ESTIMATE_FACTORY: Final = CounterFactory("estimate", "estimate", _estimate_counter)
