"""fast_decode: chunks built by pydantic-core are the SDK's own, or the SDK builds them.

* Differential: every event of every recorded stream (tests/data/streams.jsonl) decoded by the
  SDK (`construct_type`) and by the fast decoder, compared deeply (`assert_same`: class, fields
  set, extra fields, private state, every value and its exact type, all the way down).
* Properties (hypothesis): chunk JSON with odd types, nulls, extra fields, unknown finish
  reasons, numbers as strings, ints for floats, construct()'s own keyword names as keys: the two
  decodings agree, or the fast decoder refused the event (then the SDK decodes it). Well-formed
  chunks are never refused. The same for a model that has the field types chunks do not
  (float, datetime, Dict, a non-null default) and one the SDK validates entirely (a union).
* Through the real SDK over FakeServer, sync and async: every recorded stream reaches a caller
  with `fast_decode=True, buffering="off"` chunk for chunk as the raw SDK gives it (same
  classes, fields set, values and types), with the same exception; with every capability on,
  as with `fast_decode=False`; with `with_raw_response`, `with_streaming_response` and the
  `.stream()` helper; faults (a cut mid-JSON, invalid JSON, in-band errors in three styles)
  end as the raw SDK's do; a resumed attempt is decoded fast too.
"""

# The probe models are written as the SDK writes its own (typing.Dict, List, Optional, Union):
# ruff: noqa: UP006, UP007, UP035, UP045
from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import openai
import pydantic
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import streamtap
from streamtap._sdk import fast_decode
from streamtap._sdk.pydantic_compat import PYDANTIC_V1
from streamtap.testing import FakeServer, Fault, Reply, load_cassettes

RECORDS = load_cassettes(Path(__file__).resolve().parent / "data" / "streams.jsonl")
MSG = [{"role": "user", "content": "hi"}]
v2_only = pytest.mark.skipif(PYDANTIC_V1, reason="fast decoding needs pydantic 2")
FELL_BACK: Any = object()


# -- comparing decoded items --------------------------------------------------------------------


