"""What importing streamtap costs: nothing heavy at import, no openai for `streamtap report`.

Each check runs in a fresh interpreter (this process has everything imported already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def modules_after(code: str, *args: str) -> set[str]:
    """The modules loaded once ``code`` ran (it may use sys.argv[1:]), in a fresh process."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    last = out.stdout.strip().splitlines()[-1]
    return set(json.loads(last))


def test_report_does_not_import_openai(tmp_path: Path) -> None:
    """`streamtap report` (the console script's main) summarises a log without importing the
    openai SDK, httpx or pydantic: it starts in a fraction of the time."""
    log = tmp_path / "events.jsonl"
    event = {
        "event": "streamtap.stream.summary",
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "streamtap.outcome": "ok",
        "gen_ai.request.model": "gpt-4o",
        "streamtap.time_to_first_token": 0.3,
        "streamtap.duration": 1.2,
    }
    log.write_text(json.dumps(event) + "\n", encoding="utf-8")
    code = (
        "import contextlib, io, sys\n"
        "from streamtap.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['report', sys.argv[1]]) == 0\n"
        "assert 'gpt-4o' in out.getvalue(), out.getvalue()\n"
    )
    loaded = modules_after(code, str(log))
    assert "streamtap.report" in loaded
    assert not {"openai", "httpx", "httpx2", "pydantic", "tiktoken", "structlog"} & loaded


def test_import_streamtap_loads_nothing_heavy() -> None:
    """`import streamtap` alone imports neither the SDK nor the tokenizer; the public names
    load their modules on first use, and `instrument` then works."""
    loaded = modules_after("import streamtap")
    assert not {"openai", "tiktoken", "regex", "structlog", "tenacity"} & loaded
    loaded = modules_after(
        "import openai, streamtap\n"
        "from streamtap import Options, StreamInterrupted, instrument\n"
        "assert streamtap.instrument is instrument and Options().retry\n"
        "assert issubclass(StreamInterrupted, Exception)\n"
    )
    assert "streamtap._sdk.patch" in loaded
    # Not needed until a stream fails or is rendered with structlog.
    assert not {"tenacity", "structlog", "tiktoken"} & loaded
