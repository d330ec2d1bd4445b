"""Configuration: validated once at `instrument()` / `options()` time, never on the hot path.

`Options` is what the user sets. `Resolved` adds what is derived from it (the boundary policy,
token counter factories per model) and is cached, so a request pays one dict lookup for it.
Per-request overrides travel in a context variable, which works the same for threads and
asyncio tasks and needs no change to the SDK call.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._core import segment as _segment
from ._runtime import runtime
from ._types import Buffering, Encoding, Prefill, ResumeStrategy, StructLogger, SummaryHook

if TYPE_CHECKING:  # the tokenizer modules load at instrument(), not at import
    from typing_extensions import Unpack

    from ._core.tokens import CounterFactory
    from ._types import InstrumentOptions

_MODES = ("word", "sentence", "line", "off")


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a user can set, per `instrument()` call or per request (validated).

    Users pass these as keyword arguments (`InstrumentOptions`); this is what they become.
    """

    buffering: Buffering = "word"
    """`word`, `sentence`, `line`, `off`, a compiled regex, or a callable (see README)."""
    hold_max_seconds: float = 0.15
    hold_max_chars: int = 256
    count_tokens: bool = True
    encoding: Encoding | None = None
    token_counter: Callable[[str], int] | None = None
    tiktoken_dir: str | None = None
    include_usage: bool = True
    log_content: bool = False
    logger: logging.Logger | StructLogger | None = None
    hooks: tuple[SummaryHook, ...] = ()
    fast_decode: bool = False
    """Build chunks with pydantic-core instead of the SDK's `construct_type` (identical objects;
    an item it cannot reproduce exactly is decoded by the SDK: docs/fast-decode.md)."""
    retry: bool = True
    max_attempts: int = 3
    idle_timeout: float | None = 30.0
    first_chunk_timeout: float | None = 120.0
    retry_deadline: float | None = 300.0
    backoff_initial: float = 0.25
    backoff_max: float = 8.0
    resume_strategy: ResumeStrategy = "auto"
    """`auto` (exact), `prefill`, `replay`, `continuation` (lossy, opt-in), `off` (resume.md)."""
    prefill: Prefill | None = None
    """How the endpoint continues a partial answer: `vllm` (vLLM / llama.cpp
    `continue_final_message`), `prefix` (DeepSeek / Mistral `prefix: true`), or None: known
    hosts only."""


_FIELDS = {f.name for f in dataclasses.fields(Options)}
_STRATEGIES = ("auto", "prefill", "replay", "continuation", "off")


