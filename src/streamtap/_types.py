"""The types of the public API: option names and values, hooks, outcomes.

`InstrumentOptions` lists every option `instrument()` and `streamtap.options()` take, so a type
checker rejects a misspelled option name (`bufering=`) or value (`buffering="wrod"`). The same
checks run at `instrument()` time for callers without a type checker (`_options._validate`).

Only the standard `typing` module is imported at run time; `Unpack` (Python 3.11's typing,
typing_extensions before) is needed by annotations alone, which are never evaluated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, TypedDict, Union

Mode = Literal["word", "sentence", "line", "off"]
"""Named buffering modes: whole words, sentences, lines, or no buffering."""

Buffering = Union[Mode, "re.Pattern[str]", Callable[[str], int]]
"""A named mode, a compiled regex whose matches end a releasable piece, or a callable that
returns how many leading characters of the held text may be released."""

ResumeStrategy = Literal["auto", "prefill", "replay", "continuation", "off"]
"""How a broken stream is resumed (docs/resume.md): `auto` (exact), `prefill`, `replay`,
`continuation` (lossy, opt-in) or `off`."""

Prefill = Literal["vllm", "prefix"]
"""How an endpoint continues a partial answer: vLLM / llama.cpp `continue_final_message`, or
DeepSeek / Mistral `prefix: true`."""

Encoding = Literal["o200k_base", "cl100k_base"]
"""The tiktoken encodings streamtap counts with (others: pass `token_counter=`)."""

Outcome = Literal["ok", "error", "cancelled", "incomplete", "abandoned"]
"""How a stream ended, as the summary's `streamtap.outcome` says (docs/events.md)."""


class SummaryHook(Protocol):
    """A callable run with each stream's summary (a read-only mapping, the logged fields).

    Its return value is ignored; an exception it raises is logged, never raised to the caller.
    """

    def __call__(self, summary: Mapping[str, Any], /) -> object: ...


class StructLogger(Protocol):
    """A structlog-style logger: the summary goes out as `info(event, **fields)`, per-chunk
    events (when enabled) as `debug(event, **fields)`."""

    def info(self, event: str, /, **fields: Any) -> Any: ...

    def debug(self, event: str, /, **fields: Any) -> Any: ...


class InstrumentOptions(TypedDict, total=False):
    """The options of `instrument()` and `streamtap.options()`; all optional (README,
    "Options")."""

    buffering: Buffering
    hold_max_seconds: float
    hold_max_chars: int
    count_tokens: bool
    encoding: Encoding | None
    token_counter: Callable[[str], int] | None
    tiktoken_dir: str | None
    include_usage: bool
    log_content: bool
    logger: logging.Logger | StructLogger | None
    hooks: SummaryHook | Iterable[SummaryHook] | None
    fast_decode: bool
    retry: bool
    max_attempts: int
    idle_timeout: float | None
    first_chunk_timeout: float | None
    retry_deadline: float | None
    backoff_initial: float
    backoff_max: float
    resume_strategy: ResumeStrategy
    prefill: Prefill | None
