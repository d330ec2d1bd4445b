"""Counting while the tokenizer loads: no stream waits for streamtap.

Loading an encoding takes a fraction of a second to a few seconds (more with a download).
A stream that starts meanwhile gets a *pending* factory: its counters keep the delivered text
(one list append per settle) and count it all once the encoder is there, so the count is still
exact. The stream's summary event waits for that count: ``_log.emit`` hands it to
:meth:`Loading.when_ready`, and it is emitted from the loader thread when the load ends. The
wait is bounded (:data:`MAX_WAIT`): past it the pending counters fall back to the estimate
(with a warning) and the summaries go out. At interpreter exit, summaries still waiting are
given the rest of that bound, so a short script does not lose its last event.

Loading is mostly Python that lets the streams' threads run between its steps, except one:
building tiktoken's encoder (Rust) holds the GIL for about 0.2 s. So the loader waits for the
streams in flight to end before that step (bounded by :data:`QUIET_MAX`): their text is kept
anyway, and nothing they deliver waits for it.

Only the first streams of a process see any of this: a load happens once per encoding, and
later streams get the loaded factory directly.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from .._core.tokens import (
    _ESTIMATE_FACTORY,
    CounterFactory,
    Source,
    TokenCounter,
    counter_factory,
    encoding_for_model,
    estimate_tokens,
)
from . import encodings as _encodings

logger = logging.getLogger("streamtap")

MAX_WAIT: Final = 30.0
"""Seconds a summary may wait for its count (a download alone may take 5 s by default)."""

QUIET_MAX: Final = 10.0
"""Seconds the loader waits for the streams in flight to end before it builds the encoder."""

before_load: Callable[[], None] | None = None
"""Called in the loader thread before it loads; tests use it to make a load slow."""

_active = 0  # streams in flight that started while an encoding was loading
_quiet = threading.Condition()
_jobs: dict[tuple[str | None, str | None, str | None], Loading] = {}
_jobs_lock = threading.Lock()
_exit_hook = False


def factory_nowait(
    model: str | None,
    *,
    encoding: str | None = None,
    counter: Callable[[str], int] | None = None,
    tiktoken_dir: str | os.PathLike[str] | None = None,
) -> CounterFactory:
    """``counter_factory`` that never waits for an encoding to load: while it loads (in a
    background thread, started here if needed), a pending factory (``loading`` is set)."""
    name = encoding if encoding is not None else encoding_for_model(model)
    if counter is not None or name is None or name in _encodings.loaded:
        return counter_factory(model, encoding=encoding, counter=counter, tiktoken_dir=tiktoken_dir)
    key = (model, encoding, None if tiktoken_dir is None else os.fspath(tiktoken_dir))
    job = _jobs.get(key)
    if job is None:
        with _jobs_lock:
            job = _jobs.get(key)
            if job is None:
                job = _jobs[key] = Loading(
                    lambda: counter_factory(model, encoding=encoding, tiktoken_dir=tiktoken_dir),
                    name,
                )
    return job.result or job.factory


class Loading:
    """One background resolution of a counter factory; ``result`` is set once, when it ends
    (or when :data:`MAX_WAIT` passes: then the estimate)."""

    def __init__(self, resolve: Callable[[], CounterFactory], name: str) -> None:
        self.name = name
        self.result: CounterFactory | None = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.factory = CounterFactory("estimate", "estimate", self._new_counter)
        self.factory.loading = self
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._timer = threading.Timer(MAX_WAIT, self._expire)
        self._timer.daemon = True
        self._timer.name = f"streamtap-tokenizer-timeout-{name}"
        self._timer.start()
        threading.Thread(
            target=self._run, args=(resolve,), name=f"streamtap-tokenizer-{name}", daemon=True
        ).start()

    def _new_counter(self) -> TokenCounter:
        result = self.result
        return result.new() if result is not None else _PendingCounter(self)

    def stream_started(self) -> None:
        global _active
        with _quiet:
            _active += 1

    def stream_ended(self) -> None:
        global _active
        with _quiet:
            _active -= 1
            if _active <= 0:
                _quiet.notify_all()

    def _run(self, resolve: Callable[[], CounterFactory]) -> None:
        _encodings.local.checkpoint = _wait_for_quiet
        try:
            hook = before_load
            if hook is not None:
                hook()
            factory = resolve()
        except Exception:
            logger.exception("streamtap: loading the tokenizer %s failed", self.name)
            factory = _ESTIMATE_FACTORY
        self._settle(factory)

    def _expire(self) -> None:
        if self.result is None:
            _encodings.warn_once(
                ("slow", self.name),
                "streamtap: the tokenizer %s did not load within %gs; the streams that started"
                " meanwhile are counted as estimates",
                self.name,
                MAX_WAIT,
            )
            self._settle(_ESTIMATE_FACTORY)

    def _settle(self, result: CounterFactory) -> None:
        with self._lock:
            if self.result is not None:
                return
            self.result = result
            factory = self.factory
            factory.source = result.source
            factory.encoding = result.encoding
            factory.loading = None
            callbacks, self._callbacks = self._callbacks, []
        self._timer.cancel()
        try:
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # a deferred summary failing must not stop the others
                    logger.exception("streamtap: a summary waiting for the tokenizer failed")
        finally:
            # Set once the waiting summaries are out: the exit hook waits on it, and this is a
            # daemon thread, which the interpreter stops at exit wherever it is.
            self.done.set()

    def when_ready(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the load ends: now on this thread if it has ended, else from
        the loader thread."""
        global _exit_hook
        with self._lock:
            if self.result is None:
                self._callbacks.append(callback)
                if not _exit_hook:
                    _exit_hook = True
                    atexit.register(_wait_at_exit)
                    # tiktoken imports concurrent.futures, whose import registers an exit
                    # hook, which fails once the interpreter is exiting: imported now, a load
                    # that ends during the exit wait can still import tiktoken.
                    import concurrent.futures.thread  # noqa: F401
                return
        callback()


