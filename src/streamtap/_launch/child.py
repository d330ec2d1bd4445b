"""Inside a program under `streamtap run`: instrument every client, write each summary out.

`start()` runs once per process, right after the program imported `openai` (see
`boot/sitecustomize.py`). The options and the events file come from the environment the
`streamtap run` command set (`command.py` validated them). Summaries go out through a summary
hook, not through logging: the program's own logging configuration is left alone and cannot
silence them, and the `streamtap` logger stays as a library's logger should be.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

OPTIONS_ENV = "STREAMTAP_RUN_OPTIONS"
"""The instrument options, a JSON object (`command.py` validated them)."""
EVENTS_ENV = "STREAMTAP_RUN_EVENTS"
"""The absolute path of the events file (appended to); unset or empty: standard error."""

EVENT = "streamtap.stream.summary"


def start() -> None:
    """Instrument the SDK for this process; a failure is reported, never raised, outside
    strict mode (the program runs on uninstrumented)."""
    import streamtap

    try:
        options = json.loads(os.environ.get(OPTIONS_ENV) or "{}")
        writer = EventWriter(os.environ.get(EVENTS_ENV) or None)
        streamtap.instrument(**options, hooks=[writer])
    except Exception as exc:
        from .._errors import strict

        if strict():
            raise
        sys.stderr.write(f"streamtap run: could not instrument this program: {exc}\n")


class EventWriter:
    """A summary hook writing each summary as one JSON line, shaped as `configure_logging`'s
    lines (`event`, `level`, `timestamp`, `logger`, then the fields), so `streamtap report`
    reads them alike.

    Each line is one `write` to a descriptor opened with O_APPEND: lines from several processes
    (uvicorn workers, a multiprocessing pool) sharing one file never interleave.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._fd: int | None = None if path else 2
        self._lock = threading.Lock()

    def __call__(self, summary: Mapping[str, Any], /) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        head = {
            "event": EVENT,
            "level": "info",
            "timestamp": f"{stamp}.{int(now % 1 * 1_000_000):06d}Z",
            "logger": "streamtap",
            "process.pid": os.getpid(),
        }
        line = json.dumps({**head, **summary}, ensure_ascii=False, default=str) + "\n"
        self._write(line.encode("utf-8"))

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            with self._lock:
                if self._fd is None:
                    assert self._path is not None
                    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                    self._fd = os.open(self._path, flags, 0o644)
                fd = self._fd
        view = memoryview(data)
        while view:  # a pipe may take a long line in parts
            view = view[os.write(fd, view) :]
