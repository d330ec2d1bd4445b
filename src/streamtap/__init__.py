"""streamtap: one line to make OpenAI streaming better.

    import openai, streamtap
    client = openai.OpenAI()
    streamtap.instrument(client)

Every `client.chat.completions.create(stream=True)` then delivers whole words, counts tokens per
chunk, resumes broken streams, and logs one structured latency event per stream.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core.state import StreamStats
    from ._errors import StreamtapInternalError
    from ._exceptions import StreamInterrupted
    from ._options import Options, options
    from ._sdk.log import configure_logging
    from ._sdk.patch import instrument, is_instrumented, uninstrument
    from ._types import InstrumentOptions, SummaryHook

__version__ = "0.1.0.dev0"

# The public names load their modules on first use (PEP 562): `import streamtap` alone costs
# nothing, and `streamtap report` never imports openai.
_LAZY = {
    "InstrumentOptions": "_types",
    "SummaryHook": "_types",
    "Options": "_options",
    "StreamInterrupted": "_exceptions",
    "StreamStats": "_core.state",
    "StreamtapInternalError": "_errors",
    "configure_logging": "_sdk.log",
    "instrument": "_sdk.patch",
    "is_instrumented": "_sdk.patch",
    "options": "_options",
    "uninstrument": "_sdk.patch",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamtap' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def stats(stream: Any) -> StreamStats:
    """Live statistics of an instrumented stream (or of the SDK's `.stream()` helper on one).

    While the tokenizer is still loading (the first second or so after `instrument()`),
    `tokens` is an estimate and `token_source` says `"estimate"`; from then on both are
    exact, for the text delivered before the load too. Raises TypeError for objects streamtap
    did not wrap.
    """
    from ._sdk.log import summary_lock
    from ._sdk.proxy import run_of

    run = run_of(stream)
    if run is None:
        raise TypeError(
            "streamtap.stats() expects a stream returned by an instrumented client, "
            f"got {type(stream).__name__}"
        )
    with summary_lock:
        return run.state.snapshot(run.state.clock())


__all__ = [
    "InstrumentOptions",
    "Options",
    "StreamInterrupted",
    "StreamStats",
    "StreamtapInternalError",
    "SummaryHook",
    "__version__",
    "configure_logging",
    "instrument",
    "is_instrumented",
    "options",
    "stats",
    "uninstrument",
]
