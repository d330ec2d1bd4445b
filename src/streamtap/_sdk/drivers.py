"""The drivers: the sync and async loops that read the SDK's stream, hand each chunk to the
protocol adapter (`run.adapter`), deliver what it says, and carry out the steps of what follows
a failed or ended read (`after_read`: deliver, close, recover), shared by both loops.

Iteration runs through one generator per proxy (like the SDK's own `_iterator`), so a `break`
followed by another loop continues where it stopped, exactly as with the SDK. The generator
holds the run, never the proxy: no reference cycle, so CPython frees both as soon as the caller
drops the stream, and the end is recorded right then.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

from .._core import machine
from .._core.resume import CLOSE, Close, Plan
from .._core.state import StreamState, delivered_text
from .._errors import internal_error
from .._exceptions import ErrorObject, IncompleteStream, StreamInterrupted
from . import log as _log
from .adapter import DELIVER, ERROR, SKIP
from .run import Run, aclose_quietly, close_quietly
from .watchdog import watchdog

if TYPE_CHECKING:
    from .recover import Resumer


def _source(stream: Any) -> Any:
    # The SDK's own generator: iterating it directly saves one generator layer per chunk.
    it = getattr(stream, "_iterator", None)
    return it if it is not None else iter(stream)


def sync_chunks(run: Run) -> Generator[Any, None, None]:
    """The sync driver: what iterating a `StreamProxy` yields."""
    state, hide, debug = run.state, run.hide_usage, run.debug
    src = _source(run.stream)
    if run.watched:
        watchdog.watch(run)
    process = run.adapter.process_chunk
    clock = state.clock
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
                    elif deliver != SKIP:  # SALVAGED or RELEASE: other chunks in its place
                        try:
                            yield from salvaged if deliver == SALVAGED else _released(run, chunk)
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
    except BaseException as err:
        if _left(run, err):
            close_quietly(run.stream)
        raise


async def async_chunks(run: Run) -> AsyncGenerator[Any, None]:
    """The async driver: what iterating an `AsyncStreamProxy` yields."""
    state, hide, debug = run.state, run.hide_usage, run.debug
    process = run.adapter.process_chunk
    reader = _reader(run, asyncio.get_running_loop())
    run.started = True
    try:
        while True:
            try:
                buf = reader.buf
                if buf:  # read ahead already: taken without awaiting anything
                    chunk, now = buf.popleft()
                else:  # raises how the body ended once its chunks are all taken
                    item = await reader.get(state)
                    if item is None:  # the hold bound fired while waiting
                        for c in _flush(run, state.clock()):
                            yield c
                        continue
                    chunk, now = item
            except StopAsyncIteration:
                exc = None
            except Exception as e:  # (not CancelledError: the caller is leaving, see below)
                exc = e
            else:
                run.last_chunk = chunk
                try:
                    deliver = process(state, chunk, now, hide)
                    if debug:
                        _log.chunk_event(state, now)
                except Exception as err:
                    salvaged, deliver = _salvage(run, chunk, err), SALVAGED
                if deliver == DELIVER:
                    yield chunk
                    continue
                if deliver == SKIP:
                    continue
                if deliver != ERROR:  # SALVAGED or RELEASE: other chunks in its place
                    for c in salvaged if deliver == SALVAGED else _released(run, chunk):
                        yield c
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
    except BaseException as err:
        if _left(run, err):
            reader.cancel()
            await aclose_quietly(run.stream)
        raise
    finally:
        run.reading = False
        reader.cancel()


def _left(run: Run, err: BaseException) -> bool:
    """Record how the caller left a driver's loop; True: it closed the loop (GeneratorExit:
    `close()`, garbage collection), and the driver closes the SDK's stream. Else an exception
    leaves through it: KeyboardInterrupt, a task's CancelledError, or what `after_read` raised
    (recorded already)."""
    if isinstance(err, GeneratorExit):
        run.finish("cancelled", run.end_of_iteration())
        return True
    if not run.state.finished:
        run.finish("cancelled", "cancelled", err)
    return False


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
    # The connection may be sound (a replay that diverged): it goes back now, not when the
    # caller drops the exception, whose traceback holds the stream.
    yield CLOSE
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


class ReadAhead:
    """Reads an async stream in its own task, a bounded number of chunks ahead of the caller.

    The hold bound must release text while the next chunk is late, so the caller's wait has to
    be interruptible by a timer. A wait on the SDK's read is not: cancelling it closes the
    connection. Reading in a task of its own lets the caller wait on a future of ours instead,
    and reading ahead keeps that cheap: when chunks come in bursts the caller finds them
    already there (`buf`) and does not wait at all. No timer is armed unless text is held.
    How the body ended (StopAsyncIteration, the read's error) is kept apart from the chunks and
    raised by `get` once they are all taken: the caller's per-chunk path tests nothing for it.
    """

    # Chunks read ahead at most; then the reader waits until the caller has taken them all. Each
    # chunk is a dozen objects the garbage collector tracks: 64 of them held at once triggered a
    # young-generation collection on nearly every refill (measured: 32 costs 3k instructions per
    # chunk less than 64 and 6k less than 8, where the task switches dominate).
    LIMIT = 32

    __slots__ = ("buf", "end", "loop", "room", "run", "task", "waiter")

    def __init__(self, run: Run, src: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self.loop = loop
        self.buf: collections.deque[tuple[Any, float]] = collections.deque()
        self.end: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.room: asyncio.Future[None] | None = None
        self.task = loop.create_task(self._pump(src))

    async def _pump(self, src: Any) -> None:
        run = self.run
        buf = self.buf
        watched = run.watched
        clock = run.state.clock
        # For the watchdog the pump is reading all the time but while it waits for room: between
        # two reads it runs for microseconds without awaiting anything (no flag flip per chunk).
        run.reading = watched
        try:
            while True:
                try:
                    item = (await src.__anext__(), clock())
                except asyncio.CancelledError:
                    raise  # the caller closed the stream or was cancelled: nothing to deliver
                except BaseException as exc:  # (StopAsyncIteration: the body's end)
                    self.end = exc
                    self._wake_caller()
                    return
                buf.append(item)
                if self.waiter is not None:
                    self._wake_caller()
                if watched:
                    run.reads += 1
                if len(buf) >= self.LIMIT:
                    run.reading = False
                    room = self.room = self.loop.create_future()
                    await room
                    run.reading = watched
        finally:
            run.reading = False

    def _wake_caller(self) -> None:
        """The caller waits for the next item: wake it, once (the next items find no waiter
        while it has not run yet)."""
        waiter = self.waiter
        self.waiter = None
        if waiter is not None:
            _wake(waiter)

    async def get(self, state: StreamState) -> tuple[Any, float] | None:
        """The next (chunk, arrival time) once read (`buf` is empty); None when the hold
        deadline passed first. Raises how the body ended after its last chunk."""
        buf = self.buf
        if self.end is not None:
            raise self.end
        room = self.room
        if room is not None:  # the caller took every chunk read ahead: read on
            self.room = None
            _wake(room)
        waiter = self.waiter = self.loop.create_future()
        deadline = state.deadline()
        timer = (
            self.loop.call_later(max(0.0, deadline - state.clock()), _wake, waiter)
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
        if buf:
            return buf.popleft()
        if self.end is not None:
            raise self.end
        return None

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()


class DirectRead:
    """Reads an async stream in the caller's task (no word buffer: nothing is ever held, so
    nothing needs a timer). The same face as `ReadAhead`, with nothing read ahead: one
    coroutine call per chunk more than an inline read, on the unbuffered path only."""

    __slots__ = ("buf", "clock", "loop", "run", "src")

    def __init__(self, run: Run, src: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self.src = src
        self.loop = loop
        self.clock = run.state.clock
        self.buf: collections.deque[tuple[Any, float]] = collections.deque()  # stays empty

    async def get(self, state: StreamState) -> tuple[Any, float]:
        run = self.run
        run.reading = True  # (only the watchdog looks)
        try:
            return (await self.src.__anext__(), self.clock())
        finally:
            run.reading = False

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
    error_object = isinstance(final, ErrorObject)
    action = machine.after_failure(error_object, isinstance(final, IncompleteStream))
    if action != "continue":
        _give_up(run)
    chunks = _flush(run)
    if error_object:
        run.error_object_seen = True
        chunks.append(final.chunk)  # type: ignore[attr-defined]
    elif isinstance(final, StreamInterrupted):
        final.delivered = delivered_text(run.state)  # now with the flushed tail
    return chunks, action


def _give_up(run: Run) -> None:
    try:
        machine.give_up(run.state, run.state.clock())
    except Exception as exc:
        internal_error("restoring text dropped at a break", exc, run.state.internal_errors)


def _flush(run: Run, now: float | None = None) -> list[Any]:
    """Chunks carrying what the word buffer holds: all of it, or what is due by `now`."""
    try:
        return run.adapter.flush_chunks(run.state, run.last_chunk, now)
    except Exception as exc:
        internal_error("flushing held text", exc, run.state.internal_errors)
        return []


def _released(run: Run, chunk: Any) -> list[Any]:
    """The adapter said RELEASE: the items carrying every lane's held text, then `chunk`."""
    try:
        return [*run.adapter.flush_chunks(run.state, chunk), chunk]
    except Exception as exc:
        internal_error("releasing held text", exc, run.state.internal_errors)
        return [chunk]


SALVAGED = -1  # processing the chunk failed: deliver `_salvage`'s chunks instead


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