def assert_same(a: Any, b: Any, path: str = "$") -> None:
    """`a` and `b` are indistinguishable: same class; for models the same fields set, private
    state, declared values (in order) and extra values; same keys and items; equal values of
    the same exact type (NaN equals NaN)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, pydantic.BaseModel):
        assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__, f"{path}: fields set"
        assert a.__pydantic_private__ == b.__pydantic_private__, f"{path}: private"
        assert_same(a.__dict__, b.__dict__, path)
        assert_same(a.__pydantic_extra__, b.__pydantic_extra__, f"{path}(extra)")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{path}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def decode_both(data: Any, type_: Any) -> tuple[Any, Any]:
    """(fast decoding or FELL_BACK, the SDK's `construct_type` or the exception it raised)."""
    from openai._models import construct_type

    validate = fast_decode.decoder(type_)
    assert validate is not None, f"no fast decoder for {type_!r}"
    try:
        fast = validate(data)
    except Exception:
        fast = FELL_BACK
    try:
        slow = construct_type(value=data, type_=type_)
    except Exception as exc:
        slow = exc
    return fast, slow


def check_agrees(data: Any, type_: Any) -> bool:
    """The fast decoder agrees with the SDK or refused; True if it decoded."""
    fast, slow = decode_both(data, type_)
    if isinstance(slow, Exception):
        assert fast is FELL_BACK, f"the SDK raised {slow!r}, the fast decoder did not"
        return False
    if fast is FELL_BACK:
        return False
    assert_same(fast, slow)
    return True


def recorded_events(record: dict[str, Any]) -> Iterator[Any]:
    """Every JSON data event of a recorded body, as the SDK parses it (`[DONE]` left out)."""
    from openai._streaming import SSEDecoder

    for sse in SSEDecoder().iter_bytes(iter([record["sse"].encode()])):
        if sse.data.startswith("[DONE]"):
            continue
        try:
            yield json.loads(sse.data)
        except ValueError:
            continue


def _chunk_type() -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk


# -- the recorded streams, decoded both ways -----------------------------------------------------


@v2_only
def test_every_recorded_event_decodes_as_the_sdk_does() -> None:
    chunk_type = _chunk_type()
    decoded = refused = 0
    for record in RECORDS:
        for data in recorded_events(record):
            try:
                if check_agrees(data, chunk_type):
                    decoded += 1
                else:
                    refused += 1
            except AssertionError as exc:
                raise AssertionError(f"{record['id']}: {exc}") from None
    # The fast path is the rule: refusals are the odd events (a list for `content`, finish
    # reasons and service tiers the SDK's Literal does not know): under 1% in the recordings.
    assert decoded > 7000
    assert refused < decoded / 100, (decoded, refused)


# -- properties -------------------------------------------------------------------------------

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_json = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_numeric_strings = st.sampled_from(["0", "1", "5", "1.5", "-2", "1e3", " 3"])
_ints = st.integers(0, 2**40) | _numeric_strings | st.sampled_from([1.0, 2.5, True]) | _json
_extra_keys = st.sampled_from(
    [
        "obfuscation",
        "x_groq",
        "provider",
        "reasoning_content",
        "stop_reason",
        "_fields_set",
        "_BaseModel__cls",
        "_private",
        "",
        "model_config",
        "__dict__",
    ]
) | st.text(max_size=5)


def _with_extras(base: st.SearchStrategy[dict[str, Any]], odd: bool) -> Any:
    if not odd:
        return base
    extras = st.dictionaries(_extra_keys, _json, max_size=2)
    return st.builds(lambda d, e: {**d, **{k: v for k, v in e.items() if k not in d}}, base, extras)


def _maybe_odd(good: Any, odd: bool) -> Any:
    return st.one_of(good, good, good, _json) if odd else good


def chunk_json(odd: bool) -> Any:
    """Chunk-shaped JSON: well-formed (`odd` False) or with every kind of oddity mixed in."""
    text = st.text(max_size=8)
    finish = st.sampled_from(["stop", "length", "tool_calls", "content_filter", "function_call"])
    # (values every supported SDK release knows: openai 1.40 has no "developer" role and no
    # "auto" service tier)
    role = st.sampled_from(["assistant", "user", "system", "tool"])
    tier = st.sampled_from(["default"])
    if odd:
        finish = finish | st.sampled_from(["eos", "", "STOP", "end_turn"]) | st.integers(0, 2)
        role = role | st.sampled_from(["developer", "model", ""])
        tier = tier | st.sampled_from(["auto", "flex", "on_demand", ""])
    o = odd
    logprob_value = st.floats(-20, 0) | (
        st.integers(-5, 0) | st.just("-1.5") if odd else st.nothing()
    )
    top = _with_extras(
        st.fixed_dictionaries(
            {"token": _maybe_odd(text, o), "logprob": logprob_value},
            optional={
                "bytes": st.none() | st.lists(_maybe_odd(st.integers(0, 255), o), max_size=3)
            },
        ),
        o,
    )
    token = _with_extras(
        st.fixed_dictionaries(
            {
                "token": _maybe_odd(text, o),
                "logprob": logprob_value,
                "top_logprobs": st.lists(top, max_size=2),
            },
            optional={"bytes": st.none() | st.lists(st.integers(0, 255), max_size=3)},
        ),
        o,
    )
    logprobs = st.none() | _with_extras(
        st.fixed_dictionaries({}, optional={"content": st.none() | st.lists(token, max_size=2)}), o
    )
    function = _with_extras(
        st.fixed_dictionaries(
            {}, optional={"name": st.none() | _maybe_odd(text, o), "arguments": st.none() | text}
        ),
        o,
    )
    tool_call = _with_extras(
        st.fixed_dictionaries(
            {"index": _maybe_odd(st.integers(0, 3), o) | (_numeric_strings if o else st.nothing())},
            optional={
                "id": st.none() | _maybe_odd(text, o),
                "type": st.none()
                | st.just("function")
                | (st.just("custom") if o else st.nothing()),
                "function": st.none() | function,
            },
        ),
        o,
    )
    content = st.none() | text
    if odd:
        content = (
            content | st.integers() | st.lists(st.dictionaries(text, text, max_size=2), max_size=2)
        )
    delta = _with_extras(
        st.fixed_dictionaries(
            {},
            optional={
                "content": content,
                "role": st.none() | role,
                "refusal": st.none() | text,
                "tool_calls": st.none() | _maybe_odd(st.lists(tool_call, max_size=2), o),
                "function_call": st.none() | function,
            },
        ),
        o,
    )
    choice = _with_extras(
        st.fixed_dictionaries(
            {
                "index": _maybe_odd(st.integers(0, 3), o)
                | (_numeric_strings if o else st.nothing()),
                "delta": _maybe_odd(delta, o) | (st.none() if o else st.nothing()),
            },
            optional={"finish_reason": st.none() | finish, "logprobs": logprobs},
        ),
        o,
    )
    details = st.none() | _with_extras(
        st.fixed_dictionaries(
            {},
            optional={
                "reasoning_tokens": _ints if o else st.integers(0, 99),
                "cached_tokens": st.none() | st.integers(0, 9),
            },
        ),
        o,
    )
    usage = st.none() | _with_extras(
        st.fixed_dictionaries(
            {
                "prompt_tokens": _ints if o else st.integers(0, 2**31),
                "completion_tokens": _ints if o else st.integers(0, 2**31),
                "total_tokens": _ints if o else st.integers(0, 2**31),
            },
            optional={"completion_tokens_details": details, "prompt_tokens_details": details},
        ),
        o,
    )
    required = {
        "id": _maybe_odd(text, o),
        "object": st.just("chat.completion.chunk")
        | (st.sampled_from(["error", "chat.completion"]) if o else st.nothing()),
        "created": _ints if o else st.integers(0, 2**40),
        "model": _maybe_odd(text, o),
        "choices": _maybe_odd(st.lists(choice, max_size=3), o),
    }
    optional = {
        "usage": usage,
        "service_tier": st.none() | tier,
        "system_fingerprint": st.none() | text,
    }
    if odd:  # any required key may be missing
        return _with_extras(st.fixed_dictionaries({}, optional={**required, **optional}), o)
    return st.fixed_dictionaries(required, optional=optional)


def _as_received(value: Any) -> Any:
    """What the SDK's `sse.json()` gives for the JSON of `value`."""
    return json.loads(json.dumps(value))


@v2_only
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_json(odd=True))
def test_odd_chunk_json_decodes_as_the_sdk_does_or_falls_back(value: Any) -> None:
    event("decoded fast" if check_agrees(_as_received(value), _chunk_type()) else "fell back")


