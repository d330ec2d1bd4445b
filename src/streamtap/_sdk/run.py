"""One stream's moving parts (`Run`), shared by its proxy and its driver, and what they need
to close a stream quietly or tell a server's `[DONE]` from a body that just stopped.

The end of a stream is recorded exactly once (`Run.finish`), whichever way it comes: exhausted,
error, `close()`, context exit, cancellation, or garbage collection (`break` and walking away is
recorded as `cancelled`/`break`; never iterated at all as `abandoned`).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .._core import machine
from .._core.state import StreamState
from .._errors import report_repeats
from .._exceptions import IncompleteStream, Stalled
from . import chat as _chat
from . import log as _log
from .adapter import Adapter
from .endpoint import error_meta, response_meta
from .watchdog import watchdog

if TYPE_CHECKING:
    from .recover import Resumer


class Run:
    """One stream's moving parts, shared by its proxy and its generator."""

    __slots__ = (
        "__weakref__",
        "adapter",
        "attempt_base",
        "closing",
        "debug",
        "error_object_seen",
        "first_chunk_timeout",
        "gen",
        "hide_usage",
        "idle_timeout",
        "is_async",
        "last_chunk",
        "loop",
        "probe",
        "reading",
        "reads",
        "resumer",
        "resuming",
        "stalled",
        "started",
        "state",
        "stream",
    )

    def __init__(
        self,
        state: StreamState,
        stream: Any,
        hide_usage: bool,
        resumer: Resumer | None,
        adapter: Adapter = _chat,
    ) -> None:
        self.adapter = adapter  # the protocol's items: parsed, rewritten, released
        self.state = state
        self.stream = stream
        self.hide_usage = hide_usage
        self.resumer = resumer
        self.last_chunk: Any = None
        self.started = False
        self.closing: str | None = None  # "close" / "exit" while the proxy closes the generator
        self.debug = _log.debug_enabled(state)
        self.error_object_seen = False  # an unresumed error object: the end is not a cut
        # Stall watching (see _watchdog): only with a resumer to act on a stall.
        o = state.resolved.options
        self.idle_timeout = o.idle_timeout if resumer is not None else None
        self.first_chunk_timeout = o.first_chunk_timeout if resumer is not None else None
        self.reading = False  # async: a read from the server is in flight (see _watchdog)
        self.gen: weakref.ref[Any] | None = None  # sync: the generator (see waiting())
        self.resuming = False  # sync: inside the resume logic (not a read)
        self.reads = 0  # chunks read ahead (async with a word buffer; else chunk_count counts)
        self.attempt_base = 0  # progress() when the current attempt began
        self.stalled = False
        self.loop: Any = None
        self.is_async = not hasattr(stream, "__next__")
        # Only a resumer needs to tell a server's `[DONE]` from a body that just stopped.
        self.probe = DoneProbe.install(stream) if resumer is not None else None
        response_meta(state, getattr(stream, "response", None))

    @property
    def watched(self) -> bool:
        return self.idle_timeout is not None or self.first_chunk_timeout is not None

    def waiting(self) -> bool:
        """A read from the server is in flight (the watchdog times only those waits).

        Sync streams: the generator is running (the caller is inside `next()`) and not busy
        resuming; the time it spends on a chunk itself is microseconds. Async streams raise
        the `reading` flag around each read.
        """
        if self.is_async:
            return self.reading
        ref = self.gen
        gen = ref() if ref is not None else None
        return gen is not None and gen.gi_running and not self.resuming

    def progress(self) -> int:
        """Grows with every chunk read (the watchdog compares readings)."""
        return self.state.chunk_count + self.reads

    @property
    def got_chunk(self) -> bool:
        """A chunk arrived in the current attempt."""
        return self.progress() > self.attempt_base

    def attempt_started(self) -> None:
        """A resumed attempt begins: the text the caller has not seen will come again."""
        machine.resume(self.state)
        self.attempt_base = self.progress()

    def adopt(self, source: Any) -> None:
        """Read a resumed attempt's stream from now on."""
        if self.probe is not None:
            self.probe.release()
        self.stream = source
        self.probe = getattr(source, "probe", None)

    def finish(self, outcome: str, end: str, exc: BaseException | None = None) -> None:
        state = self.state
        if state.finish(outcome, end, state.clock(), exc):
            self.reading = False
            watchdog.unwatch(self)
            if self.probe is not None:
                self.probe.release()
            if exc is not None:
                error_meta(state, exc)
            if state.internal_errors:
                report_repeats(state.internal_errors)
            _log.emit(state)

    def finish_exhausted(self) -> None:
        if self.state.error_type is not None:
            # The server reported a failure in the stream itself (a Responses `error` event or
            # `response.failed`: the adapter set its code), and the body then ended cleanly.
            self.finish("error", "exhausted")
        else:
            self.finish("ok" if self.complete() else "incomplete", "exhausted")

    def complete(self) -> bool:
        return machine.complete(self.state)

    def end_failure(self) -> Exception | None:
        """The SDK's iterator ended cleanly: None if that is the end of the answer, else the
        failure it stands for (run once per body, never per chunk)."""
        resumer = self.resumer
        if resumer is None:
            return None
        probe = self.probe
        meaning = machine.end_of_body(
            self.state,
            done=probe is not None and probe.done(),
            stalled=self.stalled,
            error_object_seen=self.error_object_seen,
            expects_finish=resumer.expects_finish(),
        )
        if meaning == machine.STALL:
            # The watchdog shut the socket of a body that ends when the connection closes.
            return Stalled()
        if meaning == machine.CUT:
            return IncompleteStream()  # text, then nothing: a cut that looks like an end
        return None

    def end_of_iteration(self) -> str:
        return self.closing or "break"

    def __del__(self) -> None:
        # Both the proxy and its generator are gone. A generator that ran recorded its own end
        # (GeneratorExit); getting here unfinished means the stream was never iterated.
        try:
            if not self.state.finished:
                self.finish("cancelled" if self.started else "abandoned", "gc")
                if not self.is_async:
                    close_quietly(self.stream)
        except Exception:  # interpreter shutdown: logging and sockets may be gone already
            pass


