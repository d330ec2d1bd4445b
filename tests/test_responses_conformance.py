"""Conformance of the Responses API: every recorded Responses stream, openai 1.x-3.x.

Each of the 57 recorded streams (`tests/data/responses.jsonl`, provenance in its README) is
served by `FakeServer` byte for byte to the real SDK, to a plain client (the reference) and to an
instrumented one (word buffering, token counting), sync and async, through
`responses.create(stream=True)` (or `responses.retrieve(id, stream=True, starting_after=N)` for
the two recorded background resumes) and through the `responses.stream(...)` helper. What the
instrumented caller sees must be what the plain caller sees, except for what docs/events.md
("The Responses API") allows:

* the text of the buffered delta events (`response.output_text.delta`, `response.refusal.delta`,
  `response.reasoning_text.delta`, `response.reasoning_summary_text.delta`) may move to later
  events of the same lane (an event whose text is all held keeps `delta == ""`); per lane (event
  type, output item, part) the concatenated text is the server's;
* released text comes in copies of the lane's last delta event (`logprobs` emptied), numbered
  like the event delivered before it, right before the next event that is not a buffered delta
  (or at the end); in async streams also wherever the hold bound fired;
* everything else, event for event, is identical (types, order, ids, indexes, sequence numbers,
  `.done` texts, usage, extra fields), sequence numbers never go down, and the helper's
  `get_final_response()` equals the plain one.

The summary event is checked field by field, and the token count against tiktoken's count of
the delivered text (TOKEN_RULES below: how it compares with the server's bill).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import regex

import streamtap
from streamtap._sdk.pydantic_compat import PYDANTIC_V1
from streamtap._tokenizer import encodings as _encodings
from streamtap.testing import FakeServer, Reply, load_cassettes

if not hasattr(openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9"), "responses"):
    pytest.skip(
        f"openai {openai.__version__} has no Responses API (added in openai 1.66)",
        allow_module_level=True,
    )

# (openai 1.x's own `model_dump` warns about the recorded tools' shapes; not ours to judge.)
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")

CASSETTES = Path(__file__).resolve().parent / "data" / "responses.jsonl"
RECORDS: list[dict[str, Any]] = load_cassettes(CASSETTES)

# Buffered delta event types -> the field naming the part within the output item.
BUFFERED = {
    "response.output_text.delta": "content_index",
    "response.refusal.delta": "content_index",
    "response.reasoning_text.delta": "content_index",
    "response.reasoning_summary_text.delta": "summary_index",
}
_DUMP: dict[str, Any] = {} if PYDANTIC_V1 else {"warnings": False}


# -- running one request -------------------------------------------------------------------


@dataclass
class Seen:
    """What one caller saw: event dumps, the exception (kept), the helper's final response."""

    events: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    final: Any = None


