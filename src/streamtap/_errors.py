"""streamtap's own failures: logged and swallowed in production, raised under tests.

The caller's loop must never see an exception that streamtap's bookkeeping caused. But a bug
that is always swallowed is a bug nobody sees, so with ``STREAMTAP_STRICT=1`` (the test suite
sets it) internal errors are raised instead.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("streamtap")


class StreamtapInternalError(RuntimeError):
    """Raised (only in strict mode) when streamtap's own bookkeeping fails."""


def strict() -> bool:
    return os.environ.get("STREAMTAP_STRICT", "") not in ("", "0", "false", "no")


def internal_error(where: str, exc: BaseException) -> None:
    """Report a failure inside streamtap. Raises only in strict mode."""
    logger.error("streamtap internal error in %s: %r", where, exc, exc_info=exc)
    if strict():
        raise StreamtapInternalError(f"streamtap internal error in {where}: {exc!r}") from exc
