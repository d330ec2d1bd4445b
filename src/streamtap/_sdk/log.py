"""Routing of the summary event: stdlib logging by default, a structlog logger on request.

A library must not configure logging. By default the event goes to the `streamtap` stdlib
logger (which has only a `NullHandler`), with every field on the `LogRecord` (as `extra`), so
any JSON formatter picks them up. `configure_logging()` is an opt-in helper for scripts that
renders those records with structlog's own renderers.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any

from .._core.state import StreamState
from .._errors import internal_error

if TYPE_CHECKING:
    from structlog.typing import EventDict

EVENT = "streamtap.stream.summary"
CHUNK_EVENT = "streamtap.stream.chunk"

logger = logging.getLogger("streamtap")
logger.addHandler(logging.NullHandler())

# LogRecord attributes that `extra` may not overwrite; our dotted names never clash, this only
# guards user-supplied field names that might.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def drop_none(event: dict[str, Any]) -> dict[str, Any]:
    """Processor: leave out unknown values so log lines stay short."""
    return {k: v for k, v in event.items() if v is not None}


def emit(state: StreamState) -> None:
    """Build the summary of a finished stream and send it to its logger and hooks.

    If the stream's tokenizer is still loading, the summary waits for it (and is sent from the
    loader thread); the caller does not wait.
    """
    options = state.resolved.options
    target = options.logger
    loading = state.counting_load
    if loading is not None:
        loading.stream_ended()
    if (
        not options.hooks
        and (target is None or isinstance(target, logging.Logger))
        and not (target or logger).isEnabledFor(logging.INFO)
    ):
        return  # nobody listens (the default for a library): do not build the event at all
    if loading is not None:
        state.settle(keep_latest=False)  # the caller's thread touches no counter after this
        loading.when_ready(lambda: _emit_locked(state))  # now, if the load has ended
        return
    _emit(state)


summary_lock = threading.Lock()
"""Held while a summary that waited for its count is built on the loader thread; `stats()`
takes it too, so the two never touch one stream's counters at once."""


def _emit_locked(state: StreamState) -> None:
    with summary_lock:
        _emit(state)


def _emit(state: StreamState) -> None:
    options = state.resolved.options
    target = options.logger
    try:
        event = drop_none(state.summary())
    except Exception as exc:
        internal_error("building the summary", exc)
        return
    try:
        if target is None or isinstance(target, logging.Logger):
            log = target or logger
            extra = {k: v for k, v in event.items() if k not in _RESERVED}
            log.info(EVENT, extra=extra)
        else:
            target.info(EVENT, **event)
    except Exception as exc:
        internal_error("logging the summary", exc)
    if options.hooks:
        view = MappingProxyType(event)
        for hook in options.hooks:
            try:
                hook(view)
            except Exception:
                # A user's hook failing is the user's bug; report it, never break the stream.
                logger.exception("streamtap: summary hook %r raised", hook)


def debug_enabled(state: StreamState) -> bool:
    """Whether per-chunk debug events are wanted; decided once per stream."""
    target = state.resolved.options.logger
    if target is None:
        return logger.isEnabledFor(logging.DEBUG)
    if isinstance(target, logging.Logger):
        return target.isEnabledFor(logging.DEBUG)
    is_enabled = getattr(target, "is_enabled_for", None)
    return bool(is_enabled(logging.DEBUG)) if callable(is_enabled) else False


def chunk_event(state: StreamState, now: float) -> None:
    """A per-chunk debug event (only called when `debug_enabled`)."""
    total, last = state.live_tokens()
    fields = {
        "streamtap.chunk_index": state.chunk_count,
        "streamtap.elapsed": now - state.timing.start,
        "streamtap.chunk_tokens": last,
        "streamtap.tokens_total": total,
        "gen_ai.request.model": state.request.get("gen_ai.request.model"),
    }
    target = state.resolved.options.logger
    if target is None or isinstance(target, logging.Logger):
        (target or logger).debug(CHUNK_EVENT, extra=fields)
    else:
        target.debug(CHUNK_EVENT, **fields)


def event_formatter(*, json: bool = True) -> logging.Formatter:
    """structlog's `ProcessorFormatter` for streamtap's records (and any other stdlib record).

    Each record becomes one event dict (`event`, `level`, `timestamp` of the record in UTC,
    `logger`, then the record's fields, then `exception` if any) rendered as one JSON line, or
    as readable key=value text when `json` is False.
    """
    import structlog  # only for those who render with it (import cost)

    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            _record_time,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _drop_formatting_leftovers,
            structlog.processors.format_exc_info,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def _record_time(_: Any, __: str, event: EventDict) -> EventDict:
    """Processor: when the record was made (not when it is formatted), ISO 8601 UTC."""
    record: logging.LogRecord = event["_record"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    event["timestamp"] = f"{stamp}.{int(record.msecs * 1000):06d}Z"
    return event


def _drop_formatting_leftovers(_: Any, __: str, event: EventDict) -> EventDict:
    """Processor: drop what an earlier stdlib formatter left on the record (`message`,
    `asctime`), which are not fields of the event."""
    event.pop("message", None)
    event.pop("asctime", None)
    return event


def configure_logging(
    *,
    json: bool = True,
    stream: IO[str] | None = None,
    level: int = logging.INFO,
) -> logging.Handler:
    """Opt-in for scripts: print streamtap's events, as JSON lines or readable key=value.

    Adds one handler to the `streamtap` logger (replacing one added by an earlier call), with
    structlog's `ProcessorFormatter` (`event_formatter`), sets the logger's level and returns
    the handler. Libraries and applications with their own logging setup should not call this;
    they get the same fields on every `LogRecord` from the `streamtap` logger.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(event_formatter(json=json))
    handler.set_name("streamtap.configure_logging")
    for old in list(logger.handlers):
        if old.get_name() == "streamtap.configure_logging":
            logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