def _check_timeout(name: str, value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"streamtap: {name} must be a positive number of seconds, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"streamtap: {name} must not be NaN")


def make_options(base: Options | None = None, /, **changes: Any) -> Options:
    """Build validated options; unknown names and bad values raise with a clear message."""
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise TypeError(
            f"streamtap: unknown option(s) {', '.join(unknown)}; valid options are "
            f"{', '.join(sorted(_FIELDS))}"
        )
    if "hooks" in changes:
        hooks = changes["hooks"]
        if hooks is None:
            hooks = ()
        elif callable(hooks):
            hooks = (hooks,)
        hooks = tuple(hooks)
        for h in hooks:
            if not callable(h):
                raise TypeError(f"streamtap: every hook must be callable, got {h!r}")
        changes["hooks"] = hooks
    opts = dataclasses.replace(base or Options(), **changes)
    _validate(opts)
    return opts


def _validate(o: Options) -> None:
    b = o.buffering
    if isinstance(b, str) and b not in _MODES:
        raise ValueError(
            f"streamtap: buffering must be one of {', '.join(_MODES)}, a compiled regex or a "
            f"callable; got {b!r}"
        )
    _segment.make_policy(b)  # raises TypeError / ValueError for anything else
    _check_timeout("hold_max_seconds", o.hold_max_seconds, allow_none=False)
    if isinstance(o.hold_max_chars, bool) or not isinstance(o.hold_max_chars, int):
        raise TypeError(f"streamtap: hold_max_chars must be an int, got {o.hold_max_chars!r}")
    if o.hold_max_chars < 1:
        raise ValueError(f"streamtap: hold_max_chars must be >= 1, got {o.hold_max_chars}")
    for name in ("count_tokens", "include_usage", "log_content", "retry", "fast_decode"):
        if not isinstance(getattr(o, name), bool):
            raise TypeError(f"streamtap: {name} must be True or False, got {getattr(o, name)!r}")
    if o.encoding is not None and o.encoding not in ("o200k_base", "cl100k_base"):
        raise ValueError(
            f"streamtap: encoding must be 'o200k_base' or 'cl100k_base' (or pass "
            f"token_counter= for other tokenizers), got {o.encoding!r}"
        )
    if o.token_counter is not None and not callable(o.token_counter):
        raise TypeError(
            f"streamtap: token_counter must be a callable str -> int, got {o.token_counter!r}"
        )
    if o.tiktoken_dir is not None and not os.path.isdir(o.tiktoken_dir):
        raise ValueError(f"streamtap: tiktoken_dir {o.tiktoken_dir!r} is not a directory")
    if o.logger is not None and not (
        isinstance(o.logger, logging.Logger) or callable(getattr(o.logger, "info", None))
    ):
        raise TypeError(
            f"streamtap: logger must be a logging.Logger or a structlog logger, got {o.logger!r}"
        )
    if isinstance(o.max_attempts, bool) or not isinstance(o.max_attempts, int):
        raise TypeError(f"streamtap: max_attempts must be an int, got {o.max_attempts!r}")
    if o.max_attempts < 1:
        raise ValueError(f"streamtap: max_attempts must be >= 1, got {o.max_attempts}")
    _check_timeout("idle_timeout", o.idle_timeout, allow_none=True)
    _check_timeout("first_chunk_timeout", o.first_chunk_timeout, allow_none=True)
    _check_timeout("retry_deadline", o.retry_deadline, allow_none=True)
    _check_timeout("backoff_initial", o.backoff_initial, allow_none=False)
    _check_timeout("backoff_max", o.backoff_max, allow_none=False)
    if o.prefill not in (None, "vllm", "prefix"):
        raise ValueError(f"streamtap: prefill must be None, 'vllm' or 'prefix', got {o.prefill!r}")
    if o.resume_strategy not in _STRATEGIES:
        raise ValueError(
            f"streamtap: resume_strategy must be one of {', '.join(_STRATEGIES)}, "
            f"got {o.resume_strategy!r}"
        )


class Resolved:
    """Options plus what is derived from them, shared by every stream that uses them."""

    __slots__ = ("_counters", "_lock", "mode", "options", "policy")

    def __init__(self, options: Options) -> None:
        self.options = options
        self.policy = _segment.make_policy(options.buffering)
        b = options.buffering
        self.mode = b if isinstance(b, str) else "custom"
        self._counters: dict[str | None, CounterFactory] = {}
        self._lock = threading.Lock()

    def preload(self) -> None:
        """Start loading the likely tokenizer in the background, off the first request's path."""
        o = self.options
        if o.count_tokens and o.token_counter is None:
            from ._tokenizer import pending as _pending

            _pending.factory_nowait("gpt-4o", encoding=o.encoding, tiktoken_dir=o.tiktoken_dir)

    def counter_factory(self, model: str | None) -> CounterFactory:
        factory = self._counters.get(model)
        if factory is None:
            from ._tokenizer import pending as _pending

            with self._lock:
                factory = self._counters.get(model)
                if factory is None:
                    o = self.options
                    factory = _pending.factory_nowait(
                        model,
                        encoding=o.encoding,
                        counter=o.token_counter,
                        tiktoken_dir=o.tiktoken_dir,
                    )
                    # (a factory still loading is asked again; bound the cache for free-form
                    # model names)
                    if factory.loading is None and len(self._counters) < 256:
                        self._counters[model] = factory
        return factory


# Per-request overrides (a dict of option changes), set by `streamtap.options(...)`.
_overrides: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "streamtap_overrides", default=None
)
# Options derived from overrides are cached on `runtime.derived` (cleared by uninstrument()).


@contextlib.contextmanager
def options(**changes: Unpack[InstrumentOptions]) -> Iterator[None]:
    """Override options for the requests made inside this block (thread and task local).

    Takes the options of `instrument()` (`InstrumentOptions`), validated on entry.

        with streamtap.options(buffering="off", retry=False):
            client.chat.completions.create(...)
    """
    make_options(None, **changes)  # validate now, not at request time
    current = _overrides.get()
    merged = {**current, **changes} if current else dict(changes)
    token = _overrides.set(merged)
    try:
        yield
    finally:
        _overrides.reset(token)


def effective(resolved: Resolved) -> Resolved:
    """The resolved options for a request: the client's, with any `options()` overrides."""
    over = _overrides.get()
    if not over:
        return resolved
    try:
        key = (resolved.options, tuple(sorted((k, _hashable(v)) for k, v in over.items())))
        found = runtime.derived.get(key)
    except TypeError:  # an unhashable option value: resolve afresh
        return Resolved(make_options(resolved.options, **over))
    if found is None:
        found = Resolved(make_options(resolved.options, **over))
        with runtime.derived_lock:
            if len(runtime.derived) > 512:
                runtime.derived.clear()
            runtime.derived[key] = found
    return found


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, re.Pattern):
        return ("re", v.pattern, v.flags)
    hash(v)
    return v
