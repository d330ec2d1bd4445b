"""Common fixtures: strict mode, offline encodings, a local server, event capture."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

# streamtap's internal errors are raised, not swallowed, while the suite runs.
os.environ.setdefault("STREAMTAP_STRICT", "1")
# Offline: the encodings come from the copy shipped inside streamtap, nothing is downloaded.
os.environ.setdefault("STREAMTAP_TIKTOKEN_DOWNLOAD", "0")


@pytest.fixture(autouse=True, scope="session")
def _encodings_loaded() -> None:
    """Load both encodings once, up front: a stream that starts while its encoding loads sends
    its summary later, from the loader thread (tests/test_first_stream.py tests that); the
    other tests read the summary as soon as the stream ends."""
    from streamtap._core import tokens as _tokens

    for name in ("o200k_base", "cl100k_base"):
        assert _tokens.counter_factory(None, encoding=name).source == "tokenizer"


class Events(logging.Handler):
    """Collects the fields of every streamtap summary event."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.summaries: list[dict[str, Any]] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.getMessage() == "streamtap.stream.summary":
            self.summaries.append(
                {k: v for k, v in record.__dict__.items() if "." in k or k == "event"}
            )

    def one(self) -> dict[str, Any]:
        assert len(self.summaries) == 1, self.summaries
        return self.summaries[0]

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


@pytest.fixture
def events() -> Iterator[Events]:
    log = logging.getLogger("streamtap")
    handler = Events()
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(old)


class FakeTime:
    """A clock for `runtime.clock` that moves only when told to or when streamtap sleeps.

    Sleeps return at once (an async one after yielding to the loop once) and record what was
    asked: a test asserts on the waits streamtap requested and on durations in this clock, never
    on wall time. The stall watchdog keeps the real clock (see `_runtime`).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        import asyncio

        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake_time() -> Iterator[FakeTime]:
    """streamtap's clock and sleeps replaced by a `FakeTime` for the test."""
    from streamtap._runtime import runtime

    fake = FakeTime()
    saved = runtime.clock, runtime.sleep, runtime.async_sleep
    runtime.clock, runtime.sleep, runtime.async_sleep = fake.clock, fake.sleep, fake.async_sleep
    try:
        yield fake
    finally:
        runtime.clock, runtime.sleep, runtime.async_sleep = saved


@pytest.fixture
def server() -> Iterator[Any]:
    from streamtap.testing import FakeServer

    with FakeServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean_instrumentation() -> Iterator[None]:
    """Every test starts and ends with nothing instrumented."""
    import streamtap

    streamtap.uninstrument()
    yield
    streamtap.uninstrument()


# ---- conformance summary (tests/test_conformance.py) ----------------------------------------
# Appended block, independent of everything above. At the end of a run that included
# test_recorded_stream it prints one line, e.g. "conformance: 72/75 recorded streams pass".
# `specname` keeps this from clashing with another pytest_terminal_summary in this file.


@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_conformance(terminalreporter: Any) -> None:
    """Recorded streams whose sync and async conformance tests all passed."""
    marker = "test_conformance.py::test_recorded_stream["
    outcomes: dict[str, set[str]] = {}
    for category, reports in terminalreporter.stats.items():
        if category in ("", "warnings"):
            continue
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if marker not in nodeid:
                continue
            param = nodeid.split(marker, 1)[1].rstrip("]")
            stream = param.rsplit("-", 1)[0]
            outcomes.setdefault(stream, set()).add(category)
    if not outcomes or set(outcomes) == {"no"}:
        return
    import openai

    passing = sorted(s for s, seen in outcomes.items() if seen == {"passed"})
    xfail = sorted(s for s, seen in outcomes.items() if seen & {"xfailed"})
    failing = sorted(s for s in outcomes if s not in passing and s not in xfail)
    line = (
        f"conformance: {len(passing)}/{len(outcomes)} recorded streams pass "
        f"(sync and async, openai {openai.__version__})"
    )
    if xfail:
        line += f"; xfail (streamtap bugs): {', '.join(xfail)}"
    if failing:
        line += f"; FAILING: {', '.join(failing)}"
    terminalreporter.write_line(line, bold=True)
