"""The stall watchdog tells a stalled server from a late client, through the real SDK.

A stall is the *server* going quiet. A client that is late to read what the server already sent
(an event loop busy elsewhere, a process that did not run) must not cost a resume: that is a
needless, billed request. A server that really went quiet must still be resumed, loop busy or
not. (tests/test_soak.py has the case the soak found: a busy loop while the server keeps
sending; tests/test_resume.py the plain stalls and slow callers.)
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import threading
import time
from typing import Any

import openai
import pytest

import streamtap
from streamtap.testing import FakeServer, Fault, Reply

TEXT = "Hello there, world. The answer is forty-two."
MSG = [{"role": "user", "content": "hi"}]


def _client(server: FakeServer, **opts: Any) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    return streamtap.instrument(client, backoff_initial=0.01, **opts)


def _aclient(server: FakeServer, **opts: Any) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    return streamtap.instrument(client, backoff_initial=0.01, **opts)


def _delta(chunk: Any) -> str:
    return (chunk.choices[0].delta.content or "") if chunk.choices else ""


def _finished(chunk: Any) -> bool:
    return bool(chunk.choices and chunk.choices[0].finish_reason)


def _block_the_loop(seconds: float) -> asyncio.Task[None]:
    """Another task that keeps the event loop from running anything else for `seconds`."""

    async def hog() -> None:
        time.sleep(seconds)

    return asyncio.get_running_loop().create_task(hog())


# ---- async: a busy event loop --------------------------------------------------------------


@pytest.mark.parametrize("spy", ["before", "while"])
async def test_a_busy_loop_with_the_chunk_already_off_the_socket_is_not_a_stall(
    spy: str, server: FakeServer, events: Any
) -> None:
    """The loop blocks in the very iteration in which the first chunk arrives, and the server
    then pauses: when the watchdog looks, the socket is empty, as asyncio's transport has taken
    the chunk off it; only the task that reads it has not run yet. That is a late loop too.

    The blocking callback watches a duplicate of the client's socket, so it runs in the same
    loop iteration as the transport's read, before or after it; which one depends on the order
    the selector reports the two descriptors, which depends on which was registered last:
    `spy` registers it before the read starts, or while the read waits."""
    # the role chunk 0.3 s after the headers, then 2.3 s of nothing: the loop is blocked for 2 s
    # of it, so the client itself waits 0.3 s twice, well inside the 0.6 s timeouts
    server.enqueue(Reply(text=TEXT, first_delay=0.3, delay=[2.3]))
    client = _aclient(server, idle_timeout=0.6, first_chunk_timeout=0.6)
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    loop = asyncio.get_running_loop()
    sock = stream.response.extensions["network_stream"].get_extra_info("socket")
    dup = os.dup(sock.fileno())
    blocked: list[float] = []

    def on_arrival() -> None:
        loop.remove_reader(dup)
        blocked.append(time.monotonic())
        time.sleep(2.0)

    if spy == "before":
        loop.add_reader(dup, on_arrival)
    else:
        loop.call_later(0.15, loop.add_reader, dup, on_arrival)
    try:
        text = "".join([_delta(c) async for c in stream])
    finally:
        loop.remove_reader(dup)
        os.close(dup)
    assert blocked, "the loop was never blocked: the test did not test anything"
    assert text == TEXT
    assert len(server.requests) == 1
    assert events.one()["streamtap.retries"] == 0
    assert not events.errors()


async def test_a_stalled_server_is_resumed_while_the_loop_is_busy(
    server: FakeServer, events: Any
) -> None:
    """A busy loop postpones the verdict, never cancels it: the server goes quiet for good
    while the loop is blocked, and the stream is resumed soon after the loop is free."""
    server.enqueue(Reply(text=TEXT, delay=0.1, fault=Fault.stall(after_events=3, seconds=30)))
    server.enqueue(Reply(text=TEXT))
    client = _aclient(server, idle_timeout=0.5)
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    text, hogs = "", []
    async for chunk in stream:
        if _delta(chunk) and not hogs:
            hogs.append(_block_the_loop(1.0))
        text += _delta(chunk)
    await asyncio.gather(*hogs)
    assert text == TEXT
    # Resumed, not waited out: after its 30 s the server would have finished the first answer.
    assert len(server.requests) == 2
    ev = events.one()
    assert ev["streamtap.attempts"][0]["cause"] == "stall"
    assert not events.errors()


async def test_the_end_of_a_close_delimited_body_during_a_busy_loop_is_not_a_stall(
    server: FakeServer, events: Any
) -> None:
    """A body that ends when the server closes the connection, without `[DONE]`: the close
    arrives while the loop is blocked. A closed socket is an end the reader will see, not a
    stall (the answer being complete, it was not resent, but the event reported a stall)."""
    end = Fault.stall(after_events=1000, seconds=0.3, then="close")  # after the last event
    server.enqueue(Reply(text=TEXT, close_delimited=True, done=False, fault=end))
    client = _aclient(server, idle_timeout=0.5)
    stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
    text, hogs = "", []
    async for chunk in stream:
        if _finished(chunk) and not hogs:
            hogs.append(_block_the_loop(1.5))
        text += _delta(chunk)
    await asyncio.gather(*hogs)
    assert hogs
    assert text == TEXT
    assert len(server.requests) == 1
    ev = events.one()
    assert (ev["streamtap.outcome"], ev["streamtap.retries"]) == ("ok", 0)
    assert "streamtap.attempts" not in ev  # no interrupted attempt (it was: cause "stall")
    assert not events.errors()


# ---- sync: a process that did not run, a slow caller --------------------------------------


def _hold_the_gil(after: float, seconds: float) -> threading.Thread:
    """A thread that, after `after` seconds, keeps every other thread of the process from
    running for `seconds`, as a long garbage collection or a C extension holding the GIL does
    (the fake server, in this process, is frozen too)."""
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call

    def hold() -> None:
        time.sleep(after)
        libc.usleep(int(seconds * 1_000_000))

    thread = threading.Thread(target=hold, name="test-freeze")
    thread.start()
    return thread


@pytest.mark.skipif(sys.platform == "win32", reason="usleep from the C library")
def test_time_the_process_did_not_run_is_no_stall(server: FakeServer, events: Any) -> None:
    """Events at 0, 0.15, 0.3 s, the next at 1.8 s; the process is frozen from 0.4 to 1.6 s.
    The client waited 0.3 s of the time it ran: no stall at idle_timeout=0.6 (the wall clock
    says 1.5 s, but a client that was not running cannot tell a quiet server from its own
    absence)."""
    server.enqueue(Reply(text=TEXT, delay=[0.15, 0.15, 1.5]))
    client = _client(server, idle_timeout=0.6)
    stream = client.chat.completions.create(model="m", messages=MSG, stream=True)
    freeze = _hold_the_gil(after=0.4, seconds=1.2)
    text = "".join(_delta(c) for c in stream)
    freeze.join()
    assert text == TEXT
    assert len(server.requests) == 1
    assert events.one()["streamtap.retries"] == 0
    assert not events.errors()


def test_a_slow_sync_caller_is_not_resumed(server: FakeServer, events: Any) -> None:
    """The server sends the whole answer at once; the caller takes a second over one chunk,
    longer than idle_timeout: its own time, never the server's."""
    server.enqueue(Reply(text=TEXT))
    client = _client(server, idle_timeout=0.3, first_chunk_timeout=0.3)
    text, seen = "", 0
    for chunk in client.chat.completions.create(model="m", messages=MSG, stream=True):
        seen += 1
        if seen == 2:
            time.sleep(1.0)
        text += _delta(chunk)
    assert text == TEXT
    assert len(server.requests) == 1
    assert events.one()["streamtap.retries"] == 0


