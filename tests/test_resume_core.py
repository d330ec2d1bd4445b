"""The pure parts of resuming: strategy choice, logprobs trimming, request and error triage."""

from __future__ import annotations

import ssl
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamtap._core.resume import choose
from streamtap._sdk.chat_splice import _drop_entries
from streamtap._sdk.recover import _plain_stream_request, corrupt_body
from test_resume import _httpx

httpx = _httpx()  # httpx2 under openai 3.x

CONFIGURED = st.sampled_from(["auto", "prefill", "replay", "continuation"])


@given(
    configured=CONFIGURED,
    prefill_supported=st.booleans(),
    prefill_rejected=st.booleans(),
    single_text_lane=st.booleans(),
    tool_call_started=st.booleans(),
    replay_diverged=st.booleans(),
    delivered_any=st.booleans(),
)
def test_choose_is_exact_unless_told_otherwise(
    configured: str,
    prefill_supported: bool,
    prefill_rejected: bool,
    single_text_lane: bool,
    tool_call_started: bool,
    replay_diverged: bool,
    delivered_any: bool,
) -> None:
    """Continuation (lossy) only when configured; nothing after a divergence once text was
    delivered; a plain new request when nothing was; prefill only where it can work."""
    got = choose(
        configured=configured,
        prefill_supported=prefill_supported,
        prefill_rejected=prefill_rejected,
        single_text_lane=single_text_lane,
        tool_call_started=tool_call_started,
        replay_diverged=replay_diverged,
        delivered_any=delivered_any,
    )
    if tool_call_started:
        assert got is None
        return
    if not delivered_any:
        assert got == "replay"
        return
    if replay_diverged:
        assert got is None
    if got == "continuation":
        assert configured == "continuation" and single_text_lane
    if got == "prefill":
        assert configured in ("auto", "prefill") and single_text_lane and not prefill_rejected
        assert prefill_supported or configured == "prefill"
    if configured == "replay" and not replay_diverged:
        assert got == "replay"


def _logprobs(tokens: list[str]) -> Any:
    entries = [SimpleNamespace(token=t, bytes=list(t.encode())) for t in tokens]
    return SimpleNamespace(content=entries, refusal=None)


TOKENS = st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=12)


@given(tokens=TOKENS, data=st.data())
def test_drop_entries_drops_exactly_the_covered_tokens(tokens: list[str], data: Any) -> None:
    """Dropping the bytes of the first k tokens removes exactly those k entries."""
    k = data.draw(st.integers(0, len(tokens)))
    lp = _logprobs(tokens)
    left = _drop_entries(lp, "content", sum(len(t.encode()) for t in tokens[:k]))
    assert left == 0
    assert [e.token for e in lp.content] == tokens[k:]


@given(tokens=TOKENS, extra=st.integers(1, 50))
def test_drop_entries_carries_the_rest_over(tokens: list[str], extra: int) -> None:
    """More bytes than the chunk's entries cover: all dropped, the rest is for later chunks."""
    lp = _logprobs(tokens)
    total = sum(len(t.encode()) for t in tokens)
    assert _drop_entries(lp, "content", total + extra) == extra
    assert lp.content == []


def test_drop_entries_stops_at_a_token_across_the_boundary() -> None:
    """A token that straddles the boundary means the tokens differ: it is kept, and nothing
    more is dropped."""
    lp = _logprobs(["Hel", "lo wor", "ld"])
    assert _drop_entries(lp, "content", 5) == 0
    assert [e.token for e in lp.content] == ["lo wor", "ld"]


def test_raw_response_marker_is_stripped_and_nothing_else() -> None:
    kwargs = {
        "model": "m",
        "extra_headers": {"X-Stainless-Raw-Response": "stream", "X-Mine": "1"},
    }
    out = _plain_stream_request(kwargs)
    assert out["extra_headers"] == {"X-Mine": "1"}
    assert kwargs["extra_headers"]["X-Stainless-Raw-Response"] == "stream"  # not mutated
    assert _plain_stream_request({"model": "m"}) == {"model": "m"}


def _wrapped(inner: BaseException) -> BaseException:
    """As httpcore and the SDK wrap what they catch."""
    outer = httpx.ReadError("read failed")
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "corrupt"),
    [
        (httpx.DecodingError("bad gzip"), True),
        (_wrapped(ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")), True),
        (_wrapped(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")), False),
        (_wrapped(ConnectionResetError(104, "Connection reset by peer")), False),
        (httpx.RemoteProtocolError("peer closed connection"), False),
    ],
)
def test_corrupt_body_triage(exc: BaseException, corrupt: bool) -> None:
    """Bytes that cannot be read are not a cut; a connection closed early is."""
    assert corrupt_body(exc) is corrupt
