"""Word-boundary buffering: the pure core.

A :class:`Segmenter` sits on one text channel of one choice of one stream.  Each arriving
delta is :meth:`~Segmenter.push`-ed; what comes back may be shown to the caller now, the rest
is held until a later delta shows where it ends.  Nothing here knows about the SDK.

The promises, for every input and every way of splitting it into deltas:

* Lossless: ``"".join(outputs) + seg.flush() == "".join(inputs)``.
* Grapheme-safe: every emission point is an extended grapheme cluster boundary (UAX #29) of the
  full text, so no emitted piece ends inside a cluster and no later piece starts with a code
  point that would have extended it.  That is why the last cluster of the buffer is always
  held: the next code point may extend it (ZWJ emoji sequences, flags, skin tones, combining
  marks, Hangul jamo, CR LF, variation selectors).  The one exception is a buffer ending in a
  line feed or another mandatory break (``\\n \\v \\f U+0085 U+2028 U+2029``): UAX #29 always
  breaks graphemes and words after those, whatever follows, so such a buffer is released whole
  (a ``line`` buffer does not wait one more delta for its newline to be confirmed).
* Policy boundaries are final: a position is only ever chosen if the text up to and including
  the code point right after it decides it, so later text cannot turn it into a non-boundary
  (``"don"`` + ``"'t"`` is never emitted as ``"don"``).
* Bounded hold: text waits at most ``hold_max_seconds`` (given a timely :meth:`~Segmenter.poll`)
  and the buffer never exceeds ``hold_max_chars``; past either bound the buffer is released up
  to its last grapheme boundary, so CJK, URLs, base64 and code never stall.  Only the last
  grapheme cluster may stay longer (nothing can be released without risking a split).

How a held text may be cut is the :class:`~._segment_policy.Policy`'s business (``word``,
``sentence``, ``line`` or custom: see :mod:`._segment_policy`); the character tables and scans
the policies use are in :mod:`._segment_tables`.  This module owns the held text, its arrival
times, the two bounds and the hold statistics: one subclass of :class:`Segmenter` per kind of
policy.

``hold_max_seconds=0`` releases all but the last cluster at every push; ``math.inf``
disables the time bound.

Performance (the word policy is on the per-chunk hot path): amortized O(len(new text)) per
push for the built-in policies, plus one copy of the held text (``held + new``, bounded by
``hold_max_chars``).  The common shapes are decided with ``str`` methods only: a delta ending
in ``\\n`` (returned as is when nothing is held); a tail after the delta's last space that is
one run of letters/digits (``" the"``, ``" 2024"``, ``" мир"``); a delta continuing a word
(``"ation"``); one punctuation character after a word; a single Han / Hiragana character.
Other ASCII buffers are scanned right to left with character-class tables; other text with a
per-code-point class computed from the ``regex`` module's own Unicode properties on first
sight (cached); whatever that scan cannot decide for sure (emoji sequences, regional
indicators, Katakana, letters after marks ...) takes one compiled ``regex`` match that starts
at the last cluster of the held text.  Tests check every shortcut against the regex path.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Final

from .segment_policy import _CUSTOM, _LINE, _SENTENCE, _WORD, BoundaryFn, Mode, Policy, make_policy
from .segment_tables import (
    _A_JOIN,
    _A_PUNCT,
    _A_SPACE,
    _CLOSED,
    _SIMPLE_ALPHA_END,
    _ascii_word_cut,
    _find_sentence,
    _find_word,
    _is_cjk_single,
    _joins,
    _klass_word_cut,
    _last_start,
    _line_any,
    _line_last,
    _no_sentence_end,
    _quick_last,
)
from .segment_tables import _FIND_WORD as _FIND_WORD  # re-exported: the tests check against it

__all__ = ["BoundaryFn", "Mode", "Policy", "Segmenter", "make_policy"]


class Segmenter:
    """Holds back the unfinished tail of one text channel and releases it at boundaries.

    ``Segmenter(policy, ...)`` returns an instance of a private subclass specialised for the
    policy (the word policy has its own hot path); all share this interface.

    Not thread-safe (it needs not be: one stream feeds it from one task or thread).  ``now``
    is any monotonic clock in seconds (``time.perf_counter()``); it only has to be consistent
    across calls.

    Attributes ``hold_max``, ``hold_sum`` and ``hold_count`` accumulate, over emissions, how
    long the oldest character of each emitted piece waited (``now`` minus its arrival).
    """

    __slots__ = (
        "_g",
        "_held",
        "_hold_s",
        "_marks",
        "_max_chars",
        "_room",
        "_t0",
        "hold_count",
        "hold_max",
        "hold_sum",
        "policy",
    )

    policy: Policy
    hold_max: float
    hold_sum: float
    hold_count: int
    _hold_s: float
    _max_chars: int
    _room: int
    _held: str
    _t0: float
    _marks: list[tuple[int, float]]
    _g: int

    def __new__(
        cls,
        policy: Policy,
        *,
        hold_max_seconds: float = 0.15,
        hold_max_chars: int = 256,
    ) -> Segmenter:
        if cls is Segmenter and isinstance(policy, Policy):
            cls = _SEGMENTER_OF_KIND[policy._kind]
        return object.__new__(cls)

    def __init__(
        self,
        policy: Policy,
        *,
        hold_max_seconds: float = 0.15,
        hold_max_chars: int = 256,
    ) -> None:
        _check_arguments(policy, hold_max_seconds, hold_max_chars)
        self.policy = policy
        self._hold_s = float(hold_max_seconds)
        self._max_chars = hold_max_chars
        # The longest word the hot path may hold back (-1: none, when nothing may wait).
        self._room = hold_max_chars if self._hold_s > 0 else -1
        self._held = ""
        self._t0 = 0.0  # arrival time of held[0]
        self._marks = []  # (offset in held, arrival time) of later pieces still held
        self._g = 0  # a grapheme boundary in held, at or before the start of its last cluster
        self.hold_max = 0.0
        self.hold_sum = 0.0
        self.hold_count = 0

    def __repr__(self) -> str:
        return (
            f"<Segmenter {self.policy.name} held={self._held!r} "
            f"hold_max_seconds={self._hold_s} hold_max_chars={self._max_chars}>"
        )

    # -- read-only state -----------------------------------------------------------------------
    @property
    def hold_max_seconds(self) -> float:
        """The time bound: no text waits longer, except the buffer's last grapheme cluster."""
        return self._hold_s

    @property
    def hold_max_chars(self) -> int:
        """The size bound: the buffer never holds more, except when it is one grapheme cluster."""
        return self._max_chars

    @property
    def held(self) -> str:
        """The text received but not yet emitted."""
        return self._held

    @property
    def held_chars(self) -> int:
        """``len(held)``, in code points."""
        return len(self._held)

    @property
    def deadline(self) -> float | None:
        """When :meth:`poll` would release something, or ``None`` if it would not at any time.

        ``None`` when nothing is held, when the held text is a single grapheme cluster (only
        more text or :meth:`flush` can release it) or when the time bound is infinite.  An
        async shell arms a timer for this time and calls ``poll()`` when it fires; after any
        push/poll the value may change, so re-read it then.
        """
        held = self._held
        if not held or self._hold_s == math.inf:
            return None
        if held[-1] not in _CLOSED:
            if len(held) == 1:
                return None
            last = _quick_last(held)
            if last < 0:
                last = _last_start(held, self._g)
            if last == 0:
                return None
        return self._t0 + self._hold_s

    # -- operations ----------------------------------------------------------------------------
    def push(self, text: str, now: float) -> str:
        """Add ``text`` (arrived at ``now``) and return what may be emitted now (maybe ``""``)."""
        held = self._held
        if not text:
            return self.poll(now) if held else ""
        nh = len(held)
        return self._cut(held + text if nh else text, nh, text, now)

    def poll(self, now: float) -> str:
        """No new text: release what the time bound says must go by ``now`` (else ``""``).

        Releases up to the last grapheme boundary when the oldest held character has waited
        ``hold_max_seconds`` or more.
        """
        held = self._held
        if not held or now < self._t0 + self._hold_s:
            return ""
        return self._commit(held, len(held), 0, -1, now)

    def flush(self, now: float | None = None) -> str:
        """Release everything held (on finish, error, close, before a tool call ...).

        If ``now`` is given the emission is counted in the hold statistics.
        """
        held = self._held
        if held:
            if now is not None:
                self._record(now - self._t0)
            self._reset()
        return held

    def discard(self) -> str:
        """Drop the held text and return it (it was never emitted, e.g. before a resume)."""
        held = self._held
        if held:
            self._reset()
        return held

    def restore(self, text: str, now: float) -> None:
        """Hold ``text`` again (what :meth:`discard` returned), arrived ``now``; nothing may be
        held. Only :meth:`flush` or more text release it as usual."""
        if self._held:
            raise ValueError("restore() needs an empty buffer")
        self._held = text
        self._t0 = now
        self._g = 0

    # -- internals -----------------------------------------------------------------------------
    def _cut(self, b: str, nh: int, text: str, now: float) -> str:  # pragma: no cover
        """The policy's step (each kind has its own): ``b`` is the held text (``nh``
        characters) plus the new, non-empty ``text``."""
        raise NotImplementedError

    def _record(self, wait: float) -> None:
        """Count one emission whose oldest character waited ``wait`` seconds: the one place the
        hold statistics change."""
        if wait > self.hold_max:
            self.hold_max = wait
        self.hold_sum += wait
        self.hold_count += 1

    def _reset(self) -> None:
        self._held = ""
        self._g = 0
        if self._marks:
            self._marks = []

    def _arrival(self, p: int) -> float:
        """Arrival time of ``held[p]`` for ``p < len(held)``."""
        t = self._t0
        for offset, arrived in self._marks:
            if offset > p:
                break
            t = arrived
        return t

    def _commit(self, b: str, nh: int, p: int, last: int, now: float) -> str:
        """Apply the hold bounds to the policy's choice ``p`` and move to the new state.

        ``b`` is the whole buffer (old held text, ``nh`` characters, plus the new text),
        ``p`` the policy's emission point, ``last`` the start of the last cluster of ``b``
        if known (else -1).
        """
        n = len(b)
        if p < n:
            t = now if p >= nh else self._arrival(p)
            if n - p > self._max_chars or now >= t + self._hold_s:
                if last < 0:
                    last = _last_start(b, self._g)
                q = n if b[-1] in _CLOSED else last
                if q > p:
                    p = q
        if p <= 0:
            self._keep(b, nh, last, now)
            return ""
        return self._emit(b, nh, p, last, now)

    def _keep(self, b: str, nh: int, last: int, now: float) -> None:
        """Hold all of ``b`` (the new text, from ``nh`` on, arrived ``now``)."""
        if nh:
            if len(b) > nh:
                self._marks.append((nh, now))
        else:
            self._t0 = now
        self._held = b
        if last >= 0:
            self._g = last

    def _emit(self, b: str, nh: int, p: int, last: int, now: float) -> str:
        """Return ``b[:p]`` (``p > 0``) and hold the rest with the arrival times it keeps."""
        self._record(now - self._t0 if nh else 0.0)
        if p >= nh:
            self._t0 = now
            if self._marks:
                self._marks = []
        else:
            self._t0 = self._arrival(p)
            marks = [(offset - p, t) for offset, t in self._marks if offset > p]
            if len(b) > nh:
                marks.append((nh - p, now))
            self._marks = marks
        self._held = b[p:]
        self._g = last - p if last >= p else 0
        return b[:p]


