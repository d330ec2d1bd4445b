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
wake-up (a quarter of the timeout) late. Nothing on the hot path: no clock reads (and for sync
streams no flag either).
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from typing import Any, Protocol


class Watched(Protocol):
    stalled: bool
    stream: Any
    idle_timeout: float | None
    first_chunk_timeout: float | None
    loop: Any

    def waiting(self) -> bool: ...  # a read from the server is in flight

    def progress(self) -> int: ...  # grows with every chunk read

    @property
    def got_chunk(self) -> bool: ...  # a chunk arrived in the current attempt


_clock = time.perf_counter


class Watchdog:
    def __init__(self) -> None:
        # run -> (its progress, when the thread first saw it reading at that progress)
        self._runs: weakref.WeakKeyDictionary[Any, tuple[int, float] | None] = (
            weakref.WeakKeyDictionary()
        )
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
        while True:
            self._wake.wait(self._tick)
            self._wake.clear()
            now = _clock()
            with self._lock:
                runs = list(self._runs.items())
            seen: dict[Any, tuple[int, float] | None] = {}
            for run, mark in runs:
                if run.stalled or not run.waiting():
                    seen[run] = None
                    continue
                progress = run.progress()
                if mark is None or mark[0] != progress:
                    seen[run] = (progress, now)  # (a new) wait: time it from here
                    continue
                limit = run.idle_timeout if run.got_chunk else run.first_chunk_timeout
                if limit is not None and now - mark[1] > limit:
                    run.stalled = True
                    seen[run] = None
                    abort(run.stream, run.loop)
            with self._lock:
                for run, mark in seen.items():
                    if run in self._runs:
                        self._runs[run] = mark


def abort(stream: Any, loop: Any = None) -> None:
    """Shut down the stream's socket so that a blocked read returns immediately."""
    sock = _socket_of(stream)
    if sock is None:
        return
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_shutdown, sock)
            return
        except RuntimeError:  # the loop is closed: shut down from here
            pass
    _shutdown(sock)


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


watchdog = Watchdog()