@v2_only
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_json(odd=False))
def test_well_formed_chunk_json_is_decoded_fast(value: Any) -> None:
    assert check_agrees(_as_received(value), _chunk_type()), "a well-formed chunk fell back"


def _probe_models() -> tuple[Any, Any]:
    from openai._models import BaseModel

    class Inner(BaseModel):
        x: float
        when: Optional[datetime] = None
        scores: Dict[str, float] = {}  # noqa: RUF012  (a pydantic default)

    class Probe(BaseModel):
        f: float
        floats: List[float]
        counts: Dict[str, int]
        at: datetime
        kind: Literal["a", "b"]
        inner: Inner
        maybe: Optional[Inner] = None
        either: Union[int, str] = 0
        label: str = "none"  # a null gives this default, not None
        anything: object = None

    return Probe, Inner


_PROBE, _INNER = _probe_models() if not PYDANTIC_V1 else (None, None)
_leaf = st.one_of(
    _scalar,
    st.integers(-5, 5),
    st.sampled_from(["2024-01-02T03:04:05Z", "2024-01-02", "a", "b", "c", "1.5", 2**60 + 1]),
)
_probe_json = st.fixed_dictionaries(
    {},
    optional={
        "f": _leaf,
        "floats": st.lists(_leaf, max_size=3) | _leaf,
        "counts": st.dictionaries(st.text(max_size=3), _leaf, max_size=2) | _leaf,
        "at": _leaf,
        "kind": _leaf,
        "inner": st.fixed_dictionaries(
            {},
            optional={
                "x": _leaf,
                "when": _leaf,
                "scores": st.dictionaries(st.text(max_size=2), _leaf, max_size=2),
            },
        )
        | _leaf,
        "maybe": st.none() | st.fixed_dictionaries({"x": _leaf}) | _leaf,
        "either": _leaf,
        "label": _leaf,
        "anything": _json,
        "extra": _json,
    },
)


