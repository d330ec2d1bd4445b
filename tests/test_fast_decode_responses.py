"""fast_decode for the Responses API: events built by pydantic-core are the SDK's own, or the SDK
builds them.

* Differential: every event of every recorded Responses stream (tests/data/responses.jsonl)
  decoded by the SDK (`construct_type` on the `ResponseStreamEvent` union) and by the fast
  decoder (the union tagged by `type`), compared deeply (`assert_same`).
* Property (hypothesis): recorded events made odd (an unknown or another event's `type`, extra
  fields, nulls, ints for floats and floats for ints, numbers as strings, a field left out):
  the two decodings agree, or the fast decoder refused the event (then the SDK decodes it).
* Through the real SDK over FakeServer, sync and async: every recorded stream reaches a caller
  with `fast_decode=True, buffering="off"` event for event as the raw SDK gives it; with every
  capability on, as with `fast_decode=False`; `with_raw_response`, `with_streaming_response`,
  the `responses.stream()` helper and `retrieve(stream=True)`; a re-attached attempt is decoded
  fast too.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import streamtap
from streamtap._sdk import fast_decode
from streamtap.testing import FakeServer, Fault, Reply, generate_answer, load_cassettes

if not hasattr(openai.OpenAI, "responses"):  # before openai 1.66
    pytest.skip("this openai release has no Responses API", allow_module_level=True)

from test_fast_decode import (
    FELL_BACK,
    _decoded_fast,
    assert_same,
    assert_same_error,
    check_agrees,
    decode_both,
    recorded_events,
    v2_only,
)
from test_responses_conformance import Call, call_for

pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")

RECORDS = load_cassettes(Path(__file__).resolve().parent / "data" / "responses.jsonl")


def _event_type() -> Any:
    from openai.types.responses import ResponseStreamEvent

    return ResponseStreamEvent


def _all_events() -> list[dict[str, Any]]:
    return [data for record in RECORDS for data in recorded_events(record)]


# -- the recorded streams, decoded both ways -----------------------------------------------------


@v2_only
def test_every_recorded_responses_event_decodes_as_the_sdk_does() -> None:
    event_type = _event_type()
    decoded = refused = 0
    for record in RECORDS:
        for data in recorded_events(record):
            try:
                if check_agrees(data, event_type):
                    decoded += 1
                else:
                    refused += 1
            except AssertionError as exc:
                raise AssertionError(f"{record['id']}: {exc}") from None
    # Refusals: event types this SDK release does not know, and events its models refuse.
    assert decoded > 6500
    assert refused < decoded / 50, (decoded, refused)


@v2_only
def test_the_event_union_is_tagged_by_type() -> None:
    """The fast decoder tries the one member the `type` names (the point of it: ~60 members),
    and every member of this release's union has its own tag."""
    import typing

    from openai import _models
    from pydantic import TypeAdapter

    union = typing.get_args(_event_type())[0]
    members = typing.get_args(union)
    tagged = fast_decode._tagged_by_type(TypeAdapter(union).core_schema, members, _models)
    assert tagged is not None
    inner = tagged["schema"] if tagged["type"] == "definitions" else tagged
    assert inner["type"] == "tagged-union"
    assert len(inner["choices"]) >= len(members) > 20


@v2_only
def test_an_unknown_type_falls_back_to_the_sdk() -> None:
    """`construct_type` builds the union's first member for a `type` it does not know: the
    fast decoder refuses such an event, and the SDK decodes it."""
    data = {"type": "response.brand_new.delta", "sequence_number": 3, "delta": "x"}
    fast, slow = decode_both(data, _event_type())
    assert fast is FELL_BACK
    assert type(slow) is _first_member()


def _first_member() -> Any:
    import typing

    return typing.get_args(typing.get_args(_event_type())[0])[0]


# -- property ------------------------------------------------------------------------------------

_EVENTS = _all_events()
_TYPES = sorted({e["type"] for e in _EVENTS if isinstance(e.get("type"), str)})
_odd_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "5", "1.5", "x", "true", "2024-01-02T03:04:05Z"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "type", "text"]), st.integers(0, 3), max_size=2),
)
_extra_keys = st.sampled_from(
    ["obfuscation", "provider", "_fields_set", "_private", "", "model_config", "logprobs"]
) | st.text(max_size=5)


def _mutate(data: dict[str, Any], draw: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    keys = list(out)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["type", "unknown", "extra", "null", "number", "odd", "drop"]))
        event(kind)
        if kind == "type":
            out["type"] = draw(st.sampled_from(_TYPES))
        elif kind == "unknown":
            unknown = st.sampled_from(["response.new.delta", "", "error2"]) | st.integers()
            out["type"] = draw(unknown)
        elif kind == "extra":
            out[draw(_extra_keys)] = draw(_odd_value)
        elif keys and kind == "drop":
            out.pop(draw(st.sampled_from(keys)), None)
        elif keys:
            key = draw(st.sampled_from(keys))
            value = out.get(key)
            if kind == "null":
                out[key] = None
            elif kind == "number" and isinstance(value, (int, float)):
                out[key] = draw(st.sampled_from([float(value), int(value), str(value)]))
            else:
                out[key] = draw(_odd_value)
    return out


