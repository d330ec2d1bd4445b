"""Tests for the pure word-boundary buffering core (``streamtap._core.segment``).

The property tests restate the product's promises independently of the implementation (using
the ``regex`` module's UAX #29 ``\\X`` and ``\\b`` directly) and check them for arbitrary texts,
arbitrary splits and arbitrary clocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import regex
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from streamtap._core import segment as seg_mod
from streamtap._core.segment import Policy, Segmenter, make_policy

# ---------------------------------------------------------------------------------------------
# Independent restatement of the rules.

CLOSED = "\n\x0b\x0c\x85\u2028\u2029"
LINE_BREAKS = "\n\r\x0b\x0c\x85\u2028\u2029"
_X = regex.compile(r"\X")
_WB = regex.compile(r"\b", regex.WORD)
_SPACE = regex.compile(r"\s")
_REJECT = regex.compile(
    r"[\s\p{Pd}\p{Pe}\p{Pf}\p{Po}\p{WB=MidLetter}\p{WB=MidNum}\p{WB=MidNumLet}"
    r"\p{WB=Single_Quote}\p{WB=Double_Quote}]"
)
_STERM = regex.compile(r"\p{SB=STerm}")
_ATERM = regex.compile(r"\p{SB=ATerm}")
_CLOSE = regex.compile(r"\p{SB=Close}")
_SCONT_TERM = regex.compile(r"[\p{SB=SContinue}\p{SB=STerm}\p{SB=ATerm}]")
_LOWER = regex.compile(r"\p{Ll}")
_PARASEP = "\n\r\x85\u2028\u2029"


def clusters(s: str) -> list[int]:
    """Starts of the extended grapheme clusters of ``s``, plus ``len(s)``."""
    return [m.start() for m in _X.finditer(s)] + [len(s)]


def safe_end(s: str) -> int:
    """How much of ``s`` may go: all if it ends in a mandatory break, else up to its last
    cluster."""
    if not s:
        return 0
    if s[-1] in CLOSED:
        return len(s)
    return clusters(s)[-2]


def is_space(c: str) -> bool:
    return _SPACE.match(c) is not None


def word_ok(b: str, p: int) -> bool:
    """The word policy's boundary, straight from its definition."""
    if p == len(b):
        return bool(b) and b[-1] in CLOSED
    if not 0 < p < len(b) or p not in clusters(b):
        return False
    if p not in {m.start() for m in _WB.finditer(b)}:
        return False
    if is_space(b[p]):
        return False
    return is_space(b[p - 1]) or _REJECT.match(b[p]) is None


def sentence_ok(b: str, p: int) -> bool:
    """The sentence policy's boundary, straight from its definition."""
    if p == len(b):
        return bool(b) and b[-1] in CLOSED
    if not 0 < p < len(b) or p not in clusters(b) or is_space(b[p]):
        return False
    j = p
    while j > 0 and is_space(b[j - 1]):
        if b[j - 1] in _PARASEP:
            return True
        j -= 1
    spaces = p - j
    while j > 0 and _CLOSE.match(b[j - 1]):
        j -= 1
    if j == 0 or _SCONT_TERM.match(b[p]):
        return False
    term = b[j - 1]
    if _STERM.match(term):
        return spaces > 0 or not _CLOSE.match(b[p])
    if _ATERM.match(term):
        return spaces > 0 and not _LOWER.match(b[p])
    return False


def line_ok(b: str, p: int) -> bool:
    """The line policy's boundary, straight from its definition."""
    if p == len(b):
        return bool(b) and b[-1] in CLOSED
    if not 0 < p < len(b):
        return False
    return b[p - 1] in LINE_BREAKS and not (b[p - 1] == "\r" and b[p] == "\n")


ORACLES: dict[str, Callable[[str, int], bool]] = {
    "word": word_ok,
    "sentence": sentence_ok,
    "line": line_ok,
}


def upto_last_comma(s: str) -> int:
    """A custom boundary callable: everything up to and including the last comma."""
    return s.rfind(",") + 1


CUSTOM_RE = re.compile(r"[,;]\s*")
CUSTOM_REGEX = regex.compile(r"\d+|\p{Han}")


def custom_ok(mode: object, b: str, p: int) -> bool:
    """The exact emission point a custom policy must choose for buffer ``b``."""
    safe = safe_end(b)
    bounds = set(clusters(b))
    if callable(mode):
        limit = min(mode(b), safe)
        want = max((q for q in bounds if q <= limit), default=0)
    else:
        assert isinstance(mode, (re.Pattern, regex.Pattern))
        ends = [m.end() for m in mode.finditer(b)]
        want = max((e for e in ends if 0 < e <= safe and e in bounds), default=0)
    return p == want


# ---------------------------------------------------------------------------------------------
# A driver that records every step and checks the promises.


@dataclass
class Run:
    """Everything a property needs to know about one drive of a segmenter."""

    text: str = ""
    outputs: list[str] = field(default_factory=list)
    final: str = ""
    forced_any: bool = False
    emission_ends: list[int] = field(default_factory=list)