@v2_only
@settings(max_examples=400, deadline=None)
@given(_probe_json)
def test_other_field_types_decode_as_the_sdk_does_or_fall_back(value: Any) -> None:
    """float (an int becomes a float on openai 3.x, stays an int before), datetime, Dict, a
    default that is not None, a union: the mirror of `construct_type` beyond chunks."""
    event("decoded fast" if check_agrees(_as_received(value), _PROBE) else "fell back")


@v2_only
def test_probe_model_is_decoded_fast_when_well_formed() -> None:
    value = {"f": 1, "floats": [1, 2.5], "counts": {"a": 1}, "at": "2024-01-02T03:04:05Z"}
    value |= {"kind": "c", "inner": {"x": 2, "extra": [1]}, "label": None, "either": "5"}
    assert check_agrees(value, _PROBE)


@v2_only
def test_types_the_mirror_does_not_cover_get_no_fast_decoder() -> None:
    from openai._models import BaseModel

    class Aliased(BaseModel):
        value: int = pydantic.Field(alias="v")

    class OwnConstruct(BaseModel):
        value: int = 0

        @classmethod
        def construct(cls, _fields_set: Any = None, **values: Any) -> Any:  # type: ignore[override]
            return super().construct(_fields_set, **values)

    assert fast_decode.decoder(Aliased) is None
    assert fast_decode.decoder(OwnConstruct) is None


# -- through the real SDK ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replay() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


