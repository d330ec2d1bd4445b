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

Policies:

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
import operator
import re
from bisect import bisect_right
from itertools import islice
from typing import Callable, Final, Literal

import regex

__all__ = ["BoundaryFn", "Mode", "Policy", "Segmenter", "make_policy"]

Mode = Literal["word", "sentence", "line", "off"]
"""Names accepted by :func:`make_policy`; ``"off"`` means no buffering at all."""

BoundaryFn = Callable[[str], int]
"""A custom policy: given the held text, return the length of the prefix that may be emitted."""

_MODES: Final = ("word", "sentence", "line", "off")

_WORD: Final = 0
_SENTENCE: Final = 1
_LINE: Final = 2
_CUSTOM: Final = 3

# After these a grapheme boundary and a word boundary are certain whatever follows
# (GB4 and WB3a: LF and Newline), so a buffer ending in one may be released whole.
_CLOSED: Final = "\n\x0b\x0c\x85\u2028\u2029"

# ---------------------------------------------------------------------------------------------
# Word policy, general path (regex).
#
# A position p (a grapheme boundary, 0 < p < len) is a word-policy boundary when
#   * UAX #29 says word boundary there (regex WORD flag: \b), and
#   * the code point at p is not whitespace, and
#   * either the code point before p is whitespace, or the code point at p is not closing /
#     terminal punctuation and not one of the UAX #29 Mid* / quote classes.
# The last two conditions also make the boundary final: UAX #29 word rules only look more
# than one code point ahead (WB6, WB7b, WB12) when the code point at p is MidLetter, MidNum,
# MidNumLet, Single_Quote or Double_Quote, and those are excluded; with whitespace before p no
# look-ahead rule applies at all.
_WORD_REJECT: Final = (
    r"\s\p{Pd}\p{Pe}\p{Pf}\p{Po}"
    r"\p{WB=MidLetter}\p{WB=MidNum}\p{WB=MidNumLet}\p{WB=Single_Quote}\p{WB=Double_Quote}"
)
_WORD_ACCEPT: Final = rf"\b(?:(?<=\s)(?!\s)|(?![{_WORD_REJECT}]))"

# Sentence policy (see the module docstring).  Every alternative looks at most at the code
# point right after the position, so the boundary is final too.  The first look-behind is a
# cheap one-character filter: most positions fail it at once.
_SENT_ACCEPT: Final = (
    r"(?=\S)(?<=[\s\p{SB=STerm}\p{SB=ATerm}\p{SB=Close}])(?:"
    r"(?<=[\n\r\x85\u2028\u2029]\s*)"
    r"|(?![\p{SB=SContinue}\p{SB=STerm}\p{SB=ATerm}])(?:"
    r"(?<=\p{SB=STerm}\p{SB=Close}*)(?!\p{SB=Close})"
    r"|(?<=\p{SB=STerm}\p{SB=Close}*\s+)"
    r"|(?<=\p{SB=ATerm}\p{SB=Close}*\s+)(?!\p{Ll})"
    r"))"
)
# A sentence boundary needs one of these before it (a terminator or a paragraph separator) ...
_SENT_TRIGGER: Final = regex.compile(r"[\p{SB=STerm}\p{SB=ATerm}\n\r\x85\u2028\u2029]")
# ... followed only by these (and whitespace).
_SENT_TAIL: Final = regex.compile(r"[\p{SB=STerm}\p{SB=ATerm}\p{SB=Close}\s]")


def _finder(accept: str) -> regex.Pattern[str]:
    """Compile the one-call search used by the general path.

    Matched from a known grapheme boundary ``g``: ``\\X*`` runs over whole clusters to the end
    and backtracks cluster by cluster, so group 1 ends at the rightmost grapheme boundary that
    satisfies ``accept`` and is not the end of the text (group 1 does not take part if there is
    none); the match then continues cluster by cluster and ends at the start of the last one.
    """
    return regex.compile(rf"(?:(\X*){accept}(?=\X))?(?:\X(?=\X))*", regex.WORD)


