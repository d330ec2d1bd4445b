"""Stream proxies: what the caller gets instead of the SDK's `Stream` / `AsyncStream`.

A proxy is a `wrapt.ObjectProxy`, so `isinstance(s, openai.Stream)`, `.response` and every other
attribute behave as on the SDK's object. Iteration runs through one generator per proxy (like the
SDK's own `_iterator`), so a `break` followed by another loop continues where it stopped, exactly
as with the SDK. The generator holds the run, never the proxy: no reference cycle, so CPython
frees both as soon as the caller drops the stream, and the end is recorded right then.

The end of a stream is recorded exactly once (`Run.finish`), whichever way it comes: exhausted,
error, `close()`, context exit, cancellation, or garbage collection (`break` and walking away is
recorded as `cancelled`/`break`; never iterated at all as `abandoned`).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import wrapt

from . import _chat, _log
from . import _machine as machine
from ._adapter import DELIVER, ERROR, SKIP, Adapter
from ._endpoint import error_meta, response_meta
from ._errors import internal_error, report_repeats
from ._exceptions import ErrorObject, IncompleteStream, Stalled, StreamInterrupted
from ._resume import CLOSE, Close, Plan
from ._state import StreamState, delivered_text
from ._watchdog import watchdog

if TYPE_CHECKING:
    from ._recover import Resumer

_clock = time.perf_counter


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
        if state.finish(outcome, end, _clock(), exc):
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


def _source(stream: Any) -> Any:
    # The SDK's own generator: iterating it directly saves one generator layer per chunk.
    it = getattr(stream, "_iterator", None)
    return it if it is not None else iter(stream)


def _sync_chunks(run: Run) -> Generator[Any, None, None]:
    state = run.state
    src = _source(run.stream)
    hide = run.hide_usage
    debug = run.debug
    if run.watched:
        watchdog.watch(run)
    process = run.adapter.process_chunk
    clock = _clock
    run.started = True
    chunk = None
    try:
        while True:
            # The SDK's generator is read by this `for` itself: no call and no bookkeeping per
            # chunk beyond the clock and process_chunk (the watchdog looks at `gi_running` to
            # know a read is in flight; `run.last_chunk` is only needed once the loop ends).
            exc: Exception | None = None
            thrown: BaseException | None = None
            try:
                for chunk in src:
                    now = clock()
                    try:
                        deliver = process(state, chunk, now, hide)
                        if debug:
                            _log.chunk_event(state, now)
                    except Exception as err:
                        salvaged = _salvage(run, chunk, err)
                        deliver = SALVAGED
                    if deliver == DELIVER:
                        try:
                            yield chunk
                        except BaseException as e:  # thrown in by the caller: not a read error
                            thrown = e
                            break
                    elif deliver == ERROR:
                        exc = run.adapter.error_object(chunk)
                        break
                    elif deliver == SALVAGED:
                        try:
                            yield from salvaged
                        except BaseException as e:
                            thrown = e
                            break
            except Exception as e:
                exc = e
            run.last_chunk = chunk
            if thrown is not None:
                raise thrown
            outcome = yield from _after_read_sync(run, exc)
            if outcome == DONE:
                break
            if outcome == RESUMED:
                src = _source(run.stream)
        yield from _flush(run)
        run.finish_exhausted()
    except GeneratorExit:
        run.finish("cancelled", run.end_of_iteration())
        close_quietly(run.stream)
        raise
    except BaseException as err:  # KeyboardInterrupt, SystemExit: the caller is leaving
        if not state.finished:
            run.finish("cancelled", "cancelled", err)
        raise


async def _async_chunks(run: Run) -> AsyncGenerator[Any, None]:
    state = run.state
    hide = run.hide_usage
    debug = run.debug
    process = run.adapter.process_chunk
    reader = _reader(run, asyncio.get_running_loop())
    run.started = True
    try:
        while True:
            try:
                # Chunks already read ahead are taken without awaiting anything.
                item = reader.take() if reader.buf else await reader.get(state)
                if item is None:  # the hold bound fired while waiting
                    for c in _flush(run, _clock()):
                        yield c
                    continue
                chunk, now = item
                if chunk is _END:
                    raise StopAsyncIteration
                if chunk is _ERROR:
                    raise now
            except StopAsyncIteration:
                exc = None
            except asyncio.CancelledError as err:
                run.finish("cancelled", "cancelled", err)
                raise
            except Exception as e:
                exc = e
            else:
                run.last_chunk = chunk
                try:
                    deliver = process(state, chunk, now, hide)
                    if debug:
                        _log.chunk_event(state, now)
                except Exception as err:
                    for c in _salvage(run, chunk, err):
                        yield c
                    continue
                if deliver == DELIVER:
                    yield chunk
                    continue
                if deliver == SKIP:
                    continue
                exc = run.adapter.error_object(chunk)
            plan = Plan(after_read(run, exc))
            async for c in _after_read_async(run, plan):
                yield c
            if plan.value == DONE:
                break
            if plan.value == RESUMED:
                reader = _reader(run, reader.loop)
        for c in _flush(run):
            yield c
        run.finish_exhausted()
    except GeneratorExit:
        run.finish("cancelled", run.end_of_iteration())
        reader.cancel()
        await aclose_quietly(run.stream)
        raise
    except BaseException as err:
        if not state.finished:
            run.finish("cancelled", "cancelled", err)
        raise
    finally:
        run.reading = False
        reader.cancel()


def _reader(run: Run, loop: asyncio.AbstractEventLoop) -> ReadAhead | DirectRead:
    """How the async driver reads `run.stream`: with a word buffer, ahead in a task, so that a
    timer can release held text while the next chunk is late (see ReadAhead); else directly."""
    src = _source(run.stream)
    if run.watched and run.loop is None:
        run.loop = loop
        watchdog.watch(run)
    if run.state.resolved.policy is not None:
        return ReadAhead(run, src, loop)
    return DirectRead(run, src, loop)


async def _after_read_async(run: Run, plan: Plan) -> AsyncIterator[Any]:
    """Carry out `after_read` in the async driver (its outcome is left in `plan.value`)."""
    while (step := plan.next()) is not None:
        if isinstance(step, list):
            for c in step:
                yield c
        elif isinstance(step, Close):
            await aclose_quietly(run.stream)
        else:
            try:
                plan.sent = await step.resumer.recover_async(run, step.exc)
            except Exception as err:
                plan.error = err


DONE, RESUMED, AGAIN = "done", "resumed", "again"


class Recover:
    """A step of `after_read`: run the resumer's plan for `exc`; the driver sends back the
    replacement source (or None), or throws in what the plan raised."""

    __slots__ = ("exc", "resumer")

    def __init__(self, resumer: Resumer, exc: Exception) -> None:
        self.resumer = resumer
        self.exc = exc


AfterRead = Generator["list[Any] | Close | Recover", Any, str]


def after_read(run: Run, exc: Exception | None) -> AfterRead:
    """What follows a read that failed (`exc`) or a body that ended (None), shared by both
    drivers, which carry out its steps: a list of chunks to deliver, `CLOSE` the stream, or
    `Recover`. Returns DONE (the stream ends cleanly), RESUMED (read `run.stream` from now on)
    or AGAIN (read on); raises what the caller gets."""
    if exc is None:
        exc = run.end_failure()
        if exc is None:
            return DONE
        if isinstance(exc, IncompleteStream):
            # The server's text ends here unless a resume shows otherwise: the caller gets all
            # of it now (a replay then checks it like any delivered text).
            yield _flush(run)
    final: BaseException = exc
    resumer = run.resumer
    if resumer is not None:
        try:
            replacement = yield Recover(resumer, exc)
        except Exception as err:
            final = err
        else:
            if replacement is not None:
                run.adopt(replacement)
                return RESUMED
    chunks, action = _surface(run, final)
    yield chunks
    if action == "continue":
        return AGAIN
    if action == "end":
        yield CLOSE  # ended by streamtap: the body may not be done
        return DONE
    run.finish("error", "exception", final)
    raise final


def _after_read_sync(run: Run, exc: Exception | None) -> Generator[Any, None, str]:
    """Carry out `after_read` in the sync driver."""
    plan = Plan(after_read(run, exc))
    while (step := plan.next()) is not None:
        if isinstance(step, list):
            yield from step
        elif isinstance(step, Close):
            close_quietly(run.stream)
        else:
            run.resuming = True
            try:
                plan.sent = step.resumer.recover_sync(run, step.exc)
            except Exception as err:
                plan.error = err
            finally:
                run.resuming = False
    return plan.value  # type: ignore[no-any-return]


_END: Any = object()
_ERROR: Any = object()


class ReadAhead:
    """Reads an async stream in its own task, a bounded number of chunks ahead of the caller.

    The hold bound must release text while the next chunk is late, so the caller's wait has to
    be interruptible by a timer. A wait on the SDK's read is not: cancelling it closes the
    connection. Reading in a task of its own lets the caller wait on a future of ours instead,
    and reading ahead keeps that cheap: when chunks come in bursts the caller finds them
    already there and does not wait at all. No timer is armed unless text is held.
    """

    # Chunks read ahead at most; then the reader waits until the caller has taken half. Each
    # chunk is a dozen objects the garbage collector tracks: 64 of them held at once triggered a
    # young-generation collection on nearly every refill (measured: 32 costs 3k instructions per
    # chunk less than 64 and 6k less than 8, where the task switches dominate).
    LIMIT = 32

    __slots__ = ("buf", "loop", "room", "run", "task", "waiter")

    def __init__(self, run: Run, src: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self.loop = loop
        self.buf: collections.deque[tuple[Any, Any]] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.room: asyncio.Future[None] | None = None
        self.task = loop.create_task(self._pump(src))

    async def _pump(self, src: Any) -> None:
        run = self.run
        buf = self.buf
        watched = run.watched
        clock = _clock
        while True:
            if watched:
                run.reading = True
            try:
                item: tuple[Any, Any] = (await src.__anext__(), clock())
            except StopAsyncIteration:
                item = (_END, None)
            except asyncio.CancelledError:
                raise  # the caller closed the stream or was cancelled: nothing to deliver
            except BaseException as exc:
                item = (_ERROR, exc)
            finally:
                if watched:
                    run.reading = False
            buf.append(item)
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if item[0] is _END or item[0] is _ERROR:
                return
            if watched:
                run.reads += 1
            if len(buf) >= self.LIMIT:
                room = self.room = self.loop.create_future()
                await room

    async def get(self, state: StreamState) -> tuple[Any, Any] | None:
        """The next (chunk, arrival time); None when the hold deadline passed first."""
        buf = self.buf
        if not buf:
            waiter = self.waiter = self.loop.create_future()
            deadline = state.deadline()
            timer = (
                self.loop.call_later(max(0.0, deadline - _clock()), _wake, waiter)
                if deadline is not None
                else None
            )
            try:
                await waiter
            except asyncio.CancelledError:
                self.cancel()
                raise
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
            if not buf:
                return None
        return self.take()

    def take(self) -> tuple[Any, Any]:
        """The next item already read (the caller checked `buf`)."""
        buf = self.buf
        item = buf.popleft()
        room = self.room
        if room is not None and len(buf) < self.LIMIT // 2:
            self.room = None
            if not room.done():
                room.set_result(None)
        return item

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()


class DirectRead:
    """Reads an async stream in the caller's task (no word buffer: nothing is ever held, so
    nothing needs a timer). The same face as `ReadAhead`, with nothing read ahead: one
    coroutine call per chunk more than an inline read, on the unbuffered path only."""

    __slots__ = ("buf", "loop", "run", "src")

    def __init__(self, run: Run, src: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self.src = src
        self.loop = loop
        self.buf: tuple[()] = ()  # never anything read ahead

    async def get(self, state: StreamState) -> tuple[Any, Any]:
        run = self.run
        run.reading = True  # (only the watchdog looks)
        try:
            return (await self.src.__anext__(), _clock())
        finally:
            run.reading = False

    def take(self) -> tuple[Any, Any]:  # pragma: no cover - `buf` is always empty
        raise IndexError("nothing read ahead")

    def cancel(self) -> None:
        pass


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _surface(run: Run, final: BaseException) -> tuple[list[Any], str]:
    """Reading failed and was not resumed: what the caller gets, then what happens next.

    Held text always comes first. An `{"object": "error"}` chunk is then delivered as the SDK
    gave it and reading goes on ("continue"); a clean end without finish_reason just ends
    ("end"); anything else is raised after the chunks ("raise").
    """
    chunks = _flush(run)
    error_object = isinstance(final, ErrorObject)
    if error_object:
        run.error_object_seen = True
        chunks.append(final.chunk)  # type: ignore[attr-defined]
    elif isinstance(final, StreamInterrupted):
        final.delivered = delivered_text(run.state)  # now with the flushed tail
    return chunks, machine.after_failure(error_object, isinstance(final, IncompleteStream))


def _flush(run: Run, now: float | None = None) -> list[Any]:
    """Chunks carrying what the word buffer holds: all of it, or what is due by `now`."""
    try:
        return run.adapter.flush_chunks(run.state, run.last_chunk, now)
    except Exception as exc:
        internal_error("flushing held text", exc, run.state.internal_errors)
        return []


SALVAGED = -1  # (sync loop) processing the chunk failed: deliver `_salvage`'s chunks instead


def _salvage(run: Run, chunk: Any, err: Exception) -> list[Any]:
    """Processing `chunk` failed: report it (raises in strict mode), then deliver the chunk
    with the held text on the side it belongs, and pass the rest of the stream through as the
    SDK gives it: no buffering (see `salvage`), and no resuming either, whose decisions rest on
    the bookkeeping that just failed (a finish reason it could not read is not a cut)."""
    state = run.state
    internal_error("processing a chunk", err, state.internal_errors)
    if run.resumer is not None:
        run.resumer = None
        watchdog.unwatch(run)  # (stalls are watched for resuming only)
    try:
        return run.adapter.salvage(state, chunk)
    except Exception as exc:
        internal_error("releasing held text after an internal error", exc, state.internal_errors)
        return [chunk]


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


class StreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """Stands in for `openai.Stream[ChatCompletionChunk]`."""

    def __init__(self, stream: Any, run: Run) -> None:
        super().__init__(stream)
        self._self_run = run
        self._self_gen: Generator[Any, None, None] | None = None

    def _self_chunks(self) -> Iterator[Any]:
        gen = self._self_gen
        if gen is None:
            run = self._self_run
            gen = self._self_gen = _sync_chunks(run)
            run.gen = weakref.ref(gen)
        return gen

    def __iter__(self) -> Iterator[Any]:
        return self._self_chunks()

    def __next__(self) -> Any:
        return next(self._self_chunks())

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._self_close("exit")

    def close(self) -> None:
        self._self_close("close")

    def _self_close(self, how: str) -> None:
        run = self._self_run
        gen = self._self_gen
        if gen is not None and not run.state.finished:
            run.closing = how
            gen.close()
        if not run.state.finished:
            run.finish("cancelled", how)
        run.stream.close()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("streamtap stream proxies cannot be pickled")


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """Stands in for `openai.AsyncStream[ChatCompletionChunk]`."""

    def __init__(self, stream: Any, run: Run) -> None:
        super().__init__(stream)
        self._self_run = run
        self._self_gen: AsyncGenerator[Any, None] | None = None

    def _self_chunks(self) -> AsyncIterator[Any]:
        gen = self._self_gen
        if gen is None:
            gen = self._self_gen = _async_chunks(self._self_run)
        return gen

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._self_chunks()

    async def __anext__(self) -> Any:
        return await self._self_chunks().__anext__()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._self_close("exit")

    async def close(self) -> None:
        await self._self_close("close")

    async def _self_close(self, how: str) -> None:
        run = self._self_run
        gen = self._self_gen
        if gen is not None and not run.state.finished:
            run.closing = how
            await gen.aclose()
        if not run.state.finished:
            run.finish("cancelled", how)
        await run.stream.close()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("streamtap stream proxies cannot be pickled")


def run_of(obj: Any) -> Run | None:
    """The run behind a proxy, or behind the SDK's `.stream()` helper wrapping one."""
    for candidate in (obj, getattr(obj, "_raw_stream", None)):
        if isinstance(candidate, (StreamProxy, AsyncStreamProxy)):
            run: Run = candidate._self_run
            return run
    return None


class ResponseProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """Stands in for the raw response of `with_raw_response` / `with_streaming_response`.

    `.parse()` returns a stream proxy (the same one every time, as the SDK caches its parse).
    """

    def __init__(self, response: Any, wrap: Callable[[Any], Any], state: StreamState) -> None:
        super().__init__(response)
        self._self_wrap = wrap
        self._self_state = state
        self._self_parsed: tuple[Any, Any] | None = None

    def _self_adopt(self, parsed: Any) -> Any:
        cached = self._self_parsed
        if cached is not None and cached[0] is parsed:
            return cached[1]
        proxy = self._self_wrap(parsed)
        self._self_parsed = (parsed, proxy)
        return proxy

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if inspect.isawaitable(parsed):
            return self._self_aparse(parsed)
        return self._self_adopt(parsed)

    async def _self_aparse(self, awaitable: Any) -> Any:
        return self._self_adopt(await awaitable)

    def __enter__(self) -> ResponseProxy:
        return self

    def __exit__(self, *exc_info: object) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> ResponseProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)

    def __del__(self) -> None:
        try:
            if self._self_parsed is None and self._self_state.finish("ok", "raw", _clock()):
                # The caller read the raw body itself; streamtap saw no chunks to time.
                _log.emit(self._self_state)
        except Exception:  # interpreter shutdown
            pass