def drive(
    mode: object,
    steps: Sequence[tuple[str, float, float | None]],
    *,
    hold_s: float,
    max_chars: int,
) -> Run:
    """Push ``steps`` (text, delay before it, optional delay before a poll after it) and check
    every promise after every call."""
    policy = make_policy(mode)  # type: ignore[arg-type]
    assert policy is not None
    seg = Segmenter(policy, hold_max_seconds=hold_s, hold_max_chars=max_chars)
    run = Run()
    run.text = "".join(t for t, _, _ in steps)
    pushed = ""
    arrivals: list[float] = []
    emitted = 0
    now = 0.0
    waits: list[float] = []
    builtin = isinstance(mode, str)

    def check_emission(b: str, out: str, *, polled: bool) -> None:
        nonlocal emitted
        assert b.startswith(out)
        p = len(out)
        if not out:
            return
        start = emitted
        end = start + p
        # Rule 4: a grapheme boundary of the whole text, whatever comes later.
        assert end in clusters(run.text) or end == len(run.text), (b, out)
        # Rule 1: never the last cluster, unless it is a mandatory break.
        assert p <= safe_end(b), (b, out)
        policy_ok = (
            ORACLES[mode](b, p) if builtin else custom_ok(mode, b, p)  # type: ignore[index]
        )
        bound_hit = now >= arrivals[start] + hold_s or len(b) > max_chars
        forced = p == safe_end(b) and bound_hit
        if polled:
            assert forced, (b, out)
        else:
            assert policy_ok or forced, (mode, b, out)
        if not policy_ok:
            run.forced_any = True
        waits.append(now - arrivals[start])
        run.emission_ends.append(end)
        emitted = end

    def check_state() -> None:
        held = pushed[emitted:]
        assert seg.held == held
        assert seg.held_chars == len(held)
        if held and safe_end(held) > 0:
            # The hold bound: nothing but the last cluster outlives it.
            assert len(held) <= max_chars, held
            assert now < arrivals[emitted] + hold_s, held
            expected = None if hold_s == math.inf else arrivals[emitted] + hold_s
            assert seg.deadline == expected
        else:
            assert seg.deadline is None

    for text, delay, poll_delay in steps:
        now += delay
        b = pushed[emitted:] + text
        pushed += text
        arrivals.extend([now] * len(text))
        out = seg.push(text, now)
        run.outputs.append(out)
        check_emission(b, out, polled=False)
        if builtin and out != b:
            # Maximal: no policy boundary is left inside what stays held.
            p = len(out)
            assert not any(ORACLES[mode](b, q) for q in range(p + 1, len(b) + 1)), (b, out)  # type: ignore[index]
        check_state()
        if poll_delay is not None:
            now += poll_delay
            b = pushed[emitted:]
            out = seg.poll(now)
            run.outputs.append(out)
            check_emission(b, out, polled=True)
            check_state()
    run.final = seg.flush()
    assert "".join(run.outputs) + run.final == run.text
    assert seg.held == "" and seg.deadline is None
    assert seg.hold_count == len(waits)
    assert seg.hold_sum == pytest.approx(sum(waits))
    assert seg.hold_max == pytest.approx(max(waits, default=0.0))
    return run


# ---------------------------------------------------------------------------------------------
# Strategies.

# fmt: off
ATOMS = [
    " ", "  ", "\n", "\n\n", "\r\n", "\r", "\t", "Hello", "world", "the", " the", " quick",
    ",", ".", "!", "?", "?!", "'", '"', "don", "'t", "3", "14", "2,048", "e.g", "U.S.", "Mr",
    "a_b", "...", "…", "«", "»", "“", "”", "(", ")", "[", "-", ":", ";", "/", "=",
    "字", "漢字", "。", "，", "！", "「", "」", "ひらがな", "カタカナ", "ー",
    "สวัสดี", "ครับ", "\u0e33", "ພາສາລາວ", "ភាសាខ្មែរ", "မြန်မာ",
    "\u1100", "\u1161", "\u11a8", "한", "국어", "\uac00",
    "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "\u200d", "🇫", "🇷", "🇫🇷🇯🇵", "👍", "🏽", "👍🏽",
    "e", "\u0301", "\ufe0f", "\u20e3", "1️⃣", "ℹ", "©", "\U0001f600",
    "\u0600", "\u0d4e", "क", "्", "ष", "\u093f", "\u05d0", "\u05f4",
    "\u00a0", "\u3000", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\u00ad", "\u200b",
    "Привет", " мир", "café", "naïve", "\u058a", "\u202f", "\uff65", "\u2044", "\u2018",
    "l'avion", "dell'anno", "\u00ad=",
    "def f(x):\n    return x[0]\n", "https://example.com/a?b=c&d=e#f", "aGVsbG8gd29ybGQ=",
]
# fmt: on

texts = st.lists(
    st.one_of(st.sampled_from(ATOMS), st.text(max_size=4)), min_size=0, max_size=24
).map("".join)
delays = st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.1, 0.149, 0.15, 0.151, 0.3])
modes = st.sampled_from(["word", "sentence", "line", CUSTOM_RE, CUSTOM_REGEX, upto_last_comma])
hold_seconds = st.sampled_from([0.0, 0.05, 0.15, math.inf])
hold_chars = st.sampled_from([1, 2, 5, 16, 256])


@st.composite
def steps_for(draw: st.DrawFn, text: str) -> list[tuple[str, float, float | None]]:
    """Split ``text`` at arbitrary code point positions (empty pieces allowed), with delays
    and polls."""
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 3))
    cuts = sorted(cuts)
    pieces: list[str] = []
    last = 0
    for c in [*cuts, len(text)]:
        pieces.append(text[last:c])
        last = c
    return [(piece, draw(delays), draw(st.one_of(st.none(), delays))) for piece in pieces]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[tuple[str, float, float | None]]]:
    text = draw(texts)
    return text, draw(steps_for(text))