_FIND_WORD: Final = _finder(_WORD_ACCEPT)
_FIND_SENTENCE: Final = _finder(_SENT_ACCEPT)
_LAST_CLUSTER: Final = regex.compile(r"(?:\X(?=\X))*")
_CLUSTER: Final = regex.compile(r"\X")

# Line policy: no grapheme check needed, a cluster always ends after a mandatory break
# (GB4/GB5; CR LF is matched as a pair and a lone CR only when something else follows).
_LINE_ANY: Final = re.compile(r"[\n\r\x0b\x0c\x85\u2028\u2029]")
_LINE_LAST: Final = re.compile(r".*(?:\r\n|\r(?=[^\n])|[\n\x0b\x0c\x85\u2028\u2029])", re.DOTALL)


# ---------------------------------------------------------------------------------------------
# Word policy, ASCII path.  The character classes are derived from the same regex properties
# as the general path, and tests check both paths agree on every ASCII text they try.
def _ascii_chars(pattern: str) -> str:
    compiled = regex.compile(pattern)
    return "".join(c for c in map(chr, range(128)) if compiled.fullmatch(c))


_A_SPACE: Final = _ascii_chars(r"\s")
_A_REJECT: Final = _ascii_chars(rf"[{_WORD_REJECT}]")
_A_PUNCT: Final = "".join(c for c in _A_REJECT if c not in _A_SPACE)
_A_LETTER: Final = _ascii_chars(r"\p{WB=ALetter}")
_A_DIGIT: Final = _ascii_chars(r"\p{WB=Numeric}")
_A_JOIN: Final = _ascii_chars(r"[\p{WB=ALetter}\p{WB=Numeric}\p{WB=ExtendNumLet}]")
_A_MID_LETTER: Final = _ascii_chars(r"[\p{WB=MidLetter}\p{WB=MidNumLet}\p{WB=Single_Quote}]")
_A_MID_NUM: Final = _ascii_chars(r"[\p{WB=MidNum}\p{WB=MidNumLet}\p{WB=Single_Quote}]")
# The regex module tailors UAX #29 for elision (French/Italian "l'avion", "dell'anno"): no
# boundary between an apostrophe and a vowel.  Ask it which ASCII letters that covers.
_A_APOS_VOWEL: Final = "".join(
    c for c in _A_LETTER if 1 not in {m.start() for m in regex.finditer(r"\b", "'" + c, regex.WORD)}
)
_A_SENT_TRIGGER: Final = re.compile(f"[{re.escape(_ascii_chars(_SENT_TRIGGER.pattern))}]")
_A_SENT_TAIL: Final = _ascii_chars(_SENT_TAIL.pattern)

# Below U+0590 (Latin, Greek, Cyrillic, Armenian) every str.isalpha() character is UAX #29
# ALetter and grapheme class Other: runs of them join into one word, and a grapheme and word
# boundary always separates them from a preceding space.  (Verified exhaustively by the tests.)
_SIMPLE_ALPHA_END: Final = "\u0590"


def _joins(s: str) -> bool:
    """True if ``s`` is a non-empty run of characters with no word boundary inside.

    Also guarantees each character is a grapheme cluster of its own that a space or a letter
    before it cannot absorb.
    """
    if s.isascii():
        return s.isalnum()
    return s.isalpha() and max(s) < _SIMPLE_ALPHA_END


