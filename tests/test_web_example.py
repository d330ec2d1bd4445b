"""The web example (examples/web/) end to end, in headless Chromium.

The app runs as a user starts it (`python -m examples.web`, a subprocess) against the test's
`FakeServer` (its `--base-url` path) or its own embedded server (the default). Chromium, driven
by Playwright, loads the page; a MutationObserver records the answer's text after every update,
so the test sees what a reader saw, update by update. The app's summary events are read from
its standard error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _browser import chromium
from streamtap.testing import FakeServer, Fault, Reply, generate_answer

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How does streaming reach the browser?"
MESSAGES = [{"role": "user", "content": QUESTION}]
MODEL = "gpt-4o-mini"
TEXT = (
    "Server-sent events carry each piece to the browser as it arrives. "
    "Whole words only: the reader never sees a fragment like 'strea' or 'ming'."
)
BOUND = 30.0
# Text waits for its word boundary at most `hold_max_seconds` (0.15 s by default), then is shown
# anyway: by design, a late chunk (a resume's new request, or a loaded CI machine pausing the
# app) must not freeze the page. The checks of word boundaries are about the boundaries, so the
# app here waits as long as it takes.
PATIENT = ["--hold-max-seconds", "60"]

# Installed before the page's own script: records the answer's text after every DOM update.
OBSERVER = """
window.__updates = [];
document.addEventListener("DOMContentLoaded", () => {
  const answer = document.getElementById("answer");
  new MutationObserver(() => window.__updates.push(answer.textContent))
    .observe(answer, {childList: true, characterData: true, subtree: true});
});
"""


def _chromium() -> str:
    return chromium("the web example's browser test cannot run")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class App:
    """`python -m examples.web` in a subprocess, on a free port; its stderr in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._err = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.web", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("streamtap web example: http://"), self.errors()
        self.url = line.split(": ", 1)[1].strip()

    def errors(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]

    def summaries(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "streamtap.stream.summary":
                    out.append(event)
        return out

    def wait_for_summaries(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + BOUND
        while len(self.summaries()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        found = self.summaries()
        assert len(found) == count, (found, self.errors())
        return found

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._err.close()


def app_env(**extra: str) -> dict[str, str]:
    """The environment without the user's own OpenAI settings (the default backend must be
    the embedded server, never a real endpoint)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(extra)
    return env


@pytest.fixture
def srv() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def app_for(srv: FakeServer, tmp_path: Path) -> Iterator[App]:
    """The app streaming from the test's server (`--base-url`)."""
    app = App(
        ["--base-url", srv.base_url, "--model", MODEL, *PATIENT],
        app_env(OPENAI_API_KEY="sk-test"),
        tmp_path / "app.log",
    )
    try:
        yield app
    finally:
        app.close()


def open_page(browser: Any, app: App) -> Any:
    page = browser.new_page()
    page.add_init_script(OBSERVER)
    page.goto(app.url + "?q=" + QUESTION.replace(" ", "+"))
    return page


def wait_until_done(page: Any) -> dict[str, str]:
    page.wait_for_selector("#stats", state="visible", timeout=BOUND * 1000)
    return {name: page.text_content(f"#{name}") or "" for name in ("ttft", "tokens", "retries")}


def updates(page: Any) -> list[str]:
    found: list[str] = page.evaluate("window.__updates")
    return found


def ends_on_word_boundary(text: str, whole: str) -> bool:
    """`text` is a prefix of `whole` that does not end inside a word (nor a number)."""
    if not whole.startswith(text):
        return False
    return len(text) == len(whole) or not re.match(r"\w\w", whole[len(text) - 1 : len(text) + 1])


def check_word_by_word(seen: list[str], whole: str) -> None:
    """Every update the reader saw ends on a word boundary, and the text only ever grew: one
    continuous answer, shown piece by piece."""
    assert len(seen) >= 5, seen  # it streamed, not arrived at once
    assert seen[-1] == whole
    for before, after in zip(seen, seen[1:]):
        assert after.startswith(before), (before, after)
    bad = [t for t in seen if not ends_on_word_boundary(t, whole)]
    assert not bad, bad


def test_the_page_shows_the_whole_answer_word_by_word(
    browser: Any, srv: FakeServer, app_for: App
) -> None:
    """The server sends three characters at a time; the page shows the whole answer, every
    update ending on a word boundary, then time to first token, tokens and retries from
    streamtap.stats(), which agree with the summary event."""
    srv.enqueue(Reply(text=TEXT, chunk_size=3, delay=0.01))
    page = open_page(browser, app_for)
    numbers = wait_until_done(page)
    assert page.text_content("#answer") == TEXT
    check_word_by_word(updates(page), TEXT)
    [event] = app_for.wait_for_summaries(1)
    assert event["streamtap.outcome"] == "ok"
    assert numbers["retries"] == "0"
    counted = event["streamtap.tokens.counted"]
    if numbers["tokens"].endswith(" (estimate)"):  # the app's tokenizer was still loading
        estimate = int(numbers["tokens"].split()[0])
        assert abs(estimate - counted) <= counted // 4, (numbers, counted)
    else:
        assert numbers["tokens"] == str(counted)
    assert re.fullmatch(r"\d+ ms", numbers["ttft"]), numbers
    page.close()


def test_a_connection_cut_mid_answer_shows_one_continuous_answer(
    browser: Any, srv: FakeServer, app_for: App
) -> None:
    """The model server drops the connection after 20 chunks: streamtap resumes, and the page
    shows one continuous answer equal to the server's text, with one retry."""
    srv.enqueue(Reply.model_mode(delay=0.005, fault=Fault.cut(after_events=20)))
    page = open_page(browser, app_for)
    numbers = wait_until_done(page)
    whole = srv.answer_for(MESSAGES, model=MODEL)
    assert srv.responses[0].cut and not srv.responses[0].complete
    assert page.text_content("#answer") == whole
    check_word_by_word(updates(page), whole)
    assert numbers["retries"] == "1"
    [event] = app_for.wait_for_summaries(1)
    assert (event["streamtap.outcome"], event["streamtap.retries"]) == ("ok", 1)
    page.close()


def test_a_browser_that_leaves_cancels_the_upstream_stream(
    browser: Any, srv: FakeServer, app_for: App
) -> None:
    """The reader closes the tab mid-answer: the app cancels the model request at once (the
    summary says `cancelled`), and the connection to the model server is closed, not left
    open: the server sees it go and stops sending."""
    srv.enqueue(Reply.model_mode(delay=0.2))  # about 20 s in all: still going when left
    page = open_page(browser, app_for)
    page.wait_for_function(
        "document.getElementById('answer').textContent.split(' ').length > 5",
        timeout=BOUND * 1000,
    )
    assert srv.open_connections() == 1
    page.close()
    [event] = app_for.wait_for_summaries(1)
    assert event["streamtap.outcome"] == "cancelled"
    assert srv.wait_for_open_connections(0, timeout=BOUND)
    response = srv.responses[0]
    assert not response.complete
    assert response.events_sent < len(response.events)


def test_default_backend_is_the_embedded_server(browser: Any, tmp_path: Path) -> None:
    """With no endpoint configured, the app answers from its embedded server (its model-mode
    answer, known in advance), no API key needed; `--cut-after` cuts it mid-answer, and the
    page still shows the whole answer, with the retry."""
    args = ["--delay", "0.002", "--cut-after", "20", *PATIENT]
    app = App(args, app_env(), tmp_path / "app.log")
    try:
        page = open_page(browser, app)
        numbers = wait_until_done(page)
        whole = generate_answer(MESSAGES, None, MODEL)
        assert page.text_content("#answer") == whole
        check_word_by_word(updates(page), whole)
        assert numbers["retries"] == "1"
        [event] = app.wait_for_summaries(1)
        assert event["server.address"] == "127.0.0.1"
        assert (event["streamtap.outcome"], event["streamtap.retries"]) == ("ok", 1)
        page.close()
    finally:
        app.close()