PROPERTY = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------
# Properties.


@PROPERTY
@given(scenario=scenarios(), mode=modes, hold_s=hold_seconds, max_chars=hold_chars)
def test_promises_hold_for_any_text_split_and_clock(
    scenario: tuple[str, list[tuple[str, float, float | None]]],
    mode: object,
    hold_s: float,
    max_chars: int,
) -> None:
    """For every mode, text, split, clock and bound: output + flush == input; every emission
    point is a grapheme boundary of the whole text and never inside the buffer's last cluster;
    every emission is at a policy boundary or forced by the hold bound (then at the last
    grapheme boundary); built-in policies emit up to their rightmost boundary; the hold bound,
    ``held``, ``deadline`` and the hold statistics are exact after every call."""
    _, steps = scenario
    drive(mode, steps, hold_s=hold_s, max_chars=max_chars)


@PROPERTY
@given(scenario=scenarios(), mode=st.sampled_from(["word", "sentence", "line"]))
def test_unbounded_emission_points_are_final(
    scenario: tuple[str, list[tuple[str, float, float | None]]], mode: str
) -> None:
    """Without hold bounds, every emission point is still a policy boundary of the *final*
    text: later text never turns an emitted boundary into a non-boundary (no ``"don"`` +
    ``"'t"``, no ``"3."`` + ``"14"``)."""
    text, steps = scenario
    run = drive(mode, steps, hold_s=math.inf, max_chars=10**9)
    assert not run.forced_any
    for end in run.emission_ends:
        assert end == len(text) or text[end - 1] in CLOSED or ORACLES[mode](text, end), (
            text,
            end,
        )


@PROPERTY
@given(b=texts, lo=st.integers(0, 40))
@example(b="x.y", lo=0)
@example(b="\n\u0301a", lo=0)
@example(b="\u0301\u00ab", lo=0)
@example(b="\U0001f1eb\u00ab", lo=0)
@example(b="\u00ad=", lo=0)
def test_class_scan_agrees_with_regex_path(b: str, lo: int) -> None:
    """The per-character class scan (non-ASCII fast path) either defers (-1) or returns
    exactly what the regex path returns: the rightmost word boundary at or after ``lo``."""
    assume(b)
    m = seg_mod._FIND_WORD.match(b, 0)
    rightmost = max(m.end(1), 0)
    expected = rightmost if rightmost >= max(lo, 1) else 0
    got = seg_mod._klass_word_cut(b, lo)
    assert got in (-1, expected)
    quick = seg_mod._quick_last(b)
    assert quick in (-1, m.end())


# Two code points from each combination of grapheme, word and pictographic properties the
# class scan distinguishes (found by grouping all code points up to U+2FFFF by property), plus
# common characters.
REPRESENTATIVES = [chr(cp) for cp in [
    0x8, 0x16, 0x9, 0xA, 0x2028, 0x2029, 0xD, 0x2004, 0x2009, 0xFD1, 0x2037, 0x22, 0x3DC6,
    0x23B49, 0x27, 0x2C, 0xFE54, 0xFE52, 0xFF0E, 0x1C41, 0x1E4F7, 0xB7, 0x55F, 0x501, 0x10D51,
    0x5F, 0xFF3F, 0xA0, 0x2007, 0x1F4B1, 0x1FFF5, 0xFFFA, 0x1BCA1, 0x33B, 0xAA2C, 0x55B, 0x55E,
    0xFB43, 0xFB4B, 0x603, 0x605, 0x66B, 0x111C3, 0x11A87, 0x1C2A, 0x11362, 0x92B, 0x10A30,
    0xB4D, 0x11A47, 0xE33, 0xEB3, 0x101E, 0xA9ED, 0x106B, 0xAA7D, 0x115C, 0xA97C, 0x11A0,
    0xD7C3, 0xD7DF, 0xD7F4, 0x1CF5, 0x11A3A, 0x200D, 0x2018, 0x202F, 0x3030, 0x303D, 0x2044,
    0x24C2, 0x1F171, 0x332A, 0x3330, 0x30A0, 0xC074, 0xCAA0, 0xB1BD, 0xC4DF, 0x1F1F4, 0x1F1FB,
    0x58A, 0xAD, 0x200B, 0xFF65, 0x3009, 0x301, 0xFE0F, 0x1F3FD, 0x1F468, 0x1100, 0x1161,
    0x11A8, 0xAC00, 0x4E00, 0x3002, 0x3041, 0x30AB, 0xE01, 0xE31, 0x5D0, 0xD4E, 0x915, 0x94D,
]] + list("aZ1_ \t\n\r'\".,:;()!?-/")  # fmt: skip


def test_class_scan_agrees_with_regex_path_on_representatives() -> None:
    """On every pair of representative characters, and on every triple of a subset, the class
    scan defers or agrees with the regex path."""
    triple_reps = REPRESENTATIVES[::3]
    pairs = (a + b for a in REPRESENTATIVES for b in REPRESENTATIVES)
    triples = (a + b + c for a in triple_reps for b in triple_reps for c in triple_reps)
    for s in [*pairs, *triples]:
        expected = max(seg_mod._FIND_WORD.match(s, 0).end(1), 0)
        assert seg_mod._klass_word_cut(s, 0) in (-1, expected), [hex(ord(c)) for c in s]