def _ascii_word_cut(b: str, lo: int) -> int:
    """Rightmost word-policy boundary ``p`` with ``max(lo, 1) <= p < len(b)``, else 0.

    ``b`` must be ASCII: then every position is a grapheme boundary except inside CR LF (never
    a candidate: the code point after a candidate is not whitespace).
    """
    p = len(b) - 1
    lo = max(lo, 1)
    while p >= lo:
        c = b[p]
        if c not in _A_SPACE:
            before = b[p - 1]
            if before in _A_SPACE:
                return p
            if c in _A_JOIN:
                if before not in _A_JOIN:
                    if p < 2:
                        return 0 if before == "'" and c in _A_APOS_VOWEL else p
                    prev = b[p - 2]
                    if c in _A_LETTER:
                        if (before != "'" or c not in _A_APOS_VOWEL) and (
                            before not in _A_MID_LETTER or prev not in _A_LETTER  # WB6/7
                        ):
                            return p
                    elif c in _A_DIGIT:
                        if before not in _A_MID_NUM or prev not in _A_DIGIT:  # WB11/12
                            return p
                    else:
                        return p
            elif c not in _A_REJECT:
                return p
        p -= 1
    return 0


# ---------------------------------------------------------------------------------------------
# Word policy, non-ASCII path: a per-code-point class, computed from the regex module's own
# Unicode properties on first sight and cached (a text uses a few thousand distinct characters
# at most).  A right-to-left scan over the new text decides the common cases; whatever it
# cannot decide for sure (emoji, regional indicators, Katakana, format controls, letters after
# combining marks ...) goes to the regex path.
_K_SPACE: Final = 1  # whitespace, grapheme Other, word WSegSpace/Other (" ", NBSP ...)
_K_SPACE_CTRL: Final = 2  # whitespace that is a control (\t \n \v \f \r U+0085 U+2028 U+2029)
_K_CONTROL: Final = 3  # other grapheme Control / CR / LF
_K_PREPEND: Final = 4  # grapheme Prepend: glues to what follows
_K_MARK: Final = 5  # grapheme Extend / SpacingMark / ZWJ: glues to what precedes
_K_WORDCH: Final = 6  # word ALetter / Hebrew_Letter / Numeric, grapheme Other/LV/LVT, not PUNCT
_K_PUNCT: Final = 7  # policy-rejected punctuation, word class Other, grapheme Other
_K_MIDPUNCT: Final = 8  # policy-rejected punctuation of another word class, grapheme Other
_K_START: Final = 9  # word Other, grapheme Other, not InCB consonant: always a boundary before
_K_OTHER: Final = 10  # anything else (emoji, regional indicators, Katakana, ...): undecided
_K_SPACE_ODD: Final = 11  # whitespace of another word class (U+202F): undecided

_P_SPACE: Final = regex.compile(r"\s")
_P_CONTROL: Final = regex.compile(r"[\p{GCB=Control}\p{GCB=CR}\p{GCB=LF}]")
_P_PREPEND: Final = regex.compile(r"\p{GCB=Prepend}")
_P_MARK: Final = regex.compile(r"[\p{GCB=Extend}\p{GCB=SpacingMark}\p{GCB=ZWJ}]")
_P_SPECIAL: Final = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]")
_P_WORDCH: Final = regex.compile(
    r"[[\p{WB=ALetter}\p{WB=Hebrew_Letter}\p{WB=Numeric}]&&[\p{GCB=Other}\p{GCB=LV}\p{GCB=LVT}]]",
    regex.V1,
)
_P_REJECT: Final = regex.compile(rf"[{_WORD_REJECT}]")
_P_WB_OTHER: Final = regex.compile(r"\p{WB=Other}")
_P_WB_SPACE: Final = regex.compile(r"[\p{WB=WSegSpace}\p{WB=Other}]")
_P_GCB_OTHER_LV: Final = regex.compile(r"[\p{GCB=Other}\p{GCB=LV}\p{GCB=LVT}]")
_P_GCB_OTHER: Final = regex.compile(r"\p{GCB=Other}")
_P_INCB_CONSONANT: Final = regex.compile(r"\p{InCB=Consonant}")

_KLASS: dict[str, int] = {}


