"""Stall detection: one daemon thread watches every stream that is waiting for a chunk.

The SDK's read timeout is fixed when the body starts and cannot tell "the model is still
thinking about its first token" from "the connection went quiet mid-answer". So streamtap
watches for itself: a stream waiting longer than `first_chunk_timeout` (before its first chunk)
or `idle_timeout` (after it) is stalled; the watchdog shuts the socket down, which wakes the
blocked read at once (sync or async) with an ordinary connection error, and the resume logic
takes it from there, knowing the cause was a stall.

Only time spent *waiting for the server* counts (`Run.waiting()`: a sync stream's generator is
running, an async stream raised its `reading` flag around the read), so a caller who is slow to
ask for the next chunk is never mistaken for a stalled server.
The thread wakes a few times per timeout, not per chunk, and times the waits itself: a stream
that was reading at two wake-ups with no chunk in between has waited at least the time between
them. A stall is declared once that exceeds the timeout, so never early, and at most one
wake-up (a quarter of the timeout) late, or, for an async stream, when its event loop is next
free. Nothing on the hot path: no clock reads (and for sync
streams no flag either).

A read can be "in flight" with its answer already here: an event loop busy elsewhere has not
run the read yet, or the whole process was frozen (a long garbage collection, a C extension
holding the GIL, a suspended machine). That is the client being late, not the server, and a
needless resume costs a request. So before shutting a socket the watchdog checks (`_settle`):

- bytes (or the end of the connection) waiting in the socket: not a stall, the wait is timed
  again from now. A non-blocking poll of the descriptor, never a read: `recv(MSG_PEEK |
  MSG_DONTWAIT)` on a Python socket with a timeout first waits up to that timeout, an
  `SSLSocket` refuses flags and asyncio's `TransportSocket` has no `recv`. (On TLS the bytes are
  ciphertext: still "the server sent something".)
- async streams are settled on their own event loop, so the check runs only once the loop is
  free again; and a few loop iterations later once more (`_HOPS`), by which time a read whose
  data an upper layer (asyncio's transport, anyio, TLS) had already taken off the socket has
  run and counted its chunk.
- a wake-up of the thread itself that comes much later than asked means the process was not
  running: that time counts for no stream (`_frozen`).

The thread never blocks and never raises: a failure is logged once per stream (`_errors`).
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
import weakref
from typing import Any, Protocol

from .._errors import internal_error


class Watched(Protocol):
    stalled: bool
    stream: Any
    idle_timeout: float | None
    first_chunk_timeout: float | None
    loop: Any
    state: Any  # its `internal_errors` tally: the watchdog's failures are logged once a stream

    def waiting(self) -> bool: ...  # a read from the server is in flight

    def progress(self) -> int: ...  # grows with every chunk read

    @property
    def got_chunk(self) -> bool: ...  # a chunk arrived in the current attempt


# The real clock, not `runtime.clock`: the thread times real waits on real sockets (a fake
# clock would stop it, or make it see stalls everywhere). `_timed` and `_frozen` take the time as
# an argument: tests give them explicit readings.
_clock = time.perf_counter

Mark = tuple[int, float]  # (the run's progress, since when it has been waiting at it)
_SETTLING: Mark = (-1, 0.0)  # past its timeout: being settled (see Watchdog._settle)
_HOPS = 3  # loop iterations an async stream gets to count data already taken off its socket
_WHERE = "watching for stalls"


class Watchdog:
    def __init__(self) -> None:
        # run -> its Mark while it waits, None while it does not, _SETTLING while its loop decides
        self._runs: weakref.WeakKeyDictionary[Any, Mark | None] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick = 1.0

    def watch(self, run: Watched) -> None:
        timeouts = [t for t in (run.idle_timeout, run.first_chunk_timeout) if t is not None]
        if not timeouts:
            return
        with self._lock:
            self._runs[run] = None
            tick = max(0.01, min(timeouts) / 4)
            if tick < self._tick:
                self._tick = tick
                self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="streamtap-watchdog", daemon=True
                )
                self._thread.start()

    def unwatch(self, run: Watched) -> None:
        with self._lock:
            self._runs.pop(run, None)

    def _loop(self) -> None:
        last = _clock()
        while True:
            tick = self._tick
            self._wake.wait(tick)
            self._wake.clear()
            now = _clock()
            frozen = _frozen(now - last, tick)
            last = now
            try:
                self._round(now, frozen)
            except Exception as exc:  # the thread must live on: log once per process
                _report(exc, _thread_errors)

    def _round(self, now: float, frozen: float) -> None:
        """One wake-up: time every run's wait; settle those past their timeout."""
        with self._lock:
            runs = list(self._runs.items())
        seen: dict[Any, Mark | None] = {}
        due: list[tuple[Any, int]] = []
        for run, mark in runs:
            if mark is _SETTLING:
                continue  # its loop writes the outcome
            if mark is not None and frozen:
                mark = (mark[0], mark[1] + frozen)
            try:
                seen[run] = _timed(run, mark, now)
            except Exception as exc:
                seen[run] = None
                _report(exc, _errors_of(run))
            if seen[run] is _SETTLING and mark is not None:
                due.append((run, mark[0]))
        with self._lock:
            for run, mark in seen.items():
                if run in self._runs:
                    self._runs[run] = mark
        for run, progress in due:  # after the marks are written: settling may re-arm at once
            self._settle_soon(run, progress)

    def _settle_soon(self, run: Any, progress: int) -> None:
        """Settle a run past its timeout: on its event loop (async), else right here."""
        loop = run.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._settle_later, weakref.ref(run), progress, _HOPS)
                return
            except RuntimeError:  # the loop is closed: nothing will read, settle from here
                pass
        self._settle(run, progress, 0)

    def _settle_later(self, ref: weakref.ref[Any], progress: int, hops: int) -> None:
        run = ref()
        if run is not None:
            self._settle(run, progress, hops)

    def _settle(self, run: Any, progress: int, hops: int) -> None:
        """`run` has waited past its timeout at `progress`: shut its socket, unless the client
        is late. `hops`: loop iterations to wait for a read that has its data already."""
        try:
            with self._lock:
                mark = self._runs.get(run)
            if mark is not _SETTLING:
                return  # no longer watched, or watched anew
            sock = _socket_of(run.stream)
            if run.stalled or not run.waiting() or run.progress() != progress:
                self._mark(run, None)  # a chunk came after all: the next wait is timed anew
            elif sock is not None and _input_waiting(sock):
                self._mark(run, (progress, _clock()))  # the reader is late: time anew
            elif hops:
                # Data an upper layer already took off the socket is read by callbacks queued
                # before this one: look again after them.
                run.loop.call_soon(self._settle_later, weakref.ref(run), progress, hops - 1)
            else:
                run.stalled = True
                self._mark(run, None)
                if sock is not None:
                    _shutdown(sock)
        except Exception as exc:
            self._mark(run, None)
            _report(exc, _errors_of(run))

    def _mark(self, run: Any, mark: Mark | None) -> None:
        with self._lock:
            if run in self._runs:
                self._runs[run] = mark