@PROPERTY
@given(b=st.text(alphabet=st.characters(max_codepoint=127)), lo=st.integers(0, 30))
@example(b="don't", lo=0)
@example(b="3.14 a", lo=0)
@example(b="a\r\nb", lo=0)
def test_ascii_scan_agrees_with_regex_path(b: str, lo: int) -> None:
    """The ASCII fast path returns exactly what the regex path returns."""
    assume(b)
    m = seg_mod._FIND_WORD.match(b, 0)
    rightmost = max(m.end(1), 0)
    expected = rightmost if rightmost >= max(lo, 1) else 0
    assert seg_mod._ascii_word_cut(b, lo) == expected
    assert seg_mod._last_start(b, 0) == m.end()


def test_ascii_scan_agrees_with_regex_path_exhaustively() -> None:
    """On every ASCII pair, and every triple over one representative of each ASCII word and
    punctuation class, the ASCII fast path agrees with the regex path (this pins down the
    regex module's tailorings too, e.g. no boundary between an apostrophe and a vowel)."""
    pairs = (a + b for a in map(chr, range(128)) for b in map(chr, range(128)))
    reps = "aeZ1_ \t\n\r'\".,:;()-!+$#@/\\`^~|<>=&%*?[]{}\x00\x7f\x0b\x0c\x1c"
    triples = (a + b + c for a in reps for b in reps for c in reps)
    for s in [*pairs, *triples]:
        expected = max(seg_mod._FIND_WORD.match(s, 0).end(1), 0)
        assert seg_mod._ascii_word_cut(s, 0) == expected, repr(s)


@PROPERTY
@given(scenario=scenarios())
def test_fast_paths_do_not_change_the_result(
    scenario: tuple[str, list[tuple[str, float, float | None]]],
) -> None:
    """The word policy gives the same pieces as a reference that always takes the regex path
    (no ASCII, class-scan or shape shortcuts)."""
    _, steps = scenario
    policy = make_policy("word")
    assert policy is not None
    fast = Segmenter(policy, hold_max_seconds=math.inf, hold_max_chars=10**9)
    ref_held = ""
    now = 0.0
    for text, delay, _ in steps:
        now += delay
        got = fast.push(text, now)
        b = ref_held + text
        if not b:
            want = ""
        elif b[-1] in CLOSED:
            want = b
        else:
            want = b[: max(seg_mod._FIND_WORD.match(b, 0).end(1), 0)]
        ref_held = b[len(want) :]
        assert got == want, (b, got, want)


_ASCII_PRINTABLE = "".join(map(chr, range(32, 127)))


@PROPERTY
@given(
    before=st.text(
        alphabet=st.one_of(
            st.sampled_from("aZ9_ '\".,:-\t\n\u0600\u0301\u200d\U0001f600\u4e00\u00e9\u0e01"),
            st.characters(codec="utf-8", exclude_categories=("Cs",)),
        ),
        max_size=6,
    ),
    text=st.one_of(
        st.text(alphabet=_ASCII_PRINTABLE, min_size=1, max_size=8),
        st.text(alphabet=_ASCII_PRINTABLE, min_size=1, max_size=12).map(lambda t: " " + t),
        st.tuples(
            st.text(alphabet=_ASCII_PRINTABLE, max_size=6),
            st.text(alphabet="abcXYZ019", min_size=1, max_size=6),
        ).map(lambda p: p[0] + " " + p[1]),
    ),
)
def test_cached_cuts_do_not_depend_on_the_held_text(before: str, text: str) -> None:
    """A delta's cut is cached by its text only when no held text could change it: pushed
    after anything at all, it gives the regex reference's piece."""
    policy = make_policy("word")
    assert policy is not None
    for prime in ("", "x", " ", "'"):  # whatever the cache learns from these contexts
        primer = Segmenter(policy, hold_max_seconds=math.inf, hold_max_chars=10**9)
        primer.push(prime, 0.0)
        primer.push(text, 0.0)
    seg = Segmenter(policy, hold_max_seconds=math.inf, hold_max_chars=10**9)
    first = seg.push(before, 1.0)
    b = before[len(first) :] + text
    got = seg.push(text, 2.0)
    if b[-1] in CLOSED:
        want = b
    else:
        want = b[: max(seg_mod._FIND_WORD.match(b, 0).end(1), 0)]
    assert got == want, (before, text, got, want)
    if text in seg_mod._CUTS:
        head, rest, n = seg_mod._CUTS[text]
        assert head + rest == text and n == len(rest)


def test_simple_alphabet_fast_path_claims() -> None:
    """Every ``isalpha()`` character below U+0590 (the shape fast path's alphabet) joins
    letters and digits on both sides into one word, and is its own grapheme cluster after a
    space or a letter, per the regex module's Unicode data."""
    for cp in range(0x80, 0x590):
        c = chr(cp)
        if not c.isalpha():
            continue
        for pair in ("a" + c, c + "a", c + c, "1" + c, c + "1"):
            assert [m.start() for m in _WB.finditer(pair)] == [0, 2], (hex(cp), pair)
        assert clusters(" " + c) == [0, 1, 2], hex(cp)
        assert clusters("a" + c) == [0, 1, 2], hex(cp)
        assert _REJECT.match(c) is None, hex(cp)