def _check_arguments(policy: Policy, hold_max_seconds: float, hold_max_chars: int) -> None:
    """Raise ``TypeError`` / ``ValueError`` for a bad :class:`Segmenter` argument."""
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a Policy from make_policy(), got {type(policy).__name__}")
    if isinstance(hold_max_seconds, bool) or not isinstance(hold_max_seconds, (int, float)):
        raise TypeError(f"hold_max_seconds must be a number, got {type(hold_max_seconds).__name__}")
    if math.isnan(hold_max_seconds) or hold_max_seconds < 0:
        raise ValueError(f"hold_max_seconds must be >= 0, got {hold_max_seconds!r}")
    if isinstance(hold_max_chars, bool) or not isinstance(hold_max_chars, int):
        raise TypeError(f"hold_max_chars must be an int, got {type(hold_max_chars).__name__}")
    if hold_max_chars < 1:
        raise ValueError(f"hold_max_chars must be >= 1, got {hold_max_chars!r}")


class _SentenceSegmenter(Segmenter):
    """The sentence policy: a terminator or a paragraph separator makes the regex path run."""

    __slots__ = ()

    def _cut(self, b: str, nh: int, text: str, now: float) -> str:
        if b[-1] in _CLOSED:
            return self._commit(b, nh, len(b), -1, now)
        if _no_sentence_end(self._held, text):
            return self._commit(b, nh, 0, _quick_last(b), now)
        m = _find_sentence(b, self._g)
        return self._commit(b, nh, max(m.end(1), 0), m.end(), now)