@st.composite
def odd_events(draw: Any) -> dict[str, Any]:
    return _mutate(draw(st.sampled_from(_EVENTS)), draw)


@v2_only
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(odd_events())
def test_odd_responses_event_json_decodes_as_the_sdk_does_or_falls_back(value: Any) -> None:
    event("decoded" if check_agrees(value, _event_type()) else "fell back")


# -- through the real SDK ------------------------------------------------------------------------


class Clients:
    """A raw and an instrumented client per mode, one event loop, for the module."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        common: dict[str, Any] = {"api_key": "sk-test", "max_retries": 0}
        common["base_url"] = server.base_url
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
def clients() -> Iterator[Clients]:
    with FakeServer() as server:
        c = Clients(server)
        try:
            yield c
        finally:
            c.close()


class Seen:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.error: BaseException | None = None
        self.decoding: Any = None  # the SDK stream's client: fast_decode's stand-in, or not
        self.final: Any = None


def _sdk_stream(stream: Any) -> Any:
    return getattr(stream, "__wrapped__", stream)


def _open(client: Any, call: Call, helper: bool) -> Any:
    r = client.responses
    kwargs = copy.deepcopy(call.kwargs)
    if helper:
        if call.kind == "retrieve":
            return r.stream(response_id=call.response_id, **kwargs)
        return r.stream(**kwargs)
    if call.kind == "retrieve":
        return r.retrieve(call.response_id, stream=True, **kwargs)
    return r.create(stream=True, **kwargs)


def read(
    clients: Clients, mode: str, tapped: bool, call: Call, helper: bool = False, **options: Any
) -> Seen:
    """One request, read to its end as a caller does (the exception is kept)."""
    client = (clients.tapped if tapped else clients.raw)[mode]
    seen = Seen()

    # (the helper sends its request when entered: the options cover the whole read)
    def sync() -> None:
        with streamtap.options(**options), _open(client, call, helper) as stream:
            sdk = stream._raw_stream if helper else _sdk_stream(stream)
            seen.decoding = _sdk_stream(sdk)._client
            for item in stream:
                seen.events.append(item)
            if helper:
                seen.final = stream.get_final_response()

    async def asynchronous() -> None:
        with streamtap.options(**options):
            opened = _open(client, call, helper)
            opened = opened if helper else await opened
            async with opened as stream:
                sdk = stream._raw_stream if helper else _sdk_stream(stream)
                seen.decoding = _sdk_stream(sdk)._client
                async for item in stream:
                    seen.events.append(item)
                if helper:
                    seen.final = await stream.get_final_response()

    try:
        if mode == "sync":
            sync()
        else:
            clients.loop.run_until_complete(asynchronous())
    except Exception as exc:
        exc.__traceback__ = None
        seen.error = exc
    return seen


def assert_same_events(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, f"event {i}")


def _serve(clients: Clients, record: dict[str, Any]) -> None:
    clients.server.clear()
    clients.server.default = Reply.from_cassette(record)


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_recorded_responses_stream_reaches_the_caller_as_the_raw_sdks(
    mode: str, clients: Clients
) -> None:
    """`fast_decode=True, buffering="off"` (counting, resume, logging on): event for event the
    raw SDK's, the same exception; every stream decoded through the fast decoder."""
    clients.instrument()
    fallbacks = 0
    for record in RECORDS:
        _serve(clients, record)
        call = call_for(record)
        want = read(clients, mode, False, call)
        got = read(clients, mode, True, call, fast_decode=True, buffering="off")
        try:
            assert _decoded_fast(got)
            fallbacks += got.decoding.fallbacks
            assert len(clients.server.requests) == 2
            assert_same_error(got.error, want.error)
            assert_same_events(got.events, want.events)
        except AssertionError as exc:
            raise AssertionError(f"{record['id']} ({mode}): {exc}") from None
    assert fallbacks < 150  # (of ~7,100 events; see the differential test)


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_capability_on_gives_the_same_events_as_without_fast_decode(
    mode: str, clients: Clients
) -> None:
    """Word buffering, counting, resume and logging on: what the caller gets with fast
    decoding is what it gets without (the hold bound out of the way of timing)."""
    clients.instrument()
    for record in RECORDS:
        _serve(clients, record)
        call = call_for(record)
        want = read(clients, mode, True, call, fast_decode=False, hold_max_seconds=60.0)
        got = read(clients, mode, True, call, fast_decode=True, hold_max_seconds=60.0)
        try:
            assert not _decoded_fast(want) and _decoded_fast(got)
            assert_same_error(got.error, want.error)
            assert_same_events(got.events, want.events)
        except AssertionError as exc:
            raise AssertionError(f"{record['id']} ({mode}): {exc}") from None


