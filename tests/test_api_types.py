"""The public API as a type checker sees it: a user's file, checked by `mypy --strict`.

`instrument(client)` keeps the client's own type, and a misspelled option name or value is a
type error (the same mistakes fail at run time too, naming the option)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import openai
import pytest

import streamtap

USER_FILE = textwrap.dedent(
    """\
    from collections.abc import Mapping
    from typing import Any

    import openai
    import streamtap

    def on_summary(summary: Mapping[str, Any]) -> None:
        print(summary["streamtap.outcome"])

    c = openai.OpenAI(api_key="k")
    azure = openai.AzureOpenAI(api_key="k", api_version="v", azure_endpoint="https://x")
    reveal_type(streamtap.instrument(c))  # sync
    reveal_type(streamtap.instrument(openai.AsyncOpenAI(api_key="k")))  # async
    reveal_type(streamtap.instrument(azure))  # azure
    reveal_type(streamtap.instrument())  # all
    streamtap.instrument(c, buffering="sentence", hooks=[on_summary])  # valid
    streamtap.instrument(c, resume_strategy="replay", retry_deadline=None)  # valid
    with streamtap.options(buffering="off", max_attempts=2):  # valid
        pass
    streamtap.instrument(c, bufering="word")  # name
    streamtap.instrument(c, buffering="wrod")  # mode
    streamtap.instrument(c, resume_strategy="exact")  # strategy
    with streamtap.options(max_atempts=2):  # options
        pass
    streamtap.instrument(c, hooks=[lambda s, t: None])  # hook
    streamtap.instrument(object())  # client
    """
)


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("mypy")
    where = tmp_path_factory.mktemp("user")
    (where / "user.py").write_text(USER_FILE)
    src = Path(streamtap.__file__).resolve().parent.parent
    env = {**os.environ, "MYPYPATH": str(src)}
    flags = ["--strict", "--no-incremental", "--no-error-summary"]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *flags, "--cache-dir", str(where / "cache"), "user.py"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # 1: type errors found (not a crash)
    return done.stdout


def messages(output: str, marker: str) -> list[str]:
    """mypy's errors and notes for the lines of USER_FILE ending in `# marker`."""
    lines = [i for i, text in enumerate(USER_FILE.splitlines(), 1) if text.endswith(f"# {marker}")]
    assert lines, marker
    return [
        m
        for line in lines
        for m in re.findall(rf"^user\.py:{line}: (?:error|note): (.*)$", output, re.M)
    ]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("marker", "shown"),
    [("sync", "OpenAI"), ("async", "AsyncOpenAI"), ("azure", "AzureOpenAI"), ("all", "None")],
)
def test_instrument_returns_the_clients_own_type(mypy_output: str, marker: str, shown: str) -> None:
    notes = [m for m in messages(mypy_output, marker) if m.startswith("Revealed type")]
    assert len(notes) == 1, mypy_output
    name = notes[0].split('"')[1]
    # (the SDK's module path, e.g. openai._client.OpenAI, differs across its releases)
    assert name == shown or (name.startswith("openai.") and name.endswith("." + shown))


@pytest.mark.timeout(600)
def test_correct_calls_pass(mypy_output: str) -> None:
    assert messages(mypy_output, "valid") == [], mypy_output


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("name", r'Unexpected keyword argument "bufering" .*did you mean "buffering"'),
        # (the same calls with a valid value pass: "valid")
        ("mode", r'No overload variant of "instrument" matches argument types "OpenAI", "str"'),
        ("strategy", r'No overload variant of "instrument" matches argument types "OpenAI", "str"'),
        ("options", r'Unexpected keyword argument "max_atempts"'),
        ("hook", r'incompatible type "Callable\[\[Any, Any\], None\]"; expected "SummaryHook"'),
        ("client", r'No overload variant of "instrument" matches argument type "object"'),
    ],
)
def test_mistakes_are_type_errors(mypy_output: str, marker: str, expected: str) -> None:
    found = messages(mypy_output, marker)
    assert any(re.search(expected, m) for m in found), (marker, mypy_output)


# -- the same mistakes at run time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"bufering": "word"}, TypeError, "bufering"),
        ({"buffering": "wrod"}, ValueError, "buffering"),
        ({"resume_strategy": "exact"}, ValueError, "resume_strategy"),
        ({"prefill": "yes"}, ValueError, "prefill"),
        ({"max_attempts": "3"}, TypeError, "max_attempts"),
        ({"hooks": [1]}, TypeError, "hook"),
    ],
)
def test_mistakes_fail_at_instrument_time(
    options: dict[str, object], error: type[Exception], names: str
) -> None:
    client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(error, match=names):
        streamtap.instrument(client, **options)  # type: ignore[arg-type]
    assert not streamtap.is_instrumented(client)


def test_every_public_name_has_a_docstring() -> None:
    for name in streamtap.__all__:
        if name == "__version__":
            continue
        obj = getattr(streamtap, name)
        assert (obj.__doc__ or "").strip(), name
        assert obj.__doc__ != type(obj).__doc__ or isinstance(obj, type), name
