"""streamtap: one line to make OpenAI streaming better.

    import openai, streamtap
    client = openai.OpenAI()
    streamtap.instrument(client)

Every `client.chat.completions.create(stream=True)` then delivers whole words, counts tokens per
chunk, resumes broken streams, and logs one structured latency event per stream.
"""

from __future__ import annotations

import time
from typing import Any

from ._errors import StreamtapInternalError
from ._exceptions import StreamInterrupted
from ._log import configure_logging, summary_lock
from ._options import Options, options
from ._patch import instrument, is_instrumented, uninstrument
from ._proxy import run_of
from ._state import StreamStats

__version__ = "0.1.0.dev0"


def stats(stream: Any) -> StreamStats:
    """Live statistics of an instrumented stream (or of the SDK's `.stream()` helper on one).

    While the tokenizer is still loading (the first second or so after `instrument()`),
    `tokens` is an estimate and `token_source` says `"estimate"`; from then on both are
    exact, for the text delivered before the load too. Raises TypeError for objects streamtap
    did not wrap.
    """
    run = run_of(stream)
    if run is None:
        raise TypeError(
            "streamtap.stats() expects a stream returned by an instrumented client, "
            f"got {type(stream).__name__}"
        )
    with summary_lock:
        return run.state.snapshot(time.perf_counter())


__all__ = [
    "Options",
    "StreamInterrupted",
    "StreamStats",
    "StreamtapInternalError",
    "__version__",
    "configure_logging",
    "instrument",
    "is_instrumented",
    "options",
    "stats",
    "uninstrument",
]