def _classify(c: str) -> int:
    """The word-scan class of the code point ``c`` (cached)."""
    if _P_SPACE.match(c):
        if _P_CONTROL.match(c):
            k = _K_SPACE_CTRL
        elif _P_GCB_OTHER.match(c) and _P_WB_SPACE.match(c):
            k = _K_SPACE
        else:
            k = _K_SPACE_ODD  # U+202F is ExtendNumLet: it glues words together
    elif _P_CONTROL.match(c):
        k = _K_CONTROL
    elif _P_PREPEND.match(c):
        k = _K_PREPEND
    elif _P_MARK.match(c):
        k = _K_MARK
    elif _P_SPECIAL.match(c) or not _P_GCB_OTHER_LV.match(c):
        k = _K_OTHER
    elif _P_REJECT.match(c):
        if not _P_GCB_OTHER.match(c):
            k = _K_OTHER
        else:
            k = _K_PUNCT if _P_WB_OTHER.match(c) else _K_MIDPUNCT
    elif _P_WORDCH.match(c):
        k = _K_WORDCH
    elif _P_GCB_OTHER.match(c) and _P_WB_OTHER.match(c) and not _P_INCB_CONSONANT.match(c):
        k = _K_START
    else:
        k = _K_OTHER
    _KLASS[c] = k
    return k


_SIMPLE_LAST: Final = (_K_SPACE, _K_PUNCT, _K_MIDPUNCT, _K_START)


def _klass_word_cut(b: str, lo: int) -> int:
    """Like :func:`_ascii_word_cut` for any text, or -1 when the class scan cannot decide.

    Rules (``c`` is the code point at ``p``, ``before`` the one before; see the class notes):

    * whitespace ``c``: never a policy boundary;
    * START ``c``: a grapheme and word boundary after whitespace, WORDCH, punctuation,
      START and marks carried by one of those; undecided after Prepend (GB9b), other
      controls and OTHER;
    * WORDCH ``c``: no word boundary after WORDCH (WB5, WB8-10); a boundary after whitespace,
      plain punctuation or a START character; undecided otherwise (WB4, WB6/7, WB11/12, GB6);
    * punctuation ``c``: only after whitespace (a grapheme and word boundary there);
    * MARK ``c``: no grapheme boundary (GB9/GB9a), unless ``before`` is a control (GB4).
    """
    get = _KLASS.get
    p = len(b) - 1
    lo = max(lo, 1)
    if p < lo:
        return 0
    ch = b[p]
    k = get(ch) or _classify(ch)
    while p >= lo:
        ch = b[p - 1]
        kb = get(ch) or _classify(ch)
        if k == _K_START:
            if kb == _K_MARK:
                # The marks belong to the cluster before (GB9); the regex module keeps marks
                # at the start of the text with what follows them (WB4 at sot), so defer
                # unless a base character carries them.
                j = p - 2
                while j >= 0 and (get(b[j]) or _classify(b[j])) == _K_MARK:
                    j -= 1
                if j < 0:
                    return -1
                kb = get(b[j]) or _classify(b[j])
                if kb == _K_CONTROL or kb == _K_SPACE_CTRL:
                    return -1
            if kb == _K_PREPEND or kb == _K_OTHER or kb == _K_CONTROL:
                # Prepend glues (GB9b); after emoji, regional indicators, format controls
                # etc. the regex module has its own views (no boundary after an unpaired
                # indicator, a format control at the start of the text glues like a mark).
                return -1
            return p
        if k == _K_WORDCH:
            if kb != _K_WORDCH:
                if kb in (_K_SPACE, _K_SPACE_CTRL, _K_PUNCT, _K_START):
                    return p
                return -1
        elif k == _K_PUNCT or k == _K_MIDPUNCT:
            if kb == _K_SPACE or kb == _K_SPACE_CTRL:
                return p
            if kb == _K_SPACE_ODD:
                return -1
        elif k == _K_MARK:
            if kb == _K_SPACE_CTRL or kb == _K_CONTROL:
                return -1
        elif k != _K_SPACE and k != _K_SPACE_CTRL:
            return -1
        k = kb
        p -= 1
    return 0