def _retrieve_record() -> dict[str, Any]:
    return next(r for r in RECORDS if "/responses/" in str(r.get("request_url") or ""))


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", ["create", "retrieve"])
def test_the_stream_helper_is_decoded_fast(mode: str, kind: str, clients: Clients) -> None:
    """`responses.stream(...)` (a new response, or a background one re-read by id): the same
    events and final response as the raw helper's."""
    clients.instrument()
    record = _retrieve_record() if kind == "retrieve" else RECORDS[0]
    _serve(clients, record)
    call = call_for(record)
    assert call.kind == kind
    want = read(clients, mode, False, call, helper=True)
    got = read(clients, mode, True, call, helper=True, fast_decode=True, buffering="off")
    assert _decoded_fast(got)
    assert_same_error(got.error, want.error)
    assert_same_events(got.events, want.events)
    assert_same(got.final, want.final)


@v2_only
def test_raw_and_streaming_response_sync(clients: Clients) -> None:
    clients.instrument()
    _serve(clients, RECORDS[0])
    kwargs = {**call_for(RECORDS[0]).kwargs, "stream": True}
    raw, tapped = clients.raw["sync"], clients.tapped["sync"]
    with streamtap.options(fast_decode=True, buffering="off"):
        got = tapped.responses.with_raw_response.create(**kwargs).parse()
    want = raw.responses.with_raw_response.create(**kwargs).parse()
    assert type(_sdk_stream(got)._client).__name__ == "_DecodingClient"
    assert_same_events(list(got), list(want))

    with streamtap.options(fast_decode=True, buffering="off"):
        with tapped.responses.with_streaming_response.create(**kwargs) as response:
            stream = response.parse()
            assert type(_sdk_stream(stream)._client).__name__ == "_DecodingClient"
            got_events = list(stream)
    with raw.responses.with_streaming_response.create(**kwargs) as response:
        want_events = list(response.parse())
    assert_same_events(got_events, want_events)


@v2_only
def test_raw_and_streaming_response_async(clients: Clients) -> None:
    clients.instrument()
    _serve(clients, RECORDS[0])
    kwargs = {**call_for(RECORDS[0]).kwargs, "stream": True}
    raw, tapped = clients.raw["async"], clients.tapped["async"]

    async def scenario() -> None:
        with streamtap.options(fast_decode=True, buffering="off"):
            got = (await tapped.responses.with_raw_response.create(**kwargs)).parse()
        want = (await raw.responses.with_raw_response.create(**kwargs)).parse()
        assert type(_sdk_stream(got)._client).__name__ == "_DecodingClient"
        assert_same_events([e async for e in got], [e async for e in want])

        with streamtap.options(fast_decode=True, buffering="off"):
            async with tapped.responses.with_streaming_response.create(**kwargs) as resp:
                stream = await resp.parse()
                assert type(_sdk_stream(stream)._client).__name__ == "_DecodingClient"
                got_events = [e async for e in stream]
        async with raw.responses.with_streaming_response.create(**kwargs) as resp:
            want_events = [e async for e in await resp.parse()]
        assert_same_events(got_events, want_events)

    clients.loop.run_until_complete(scenario())


QUESTION = "Explain caching in distributed systems."


@v2_only
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_reattached_attempt_is_decoded_fast(mode: str, events: Any) -> None:
    """A background response cut mid-stream is re-attached (`retrieve(..., starting_after=N)`):
    the exact text once, and the re-attached stream is decoded fast as well."""
    answer = generate_answer([{"role": "user", "content": QUESTION}], model="m", length=120)
    with FakeServer() as server:
        server.enqueue(Reply.model_mode(length=120, fault=Fault.cut(after_events=12)))
        server.default = Reply.model_mode(length=120)
        common: dict[str, Any] = {"base_url": server.base_url, "api_key": "k", "max_retries": 0}
        params: dict[str, Any] = {"model": "m", "input": QUESTION, "stream": True}
        params["background"] = True
        opts: dict[str, Any] = {"backoff_initial": 0.01, "fast_decode": True}
        if mode == "sync":
            client = streamtap.instrument(openai.OpenAI(**common), **opts)
            stream = client.responses.create(**params)
            got = list(stream)
            client.close()
        else:

            async def run() -> tuple[Any, list[Any]]:
                aclient = streamtap.instrument(openai.AsyncOpenAI(**common), **opts)
                s = await aclient.responses.create(**params)
                out = [e async for e in s]
                await aclient.close()
                return s, out

            stream, got = asyncio.run(run())
        assert [r.method for r in server.requests] == ["POST", "GET"]
    text = "".join(e.delta for e in got if e.type == "response.output_text.delta")
    assert text == answer
    assert events.one()["streamtap.resume.strategy"] == "reattach"
    first = _sdk_stream(stream)
    assert type(first._client).__name__ == "_DecodingClient"
    source = stream._self_run.stream  # the re-attached attempt (recover.Source)
    assert source.stream is not first
    assert type(source.stream._client).__name__ == "_DecodingClient"
    # (at most `response.completed`: the server's usage lacks a field some releases' models
    # require, e.g. `cache_write_tokens` on openai 3.x; the SDK constructs that event itself)
    assert source.stream._client.fallbacks <= 1
