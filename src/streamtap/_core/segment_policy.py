"""Word-boundary buffering: the policies (where a held text may be cut).

A :class:`Policy` is immutable and shared by every :class:`~._segment.Segmenter` built from it;
:func:`make_policy` validates a ``buffering`` setting and returns one.  What each policy
means:

``word`` (default)
    UAX #29 word boundaries as the ``regex`` module computes them (``WORD`` flag), restricted
    to those where a piece ends *after* its trailing whitespace and punctuation: a boundary is
    used if the code point after it is not whitespace and either follows whitespace or is not
    closing / terminal punctuation (``Pd Pe Pf Po`` and the UAX #29 ``Mid*`` / quote
    classes).  So the caller sees ``"Hello, "`` + ``"world"``, never ``"Hello"`` + ``", "``.
    Han ideographs and Hiragana are word class *Other*, so every one is a boundary; a
    Katakana run is one word (short; the hold bound covers long ones).  Thai, Lao, Khmer and
    Myanmar letters (``Line_Break=SA``) are also class *Other* in UAX #29 (it leaves real word
    breaks in them to a dictionary), so UAX #29 and this policy break such runs at every
    grapheme cluster: they never stall, at the price of splitting inside words.  ICU is not
    used.  The ``regex`` module differs from plain UAX #29 in a few places, and this policy
    follows it: no boundary between an apostrophe and a vowel (its elision tailoring,
    ``l'avion``), none after an unpaired regional indicator, none after combining marks at the
    very start of the held text.  Each only makes text wait a little longer.
``sentence``
    An approximation of UAX #29 sentence boundaries: before the first non-space after a
    paragraph separator (``\\n``, ``\\r``, U+0085, U+2028, U+2029), after an ``STerm``
    (``! ? 。 ！ ？`` ...) plus closing quotes/brackets plus optional spaces, or after an
    ``ATerm`` (``.``) plus closers plus at least one space when the next character is not a
    lowercase letter (``"e.g. this"``, ``"3.14"`` and ``"Wait... what"`` are not split).
``line``
    After each mandatory line break: ``\\n`` (``\\r\\n`` counts as one), a lone ``\\r``,
    ``\\v``, ``\\f``, U+0085, U+2028, U+2029.
custom
    A compiled pattern (``re`` or ``regex``, ``str`` patterns): a boundary at the end of every
    non-overlapping match (``finditer`` over the held text); the last match end that is a
    grapheme boundary, and not inside the last cluster, is used.  Or a callable receiving the
    held text and returning how many leading characters may be emitted; its answer is rounded
    down to a grapheme boundary.  Custom policies see the whole held text on every push (so
    cost O(held), held being bounded by ``hold_max_chars``).

Boundaries are judged on the held text (what was emitted is gone).  After a release forced by
the hold bound the word was split anyway; the next boundary may then differ from the one the
whole text would have had.
"""

from __future__ import annotations

import operator
import re
from bisect import bisect_right
from typing import Callable, Final, Literal

import regex

from .segment_tables import _cluster_starts, _safe_end

__all__ = ["BoundaryFn", "Mode", "Policy", "make_policy"]

Mode = Literal["word", "sentence", "line", "off"]
"""Names accepted by :func:`make_policy`; ``"off"`` means no buffering at all."""

BoundaryFn = Callable[[str], int]
"""A custom policy: given the held text, return the length of the prefix that may be emitted."""

_MODES: Final = ("word", "sentence", "line", "off")

_WORD: Final = 0
_SENTENCE: Final = 1
_LINE: Final = 2
_CUSTOM: Final = 3


class Policy:
    """An immutable, validated segmentation policy, shared by all segmenters built from it.

    Build with :func:`make_policy`.  ``name`` is ``"word"``, ``"sentence"``, ``"line"`` or
    ``"custom"``.
    """

    __slots__ = ("_fn", "_kind", "_pattern", "name")

    name: str
    _kind: int
    _pattern: re.Pattern[str] | regex.Pattern[str] | None
    _fn: BoundaryFn | None

    def __init__(
        self,
        name: str,
        kind: int,
        *,
        pattern: re.Pattern[str] | regex.Pattern[str] | None = None,
        fn: BoundaryFn | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        if self._pattern is not None:
            return f"Policy(custom, pattern={self._pattern.pattern!r})"
        if self._fn is not None:
            return f"Policy(custom, fn={self._fn!r})"
        return f"Policy({self.name})"

    def _custom_cut(self, b: str) -> int:
        """Emission point for a custom policy over the whole buffer ``b`` (non-empty)."""
        n = len(b)
        safe = _safe_end(b, 0)
        fn = self._fn
        if fn is not None:
            raw = fn(b)
            try:
                if isinstance(raw, bool):
                    raise TypeError
                p = operator.index(raw)
            except TypeError:
                raise TypeError(
                    f"segmentation callable {fn!r} must return an int, got {type(raw).__name__}"
                ) from None
            if not 0 <= p <= n:
                raise ValueError(
                    f"segmentation callable {fn!r} returned {raw!r} "
                    f"for a held text of {n} characters; expected 0..{n}"
                )
            if p >= safe:
                return safe
            if p <= 0:
                return 0
            starts = _cluster_starts(b)
            return starts[bisect_right(starts, p) - 1]
        assert self._pattern is not None
        ends: list[int] = [m.end() for m in self._pattern.finditer(b)]
        if not ends:
            return 0
        bounds = set(_cluster_starts(b))
        bounds.add(n)
        for e in reversed(ends):
            if 0 < e <= safe and e in bounds:
                return e
        return 0


WORD_POLICY: Final = Policy("word", _WORD)
SENTENCE_POLICY: Final = Policy("sentence", _SENTENCE)
LINE_POLICY: Final = Policy("line", _LINE)
_BUILTIN: Final = {"word": WORD_POLICY, "sentence": SENTENCE_POLICY, "line": LINE_POLICY}


def make_policy(
    mode: str | re.Pattern[str] | regex.Pattern[str] | BoundaryFn,
) -> Policy | None:
    """Validate a segmentation setting and build its :class:`Policy`.

    ``"word"``, ``"sentence"`` and ``"line"`` give shared built-in policies; ``"off"`` gives
    ``None`` (do not segment).  A compiled ``str`` pattern (``re`` or ``regex``) puts a boundary
    at the end of every match; a callable gets the held text and returns the length of the
    prefix that may be emitted.  Any other string raises :class:`ValueError`; any other type
    (including bytes patterns) raises :class:`TypeError`.
    """
    if isinstance(mode, str):
        if mode == "off":
            return None
        policy = _BUILTIN.get(mode)
        if policy is None:
            valid = ", ".join(repr(m) for m in _MODES)
            raise ValueError(
                f"unknown segmentation mode {mode!r}: expected one of {valid}, "
                "a compiled regular expression or a callable"
            )
        return policy
    if isinstance(mode, (re.Pattern, regex.Pattern)):
        if not isinstance(mode.pattern, str):
            raise TypeError(
                "segmentation pattern must be compiled from a str, not "
                f"{type(mode.pattern).__name__}: {mode.pattern!r}"
            )
        return Policy("custom", _CUSTOM, pattern=mode)
    if callable(mode) and not isinstance(mode, type):
        return Policy("custom", _CUSTOM, fn=mode)
    raise TypeError(
        "segmentation mode must be one of 'word', 'sentence', 'line', 'off', a compiled "
        f"regular expression or a callable taking the held text, got {type(mode).__name__}"
    )