def _quick_last(b: str) -> int:
    """Start of the last grapheme cluster of ``b`` if cheaply certain, else -1."""
    n = len(b)
    if b.isascii():
        return n - 2 if b.endswith("\r\n") else n - 1
    get = _KLASS.get
    ch = b[-1]
    if (get(ch) or _classify(ch)) not in _SIMPLE_LAST:
        return -1
    if n == 1:
        return 0
    ch = b[-2]
    return -1 if (get(ch) or _classify(ch)) == _K_PREPEND else n - 1


def _is_cjk_single(c: str) -> bool:
    """One Han ideograph (URO or extension A) or Hiragana letter: word class Other, no clusters."""
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or "\u3041" <= c <= "\u3096"


def _last_start(b: str, g: int) -> int:
    """Start of the last grapheme cluster of ``b``, scanning from the known boundary ``g``."""
    if b.isascii():
        return len(b) - 2 if b.endswith("\r\n") else len(b) - 1
    end: int = _LAST_CLUSTER.match(b, g).end()
    return end


def _safe_end(b: str, g: int) -> int:
    """How much of the non-empty ``b`` can go without risking a split: all of it if it ends in a
    mandatory break, else up to the start of its last grapheme cluster."""
    if b[-1] in _CLOSED:
        return len(b)
    return _last_start(b, g)