def test_cjk_single_fast_path_claims() -> None:
    """Every character the CJK shortcut takes (Han URO and extension A, Hiragana letters) has
    a grapheme and a word boundary before it after ASCII or another such character, per the
    regex module's Unicode data."""
    lefts = ["a", "Z", "0", "_", " ", "\t", "\r", "\n", ".", "'", ",", "~", "\x00", "字", "ひ"]
    ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x3041, 0x3096)]
    for lo, hi in ranges:
        for cp in range(lo, hi + 1, 7):  # a dense sample; the ranges are homogeneous
            c = chr(cp)
            assert seg_mod._is_cjk_single(c)
            assert _REJECT.match(c) is None
            for left in lefts:
                s = left + c
                assert len(s) - 1 in clusters(s), (hex(cp), left)
                assert len(s) - 1 in {m.start() for m in _WB.finditer(s)}, (hex(cp), left)


# ---------------------------------------------------------------------------------------------
# Examples, script by script.


def feed(
    mode: object,
    pieces: Sequence[str],
    *,
    hold_s: float = math.inf,
    max_chars: int = 10**9,
    step: float = 0.001,
) -> list[str]:
    """Push ``pieces`` one by one (``step`` seconds apart); return outputs plus the flush."""
    policy = make_policy(mode)  # type: ignore[arg-type]
    assert policy is not None
    seg = Segmenter(policy, hold_max_seconds=hold_s, hold_max_chars=max_chars)
    outs = []
    now = 0.0
    for piece in pieces:
        now += step
        outs.append(seg.push(piece, now))
    outs.append(seg.flush())
    assert "".join(outs) == "".join(pieces)
    return outs


def by_code_point(s: str) -> list[str]:
    return list(s)


def test_english_tokens_end_after_trailing_punctuation_and_space() -> None:
    """Word mode emits ``"Hello, "`` and ``"world! "``, never ``"Hello"`` + ``", "``; each
    piece waits for the next word to begin."""
    outs = feed("word", ["Hello", ",", " world", "!", " How", " are", " you", "?"])
    assert [o for o in outs if o] == ["Hello, ", "world! ", "How ", "are ", "you?"]


def test_contractions_decimals_and_abbreviations_stay_whole() -> None:
    """``don't``, ``3.14`` and ``e.g.`` split by the tokenizer are never emitted in parts."""
    outs = feed("word", ["I", " don", "'", "t", " know", " 3", ".", "14", " e", ".g", ". ok"])
    assert [o for o in outs if o] == ["I ", "don't ", "know ", "3.14 ", "e.g. ", "ok"]


def test_subword_tokens_are_joined() -> None:
    """A long word arriving in several tokens is held until it is complete."""
    outs = feed("word", [" Intern", "ational", "ization", " is", " long"])
    assert [o for o in outs if o] == [" ", "Internationalization ", "is ", "long"]


def test_newline_is_emitted_at_once_without_a_copy() -> None:
    """A delta ending in a newline is released whole, and when nothing was held the very same
    string object comes back (no copy)."""
    policy = make_policy("word")
    assert policy is not None
    seg = Segmenter(policy)
    text = "".join(["Hello", " world\n"])
    assert seg.push(text, 0.0) is text
    assert seg.push("a", 0.1) == ""
    assert seg.push("b\r\n", 0.2) == "ab\r\n"


def test_trailing_space_is_held_because_a_mark_could_follow() -> None:
    """A trailing space is the buffer's last cluster: U+0301 may still extend it."""
    outs = feed("word", ["Hi ", "\u0301", "there"])
    assert outs[0] == ""
    assert "".join(outs) == "Hi \u0301there"
    assert all(not o.startswith("\u0301") for o in outs)


def test_cjk_does_not_stall() -> None:
    """Each Han ideograph and Hiragana letter is a boundary: one character per delta comes
    out one delta later, punctuation stays with the character before it."""
    outs = feed("word", list("流式响应。每个片段ひらがな"))
    assert outs[:5] == ["", "流", "式", "响", ""]
    assert outs[5] == "应。"
    assert "".join(outs) == "流式响应。每个片段ひらがな"


def test_katakana_run_is_one_word() -> None:
    """A Katakana run is one UAX #29 word: it is held until a boundary arrives (here the
    Hiragana after it, each of which is a boundary)."""
    outs = feed("word", ["カタ", "カナ", "です"])
    assert outs == ["", "", "カタカナで", "す"]


@pytest.mark.parametrize(
    "text",
    [
        "สวัสดีครับ ขอบคุณ",  # Thai
        "ພາສາລາວ",  # Lao
        "ភាសាខ្មែរ",  # Khmer
        "မြန်မာဘာသာ",  # Myanmar
    ],
)
def test_south_east_asian_scripts_do_not_stall(text: str) -> None:
    """Thai, Lao, Khmer and Myanmar have no spaces between words: inside such runs the
    boundaries are grapheme cluster boundaries, so text flows without waiting for the hold
    bound, and no cluster is ever split."""
    outs = feed("word", by_code_point(text))
    assert sum(1 for o in outs[:-1] if o) >= 3
    ends = []
    total = 0
    for o in outs[:-1]:
        total += len(o)
        if o:
            ends.append(total)
    assert set(ends) <= set(clusters(text))