def _timed(run: Any, mark: Mark | None, now: float) -> Mark | None:
    """The run's new mark; `_SETTLING` once it has waited past its timeout."""
    if run.stalled or not run.waiting():
        return None
    progress = run.progress()
    if mark is None or mark[0] != progress:
        return (progress, now)  # (a new) wait: time it from here
    limit = run.idle_timeout if run.got_chunk else run.first_chunk_timeout
    if limit is not None and now - mark[1] > limit:
        return _SETTLING
    return mark


def _frozen(gap: float, tick: float) -> float:
    """How long the process did not run, judged by a wake-up `gap` asked to be `tick`.

    Jitter of up to a tick (or 50 ms) is a busy machine and still counts as waiting.
    """
    late = gap - tick
    return late if late > max(tick, 0.05) else 0.0


def _input_waiting(sock: Any) -> bool:
    """Bytes (or the end of the connection, or an error) wait in the socket, unread.

    A poll with timeout 0 on the descriptor: never blocks, never consumes. A closed socket
    (no descriptor) counts too: it is an end the reader will see, not a stall.
    """
    fd = sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _socket_of(stream: Any) -> Any:
    """The socket under an httpx(2) response (`socket.socket` or asyncio's TransportSocket)."""
    try:
        ns = stream.response.extensions.get("network_stream")
        sock = ns.get_extra_info("socket") if ns is not None else None
    except Exception:
        return None
    return sock if callable(getattr(sock, "shutdown", None)) else None


_thread_errors: dict[str, int] = {}  # failures outside any one stream: logged once per process


def _errors_of(run: Any) -> dict[str, int]:
    counts = getattr(getattr(run, "state", None), "internal_errors", None)
    return counts if isinstance(counts, dict) else _thread_errors


def _report(exc: Exception, counts: dict[str, int]) -> None:
    """Log an internal failure (once per tally). Never raises, even in strict mode: this runs
    on the watchdog's thread or as an event-loop callback, where an exception helps nobody (the
    ERROR record is what the test suite sees)."""
    try:
        internal_error(_WHERE, exc, counts)
    except Exception:
        pass


watchdog = Watchdog()