def _cluster_starts(b: str) -> list[int]:
    return [m.start() for m in _CLUSTER.finditer(b)]


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
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
        "_kind",
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
    _kind: int
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
        if cls is Segmenter and isinstance(policy, Policy) and policy._kind == _WORD:
            cls = _WordSegmenter
        return object.__new__(cls)

    def __init__(
        self,
        policy: Policy,
        *,
        hold_max_seconds: float = 0.15,
        hold_max_chars: int = 256,
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"policy must be a Policy from make_policy(), got {type(policy).__name__}"
            )
        if isinstance(hold_max_seconds, bool) or not isinstance(hold_max_seconds, (int, float)):
            raise TypeError(
                f"hold_max_seconds must be a number, got {type(hold_max_seconds).__name__}"
            )
        if math.isnan(hold_max_seconds) or hold_max_seconds < 0:
            raise ValueError(f"hold_max_seconds must be >= 0, got {hold_max_seconds!r}")
        if isinstance(hold_max_chars, bool) or not isinstance(hold_max_chars, int):
            raise TypeError(f"hold_max_chars must be an int, got {type(hold_max_chars).__name__}")
        if hold_max_chars < 1:
            raise ValueError(f"hold_max_chars must be >= 1, got {hold_max_chars!r}")
        self.policy = policy
        self._kind = policy._kind
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
        b = held + text if nh else text
        kind = self._kind
        if kind == _SENTENCE:
            if b[-1] in _CLOSED:
                return self._commit(b, nh, len(b), -1, now)
            if text.isascii():
                quiet = _A_SENT_TRIGGER.search(text) is None
            else:
                quiet = _SENT_TRIGGER.search(text) is None
            if quiet and nh:
                before = held[-1]
                quiet = (
                    before not in _A_SENT_TAIL
                    if before.isascii()
                    else _SENT_TAIL.match(before) is None
                )
            if quiet:
                # No terminator in the new text, none pending at the end of the held text.
                return self._commit(b, nh, 0, _quick_last(b), now)
            m = _FIND_SENTENCE.match(b, self._g)
            return self._commit(b, nh, max(m.end(1), 0), m.end(), now)
        if kind == _LINE:
            p = 0
            if _LINE_ANY.search(text) is not None or held.endswith("\r"):
                lm = _LINE_LAST.match(b, max(nh - 1, 0))
                if lm is not None:
                    p = lm.end()
            return self._commit(b, nh, p, -1, now)
        if kind == _WORD:  # only reached when a subclass delegates here
            return self._word_general(b, nh, now)
        try:
            p = self.policy._custom_cut(b)
        except BaseException:
            # Keep the text: the caller may still flush() it.
            self._commit(b, nh, 0, -1, now, bound=False)
            raise
        return self._commit(b, nh, p, -1, now)

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

    # -- internals -----------------------------------------------------------------------------
    def _reset(self) -> None:
        self._held = ""
        self._g = 0
        if self._marks:
            self._marks = []

    def _record(self, wait: float) -> None:
        if wait > self.hold_max:
            self.hold_max = wait
        self.hold_sum += wait
        self.hold_count += 1

    def _arrival(self, p: int) -> float:
        """Arrival time of ``held[p]`` for ``p < len(held)``."""
        t = self._t0
        for offset, arrived in self._marks:
            if offset > p:
                break
            t = arrived
        return t

    def _word_general(self, b: str, nh: int, now: float) -> str:
        """Word policy on the buffer ``b`` without shape shortcuts: ASCII scan, class scan,
        regex."""
        if b.isascii():
            return self._commit(b, nh, _ascii_word_cut(b, nh), len(b) - 1, now)
        p = _klass_word_cut(b, nh)
        if p >= 0:
            return self._commit(b, nh, p, -1, now)
        m = _FIND_WORD.match(b, self._g)
        return self._commit(b, nh, max(m.end(1), 0), m.end(), now)

    def _commit(self, b: str, nh: int, p: int, last: int, now: float, *, bound: bool = True) -> str:
        """Apply the hold bounds to the policy's choice ``p`` and move to the new state.

        ``b`` is the whole buffer (old held text, ``nh`` characters, plus the new text),
        ``p`` the policy's emission point, ``last`` the start of the last cluster of ``b``
        if known (else -1).
        """
        n = len(b)
        if bound and p < n:
            t = now if p >= nh else self._arrival(p)
            if n - p > self._max_chars or now >= t + self._hold_s:
                if last < 0:
                    last = _last_start(b, self._g)
                q = n if b[-1] in _CLOSED else last
                if q > p:
                    p = q
        if p <= 0:
            if nh:
                if n > nh:
                    self._marks.append((nh, now))
            else:
                self._t0 = now
            self._held = b
            if last >= 0:
                self._g = last
            return ""
        if nh:
            wait = now - self._t0
            if wait > self.hold_max:
                self.hold_max = wait
            self.hold_sum += wait
        self.hold_count += 1
        if p >= nh:
            self._t0 = now
            if self._marks:
                self._marks = []
        else:
            self._t0 = self._arrival(p)
            marks = [(offset - p, t) for offset, t in self._marks if offset > p]
            if n > nh:
                marks.append((nh - p, now))
            self._marks = marks
        self._held = b[p:]
        self._g = last - p if last >= p else 0
        return b[:p]


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
    """The word policy, with shortcuts for the shapes most deltas have."""

    __slots__ = ()

    def push(self, text: str, now: float) -> str:
        """Add ``text`` (arrived at ``now``) and return what may be emitted now (maybe ``""``)."""
        held = self._held
        # Most deltas are a few tokens a model emits over and over (" the", " (", "ing to"). For
        # those whose cut does not depend on the held text, the cut is cached: one dict lookup.
        hit = _CUTS.get(text)
        if hit is not None:
            head, rest, n = hit
            if n <= self._room:
                if held:
                    wait = now - self._t0
                    if wait > self.hold_max:
                        self.hold_max = wait
                    self.hold_sum += wait
                    if self._marks:
                        self._marks = []
                    out = held + head
                else:
                    out = head
                self.hold_count += 1
                self._held = rest
                self._t0 = now
                self._g = n - 1
                return out
        # Then the two shapes most deltas have, with as few calls as possible.
        i = text.rfind(" ")
        if text.isascii():
            if i >= 0:
                rest = text[i + 1 :]
                if rest.isalnum():
                    # "... <letters/digits>": the rightmost boundary is after that space,
                    # whatever was held (so the cut is cached: this runs on first sight).
                    if len(text) <= _CUTS_MAX_CHARS:
                        _remember_cut(text, i + 1)
                    return self._split(held, text, i + 1, rest, now)
                if text[-1] in "\n\x0b\x0c":
                    # Ends in a mandatory break: everything goes (no copy if nothing was held).
                    return self._all(held, text, now)
            elif not text:
                return self.poll(now) if held else ""
            elif text.isalnum():
                if held:
                    # Only the seam can be a boundary: the new text is one word.
                    before = held[-1]
                    if before in _A_SPACE:
                        # Whitespace, then letters: a boundary.
                        return self._split(held, "", 0, text, now)
                    if before in _A_JOIN or (before.isalpha() and before < _SIMPLE_ALPHA_END):
                        # The word goes on ("instrument" + "ation"): hold it all, unless a
                        # bound says otherwise (then _commit decides).
                        b = held + text
                        nb = len(b)
                        if nb <= self._max_chars and now < self._t0 + self._hold_s:
                            self._marks.append((len(held), now))
                            self._held = b
                            self._g = nb - 1
                            return ""
                        return self._commit(b, len(held), 0, nb - 1, now)
            elif text[-1] in "\n\x0b\x0c":
                return self._all(held, text, now)
            elif len(text) == 1 and text in _A_PUNCT and held and held.isascii():
                if held[-1] not in _A_SPACE:
                    # "word" + ",": the only candidate, the seam, is rejected by the policy.
                    b = held + text
                    nb = len(b)
                    if nb <= self._max_chars and now < self._t0 + self._hold_s:
                        self._marks.append((len(held), now))  # _commit(b, nh, 0, ...) inlined
                        self._held = b
                        self._g = nb - 1
                        return ""
                    return self._commit(b, len(held), 0, nb - 1, now)
        else:
            if text[-1] in _CLOSED:
                return self._all(held, text, now)
            if len(text) == 1:
                if held and (
                    "\u4e00" <= text <= "\u9fff"
                    or "\u3041" <= text <= "\u3096"
                    or "\u3400" <= text <= "\u4dbf"
                ):
                    before = held[-1]
                    if before.isascii() or _is_cjk_single(before):
                        # Every Han / Hiragana character has a grapheme and a word boundary
                        # before it after these (nothing to glue them: no Prepend, no mark).
                        return self._split(held, "", 0, text, now)
            else:
                i = text.rfind(" ")
                if 0 <= i < len(text) - 1:
                    rest = text[i + 1 :]
                    if rest.isalnum() if rest.isascii() else _joins(rest):
                        return self._split(held, text, i + 1, rest, now)
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
                return self._split(held, text, p - nh, b[p:], now)
            return self._commit(b, nh, p, n - 1, now)
        p = _klass_word_cut(b, nh)
        if p >= 0:
            return self._commit(b, nh, p, -1, now)
        m = _FIND_WORD.match(b, self._g)
        return self._commit(b, nh, max(m.end(1), 0), m.end(), now)

    def _all(self, held: str, text: str, now: float) -> str:
        """Emit everything: the new text ends in a mandatory break."""
        if held:
            self._record(now - self._t0)
            self._reset()
            return held + text
        self.hold_count += 1
        return text

    def _split(self, held: str, text: str, k: int, rest: str, now: float) -> str:
        """Emit ``held + text[:k]`` and hold ``rest`` (== ``text[k:]``, or the whole new text
        when ``text`` is empty): each character of ``rest`` is a cluster of its own that
        nothing before can absorb, so its last character starts its last cluster."""
        if len(rest) > self._max_chars or self._hold_s <= 0:
            nh = len(held)
            b = held + text if text else held + rest
            return self._commit(b, nh, nh + k, len(b) - 1, now)
        if held:
            wait = now - self._t0
            if wait > self.hold_max:
                self.hold_max = wait
            self.hold_sum += wait
            if self._marks:
                self._marks = []
            out = held + text[:k] if k else held
        else:
            out = text[:k]
        self.hold_count += 1
        self._held = rest
        self._t0 = now
        self._g = len(rest) - 1
        return out
