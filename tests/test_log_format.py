"""`configure_logging()`: structlog's ProcessorFormatter renders streamtap's records as JSON lines
or key=value text, with the summary's fields, through the real SDK and the local server."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import openai
import pytest
import structlog

import streamtap
from streamtap.testing import FakeServer, Reply

MSG = [{"role": "user", "content": "hi"}]
TEXT = "Bouvet Island is in the South Atlantic Ocean."


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    log = logging.getLogger("streamtap")
    level = log.level
    yield io.StringIO()
    for handler in list(log.handlers):
        if handler.get_name() == "streamtap.configure_logging":
            log.removeHandler(handler)
    log.setLevel(level)


def one_stream(server: FakeServer) -> None:
    client = streamtap.instrument(
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    )
    server.enqueue(Reply(text=TEXT))
    stream = client.chat.completions.create(model="m", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == TEXT


def test_json_lines(server: FakeServer, out: io.StringIO) -> None:
    handler = streamtap.configure_logging(json=True, stream=out)
    assert isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    one_stream(server)
    [line] = out.getvalue().splitlines()
    event = json.loads(line)
    assert list(event)[:4] == ["event", "level", "timestamp", "logger"]
    assert event["event"] == "streamtap.stream.summary"
    assert event["level"] == "info" and event["logger"] == "streamtap"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["timestamp"])
    assert event["streamtap.outcome"] == "ok"
    assert event["gen_ai.usage.output_tokens"] > 0


def test_key_value_text(server: FakeServer, out: io.StringIO) -> None:
    streamtap.configure_logging(json=False, stream=out)
    one_stream(server)
    [line] = out.getvalue().splitlines()
    assert "streamtap.stream.summary" in line and "[streamtap]" in line
    assert "streamtap.outcome=ok" in line
    assert not line.lstrip().startswith("{")


def test_calling_again_replaces_the_handler(server: FakeServer, out: io.StringIO) -> None:
    streamtap.configure_logging(json=True, stream=io.StringIO())
    streamtap.configure_logging(json=True, stream=out)
    names = [h.get_name() for h in logging.getLogger("streamtap").handlers]
    assert names.count("streamtap.configure_logging") == 1
    one_stream(server)
    assert len(out.getvalue().splitlines()) == 1


@pytest.mark.parametrize("as_json", [True, False])
def test_exceptions_and_other_formatters_leftovers(as_json: bool, out: io.StringIO) -> None:
    """An exception is rendered as a traceback; what another handler's stdlib formatter left on
    the record (`asctime`, `message`) is not a field."""
    handler = streamtap.configure_logging(json=as_json, stream=out)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        record = logging.LogRecord("streamtap", logging.ERROR, "p", 1, "boom", None, sys.exc_info())
    logging.Formatter("%(asctime)s %(message)s").format(record)  # an earlier handler
    text = handler.format(record)
    assert "ZeroDivisionError" in text and "Traceback" in text
    assert "asctime" not in text and "message" not in text
    if as_json:
        assert set(json.loads(text)) == {"event", "level", "timestamp", "logger", "exception"}
