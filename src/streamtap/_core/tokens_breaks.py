"""Token counting: where a growing text may be cut so that counts add up (pure tables).

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
SHA-256 of the pattern string (``_PROVEN_PATTERNS``; o200k_harmony shares o200k's pattern). An
encoding with another pattern is still counted exactly, but only at ``finish()``.

``_words`` cuts a delta before every space with a hard break before it (rule R1), so that the
counters can count whole words through their segment cache.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

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
# The counters call these bound methods: CPython 3.11 compiles ``name.search(...)`` without
# LOAD_METHOD when ``name`` was imported, which builds a bound method on every feed (measured
# under callgrind: +225 Ir per feed, +1.6%).
_search_last_break: Final = _LAST_BREAK.search
_search_last_break_ascii: Final = _LAST_BREAK_ASCII.search


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


# SHA-256 of the pattern strings the hard-break rules are proven (and tested) for.
_PROVEN_PATTERNS: Final = frozenset(
    {
        "f021c3d976978e62ee64cdad150cc3405c2e3d6e3b40407850bb9e8d9eb65899",  # cl100k_base
        "2d1b8dc11e89af71459b36004f698ab3693f59fd84f63e8ec2b49564ab857420",  # o200k_base (+harmony)
    }
)


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