def dump(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(exclude_unset=True, **_DUMP)
    return out


def _params(method: Any) -> frozenset[str]:
    return frozenset(inspect.signature(method).parameters) - {"self"}


@dataclass(frozen=True)
class Call:
    """How a record is requested: POST /responses, or GET /responses/{id} (a resume)."""

    kind: str  # "create" or "retrieve"
    kwargs: dict[str, Any]
    response_id: str = ""


def call_for(record: Mapping[str, Any]) -> Call:
    """SDK arguments for a recorded request (unknown body fields go in extra_body)."""
    url = str(record.get("request_url") or "")
    if "/responses/" in url:
        path, _, query = url.partition("?")
        response_id = path.rsplit("/", 1)[1]
        after = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        return Call("retrieve", {"starting_after": int(after["starting_after"])}, response_id)
    from openai.resources.responses import Responses

    known = _params(Responses.create)
    kwargs: dict[str, Any] = {"model": "gpt-4o-mini", "input": "hi"}
    extra: dict[str, Any] = {}
    for key, value in (record.get("request") or {}).items():
        if key == "stream":
            continue
        (kwargs if key in known else extra)[key] = copy.deepcopy(value)
    if extra:
        kwargs["extra_body"] = extra
    return Call("create", kwargs)


def _open(client: Any, call: Call, helper: bool) -> Any:
    r = client.responses
    if helper:
        if call.kind == "retrieve":
            return r.stream(response_id=call.response_id, **call.kwargs)
        known = _params(type(r).stream)
        kwargs = {k: v for k, v in call.kwargs.items() if k in known}
        extra = {k: v for k, v in call.kwargs.items() if k not in known and k != "extra_body"}
        if extra or "extra_body" in call.kwargs:
            kwargs["extra_body"] = {**call.kwargs.get("extra_body", {}), **extra}
        return r.stream(**kwargs)
    if call.kind == "retrieve":
        return r.retrieve(call.response_id, stream=True, **call.kwargs)
    return r.create(stream=True, **call.kwargs)


def run_sync(client: Any, call: Call, helper: bool) -> Seen:
    seen = Seen()
    try:
        with _open(client, call, helper) as stream:
            for event in stream:
                seen.events.append(dump(event))
            if helper:
                seen.final = stream.get_final_response()
    except Exception as exc:
        seen.error = _kept(exc)
    return seen


async def run_async(client: Any, call: Call, helper: bool) -> Seen:
    seen = Seen()
    try:
        opened = _open(client, call, helper)
        async with opened if helper else await opened as stream:
            async for event in stream:
                seen.events.append(dump(event))
            if helper:
                seen.final = await stream.get_final_response()
    except Exception as exc:
        seen.error = _kept(exc)
    return seen


def _kept(exc: Exception) -> Exception:
    """The exception without its traceback: its frames would keep the stream alive, and its
    summary (recorded when the stream is dropped) would come during a later test."""
    exc.__traceback__ = None
    return exc


class Clients:
    """A plain and an instrumented client per mode, and one event loop, for the module."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.cache: dict[tuple[str, bool], Any] = {}

    def get(self, mode: str, instrumented: bool, **options: Any) -> Any:
        key = (mode, instrumented)
        client = self.cache.get(key)
        if client is None:
            cls: Any = openai.AsyncOpenAI if mode == "async" else openai.OpenAI
            client = cls(base_url=self.server.base_url, api_key="sk-test", max_retries=0)
            self.cache[key] = client
        if instrumented:
            streamtap.instrument(client, **options)  # every test ends uninstrumented
        return client

    def run(self, call: Call, mode: str, instrumented: bool, helper: bool, **options: Any) -> Seen:
        client = self.get(mode, instrumented, **options)
        call = Call(call.kind, copy.deepcopy(call.kwargs), call.response_id)
        if mode == "async":
            seen = self.loop.run_until_complete(run_async(client, call, helper))
            if seen.error is not None:
                # The helper left the stream unclosed: its async generator is closed by the
                # loop's finalizer hook, on the loop's next turn (the summary says `gc`).
                gc.collect()
                self.loop.run_until_complete(asyncio.sleep(0))
            return seen
        return run_sync(client, call, helper)

    def close(self) -> None:
        for (mode, _), client in self.cache.items():
            if mode == "async":
                self.loop.run_until_complete(client.close())
            else:
                client.close()
        self.loop.close()


@pytest.fixture(scope="module")
def clients() -> Any:
    with FakeServer() as server:
        c = Clients(server)
        try:
            yield c
        finally:
            c.close()


# -- the comparison --------------------------------------------------------------------------


def lane_of(event: Mapping[str, Any]) -> tuple[Any, ...] | None:
    part = BUFFERED.get(event.get("type", ""))
    if part is None:
        return None
    item = event.get("output_index")
    return (event["type"], item if item is not None else event.get("item_id"), event.get(part))


def texts_of(events: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], str]:
    """Concatenated delta text per lane."""
    out: dict[tuple[Any, ...], str] = {}
    for e in events:
        lane = lane_of(e)
        if lane is not None and isinstance(e.get("delta"), str):
            out[lane] = out.get(lane, "") + e["delta"]
    return {k: v for k, v in out.items() if v}


def _without_text(event: Mapping[str, Any]) -> dict[str, Any]:
    # (`snapshot`: the helper's running text of the part, built from the delivered deltas.)
    return {k: v for k, v in event.items() if k not in ("delta", "snapshot")}


def same_event(ref: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    if lane_of(ref) is None:
        return ref == got
    return isinstance(got.get("delta"), str) and _without_text(ref) == _without_text(got)


def is_copy(
    got: Mapping[str, Any], before: list[dict[str, Any]], sent: list[dict[str, Any]]
) -> str:
    """Why `got` is not a released copy of a delta the server sent earlier ("" if it is)."""
    lane = lane_of(got)
    if lane is None or not got.get("delta"):
        return "not a delta event carrying text"
    last = next((e for e in reversed(sent) if lane_of(e) == lane), None)
    if last is None:
        return "no earlier delta of its lane"
    want = {**_without_text(last), "delta": got["delta"]}
    if "sequence_number" in last:
        want["sequence_number"] = before[-1].get("sequence_number") if before else None
    if last.get("logprobs"):
        want["logprobs"] = []
    if "snapshot" in got:
        want["snapshot"] = got["snapshot"]
    return "" if want == got else f"differs from the lane's last delta {last!r}"


def compare(ref: Seen, got: Seen, mode: str) -> list[str]:
    """Every difference between what the plain and the instrumented caller saw."""
    problems: list[str] = []
    j = 0
    R = ref.events
    for n, g in enumerate(got.events):
        if j < len(R) and same_event(R[j], g):
            j += 1
            continue
        why = is_copy(g, got.events[:n], R[:j])
        if why:
            problems.append(f"event {n} {g.get('type')}: not the server's event {j} ({why})")
            break
        nxt = R[j] if j < len(R) else None
        if mode == "sync" and nxt is not None and lane_of(nxt) is not None:
            problems.append(f"event {n}: released text before a delta ({nxt.get('type')})")
    else:
        if j != len(R):
            problems.append(f"caller got {j} of the server's {len(R)} events")
    seqs = [e["sequence_number"] for e in got.events if isinstance(e.get("sequence_number"), int)]
    if any(b < a for a, b in zip(seqs, seqs[1:])):
        problems.append(f"sequence numbers go down: {seqs}")
    if texts_of(got.events) != texts_of(R):
        problems.append(f"text differs: server {texts_of(R)!r}, caller {texts_of(got.events)!r}")
    if (ref.error is None) != (got.error is None) or (
        ref.error is not None
        and (type(ref.error) is not type(got.error) or str(ref.error) != str(got.error))
    ):
        problems.append(f"exception: SDK raised {ref.error!r}, instrumented {got.error!r}")
    if ref.final is not None or got.final is not None:
        if ref.final is None or got.final is None or dump(ref.final) != dump(got.final):
            problems.append("get_final_response() differs")
    return problems


# -- the summary -----------------------------------------------------------------------------


@dataclass
class Expected:
    """What the reference stream implies for the summary."""

    response: dict[str, Any] | None  # the last lifecycle event's response
    terminal: str | None
    usage: dict[str, Any] | None
    has_token: bool
    logprobs: int


def expected(events: list[dict[str, Any]]) -> Expected:
    response = terminal = None
    has_token = False
    logprobs = 0
    for e in events:
        t = e.get("type", "")
        if isinstance(e.get("response"), dict):
            response = e["response"] if response is None or t != "error" else response
            if t in ("response.completed", "response.incomplete", "response.failed"):
                terminal = t
                response = e["response"]
        if t.endswith(".delta") and e.get("delta"):
            has_token = True
        if lane_of(e) is not None and e.get("delta") and e.get("logprobs"):
            logprobs += len(e["logprobs"])
    usage = response.get("usage") if response is not None and terminal else None
    return Expected(response, terminal, usage, has_token, logprobs)


def first_response(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next((e["response"] for e in events if isinstance(e.get("response"), dict)), {})


def tiktoken_count(texts: Mapping[tuple[Any, ...], str], encoding: str) -> int:
    enc = _encodings.load_encoding(encoding, None)
    return sum(len(enc.encode(t, disallowed_special=())) for t in texts.values())


def check_summary(
    ev: Mapping[str, Any], exp: Expected, ref: Seen, got: Seen, server: FakeServer
) -> list[str]:
    first = first_response(ref.events)
    resp = exp.response or {}
    # Usage of all zeros (an incomplete response) is no bill: streamtap's count stands.
    billed = exp.usage and any(exp.usage.get(k) for k in ("input_tokens", "output_tokens"))
    usage = exp.usage if billed else None
    status = resp.get("status") if exp.terminal else None
    reason = (resp.get("incomplete_details") or {}).get("reason") if exp.terminal else None
    want: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "openai.api.type": "responses",
        "gen_ai.provider.name": "openai",
        "gen_ai.response.id": first.get("id") or None,
        "gen_ai.response.model": first.get("model") or None,
        "server.port": server.port,
        "streamtap.stream": True,
        "http.response.status_code": 200,
        "streamtap.chunk_count": len(ref.events),
        "streamtap.response.status": status,
        "streamtap.response.incomplete_reason": reason,
        "gen_ai.response.finish_reasons": [reason or status] if status else None,
        "streamtap.choices": 1 if first or texts_of(ref.events) else None,
        "streamtap.outcome": ("error" if status == "failed" else "ok") if status else "incomplete",
        "streamtap.end": "exhausted",
        "streamtap.retries": 0,
        "streamtap.buffering.mode": "word",
    }
    if usage is not None:
        want["gen_ai.usage.input_tokens"] = usage.get("input_tokens")
        want["gen_ai.usage.output_tokens"] = usage.get("output_tokens")
        want["streamtap.usage.source"] = "server"
        want["streamtap.usage.reasoning_tokens"] = (usage.get("output_tokens_details") or {}).get(
            "reasoning_tokens"
        )
        want["streamtap.usage.cached_tokens"] = (usage.get("input_tokens_details") or {}).get(
            "cached_tokens"
        )
    else:
        want["gen_ai.usage.input_tokens"] = None
        want["streamtap.usage.source"] = "streamtap"
    problems = [
        f"{key}: event has {ev.get(key)!r}, expected {value!r}"
        for key, value in want.items()
        if ev.get(key) != value
    ]
    counted = ev.get("streamtap.tokens.counted")
    source = ev.get("streamtap.tokens.source")
    if exp.logprobs:
        if (counted, source) != (exp.logprobs, "exact"):
            problems.append(f"exact count {counted} ({source}), logprobs {exp.logprobs}")
    elif source == "tokenizer":
        n = tiktoken_count(texts_of(got.events), ev["streamtap.tokens.encoding"])
        if counted != n:
            problems.append(f"streamtap.tokens.counted {counted}, tiktoken {n}")
    elif source != "estimate":
        problems.append(f"streamtap.tokens.source {source!r}")
    ttft = ev.get("streamtap.time_to_first_token")
    if exp.has_token != (ttft is not None):
        problems.append(f"time_to_first_token {ttft!r}, a token was seen: {exp.has_token}")
    return problems


# -- token counts against the bill ----------------------------------------------------------
#
# `streamtap.tokens.diff` = counted - summary tokens - (output_tokens - reasoning_tokens), or
# counted - output_tokens when raw reasoning was streamed (`reasoning_text`, counted too).
# A reasoning summary is written apart from the answer and not billed as output (o3-mini:
# 3506 output, 2240 reasoning, 1265 text tokens + 1, next to a 488-token summary).
#
# kind              bound                        why [observed in the 57 recordings]
# ----------------- ---------------------------- -------------------------------------------
# openai-text       diff == -1 (0 when cut by    gpt-4o / 4.1 / 4o-mini text: the server
#                   max_output_tokens)           bills one token more per answer than its
#                                                text (the end of the message) [-1 on all]
# openai-refusal    -4 <= diff <= -1             a refusal part: its framing [-2]
# openai-websearch  counted <= output_tokens     web search: the answer text carries citations
#                                                the tool wrote, not the model [+87 of 3367]
# openai-other      -(output - reasoning)        reasoning models (reasoning_tokens are
#                   <= diff <= 0                 reported rounded to 64), function calls and
#                                                built-in tools (their tokens are billed,
#                                                streamtap counts text channels only)
# other-tools       counted <= output + 8        function calls elsewhere (DeepSeek, Bedrock):
#                   + output / 4                 arguments are not counted; an estimate
# estimate          abs(diff) <= 8 + output / 4  other servers (xAI, DeepSeek, gpt-oss via
#                                                OpenRouter): not an OpenAI tokenizer


def _openai(record: Mapping[str, Any]) -> bool:
    return str(record.get("provider", "")).startswith(("openai", "azure", "mirascope"))


_NOT_PLAIN = frozenset(
    {"function-call", "reasoning-item", "web-search", "code-interpreter", "file-search", "mcp"}
    | {"moderation", "compaction", "refusal"}
)


def token_bound(record: Mapping[str, Any], ev: Mapping[str, Any]) -> tuple[str, bool]:
    diff = ev.get("streamtap.tokens.diff")
    counted = ev.get("streamtap.tokens.counted") or 0
    output = ev.get("gen_ai.usage.output_tokens") or 0
    reasoning = ev.get("streamtap.usage.reasoning_tokens") or 0
    tags = set(record.get("tags") or ())
    if not isinstance(diff, int):
        return "no usage", True
    if _openai(record) and ev.get("streamtap.tokens.source") != "estimate":
        if not tags & _NOT_PLAIN and not str(ev.get("gen_ai.response.model")).startswith("gpt-5"):
            return "openai-text", diff == -1 or ("incomplete" in tags and diff == 0)
        if "refusal" in tags:
            return "openai-refusal", -4 <= diff <= -1
        if "web-search" in tags:
            return "openai-websearch", counted <= output
        return "openai-other", -(output - reasoning) <= diff <= 0
    if "function-call" in tags:
        return "other-tools", counted <= output + 8 + output // 4
    return "estimate", abs(diff) <= 8 + output // 4


# -- the tests -------------------------------------------------------------------------------


def _record_params() -> list[Any]:
    assert len(RECORDS) == 57, f"{CASSETTES}: expected the 57 recorded Responses streams"
    return [
        pytest.param(record, mode, id=f"{record['id']}-{mode}")
        for record in RECORDS
        for mode in ("sync", "async")
    ]


def _serve(clients: Clients, record: Mapping[str, Any]) -> None:
    server = clients.server
    server.clear()
    server.default = Reply.from_cassette(record)


@pytest.mark.parametrize(("record", "mode"), _record_params())
def test_recorded_responses_stream(
    record: dict[str, Any], mode: str, clients: Clients, events: Any
) -> None:
    """A recorded Responses stream reaches an instrumented caller as it reaches a plain one:
    same events, same text per lane, one summary with the stream's facts and exact counts."""
    call = call_for(record)
    _serve(clients, record)
    ref = clients.run(call, mode, instrumented=False, helper=False)
    got = clients.run(call, mode, instrumented=True, helper=False)
    assert len(clients.server.requests) == 2
    assert clients.server.requests[0].json == clients.server.requests[1].json
    problems = compare(ref, got, mode)
    assert not events.errors(), [r.getMessage() for r in events.errors()]
    ev = events.one()
    exp = expected(ref.events)
    problems += check_summary(ev, exp, ref, got, clients.server)
    assert not problems, "\n".join(problems)
    name, ok = token_bound(record, ev)
    assert ok, f"token rule {name}: diff {ev.get('streamtap.tokens.diff')} ({ev})"


@pytest.mark.parametrize(("record", "mode"), _record_params())
def test_recorded_responses_stream_helper(
    record: dict[str, Any], mode: str, clients: Clients, events: Any
) -> None:
    """The `responses.stream(...)` helper over an instrumented client: the same events as the
    plain helper (its text snapshots follow the delivered text) and the same final response,
    the full text exactly once."""
    call = call_for(record)
    _serve(clients, record)
    ref = clients.run(call, mode, instrumented=False, helper=True)
    got = clients.run(call, mode, instrumented=True, helper=True)
    problems = compare(ref, got, mode)
    assert not problems, "\n".join(problems)
    assert len(events.summaries) == 1


def _boundaries(text: str) -> set[int]:
    """Positions where a piece may end: Unicode word boundaries (UAX #29), grapheme-safe."""
    words = {m.start() for m in regex.finditer(r"(?w)\b", text)}
    graphemes = {m.end() for m in regex.finditer(r"\X", text)}
    return (words & graphemes) | {0, len(text)}


@pytest.mark.parametrize(("record", "mode"), _record_params())
def test_recorded_responses_delivered_on_word_boundaries(
    record: dict[str, Any], mode: str, clients: Clients, events: Any
) -> None:
    """Every delivered piece of a buffered lane ends on a word boundary of the lane's text
    (the hold bounds set out of reach), and the lane's text is the server's."""
    call = call_for(record)
    _serve(clients, record)
    got = clients.run(
        call, mode, instrumented=True, helper=False, hold_max_seconds=60, hold_max_chars=100_000
    )
    texts = texts_of(got.events)
    assert texts == texts_of(expected_events(record))
    for lane, text in texts.items():
        allowed = _boundaries(text)
        pos = 0
        for e in got.events:
            if lane_of(e) == lane and e.get("delta"):
                pos += len(e["delta"])
                assert pos in allowed, (lane, text[max(0, pos - 20) : pos + 20], pos)


def expected_events(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The recorded body's events (data lines as JSON), for the text the server sent."""
    out = []
    for block in str(record["sse"]).split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:") and not line[5:].strip().startswith("[DONE]"):
                out.append(json.loads(line[5:]))
    return out