class Clients:
    """A raw and an instrumented client per mode (instrumented with the module's defaults;
    each request sets its options with `streamtap.options`)."""

    def __init__(self, server: FakeServer) -> None:
        common: dict[str, Any] = {
            "api_key": "sk-test",
            "max_retries": 0,
            "base_url": server.base_url,
        }
        self.loop = asyncio.new_event_loop()
        self.raw = {"sync": openai.OpenAI(**common), "async": openai.AsyncOpenAI(**common)}
        self.tapped = {"sync": openai.OpenAI(**common), "async": openai.AsyncOpenAI(**common)}

    def instrument(self) -> None:
        for client in self.tapped.values():
            streamtap.instrument(client)

    def close(self) -> None:
        for mode in ("sync", "async"):
            for client in (self.raw[mode], self.tapped[mode]):
                if mode == "sync":
                    client.close()
                else:
                    self.loop.run_until_complete(client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def clients(replay: FakeServer) -> Iterator[Clients]:
    c = Clients(replay)
    try:
        yield c
    finally:
        c.close()


class Seen:
    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.error: BaseException | None = None
        self.decoding: Any = None  # the SDK stream's client: fast_decode's stand-in, or not
        self.stream: Any = None


def _sdk_stream(stream: Any) -> Any:
    return getattr(stream, "__wrapped__", stream)


def read(clients: Clients, mode: str, tapped: bool, kwargs: dict[str, Any], **options: Any) -> Seen:
    """One request, read to its end as a caller does (the exception is kept)."""
    client = (clients.tapped if tapped else clients.raw)[mode]
    seen = Seen()

    def sync() -> None:
        with streamtap.options(**options):
            stream = seen.stream = client.chat.completions.create(**kwargs)
        seen.decoding = _sdk_stream(stream)._client
        with stream:
            for chunk in stream:
                seen.chunks.append(chunk)

    async def asynchronous() -> None:
        with streamtap.options(**options):
            stream = seen.stream = await client.chat.completions.create(**kwargs)
        seen.decoding = _sdk_stream(stream)._client
        async with stream:
            async for chunk in stream:
                seen.chunks.append(chunk)

    try:
        if mode == "sync":
            sync()
        else:
            clients.loop.run_until_complete(asynchronous())
    except Exception as exc:
        seen.error = exc
    return seen


def assert_same_error(a: BaseException | None, b: BaseException | None) -> None:
    assert type(a) is type(b), (a, b)
    if a is not None:
        assert str(a) == str(b)
        assert getattr(a, "body", None) == getattr(b, "body", None)


def assert_same_chunks(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, f"chunk {i}")


def _decoded_fast(seen: Seen) -> bool:
    return type(seen.decoding).__name__ == "_DecodingClient"


def _kwargs(record: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MSG, "stream": True}


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_recorded_stream_reaches_the_caller_as_the_raw_sdks(
    mode: str, replay: FakeServer, clients: Clients
) -> None:
    """`fast_decode=True, buffering="off"` (counting, resume, logging on): chunk for chunk the
    raw SDK's, the same exception; every stream decoded through the fast decoder."""
    clients.instrument()
    fallbacks = 0
    for record in RECORDS:
        replay.clear()
        replay.default = Reply.from_cassette(record)
        kwargs = _kwargs(record)
        want = read(clients, mode, False, kwargs)
        got = read(
            clients, mode, True, kwargs, fast_decode=True, buffering="off", include_usage=False
        )
        assert _decoded_fast(got), record["id"]
        fallbacks += got.decoding.fallbacks
        try:
            if len(replay.requests) == 3:
                # A body that ends without finish_reason, usage or [DONE] is resumed
                # (docs/resume.md); the replay ends at the same place: the same text.
                assert got.error is None
                assert _text(got.chunks) == _text(want.chunks)
                continue
            assert len(replay.requests) == 2
            assert_same_error(got.error, want.error)
            assert_same_chunks(got.chunks, want.chunks)
        except AssertionError as exc:
            raise AssertionError(f"{record['id']} ({mode}): {exc}") from None
    assert fallbacks < 100  # (of ~7,400 events; see the differential test)


def _text(chunks: list[Any]) -> str:
    out = []
    for chunk in chunks:
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta is not None and isinstance(delta.content, str):
                out.append(delta.content)
    return "".join(out)


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_capability_on_gives_the_same_chunks_as_without_fast_decode(
    mode: str, replay: FakeServer, clients: Clients
) -> None:
    """Word buffering, counting, usage injection, resume and logging on: what the caller gets
    with fast decoding is what it gets without (the hold bound out of the way of timing)."""
    clients.instrument()
    for record in RECORDS:
        replay.clear()
        replay.default = Reply.from_cassette(record)
        kwargs = _kwargs(record)
        want = read(clients, mode, True, kwargs, fast_decode=False, hold_max_seconds=60.0)
        got = read(clients, mode, True, kwargs, fast_decode=True, hold_max_seconds=60.0)
        assert not _decoded_fast(want) and _decoded_fast(got)
        try:
            assert_same_error(got.error, want.error)
            assert_same_chunks(got.chunks, want.chunks)
        except AssertionError as exc:
            raise AssertionError(f"{record['id']} ({mode}): {exc}") from None


def _record(name: str) -> dict[str, Any]:
    return next(r for r in RECORDS if r["id"] == name)


@v2_only
def test_raw_and_streaming_response_and_the_stream_helper_sync(
    replay: FakeServer, clients: Clients
) -> None:
    clients.instrument()
    replay.default = Reply.from_cassette(_record("oai-text-short-gpt4omini"))
    kwargs = _kwargs({})
    raw, tapped = clients.raw["sync"], clients.tapped["sync"]
    with streamtap.options(fast_decode=True, buffering="off", include_usage=False):
        got = tapped.chat.completions.with_raw_response.create(**kwargs).parse()
    want = raw.chat.completions.with_raw_response.create(**kwargs).parse()
    assert _decoded_fast_stream(got)
    assert_same_chunks(list(got), list(want))

    with streamtap.options(fast_decode=True, buffering="off", include_usage=False):
        with tapped.chat.completions.with_streaming_response.create(**kwargs) as response:
            stream = response.parse()
            assert _decoded_fast_stream(stream)
            got_chunks = list(stream)
    with raw.chat.completions.with_streaming_response.create(**kwargs) as response:
        want_chunks = list(response.parse())
    assert_same_chunks(got_chunks, want_chunks)

    helper_kwargs = {"model": "gpt-4o-mini", "messages": MSG}
    with streamtap.options(fast_decode=True, buffering="off", include_usage=False):
        with _helper(tapped).stream(**helper_kwargs) as helper:
            assert _decoded_fast_stream(helper._raw_stream)
            got_events = list(helper)
            got_final = helper.get_final_completion()
    with _helper(raw).stream(**helper_kwargs) as helper:
        want_events = list(helper)
        want_final = helper.get_final_completion()
    assert_same_chunks(got_events, want_events)
    assert_same(got_final, want_final)


@v2_only
def test_raw_and_streaming_response_and_the_stream_helper_async(
    replay: FakeServer, clients: Clients
) -> None:
    clients.instrument()
    replay.default = Reply.from_cassette(_record("oai-text-short-gpt4omini"))
    kwargs = _kwargs({})
    raw, tapped = clients.raw["async"], clients.tapped["async"]

    async def scenario() -> None:
        with streamtap.options(fast_decode=True, buffering="off", include_usage=False):
            got = (await tapped.chat.completions.with_raw_response.create(**kwargs)).parse()
        # (`with_raw_response` gives the legacy response: its parse() is not awaited)
        want = (await raw.chat.completions.with_raw_response.create(**kwargs)).parse()
        assert _decoded_fast_stream(got)
        assert_same_chunks([c async for c in got], [c async for c in want])

        with streamtap.options(fast_decode=True, buffering="off", include_usage=False):
            async with tapped.chat.completions.with_streaming_response.create(**kwargs) as resp:
                stream = await resp.parse()
                assert _decoded_fast_stream(stream)
                got_chunks = [c async for c in stream]
        async with raw.chat.completions.with_streaming_response.create(**kwargs) as resp:
            want_chunks = [c async for c in await resp.parse()]
        assert_same_chunks(got_chunks, want_chunks)

        helper_kwargs = {"model": "gpt-4o-mini", "messages": MSG}
        with streamtap.options(fast_decode=True, buffering="off", include_usage=False):
            async with _helper(tapped).stream(**helper_kwargs) as helper:
                assert _decoded_fast_stream(helper._raw_stream)
                got_events = [e async for e in helper]
                got_final = await helper.get_final_completion()
        async with _helper(raw).stream(**helper_kwargs) as helper:
            want_events = [e async for e in helper]
            want_final = await helper.get_final_completion()
        assert_same_chunks(got_events, want_events)
        assert_same(got_final, want_final)

    clients.loop.run_until_complete(scenario())


def _helper(client: Any) -> Any:
    """The `.stream()` helper's resource (openai 1.x keeps it under `beta`)."""
    completions = client.chat.completions
    if hasattr(completions, "stream"):
        return completions
    return client.beta.chat.completions


def _decoded_fast_stream(stream: Any) -> bool:
    return type(_sdk_stream(stream)._client).__name__ == "_DecodingClient"


def _sse(*events: Any, done: bool = True) -> str:
    parts = [e if isinstance(e, str) else "data: " + json.dumps(e) for e in events]
    if done:
        parts.append("data: [DONE]")
    return "\n\n".join(parts) + "\n\n"


def _chunk(content: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-fast",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


_WORDS = [" alpha", " beta", " gamma", " delta", " epsilon", " zeta"]
_BODY = _sse(_chunk(""), *[_chunk(w) for w in _WORDS], _chunk(None, "stop"))
FAULTS: list[tuple[str, Reply]] = [
    ("cut-mid-json", Reply(raw=_BODY, fault=Fault.cut(at_byte=_BODY.index(" gamma") + 2))),
    ("cut-between-events", Reply(raw=_BODY, fault=Fault.cut(after_events=3))),
    ("invalid-json", Reply(raw=_sse(_chunk(" a"), 'data: {"id":"chatcmpl-', _chunk(None, "stop")))),
    ("error-data", Reply(raw=_BODY, fault=Fault.error_event(after_events=2, style="data"))),
    ("error-event", Reply(raw=_BODY, fault=Fault.error_event(after_events=2, style="event"))),
    ("error-object", Reply(raw=_BODY, fault=Fault.error_event(after_events=2, style="object"))),
    (
        "error-4xx",
        Reply(
            raw=_BODY,
            fault=Fault.error_event(after_events=2, error={"message": "bad", "code": 400}),
        ),
    ),
    ("no-done", Reply(raw=_sse(*[_chunk(w) for w in _WORDS], _chunk(None, "stop"), done=False))),
]


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "reply"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_end_as_the_raw_sdks(
    name: str, reply: Reply, mode: str, replay: FakeServer, clients: Clients
) -> None:
    """Without resuming (which would hide the difference): the same chunks, then the same
    exception type, message and body."""
    clients.instrument()
    replay.clear()
    replay.default = reply
    kwargs = _kwargs({})
    want = read(clients, mode, False, kwargs)
    got = read(clients, mode, True, kwargs, fast_decode=True, buffering="off", retry=False)
    assert _decoded_fast(got)
    assert_same_error(got.error, want.error)
    assert_same_chunks(got.chunks, want.chunks)
    assert got.decoding.fallbacks == 0


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_resumed_attempt_is_decoded_fast(
    mode: str, replay: FakeServer, clients: Clients, events: Any
) -> None:
    """Cut mid-JSON, resumed by replay: the exact text, and the follow-up request's stream is
    decoded fast as well."""
    clients.instrument()
    replay.clear()
    replay.enqueue(Reply(raw=_BODY, fault=Fault.cut(at_byte=_BODY.index(" delta") + 3)))
    replay.default = Reply(raw=_BODY)
    got = read(clients, mode, True, _kwargs({}), fast_decode=True, backoff_initial=0.01)
    assert got.error is None
    assert _text(got.chunks) == "".join(_WORDS)
    assert len(replay.requests) == 2
    assert events.one()["streamtap.retries"] == 1
    assert _decoded_fast(got)
    source = got.stream._self_run.stream  # the resumed attempt (recover.Source)
    assert source.stream is not _sdk_stream(got.stream)
    assert _decoded_fast_stream(source.stream)
    assert source.stream._client.fallbacks == 0


def _thinking(text: str) -> dict[str, Any]:
    """Mistral's reasoning delta: `content` is a list of parts, which the mirror leaves to the
    SDK (a recorded stream has 47 of them)."""
    chunk = _chunk(None)
    thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]
    chunk["choices"][0]["delta"] = {"content": thinking}
    return chunk


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_summary_counts_the_items_left_to_the_sdk(
    mode: str, replay: FakeServer, clients: Clients, events: Any
) -> None:
    """`streamtap.fast_decode.fallbacks`: how many items the SDK decoded itself, over every
    attempt; 0 when the fast decoder took them all; absent when fast decoding is off."""
    clients.instrument()
    replay.clear()
    body = _sse(
        _chunk(""), _thinking("Hmm"), _chunk(" alpha"), _thinking(","), _chunk(None, "stop")
    )
    replay.default = Reply(raw=body)
    raw = read(clients, mode, False, _kwargs({}))
    got = read(clients, mode, True, _kwargs({}), fast_decode=True, buffering="off")
    assert got.error is None and raw.error is None
    assert_same_chunks(got.chunks, raw.chunks)
    assert got.decoding.fallbacks == 2
    assert events.one()["streamtap.fast_decode.fallbacks"] == 2

    events.summaries.clear()
    replay.default = Reply(raw=_BODY)
    read(clients, mode, True, _kwargs({}), fast_decode=True)
    assert events.one()["streamtap.fast_decode.fallbacks"] == 0

    events.summaries.clear()
    read(clients, mode, True, _kwargs({}))
    assert "streamtap.fast_decode.fallbacks" not in events.one()


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fallbacks_add_up_over_a_resume(
    mode: str, replay: FakeServer, clients: Clients, events: Any
) -> None:
    """Cut after the first fallback, resumed by replay: the replayed attempt's fallbacks are
    counted too (the first one twice: the SDK decoded it in both attempts)."""
    clients.instrument()
    replay.clear()
    body = _sse(_chunk(""), _thinking("Hmm"), *[_chunk(w) for w in _WORDS], _chunk(None, "stop"))
    replay.enqueue(Reply(raw=body, fault=Fault.cut(at_byte=body.index(" gamma") + 2)))
    replay.default = Reply(raw=body)
    got = read(clients, mode, True, _kwargs({}), fast_decode=True, backoff_initial=0.01)
    assert got.error is None
    assert len(replay.requests) == 2
    summary = events.one()
    assert summary["streamtap.retries"] == 1
    assert summary["streamtap.fast_decode.fallbacks"] == 2


# -- options, and where fast decoding does not apply -------------------------------------------


def test_fast_decode_option_is_validated() -> None:
    client = openai.OpenAI(api_key="sk-test")
    with pytest.raises(TypeError, match="fast_decode"):
        streamtap.instrument(client, fast_decode="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fast_decode"):
        with streamtap.options(fast_decode=1):  # type: ignore[arg-type]
            pass
    client.close()


@v2_only
def test_strict_response_validation_client_is_left_to_the_sdk(replay: FakeServer) -> None:
    replay.clear()
    replay.default = Reply(raw=_BODY)
    client = openai.OpenAI(
        api_key="sk-test", base_url=replay.base_url, max_retries=0, _strict_response_validation=True
    )
    streamtap.instrument(client, fast_decode=True)
    with client.chat.completions.create(**_kwargs({})) as stream:
        assert not _decoded_fast_stream(stream)
        assert _text(list(stream)) == "".join(_WORDS)
    client.close()


@pytest.mark.skipif(not PYDANTIC_V1, reason="pydantic 1 only")
def test_pydantic_1_falls_back_entirely_and_says_so_once(
    replay: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    replay.clear()
    replay.default = Reply(raw=_BODY)
    client = openai.OpenAI(api_key="sk-test", base_url=replay.base_url, max_retries=0)
    with caplog.at_level(logging.WARNING, logger="streamtap"):
        fast_decode._warned_v1 = False
        streamtap.instrument(client, fast_decode=True)
        for _ in range(2):
            with client.chat.completions.create(**_kwargs({})) as stream:
                assert not _decoded_fast_stream(stream)
                assert _text(list(stream)) == "".join(_WORDS)
    warnings = [r for r in caplog.records if "fast_decode" in r.getMessage()]
    assert len(warnings) == 1
    client.close()


@v2_only
def test_post_level_callers_are_decoded_fast(replay: FakeServer) -> None:
    """Libraries that call the client's `post(..., stream=True, stream_cls=...)` themselves
    (litellm) get fast decoding as well."""
    replay.clear()
    replay.default = Reply(raw=_BODY)
    client = openai.OpenAI(api_key="sk-test", base_url=replay.base_url, max_retries=0)
    chunk_type = _chunk_type()
    body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
    post: Any = client.post
    want = list(
        post(
            "/chat/completions",
            body=body,
            cast_to=chunk_type,
            stream=True,
            stream_cls=openai.Stream[chunk_type],
        )
    )
    streamtap.instrument(client, fast_decode=True, buffering="off", include_usage=False)
    post = client.post  # (the method as patched now)
    stream = post(
        "/chat/completions",
        body=body,
        cast_to=chunk_type,
        stream=True,
        stream_cls=openai.Stream[chunk_type],
    )
    assert _decoded_fast_stream(stream)
    assert_same_chunks(list(stream), want)
    client.close()


@v2_only
def test_a_hook_on_the_clients_decoding_stays_in_charge(replay: FakeServer) -> None:
    """Another library that wraps `_process_response_data` still sees every item."""
    replay.clear()
    replay.default = Reply(raw=_BODY)
    client = openai.OpenAI(api_key="sk-test", base_url=replay.base_url, max_retries=0)
    seen: list[Any] = []
    sdk = client._process_response_data

    def hook(**kwargs: Any) -> Any:
        seen.append(kwargs["data"])
        return sdk(**kwargs)

    client._process_response_data = hook  # type: ignore[method-assign]
    streamtap.instrument(client, fast_decode=True)
    with client.chat.completions.create(**_kwargs({})) as stream:
        assert not _decoded_fast_stream(stream)
        assert _text(list(stream)) == "".join(_WORDS)
    assert len(seen) == len(_WORDS) + 2
    client.close()
