"""streamtap's own failures: logged and swallowed in production, raised under tests.

The caller's loop must never see an exception that streamtap's bookkeeping caused. But a bug
that is always swallowed is a bug nobody sees, so with ``STREAMTAP_STRICT=1`` (the test suite
sets it) internal errors are raised instead.

Inside a stream the same failure tends to repeat on every chunk (one malformed field the server
sends each time): it is logged once per stream and place, with its traceback, and counted;
`report_repeats` logs the count once when the stream ends.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("streamtap")


class StreamtapInternalError(RuntimeError):
    """Raised (only in strict mode) when streamtap's own bookkeeping fails."""


def strict() -> bool:
    return os.environ.get("STREAMTAP_STRICT", "") not in ("", "0", "false", "no")


def internal_error(where: str, exc: BaseException, counts: dict[str, int] | None = None) -> None:
    """Report a failure inside streamtap. Raises only in strict mode.

    `counts` is the stream's own tally (where → occurrences): given, only the first
    occurrence of each place is logged.
    """
    seen = 0
    if counts is not None:
        seen = counts.get(where, 0)
        counts[where] = seen + 1
    if not seen:
        logger.error("streamtap internal error in %s: %r", where, exc, exc_info=exc)
    if strict():
        raise StreamtapInternalError(f"streamtap internal error in {where}: {exc!r}") from exc


def report_repeats(counts: dict[str, int]) -> None:
    """At the end of a stream: one record per place whose error was not logged every time."""
    for where, n in counts.items():
        if n > 1:
            logger.warning(
                "streamtap internal error in %s: %d times in this stream (logged once above)",
                where,
                n,
            )