class DoneProbe:
    """Tells, once a body has ended cleanly, whether the server sent `data: [DONE]`.

    The SDK consumes `[DONE]` inside its `Stream.__stream__`, which looks up the stream's
    `_iter_events()` once, when iteration starts. The probe stands in for that method on the
    instance and hands the SDK its own event iterator, keeping a reference to it. openai 2.x and
    3.x stop reading that iterator at `[DONE]`, so it is left suspended there, and is exhausted
    only when the body ended without `[DONE]`: nothing is done per event. openai 1.x reads it
    on to its end after `[DONE]`; there a thin generator notes the last event.
    """

    __slots__ = ("drains", "events", "last", "original", "stream")

    def __init__(self, stream: Any, original: Any, drains: bool) -> None:
        self.stream = weakref.ref(stream)  # the stream holds the probe: no cycle through it
        self.original = original
        self.drains = drains
        self.events: Any = None
        self.last: Any = None

    @classmethod
    def install(cls, stream: Any) -> DoneProbe | None:
        kind = type(stream)
        original = getattr(kind, "_iter_events", None)
        code = getattr(getattr(kind, "__stream__", None), "__code__", None)
        own = getattr(stream, "__dict__", None)
        if original is None or code is None or own is None or "_iter_events" in own:
            return None
        probe = cls(stream, original, "_sse" in code.co_varnames)
        try:
            stream._iter_events = probe
        except AttributeError:  # a stream class with __slots__: no probe, no harm
            return None
        return probe

    def __call__(self) -> Any:
        stream = self.stream()
        events = self.original(stream)
        if self.drains:
            events = self._anoting(events) if inspect.isasyncgen(events) else self._noting(events)
        self.events = events
        return events

    def _noting(self, events: Iterator[Any]) -> Iterator[Any]:
        last = None
        for last in events:
            yield last
        self.last = last

    async def _anoting(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        last = None
        async for last in events:
            yield last
        self.last = last

    def done(self) -> bool:
        """After a clean end of the body: the server sent `[DONE]` (or one cannot know: False)."""
        events = self.events
        if events is None:
            return False
        if self.drains:
            data = getattr(self.last, "data", None)
            return isinstance(data, str) and data.startswith("[DONE]")
        frame = events.ag_frame if inspect.isasyncgen(events) else events.gi_frame
        return frame is not None

    def release(self) -> None:
        """Drop the iterator (it refers back to the stream) once the body is done with."""
        self.events = None


def close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # closing an already broken connection: nothing left to release
        pass


async def aclose_quietly(stream: Any) -> None:
    try:
        await stream.close()
    except Exception:
        pass
