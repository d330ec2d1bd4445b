"""The stream machine and the resume decisions with plain data: no SDK object, no socket.

A tiny adapter in this file (`Feed`) plays the part `_chat` plays for chat chunks: it turns
(lane, text) events into machine calls, exactly as a protocol adapter must.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamtap._core import machine as machine
from streamtap._core.resume import Budget, Failure, choose, retryable
from streamtap._core.state import CONTENT, REASONING, REFUSAL, Lane, StreamState, lane_key
from streamtap._options import Resolved, make_options


def _state(**options: Any) -> StreamState:
    opts = {"count_tokens": False, **options}
    return StreamState(Resolved(make_options(None, **opts)), {}, start=0.0)


class Feed:
    """A minimal protocol adapter over plain (choice, channel, text) events."""

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self.seen: dict[int, list[str]] = {}  # what the caller got, per lane key

    def _got(self, lane: Lane, text: str) -> None:
        if text:
            self.seen.setdefault(lane_key(lane.index, _channel(lane)), []).append(text)

    def text(self, index: int, channel: int, text: str, now: float) -> None:
        state = self.state
        lane = state.fast
        if lane is not None and index == 0 and channel == CONTENT:
            self._got(lane, machine.fast_text(state, lane, text, now))
            return
        machine.chunk(state, now)
        machine.response(state, "r-1", 1, "model")
        machine.choice_seen(state, index)
        lane = state.lane(index, channel, ("content", "reasoning", "refusal")[channel])
        self._got(lane, machine.text(state, lane, text, now))
        machine.update_fast(state, state.choice_indexes == {0})

    def tick(self, now: float) -> None:
        for lane, piece in machine.due(self.state, now):
            self._got(lane, piece)

    def release_all(self) -> None:
        for lane, piece in machine.release(self.state):
            self._got(lane, piece)

    def delivered(self, key: int) -> str:
        return "".join(self.seen.get(key, []))


def _channel(lane: Lane) -> int:
    return {"content": CONTENT, "refusal": REFUSAL}.get(lane.field, REASONING)


# -- the machine imports no SDK ----------------------------------------------------------------


def test_machine_and_resume_decisions_import_no_sdk() -> None:
    code = (
        "import sys\n"
        "import streamtap._core.machine, streamtap._core.resume, streamtap._core.state\n"
        "bad = [m for m in ('openai', 'httpx', 'pydantic') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- decisions, table-driven -------------------------------------------------------------------

_END_TABLE = [
    # (done, stalled, error_object_seen, expects_finish, finish, usage, text) -> meaning
    ((True, False, False, True, False, False, True), "end"),
    ((False, True, False, True, False, False, True), "stall"),
    ((True, True, False, True, False, False, True), "end"),  # [DONE] beats the watchdog
    ((False, False, True, True, False, False, True), "end"),
    ((False, False, False, False, False, False, True), "end"),  # endpoint never finishes
    ((False, False, False, True, True, False, True), "end"),
    ((False, False, False, True, False, True, True), "end"),
    ((False, False, False, True, False, False, True), "cut"),
    ((False, False, False, True, False, False, False), "end"),  # nothing arrived: nothing cut
]


@pytest.mark.parametrize(("facts", "meaning"), _END_TABLE)
def test_end_of_body(facts: tuple[bool, ...], meaning: str) -> None:
    done, stalled, error_object, expects, finish, usage, text = facts
    state = _state()
    feed = Feed(state)
    if text:
        feed.text(0, CONTENT, "Hello wor", 0.0)
    if finish:
        machine.finish(state, 0, "stop")
    if usage:
        machine.usage(state, {"completion_tokens": 3})
    got = machine.end_of_body(
        state,
        done=done,
        stalled=stalled,
        error_object_seen=error_object,
        expects_finish=expects,
    )
    assert got == meaning


@pytest.mark.parametrize(
    ("error_object", "incomplete", "action"),
    [(True, False, "continue"), (False, True, "end"), (False, False, "raise")],
)
def test_after_failure(error_object: bool, incomplete: bool, action: str) -> None:
    assert machine.after_failure(error_object, incomplete) == action


@pytest.mark.parametrize(
    ("lanes", "finished", "expected", "complete"),
    [
        ([0], {}, 0, False),
        ([0], {0: "stop"}, 0, True),
        ([0, 1], {0: "stop"}, 0, False),
        ([0, 1], {0: "stop", 1: "length"}, 0, True),
        ([0], {0: "stop"}, 2, False),  # n=2 asked: choice 1 has not finished
        ([], {0: "stop"}, 1, True),  # no text at all, but the finish reason came
    ],
)
def test_complete(
    lanes: list[int], finished: dict[int, str], expected: int, complete: bool
) -> None:
    state = _state()
    feed = Feed(state)
    for index in lanes:
        feed.text(index, CONTENT, "x ", 0.0)
    for index, reason in finished.items():
        machine.choice_seen(state, index)
        machine.finish(state, index, reason)
    assert machine.complete(state, expected) is complete


def test_text_is_held_to_a_word_boundary_and_released_with_the_finish() -> None:
    state = _state()
    feed = Feed(state)
    feed.text(0, CONTENT, "Hel", 0.0)
    feed.text(0, CONTENT, "lo wor", 0.01)
    assert feed.delivered(0) == "Hello "
    machine.finish(state, 0, "stop")
    assert [(ln.index, text) for ln, text in machine.release(state, 0)] == [(0, "wor")]


def test_hold_bound_releases_when_due() -> None:
    state = _state(hold_max_seconds=0.15)
    feed = Feed(state)
    feed.text(0, CONTENT, "Hello wor", 1.0)
    feed.tick(1.05)
    assert feed.delivered(0) == "Hello "
    feed.tick(1.2)  # past the bound: the held word goes out (the segmenter may keep a last
    # character that could still combine with the next one)
    got = feed.delivered(0)
    assert "Hello wor".startswith(got) and len(got) > len("Hello ")


def test_content_parts_are_kept_for_a_replay_only() -> None:
    """Content the lanes cannot read is remembered in order per choice while the stream may be
    resumed (a replay skips exactly those), not otherwise."""
    parts = [[{"type": "thinking"}], [{"type": "text"}]]
    state = _state()
    for p in parts:
        machine.opaque(state, 0, p)
    assert state.opaque == {0: parts}
    state = _state(retry=False)
    machine.opaque(state, 0, parts[0])
    assert state.opaque == {}


def test_short_path_only_for_one_content_lane() -> None:
    state = _state()
    feed = Feed(state)
    feed.text(0, CONTENT, "a ", 0.0)
    assert state.fast is state.lanes[0]
    feed.text(0, REASONING, "thinking ", 0.0)
    assert state.fast is None
    machine.other(state, 0.0)
    machine.update_fast(state, True)
    assert state.fast is None  # a tool call started: the general path from now on


_RETRYABLE = [
    (Failure("transport"), True),
    (Failure("stall"), True),
    (Failure("timeout"), True),
    (Failure("incomplete"), True),
    (Failure("diverged"), True),
    (Failure("in_band_error", status=500), True),
    (Failure("in_band_error", status=429), True),
    (Failure("in_band_error", status=400), False),
    (Failure("in_band_error", code="overloaded_error"), True),
    (Failure("in_band_error", code="invalid_request_error"), False),
    (Failure("in_band_error", message="Please try again later"), True),
    (Failure("in_band_error", status=500, message="content_filter triggered"), False),
]


@pytest.mark.parametrize(("failure", "expected"), _RETRYABLE)
def test_retryable(failure: Failure, expected: bool) -> None:
    assert retryable(failure) is expected


_CHOOSE = [
    # configured, prefill ok, rejected, single lane, tool call, diverged, delivered -> strategy
    (("auto", True, False, True, False, False, True), "prefill"),
    (("auto", False, False, True, False, False, True), "replay"),
    (("auto", True, True, True, False, False, True), "replay"),  # the endpoint rejected it
    (("auto", False, False, True, True, False, True), None),  # a tool call is never spliced
    (("auto", False, False, True, False, True, True), None),  # a replay diverged: stop
    (("continuation", False, False, True, False, False, True), "continuation"),
    (("continuation", False, False, False, False, False, True), "replay"),  # n > 1
    (("auto", True, False, True, False, False, False), "replay"),  # nothing delivered yet
]


@pytest.mark.parametrize(("facts", "strategy"), _CHOOSE)
def test_choose(facts: tuple[Any, ...], strategy: str | None) -> None:
    configured, prefill, rejected, single, tool, diverged, delivered = facts
    got = choose(
        configured=configured,
        prefill_supported=prefill,
        prefill_rejected=rejected,
        single_text_lane=single,
        tool_call_started=tool,
        replay_diverged=diverged,
        delivered_any=delivered,
    )
    assert got == strategy


@pytest.mark.parametrize(
    ("attempts", "now", "retry_after", "expect"),
    [
        (1, 0.0, None, (0.125, 0.25)),  # first backoff: between half and all of `initial`
        (2, 0.0, None, (0.25, 0.5)),
        (3, 0.0, None, None),  # max_attempts used
        (1, 0.0, 2.0, (2.0, 2.0)),  # Retry-After beats the backoff
        (1, 0.0, 100.0, (32.0, 32.0)),  # ...up to 4 x backoff_max
        (1, 59.9, None, None),  # past the deadline
    ],
)
def test_budget_next_wait(
    attempts: int, now: float, retry_after: float | None, expect: tuple[float, float] | None
) -> None:
    budget = Budget(max_attempts=3, deadline=60.0, start=0.0, initial=0.25, maximum=8.0)
    budget.attempts = attempts
    wait = budget.next_wait(now, retry_after)
    if expect is None:
        assert wait is None
    else:
        assert wait is not None and expect[0] <= wait <= expect[1]


# -- invariants, over any event sequence -------------------------------------------------------

_LANES = [(0, CONTENT), (0, REASONING), (1, CONTENT), (0, REFUSAL)]
_words = st.text(alphabet="ab cé\n.,'-😀\t", max_size=40)


@st.composite
def _script(draw: Any) -> tuple[dict[int, str], list[tuple[str, Any]]]:
    """Answers per lane, and the events that stream them: text pieces in any interleaving,
    clock ticks, and cuts after which a new attempt sends each answer again from where the
    caller's text ends (what the chat adapter's splice guarantees for a replay)."""
    lanes = draw(st.lists(st.sampled_from(_LANES), min_size=1, max_size=4, unique=True))
    answers = {lane_key(i, c): draw(_words) for i, c in lanes}
    ops = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("text"), st.sampled_from(sorted(answers)), st.integers(1, 9)),
                st.tuples(st.just("tick"), st.floats(0.0, 0.3)),
                st.tuples(st.just("cut")),
            ),
            max_size=60,
        )
    )
    return answers, ops


@settings(max_examples=300, deadline=None)
@given(script=_script(), buffering=st.sampled_from(["word", "sentence", "line", "off"]))
def test_delivered_text_is_the_sent_text_per_lane(
    script: tuple[dict[int, str], list[tuple[Any, ...]]], buffering: str
) -> None:
    answers, ops = script
    state = _state(buffering=buffering)
    feed = Feed(state)
    pos = dict.fromkeys(answers, 0)  # characters of each answer the current attempt has sent
    now = 0.0

    def send(key: int, size: int) -> None:
        piece = answers[key][pos[key] : pos[key] + size]
        if piece:
            index, channel = divmod(key, 4)
            feed.text(index, channel, piece, now)
            pos[key] += len(piece)

    for op in ops:
        if op[0] == "text":
            send(op[1], op[2])
        elif op[0] == "tick":
            now += op[1]
            feed.tick(now)
        else:
            machine.resume(state)  # the held text is dropped: the new attempt sends it again
            for key in pos:
                pos[key] = len(feed.delivered(key))
        for key, answer in answers.items():  # never ahead of what was sent, never reordered
            assert answer[: pos[key]].startswith(feed.delivered(key))
    for key in answers:  # the rest of the answer, then the end of the body
        send(key, len(answers[key]))
    feed.release_all()
    for key, answer in answers.items():
        assert feed.delivered(key) == answer
    state.settle(keep_latest=False)
    for key, lane in state.lanes.items():  # the machine's own record agrees with the caller
        assert lane.captured is not None and lane.captured.getvalue() == feed.delivered(key)


@settings(max_examples=300, deadline=None)
@given(script=_script(), buffering=st.sampled_from(["word", "sentence", "line", "off"]))
def test_giving_up_delivers_every_character_sent_once(
    script: tuple[dict[int, str], list[tuple[Any, ...]]], buffering: str
) -> None:
    """The stream ends after the script, with no further attempt (`give_up`): per lane, the
    caller has the text up to the furthest point an attempt sent it, exactly once. Text held
    at a cut counts unless a later attempt sent new text for that lane (then that attempt's
    text is the answer's)."""
    answers, ops = script
    state = _state(buffering=buffering)
    feed = Feed(state)
    pos = dict.fromkeys(answers, 0)  # characters of each answer the current attempt has sent
    aside: dict[int, int] = {}  # per lane: how far the attempt that was cut with held text went
    now = 0.0
    for op in ops:
        if op[0] == "text":
            key, size = op[1], op[2]
            piece = answers[key][pos[key] : pos[key] + size]
            if piece:
                index, channel = divmod(key, 4)
                feed.text(index, channel, piece, now)
                pos[key] += len(piece)
                aside.pop(key, None)  # new text: this attempt's version is the answer's
        elif op[0] == "tick":
            now += op[1]
            feed.tick(now)
        else:
            machine.resume(state)
            for key in pos:
                delivered = len(feed.delivered(key))
                if pos[key] > delivered:
                    aside[key] = pos[key]
                pos[key] = delivered
    machine.give_up(state, now)
    feed.release_all()
    for key, answer in answers.items():
        assert feed.delivered(key) == answer[: aside.get(key, pos[key])]
