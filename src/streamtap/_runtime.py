"""The process-wide state of streamtap, in one object with one reset.

Everything streamtap remembers between requests that depends on what was instrumented, or on
what an endpoint answered, lives on `runtime` (one `Runtime`). `uninstrument()` without a
client calls `runtime.reset()`: after it, streamtap behaves as in a fresh process, except for
what is listed as kept below.

Cleared by `reset()`:

- the client registry (client -> its resolved options) and the process-wide options of
  `instrument()` without a client;
- the SDK patches (restored to the SDK's own methods);
- per-endpoint memory: endpoints that rejected `stream_options`, that send usage unasked (and
  the streams being watched to learn it), that rejected a prefill, that end without a
  finish_reason;
- the cache of options derived from `streamtap.options(...)` overrides.

Kept on purpose (not per client, not learned from an endpoint, expensive or identity-bearing):

- loaded tokenizers and the record of failed loads (`_encodings`), and loads in flight
  (`_pending`): a tokenizer is the same for every client, and loading one costs a second;
- the `StreamInterrupted` classes made per exception family (`_exceptions`): a caller may hold
  one in an `except` clause or an `isinstance` check across a re-instrumentation;
- the watchdog thread (`_watchdog`): it only watches streams still open;
- compiled patterns and caches of pure functions: the factory cache (`_tokens`), the
  character-class memo (`_tokens_breaks`), the segment and estimate caches
  (`_tokens_counters`), the word buffer's cut cache (`_segment._CUTS`) and character classes
  (`_segment_tables`): they depend on the code and the text, not on anything instrumented.

Per-request overrides (`streamtap.options()`) live in a context variable, not here: they end
with their `with` block.

Time, the one seam for tests: `clock` (seconds, monotonic), `sleep` and `async_sleep` are read
from here by every stream's timing, the hold bound, the resume budget and its waits. A stream
takes `clock` once, when it starts (`StreamState.clock`; the drivers bind it to a local, so a
chunk costs the same direct call as before); a resume reads `sleep` when it waits. A test
swaps in a fake clock whose sleeps only record what was asked and move the fake time on, then
asserts on the waits requested, never on wall time. `reset()` puts the real ones back. The
stall watchdog keeps the real clock: it times real waits on real sockets, from its own thread
(its decisions take the time as an argument and are tested with explicit readings).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core.state import StreamState
    from ._options import Options, Resolved


class Runtime:
    """streamtap's process-wide state (see the module docstring for what `reset()` clears)."""

    __slots__ = (
        "async_sleep",
        "clients",
        "clock",
        "derived",
        "derived_lock",
        "global_options",
        "lock",
        "no_finish",
        "no_prefill",
        "no_stream_options",
        "patched",
        "sleep",
        "usage_unasked",
        "usage_watch",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        """Guards the registry, the patches and the usage watch."""
        self.derived_lock = threading.Lock()
        self.clients: weakref.WeakKeyDictionary[Any, Resolved] = weakref.WeakKeyDictionary()
        """Each instrumented client's options (clients derived with copy() share them)."""
        self.global_options: Resolved | None = None
        """The options of `instrument()` without a client: every client not registered."""
        self.patched: list[tuple[type, str, Any]] = []
        """(class, attribute, original) of each SDK method wrapped, to restore."""
        self.no_stream_options: set[str] = set()
        """Endpoints that answered 400/422 to `stream_options`: never sent it again."""
        self.usage_unasked: set[str] = set()
        """Endpoints seen sending usage on a stream that did not ask for it."""
        self.usage_watch: dict[str, list[StreamState]] = {}
        """Streams sent without `include_usage`, per endpoint, until one shows whether usage
        came anyway."""
        self.no_prefill: set[str] = set()
        """Endpoints that rejected a prefill (continue a partial message) request."""
        self.no_finish: set[str] = set()
        """Endpoints whose streams end without a finish_reason every time."""
        self.derived: dict[tuple[Options, tuple[tuple[str, Any], ...]], Resolved] = {}
        """Options with `streamtap.options(...)` overrides applied, resolved once."""
        self.clock: Callable[[], float] = time.perf_counter
        """The clock of every stream started from now on (see the module docstring)."""
        self.sleep: Callable[[float], Any] = time.sleep
        """How a sync resume waits (backoff, Retry-After)."""
        self.async_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        """How an async resume waits."""

    def reset(self) -> None:
        """Forget every client, patch and endpoint: what `uninstrument()` without a client does.

        Restores the SDK's methods and the real clock too. What is kept is listed in the module
        docstring.
        """
        with self.lock:
            for cls, name, original in reversed(self.patched):
                setattr(cls, name, original)
            self.patched.clear()
            self.clients.clear()
            self.global_options = None
            self.no_stream_options.clear()
            self.usage_unasked.clear()
            self.usage_watch.clear()
            self.no_prefill.clear()
            self.no_finish.clear()
            with self.derived_lock:
                self.derived.clear()
            self.clock = time.perf_counter
            self.sleep = time.sleep
            self.async_sleep = asyncio.sleep


runtime = Runtime()
"""The one `Runtime` of the process."""