@pytest.mark.parametrize(
    ("name", "cluster"),
    [
        ("ZWJ family", "👨\u200d👩\u200d👧\u200d👦"),
        ("rainbow flag", "🏳\ufe0f\u200d🌈"),
        ("flag pair", "🇫🇷"),
        ("skin tone", "👍🏽"),
        ("combining acute", "e\u0301"),
        ("Hangul jamo L V T", "\u1100\u1161\u11a8"),
        ("Hangul LV + T", "\uac00\u11a8"),
        ("CR LF", "\r\n"),
        ("variation selector", "\u2764\ufe0f"),
        ("keycap", "1\ufe0f\u20e3"),
        ("Devanagari conjunct", "क्ष"),
        ("prepend", "\u0d4e\u0d15"),
    ],
)
@pytest.mark.parametrize("mode", ["word", "sentence", "line"])
def test_clusters_fed_one_code_point_at_a_time_are_never_split(
    name: str, cluster: str, mode: str
) -> None:
    """Every listed extended grapheme cluster, pushed one code point per delta between other
    text, is never split, however tight the hold bound (it forces releases at every push)."""
    text = f"a {cluster} b{cluster}{cluster}."
    for hold_s, max_chars in [(math.inf, 10**9), (0.0, 1), (0.001, 2)]:
        outs = feed(mode, by_code_point(text), hold_s=hold_s, max_chars=max_chars)
        total = 0
        for o in outs:
            total += len(o)
            assert total in clusters(text), (name, outs)


def test_regional_indicators_pair_up_from_the_start() -> None:
    """Flags are pairs of regional indicators counted from the start of the run: three
    flags pushed one indicator at a time come out as whole flags."""
    text = "🇫🇷🇯🇵🇩🇪"
    outs = feed("word", list(text))
    assert [o for o in outs if o] == ["🇫🇷", "🇯🇵", "🇩🇪"]


@pytest.mark.parametrize("mode", ["word", "sentence", "line", CUSTOM_REGEX, upto_last_comma])
def test_lone_surrogates_pass_through(mode: object) -> None:
    """Lone surrogates (JSON can carry them: ``"\\ud83d"``) do not break segmentation."""
    text = "a \ud83d b\ude00 \ud83d\ude00 c"
    for hold_s in (math.inf, 0.0):
        outs = feed(mode, list(text), hold_s=hold_s)
        assert "".join(outs) == text


def test_sentence_mode() -> None:
    """Sentence mode releases after terminator + closers + spaces, after newlines, and
    directly after CJK full stops; not inside ``e.g. this``, ``3.14`` or ``Wait... what``."""
    # fmt: off
    pieces = [
        "He said \u201cHi.\u201d", " Then", " left", "! ", "E.g", ". this", " is 3", ".14",
        " long", ". Wait", "...", " what", "?\n", "Next", "。", "次", "\n",
    ]
    # fmt: on
    outs = feed("sentence", pieces)
    assert [o for o in outs if o] == [
        "He said \u201cHi.\u201d ",
        "Then left! ",
        "E.g. this is 3.14 long. ",
        "Wait... what?\n",
        "Next。",
        "次\n",
    ]


def test_line_mode() -> None:
    """Line mode releases after each line break; CR LF split across deltas stays one break;
    a lone CR counts once the next character shows it is not CR LF."""
    outs = feed("line", ["one", " two\nthree", "\r", "\nfour\r", "five", "\u2028six"])
    assert outs == ["", "one two\n", "", "three\r\n", "four\r", "five\u2028", "six"]


def test_custom_regex_policy() -> None:
    """A compiled pattern puts boundaries at match ends; ends inside a grapheme cluster or
    at the buffer's last cluster are skipped."""
    outs = feed(re.compile(r",\s*"), ["a, b", ", c", "\u0301,", " d"])
    assert outs == ["a, ", "b, ", "", "c\u0301, ", "d"]
    outs = feed(re.compile("e"), ["e\u0301xe", "y"])
    assert outs == ["", "e\u0301xe", "y"]


def test_custom_callable_policy_rounds_down_to_a_cluster() -> None:
    """A callable's answer is used as is when safe, rounded down to a grapheme boundary when
    it points inside a cluster, and never covers the last cluster."""
    outs = feed(lambda s: len(s), ["abc", "e\u0301", "x"])
    assert outs == ["ab", "c", "e\u0301", "x"]
    outs = feed(lambda s: 2, ["e\u0301x", "yz"])
    assert outs == ["e\u0301", "xy", "z"]
    outs = feed(lambda s: 1, ["e\u0301x", "yz"])
    assert outs == ["", "", "e\u0301xyz"]


def test_custom_callable_errors_keep_the_text() -> None:
    """A callable that raises or answers out of range surfaces a clear error, and the text of
    that delta is kept: flush() still returns it."""
    policy = make_policy(lambda s: len(s) + 1)
    assert policy is not None
    seg = Segmenter(policy)
    with pytest.raises(ValueError, match=r"returned 4 for a held text of 3 characters"):
        seg.push("abc", 0.0)
    assert seg.flush() == "abc"

    policy = make_policy(lambda s: "2")  # type: ignore[arg-type,return-value]
    assert policy is not None
    seg = Segmenter(policy)
    with pytest.raises(TypeError, match="must return an int, got str"):
        seg.push("abc", 0.0)
    assert seg.flush() == "abc"

    policy = make_policy(lambda s: True)
    assert policy is not None
    seg = Segmenter(policy)
    with pytest.raises(TypeError, match="must return an int, got bool"):
        seg.push("abc", 0.0)

    def boom(s: str) -> int:
        raise RuntimeError("boom")

    policy = make_policy(boom)
    assert policy is not None
    seg = Segmenter(policy)
    with pytest.raises(RuntimeError, match="boom"):
        seg.push("abc", 0.0)
    assert seg.held == "abc"