def _wait_for_quiet() -> None:
    """Building tiktoken's encoder (Rust) holds the GIL for ~0.2 s: a stream in flight would
    stall that long. Its text is being kept anyway, so wait (bounded) until none is in flight.
    The rest of the load (reading, checking) is Python that lets other threads run."""
    with _quiet:
        _quiet.wait_for(lambda: _active <= 0, QUIET_MAX)


def _wait_at_exit() -> None:
    """Give summaries still waiting for their count the rest of their bound."""
    for job in list(_jobs.values()):
        job.done.wait(max(0.0, job.started + MAX_WAIT - time.monotonic()))


class _PendingCounter:
    """A counter whose encoder is loading: keeps the text, counts it all once loaded.

    Until then ``feed`` returns 0, ``total`` is 0 and ``peek`` is the estimate of the text kept;
    then ``feed`` (or ``finish``) returns every token that became final, the kept text's too, so
    the sum of the results is still the exact count.
    """

    __slots__ = ("_job", "_real", "_reported", "_text")

    def __init__(self, job: Loading) -> None:
        self._job = job
        self._real: TokenCounter | None = None
        self._text: list[str] = []
        self._reported = 0

    def _adopt(self, force: bool = False) -> TokenCounter | None:
        real = self._real
        if real is None:
            factory = self._job.result
            if factory is None:
                if not force:
                    return None
                factory = _ESTIMATE_FACTORY
            real = factory.new()
            if self._text:
                real.add("".join(self._text))
                self._text = []
            self._real = real
        return real

    @property
    def source(self) -> Source:
        real = self._adopt()
        return "estimate" if real is None else real.source

    @property
    def encoding(self) -> str:
        real = self._adopt()
        return "estimate" if real is None else real.encoding

    @property
    def total(self) -> int:
        real = self._adopt()
        return 0 if real is None else real.total

    def feed(self, text: str) -> int:
        real = self._adopt()
        if real is None:
            if text:
                self._text.append(text)
            return 0
        real.feed(text)
        return self._report(real)

    def add(self, text: str) -> None:
        real = self._adopt()
        if real is None:
            if text:
                self._text.append(text)
        else:
            real.add(text)

    def peek(self) -> int:
        real = self._adopt()
        if real is None:
            return estimate_tokens("".join(self._text))
        return real.peek()

    def finish(self) -> int:
        real = self._adopt(force=True)
        assert real is not None
        real.finish()
        return self._report(real)

    def _report(self, real: TokenCounter) -> int:
        total = real.total
        n = total - self._reported
        self._reported = total
        return n


def reset_for_tests() -> None:
    """Forget finished loads (a load still running keeps its entry) and streams in flight."""
    global _active
    with _quiet:
        _active = 0
    with _jobs_lock:
        for key, job in list(_jobs.items()):
            if job.result is not None:
                del _jobs[key]
