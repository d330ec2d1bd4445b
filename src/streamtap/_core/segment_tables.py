"""Word-boundary buffering: the boundary tables and scans (pure, no state).

What :mod:`._segment`'s segmenters ask about a buffer, without holding any of it: the compiled
``regex`` finders of the word and sentence policies, the line policy's patterns, the ASCII
character-class tables and the per-code-point class memo of the word policy's fast scans
(:func:`_ascii_word_cut`, :func:`_klass_word_cut`), and where the last grapheme cluster of a
buffer starts.  Every class is derived from the ``regex`` module's own Unicode properties, and
tests check each fast scan against the regex path.
"""

from __future__ import annotations

import re
from typing import Final

import regex

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

# Sentence policy (see ._segment_policy).  Every alternative looks at most at the code
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

# The segmenters call these through bound methods: CPython 3.11 compiles ``name.method(...)``
# without LOAD_METHOD when ``name`` was imported (it guesses a module), so calling a pattern
# imported from here as ``_FIND_WORD.match(...)`` builds a bound method on every push
# (measured: +100-200 Ir per call under callgrind).  A bound method is one plain call.
_find_word: Final = _FIND_WORD.match
_find_sentence: Final = _FIND_SENTENCE.match
_line_any: Final = _LINE_ANY.search
_line_last: Final = _LINE_LAST.match


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
                kb = _class_under_marks(b, p - 2)
                if kb < 0:
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


def _class_under_marks(b: str, j: int) -> int:
    """The class of the base character that carries the marks ending at ``b[j + 1]``, or -1.

    The marks belong to the cluster before (GB9); the regex module keeps marks at the start of
    the text with what follows them (WB4 at sot), so -1 (defer to the regex path) unless a base
    character carries them, and after a control (GB4).
    """
    get = _KLASS.get
    while j >= 0 and (get(b[j]) or _classify(b[j])) == _K_MARK:
        j -= 1
    if j < 0:
        return -1
    kb = get(b[j]) or _classify(b[j])
    return -1 if kb == _K_CONTROL or kb == _K_SPACE_CTRL else kb


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


def _no_sentence_end(held: str, text: str) -> bool:
    """True if no sentence boundary can follow from the new ``text``: it has no terminator or
    paragraph separator, and the ``held`` text does not end in one (or in what may follow one).
    """
    if text.isascii():
        quiet = _A_SENT_TRIGGER.search(text) is None
    else:
        quiet = _SENT_TRIGGER.search(text) is None
    if quiet and held:
        before = held[-1]
        return before not in _A_SENT_TAIL if before.isascii() else _SENT_TAIL.match(before) is None
    return quiet