# ---------------------------------------------------------------------------------------------
# Hold bound, poll, deadline, discard, statistics.


def word_segmenter(**kwargs: float) -> Segmenter:
    policy = make_policy("word")
    assert policy is not None
    return Segmenter(policy, **kwargs)  # type: ignore[arg-type]


def test_poll_releases_on_time_up_to_the_last_cluster() -> None:
    """With no new text, ``poll`` releases nothing before the deadline and everything but the
    last grapheme cluster at it; then ``deadline`` is ``None`` until more text arrives."""
    seg = word_segmenter(hold_max_seconds=0.15)
    assert seg.deadline is None
    assert seg.push("aGVsbG8gd29y", 1.0) == ""
    assert seg.deadline == 1.0 + 0.15
    assert seg.poll(1.1) == ""
    assert seg.poll(1.15) == "aGVsbG8gd29"
    assert seg.held == "y"
    assert seg.deadline is None
    assert seg.poll(5.0) == ""
    # The old last character is released as soon as something follows it.
    assert seg.push("bGQ", 5.0) == "ybG"
    assert seg.held == "Q"


def test_deadline_is_none_for_a_single_cluster_and_infinite_bound() -> None:
    """``deadline`` is ``None`` when only one cluster is held (``poll`` could not release it)
    and when the time bound is infinite."""
    seg = word_segmenter()
    seg.push("👨\u200d👩\u200d👧", 0.0)
    assert seg.held_chars == 5
    assert seg.deadline is None
    seg = word_segmenter(hold_max_seconds=math.inf)
    seg.push("abcdef", 0.0)
    assert seg.deadline is None
    assert seg.poll(1e9) == ""


def test_push_applies_the_time_bound() -> None:
    """A push arriving after the deadline releases the old text even without a boundary."""
    seg = word_segmenter(hold_max_seconds=0.1)
    assert seg.push("aGVsbG8", 0.0) == ""
    assert seg.push("gd29y", 0.05) == ""
    assert seg.push("bGQ", 0.1) == "aGVsbG8gd29ybG"
    assert seg.held == "Q"


def test_urls_split_after_punctuation() -> None:
    """In a URL, word mode breaks where a word starts after punctuation, so ``https://`` goes
    as soon as the host name starts."""
    outs = feed("word", ["See", " https", "://", "exa", "mple", ".com", "/path", " now"])
    assert [o for o in outs if o] == ["See ", "https://", "example.com/", "path ", "now"]


def test_size_bound_releases_long_runs() -> None:
    """Base64 and other unbroken runs never make the buffer exceed ``hold_max_chars``."""
    seg = word_segmenter(hold_max_chars=16)
    out = []
    now = 0.0
    for i in range(0, 200, 7):
        now += 0.001
        out.append(seg.push("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"[i % 30 : i % 30 + 7], now))
        assert seg.held_chars <= 16
    assert any(out)


def test_size_bound_keeps_a_huge_cluster_whole() -> None:
    """A single grapheme cluster longer than ``hold_max_chars`` is held whole, not split."""
    seg = word_segmenter(hold_max_chars=4)
    zalgo = "a" + "\u0301" * 10
    assert seg.push("x", 0.0) == ""
    assert seg.push(zalgo, 0.0) == "x"
    assert seg.held == zalgo
    assert seg.push("b", 0.0) == zalgo


def test_discard_drops_the_unsent_tail() -> None:
    """``discard`` returns and forgets the held text; the segmenter continues cleanly."""
    seg = word_segmenter()
    assert seg.push("Hello wor", 0.0) == "Hello "
    assert seg.discard() == "wor"
    assert seg.held == "" and seg.deadline is None
    assert seg.discard() == ""
    assert seg.push("world again", 1.0) == "world "
    assert seg.flush() == "again"


def test_empty_push_acts_like_poll() -> None:
    """Pushing ``""`` adds nothing and applies the time bound like ``poll``."""
    seg = word_segmenter(hold_max_seconds=0.1)
    assert seg.push("", 0.0) == ""
    assert seg.push("abc", 0.0) == ""
    assert seg.push("", 0.05) == ""
    assert seg.push("", 0.1) == "ab"


def test_hold_statistics() -> None:
    """``hold_max``/``hold_sum``/``hold_count`` measure, per emission, how long its oldest
    character waited; ``flush(now)`` counts, ``flush()`` and ``discard()`` do not."""
    seg = word_segmenter()
    seg.push("Hello", 1.0)
    assert seg.push(" world", 1.25) == "Hello "
    assert seg.push("\n", 1.5) == "world\n"
    seg.push("x", 2.0)
    assert seg.flush(2.5) == "x"
    assert seg.hold_count == 3
    assert seg.hold_max == pytest.approx(0.5)
    assert seg.hold_sum == pytest.approx(0.25 + 0.25 + 0.5)
    seg.push("y", 3.0)
    seg.flush()
    seg.push("z", 3.0)
    seg.discard()
    assert seg.hold_count == 3