class _LineSegmenter(Segmenter):
    """The line policy: after the last mandatory break, looked for only in the new text."""

    __slots__ = ()

    def _cut(self, b: str, nh: int, text: str, now: float) -> str:
        p = 0
        if _line_any(text) is not None or self._held.endswith("\r"):
            lm = _line_last(b, max(nh - 1, 0))
            if lm is not None:
                p = lm.end()
        return self._commit(b, nh, p, -1, now)


class _CustomSegmenter(Segmenter):
    """A user's pattern or callable, asked about the whole held text on every push."""

    __slots__ = ()

    def _cut(self, b: str, nh: int, text: str, now: float) -> str:
        try:
            p = self.policy._custom_cut(b)
        except BaseException:
            # Keep the text: the caller may still flush() it.
            self._keep(b, nh, -1, now)
            raise
        return self._commit(b, nh, p, -1, now)


# text -> (text[:k], text[k:], len(text) - k): the word policy's cut k of a delta that does not
# depend on what is held before it. Shared by every stream (str keys, atomic dict operations).
_CUTS: dict[str, tuple[str, str, int]] = {}
_CUTS_MAX_ENTRIES: Final = 8192
_CUTS_MAX_CHARS: Final = 32


def _remember_cut(text: str, k: int) -> None:
    """Cache the cut ``k`` of ``text`` (an ASCII delta whose cut holds after any held text)."""
    if text.isprintable():
        if len(_CUTS) >= _CUTS_MAX_ENTRIES:
            # Forget the older half (dicts keep insertion order): a text seen lately stays.
            for old in list(islice(_CUTS, _CUTS_MAX_ENTRIES // 2)):
                _CUTS.pop(old, None)
        rest = text[k:]
        _CUTS[text] = (text[:k], rest, len(rest))


class _WordSegmenter(Segmenter):
    """The word policy, with shortcuts for the shapes most deltas have.

    Each shortcut returns ``None`` when the delta is not its shape; :meth:`_scan` then decides
    on the whole buffer.  Tests check every shortcut against the regex path.
    """

    __slots__ = ()

    def push(self, text: str, now: float) -> str:
        """Add ``text`` (arrived at ``now``) and return what may be emitted now (maybe ``""``)."""
        # Most deltas are a few tokens a model emits over and over (" the", " (", "ing to"). For
        # those whose cut does not depend on the held text, the cut is cached: one dict lookup.
        hit = _CUTS.get(text)
        if hit is not None and hit[2] <= self._room:
            held = self._held
            return self._hold_tail(held + hit[0] if held else hit[0], hit[1], now)
        out = self._ascii_shape(text, now) if text.isascii() else self._unicode_shape(text, now)
        return self._scan(text, now) if out is None else out

    def _ascii_shape(self, text: str, now: float) -> str | None:
        """The common ASCII deltas: ``" word"``, ``"word"``, ``","`` and ``"...\\n"``."""
        i = text.rfind(" ")
        if i >= 0:
            rest = text[i + 1 :]
            if rest.isalnum():
                # "... <letters/digits>": the rightmost boundary is after that space,
                # whatever was held (so the cut is cached: this runs on first sight).
                if len(text) <= _CUTS_MAX_CHARS:
                    _remember_cut(text, i + 1)
                return self._split(text, i + 1, rest, now)
        elif not text:
            return self.poll(now) if self._held else ""
        elif text.isalnum():
            return self._after_held(text, now) if self._held else None
        elif len(text) == 1 and text in _A_PUNCT:
            return self._punctuation(text, now)
        if text[-1] in "\n\x0b\x0c":
            # Ends in a mandatory break: everything goes (no copy if nothing was held).
            return self._all(text, now)
        return None

    def _after_held(self, text: str, now: float) -> str | None:
        """``text`` is one ASCII word: only the seam with the held text can be a boundary."""
        held = self._held
        before = held[-1]
        if before in _A_SPACE:
            # Whitespace, then letters: a boundary.
            return self._split("", 0, text, now)
        if before in _A_JOIN or (before.isalpha() and before < _SIMPLE_ALPHA_END):
            # The word goes on ("instrument" + "ation"): hold it all.
            return self._hold_word(held + text, len(held), now)
        return None

    def _punctuation(self, text: str, now: float) -> str | None:
        """One ASCII punctuation character: ``"word"`` + ``","`` has no boundary at the seam,
        the only candidate (the policy rejects it)."""
        held = self._held
        if held and held.isascii() and held[-1] not in _A_SPACE:
            return self._hold_word(held + text, len(held), now)
        return None

    def _unicode_shape(self, text: str, now: float) -> str | None:
        """The common non-ASCII deltas: ``"...\\n"``, one Han / Hiragana character, ``" мир"``."""
        if text[-1] in _CLOSED:
            return self._all(text, now)
        if len(text) == 1:
            held = self._held
            if held and _is_cjk_single(text):
                before = held[-1]
                if before.isascii() or _is_cjk_single(before):
                    # Every Han / Hiragana character has a grapheme and a word boundary
                    # before it after these (nothing to glue them: no Prepend, no mark).
                    return self._split("", 0, text, now)
            return None
        i = text.rfind(" ")
        if 0 <= i < len(text) - 1:
            rest = text[i + 1 :]
            if rest.isalnum() if rest.isascii() else _joins(rest):
                return self._split(text, i + 1, rest, now)
        return None

    def _scan(self, text: str, now: float) -> str:
        """No shortcut applies: scan the whole buffer (ASCII tables, class memo, then regex)."""
        held = self._held
        nh = len(held)
        b = held + text if nh else text
        if b.isascii():
            p = _ascii_word_cut(b, nh)
            n = len(b)
            if p >= nh and p > 0 and n - p <= self._room:
                if text[0] == " " and len(text) <= _CUTS_MAX_CHARS:
                    # The seam is no boundary (a space follows it) and the cut sees only the
                    # new text's characters: the same cut whatever is held.
                    _remember_cut(text, p - nh)
                # The cut is in the new text and the rest may wait: no bound checks needed
                # (the rest arrived just now and fits).
                return self._split(text, p - nh, b[p:], now)
            return self._commit(b, nh, p, n - 1, now)
        p = _klass_word_cut(b, nh)
        if p >= 0:
            return self._commit(b, nh, p, -1, now)
        m = _find_word(b, self._g)
        return self._commit(b, nh, max(m.end(1), 0), m.end(), now)

    # -- state moves of the shortcuts (each a special case of Segmenter._commit) ----------------
    def _all(self, text: str, now: float) -> str:
        """Emit everything: the new text ends in a mandatory break."""
        held = self._held
        if held:
            self._record(now - self._t0)
            self._reset()
            return held + text
        self._record(0.0)
        return text

    def _split(self, text: str, k: int, rest: str, now: float) -> str:
        """Emit the held text + ``text[:k]`` and hold ``rest`` (== ``text[k:]``, or the whole
        new text when ``text`` is empty): each character of ``rest`` is a cluster of its own
        that nothing before can absorb, so its last character starts its last cluster."""
        held = self._held
        if len(rest) > self._max_chars or self._hold_s <= 0:
            nh = len(held)
            b = held + text if text else held + rest
            return self._commit(b, nh, nh + k, len(b) - 1, now)
        if held:
            return self._hold_tail(held + text[:k] if k else held, rest, now)
        return self._hold_tail(text[:k], rest, now)

    def _hold_tail(self, out: str, rest: str, now: float) -> str:
        """Return ``out`` (all the held text and the new text's head) and hold ``rest``, which
        arrived ``now`` and fits the bounds; its last character starts its last cluster."""
        self._record(now - self._t0 if self._held else 0.0)
        if self._marks:
            self._marks = []
        self._held = rest
        self._t0 = now
        self._g = len(rest) - 1
        return out

    def _hold_word(self, b: str, nh: int, now: float) -> str:
        """Hold all of ``b`` (no boundary in it, its last character starts its last cluster),
        unless a bound says otherwise (then :meth:`_commit` decides)."""
        nb = len(b)
        if nb <= self._max_chars and now < self._t0 + self._hold_s:
            self._keep(b, nh, nb - 1, now)
            return ""
        return self._commit(b, nh, 0, nb - 1, now)


_SEGMENTER_OF_KIND: Final[dict[int, type[Segmenter]]] = {
    _WORD: _WordSegmenter,
    _SENTENCE: _SentenceSegmenter,
    _LINE: _LineSegmenter,
    _CUSTOM: _CustomSegmenter,
}