# ---- the watchdog's own failures -----------------------------------------------------------


def test_a_failure_inside_the_watchdog_is_logged_once_and_the_stream_goes_on(
    server: FakeServer, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """streamtap's own bug in the watchdog (here: its socket check raising) is logged once for
    the stream, raised into no one (strict mode included: it runs on the watchdog's thread), and
    neither the stream nor the watchdog stops; a later stall is still detected."""
    from streamtap._sdk import watchdog as _watchdog

    def broken(sock: Any) -> bool:
        raise RuntimeError("broken check")

    monkeypatch.setattr(_watchdog, "_input_waiting", broken)
    server.enqueue(Reply(text=TEXT, fault=Fault.stall(after_events=3, seconds=1.2)))
    client = _client(server, idle_timeout=0.2)
    text = "".join(
        _delta(c) for c in client.chat.completions.create(model="m", messages=MSG, stream=True)
    )
    assert text == TEXT
    assert len(server.requests) == 1  # not resumed: the check failed, so no verdict
    errors = events.errors()
    assert [r.getMessage().split(":")[0] for r in errors] == [
        "streamtap internal error in watching for stalls"
    ]
    assert any("times in this stream" in r.getMessage() for r in events.records)
    monkeypatch.undo()
    server.enqueue(Reply(text=TEXT, fault=Fault.stall(after_events=3, seconds=30)))
    server.enqueue(Reply(text=TEXT))
    text = "".join(
        _delta(c) for c in client.chat.completions.create(model="m", messages=MSG, stream=True)
    )
    assert text == TEXT
    assert events.summaries[-1]["streamtap.attempts"][0]["cause"] == "stall"


# ---- the decisions, in explicit time ---------------------------------------------------------
# The watchdog's thread reads the real clock (it times real waits on real sockets); what it
# decides at each wake-up is `Watchdog._round(now, frozen)`, driven here with explicit readings:
# when a stall is declared is then exact, not a wall-clock race.


class Waiter:
    """A stream as the watchdog sees it (the `Watched` face of a `Run`), moved by the test:
    `reading` while a read from the server is in flight, `reads` chunks so far. It has no
    socket, so a verdict only sets `stalled`."""

    def __init__(self, idle: float | None = 1.0, first: float | None = None) -> None:
        self.stalled = False
        self.stream = None
        self.idle_timeout = idle
        self.first_chunk_timeout = first
        self.loop = None
        self.state = None
        self.reading = True
        self.reads = 0

    def waiting(self) -> bool:
        return self.reading

    def progress(self) -> int:
        return self.reads

    @property
    def got_chunk(self) -> bool:
        return self.reads > 0


def _stalled_at(run: Waiter, rounds: list[tuple[float, float, int, bool]]) -> float | None:
    """Wake-ups (now, frozen, chunks read, reading) of a watchdog watching only `run`: when
    the stall was declared (None: never)."""
    from streamtap._sdk.watchdog import Watchdog

    dog = Watchdog()  # no thread: it starts with watch(), not used here
    dog._runs[run] = None
    for now, frozen, reads, reading in rounds:
        run.reads, run.reading = reads, reading
        dog._round(now, frozen)
        if run.stalled:
            return now
    return None


def _steady(times: list[float], reads: int = 1) -> list[tuple[float, float, int, bool]]:
    return [(t, 0.0, reads, True) for t in times]


@pytest.mark.parametrize(
    ("name", "run", "rounds", "expected"),
    [
        # timed from the wake-up that first saw the wait (10.0): past idle_timeout, never at it
        ("idle", Waiter(idle=1.0), _steady([10.0, 10.25, 10.5, 11.0, 11.01, 11.25]), 11.01),
        # before the first chunk, first_chunk_timeout applies, not idle_timeout
        ("first chunk", Waiter(idle=0.5, first=3.0), _steady([10, 11, 12, 12.9, 13.1], 0), 13.1),
        ("first, unset", Waiter(idle=0.5, first=None), _steady([10, 20, 30], 0), None),
        # a chunk in between: the next wait is timed anew, gaps are never added up
        (
            "progress",
            Waiter(idle=1.0),
            [(10, 0, 1, True), (10.9, 0, 2, True), (11.8, 0, 3, True), (12.7, 0, 3, True)],
            None,
        ),
        (
            "progress, then quiet",
            Waiter(idle=1.0),
            [(10, 0, 1, True), (10.9, 0, 2, True), *_steady([11.5, 11.9, 11.95], 2)],
            11.95,
        ),
        # the caller is slow (no read in flight): its time is never the server's
        ("slow caller", Waiter(idle=1.0), [(t, 0, 1, False) for t in (10, 12, 14)], None),
        (
            "caller, then wait",
            Waiter(idle=1.0),
            [(10, 0, 1, False), (12, 0, 1, True), (12.9, 0, 1, True), (13.1, 0, 1, True)],
            13.1,
        ),
        # 1 s the process did not run (a late wake-up) counts for no stream
        (
            "frozen",
            Waiter(idle=1.0),
            [(10, 0, 1, True), (11.5, 1.0, 1, True), (11.9, 0, 1, True), (12.1, 0, 1, True)],
            12.1,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_stall_is_declared_past_its_timeout_in_the_watchdogs_time(
    name: str, run: Waiter, rounds: list[tuple[float, float, int, bool]], expected: float | None
) -> None:
    assert _stalled_at(run, rounds) == expected


@pytest.mark.parametrize(
    ("gap", "tick", "frozen"),
    [
        (0.25, 0.25, 0.0),  # on time
        (0.29, 0.25, 0.0),  # up to a tick late: a busy machine, still waiting
        (0.5, 0.25, 0.0),
        (1.25, 0.25, 1.0),  # a second late: the process did not run
        (0.06, 0.01, 0.0),  # short ticks: 50 ms of jitter is allowed
        (0.07, 0.01, 0.06),
    ],
)
def test_a_late_wake_up_is_time_the_process_did_not_run(
    gap: float, tick: float, frozen: float
) -> None:
    from streamtap._sdk.watchdog import _frozen

    assert _frozen(gap, tick) == pytest.approx(frozen)