@PROPERTY
@given(
    scenario=scenarios(),
    mode=modes,
    hold_s=hold_seconds,
    max_chars=hold_chars,
    end=delays,
)
def test_hold_statistics_count_every_piece_and_a_timed_flush(
    scenario: tuple[str, list[tuple[str, float, float | None]]],
    mode: object,
    hold_s: float,
    max_chars: int,
    end: float,
) -> None:
    """Every non-empty piece handed out by ``push``, ``poll`` or ``flush(now)``, whichever path
    produced it (cached cut, shape shortcut, scan, bound), is one emission in the hold
    statistics, and its wait is ``now`` minus the arrival of its first character."""
    _, steps = scenario
    policy = make_policy(mode)  # type: ignore[arg-type]
    assert policy is not None
    seg = Segmenter(policy, hold_max_seconds=hold_s, hold_max_chars=max_chars)
    arrivals: list[float] = []
    waits: list[float] = []
    emitted = 0
    now = 0.0

    def took(out: str) -> None:
        nonlocal emitted
        if out:
            waits.append(now - arrivals[emitted])
            emitted += len(out)

    for text, delay, poll_delay in steps:
        now += delay
        arrivals.extend([now] * len(text))
        took(seg.push(text, now))
        if poll_delay is not None:
            now += poll_delay
            took(seg.poll(now))
    now += end
    took(seg.flush(now))
    assert emitted == len(arrivals)
    assert seg.hold_count == len(waits)
    assert seg.hold_sum == pytest.approx(sum(waits))
    assert seg.hold_max == pytest.approx(max(waits, default=0.0))


# ---------------------------------------------------------------------------------------------
# Validation.


def test_make_policy_builtin_modes() -> None:
    """Built-in names give shared immutable policies; ``"off"`` gives ``None``."""
    for name in ("word", "sentence", "line"):
        policy = make_policy(name)
        assert isinstance(policy, Policy)
        assert policy.name == name
        assert make_policy(name) is policy
        assert repr(policy) == f"Policy({name})"
    assert make_policy("off") is None
    policy = make_policy("word")
    with pytest.raises(AttributeError, match="immutable"):
        policy.name = "line"  # type: ignore[misc,union-attr]


def test_make_policy_custom() -> None:
    """Compiled ``re`` / ``regex`` patterns and callables give ``custom`` policies."""
    for mode in (re.compile(","), regex.compile(r"\p{P}"), upto_last_comma, lambda s: 0):
        policy = make_policy(mode)  # type: ignore[arg-type]
        assert policy is not None and policy.name == "custom"
        assert "custom" in repr(policy)


def test_make_policy_rejects_unknown_names() -> None:
    """An unknown mode name is a ValueError that names the valid modes."""
    with pytest.raises(ValueError, match="unknown segmentation mode 'words'") as info:
        make_policy("words")
    for name in ("'word'", "'sentence'", "'line'", "'off'", "regular expression", "callable"):
        assert name in str(info.value)
    with pytest.raises(ValueError):
        make_policy("WORD")


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (None, "got NoneType"),
        (42, "got int"),
        (b"word", "got bytes"),
        (str, "got type"),
        (re.compile(b","), "compiled from a str, not bytes"),
        (regex.compile(b","), "compiled from a str, not bytes"),
    ],
)
def test_make_policy_rejects_bad_types(mode: object, message: str) -> None:
    """Anything but a str, a compiled str pattern or a callable is a TypeError."""
    with pytest.raises(TypeError, match=message):
        make_policy(mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hold_max_seconds": -1}, ValueError, "hold_max_seconds must be >= 0"),
        ({"hold_max_seconds": math.nan}, ValueError, "hold_max_seconds must be >= 0"),
        ({"hold_max_seconds": "1"}, TypeError, "hold_max_seconds must be a number"),
        ({"hold_max_seconds": True}, TypeError, "hold_max_seconds must be a number"),
        ({"hold_max_chars": 0}, ValueError, "hold_max_chars must be >= 1"),
        ({"hold_max_chars": 2.0}, TypeError, "hold_max_chars must be an int"),
        ({"hold_max_chars": True}, TypeError, "hold_max_chars must be an int"),
    ],
)
def test_segmenter_rejects_bad_bounds(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Hold bounds are validated with clear messages."""
    policy = make_policy("word")
    assert policy is not None
    with pytest.raises(error, match=message):
        Segmenter(policy, **kwargs)  # type: ignore[arg-type]


def test_segmenter_requires_a_policy() -> None:
    """``Segmenter(None)`` (mode ``"off"``) is a TypeError: the shell must not build one."""
    with pytest.raises(TypeError, match="policy must be a Policy"):
        Segmenter(None)  # type: ignore[arg-type]


def test_segmenter_has_slots_and_a_repr() -> None:
    """Segmenters are slotted (no per-instance dict) and show their state in ``repr``."""
    seg = word_segmenter()
    seg.push("ab", 0.0)
    assert not hasattr(seg, "__dict__")
    assert "held='ab'" in repr(seg)
    assert seg.hold_max_seconds == 0.15 and seg.hold_max_chars == 256
