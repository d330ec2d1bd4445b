"""`streamtap run -- command`: real programs, in a subprocess, against the local server.

Each test writes a small program that never imports streamtap, runs it under `streamtap run`
(a real `python -m streamtap run ...` process that execs the program), and checks what a user
would: the program's own output, exit status, signals and arguments, and the summary events
(on stderr, or in the --events file). The server is the test's `FakeServer`; the program
reaches it through the SDK's own OPENAI_BASE_URL / OPENAI_API_KEY.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from streamtap._launch import command
from streamtap._options import Options
from streamtap.testing import FakeServer, Fault, Reply

ROOT = Path(__file__).resolve().parents[1]
PLAIN_SCRIPT = ROOT / "examples" / "plain_openai_script.py"
STREAMTAP = [sys.executable, "-m", "streamtap"]
EVENT = "streamtap.stream.summary"
TEXT = "Zero-code instrumentation keeps every word whole. Nothing in the program changes."

posix_only = pytest.mark.skipif(os.name != "posix", reason="exec and signals are POSIX")


@pytest.fixture
def srv() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def program_env(server: FakeServer, **extra: str) -> dict[str, str]:
    """The environment a user's program gets: the SDK's variables point at the server."""
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
    env.pop("STREAMTAP_RUN_OPTIONS", None)
    env.pop("STREAMTAP_RUN_EVENTS", None)
    env.update(extra)
    return env


def run(
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    launcher: Sequence[str] = STREAMTAP,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*launcher, "run", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def summaries(text: str) -> list[dict[str, Any]]:
    """The summary events among the lines (other lines are the program's own)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == EVENT:
                out.append(event)
    return out


def only_summaries(stderr: str) -> list[dict[str, Any]]:
    """Standard error held nothing but summary events."""
    events = summaries(stderr)
    assert len(events) == len(stderr.splitlines()), stderr
    return events


# -- the Done-when: a plain script, unchanged --------------------------------------------------


def test_plain_script_prints_its_answer_unchanged_with_one_event_per_call(
    srv: FakeServer, tmp_path: Path
) -> None:
    """`streamtap run -- python examples/plain_openai_script.py`: the same answer on stdout as
    without streamtap, one summary per call, and the request really went through streamtap
    (it asked for usage, which the script did not)."""
    env = program_env(srv)
    bare = subprocess.run(
        [sys.executable, str(PLAIN_SCRIPT), "Why", "buffer?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    assert bare.stderr == ""
    assert "stream_options" not in srv.requests[-1].json
    console = shutil.which("streamtap", path=str(Path(sys.executable).parent))
    launcher = [console] if console else STREAMTAP
    done = run(["--", sys.executable, str(PLAIN_SCRIPT), "Why", "buffer?"], env, launcher=launcher)
    assert done.returncode == 0, done.stderr
    assert done.stdout == bare.stdout
    assert done.stdout.strip() == srv.responses[-1].text()  # the whole answer, as sent
    [event] = only_summaries(done.stderr)
    assert event["streamtap.outcome"] == "ok"
    assert event["gen_ai.usage.output_tokens"] > 0
    assert event["streamtap.buffering.mode"] == "word"
    assert event["process.pid"] > 0
    assert srv.requests[-1].json["stream_options"] == {"include_usage": True}


# -- the program's kinds: sync, async, a module, a thread ---------------------------------------

SYNC = """
    import json
    import openai
    client = openai.OpenAI(max_retries=0)
    for question in ("one", "two"):
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": question}], stream=True)
        print(json.dumps("".join(c.choices[0].delta.content or "" for c in stream if c.choices)))
"""


def test_sync_script_is_resumed_after_a_cut(srv: FakeServer, tmp_path: Path) -> None:
    """A connection cut mid-answer: the uninstrumented program would fail; under
    `streamtap run` it prints the whole answer, and each call has its event."""
    script = write(tmp_path / "sync_app.py", SYNC)
    srv.enqueue(Fault.cut(after_events=6))  # a model-mode answer: resumed by prefill
    done = run(["--", sys.executable, str(script)], program_env(srv))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        srv.answer_for([{"role": "user", "content": q}], model="m") for q in ("one", "two")
    ]
    assert srv.responses[0].cut
    first, second = only_summaries(done.stderr)
    assert first["streamtap.outcome"] == "ok" and first["streamtap.retries"] == 1
    assert second["streamtap.outcome"] == "ok" and second["streamtap.retries"] == 0


ASYNC = """
    import asyncio, json
    import openai

    async def main():
        client = openai.AsyncOpenAI(max_retries=0)
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(json.dumps(chunk.choices[0].delta.content))

    asyncio.run(main())
"""


def test_async_script_with_a_flag(srv: FakeServer, tmp_path: Path) -> None:
    """An asyncio program; `--buffering sentence` reaches it: every piece it sees ends a
    sentence, though the server sent three characters at a time (and the hold bound is long
    enough that a slow machine's pauses release nothing early)."""
    script = write(tmp_path / "async_app.py", ASYNC)
    srv.enqueue(Reply(text=TEXT, chunk_size=3))
    flags = ["--buffering", "sentence", "--hold-max-seconds", "60"]  # no release on a timer
    done = run([*flags, "--", sys.executable, str(script)], program_env(srv))
    assert done.returncode == 0, done.stderr
    pieces = [json.loads(line) for line in done.stdout.splitlines()]
    assert "".join(pieces) == TEXT
    assert pieces == [
        "Zero-code instrumentation keeps every word whole. ",
        "Nothing in the program changes.",
    ]
    [event] = only_summaries(done.stderr)
    assert event["streamtap.buffering.mode"] == "sentence"
    assert event["streamtap.chunk_count"] > 20


def test_module_run_with_dash_m(srv: FakeServer, tmp_path: Path) -> None:
    """`streamtap run -- python -m package.module`, from the program's own directory."""
    write(tmp_path / "mypkg" / "__init__.py", "")
    write(tmp_path / "mypkg" / "app.py", SYNC)
    done = run(["--", sys.executable, "-m", "mypkg.app"], program_env(srv), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
    assert [e["streamtap.outcome"] for e in only_summaries(done.stderr)] == ["ok", "ok"]


THREAD = """
    import threading
    import openai

    printing = threading.Lock()  # (print's pieces from three threads can interleave)

    def ask(name):
        client = openai.OpenAI(max_retries=0)   # made in this thread
        stream = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": name}], stream=True)
        n = len("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        with printing:
            print(name, n)

    threads = [threading.Thread(target=ask, args=(f"model-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


def test_clients_made_in_threads(srv: FakeServer, tmp_path: Path) -> None:
    script = write(tmp_path / "threads_app.py", THREAD)
    done = run(["--", sys.executable, str(script)], program_env(srv))
    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[0] for line in done.stdout.splitlines()) == [
        "model-0",
        "model-1",
        "model-2",
    ]
    events = only_summaries(done.stderr)
    assert sorted(e["gen_ai.request.model"] for e in events) == ["model-0", "model-1", "model-2"]
    assert all(e["streamtap.outcome"] == "ok" for e in events)


RESPONSES = """
    import json
    import openai
    client = openai.OpenAI(max_retries=0)
    stream = client.responses.create(model="m", input="hi", stream=True)
    text = [e.delta for e in stream if e.type == "response.output_text.delta"]
    print(json.dumps(text))
"""


def test_responses_api_script(srv: FakeServer, tmp_path: Path) -> None:
    """A program streaming from the Responses API is instrumented too: whole words per delta
    (the server sends three characters at a time) and its summary."""
    script = write(tmp_path / "responses_app.py", RESPONSES)
    srv.enqueue(Reply(text=TEXT, chunk_size=3))
    flags = ["--hold-max-seconds", "60"]  # no release on a timer on a slow machine
    done = run([*flags, "--", sys.executable, str(script)], program_env(srv))
    assert done.returncode == 0, done.stderr
    deltas = json.loads(done.stdout)
    assert "".join(deltas) == TEXT
    shown = ""
    for delta in deltas:  # every piece ends between words (or is empty: held back)
        shown += delta
        assert not re.match(r"\w\w", TEXT[len(shown) - 1 : len(shown) + 1]), deltas
    assert sum(1 for d in deltas if d) > 5  # streamed, in pieces
    [event] = only_summaries(done.stderr)
    assert event["openai.api.type"] == "responses"
    assert event["streamtap.outcome"] == "ok"


ASGI_APP = """
    import json
    import openai

    client = openai.AsyncOpenAI(max_retries=0)

    async def app(scope, receive, send):
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": scope["path"]}], stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(text).encode()})
"""


@posix_only
def test_uvicorn_app(srv: FakeServer, tmp_path: Path) -> None:
    """`streamtap run -- uvicorn module:app`: the server's requests are instrumented; it stops
    on SIGTERM as it would without streamtap."""
    write(tmp_path / "asgi_app.py", ASGI_APP)
    events = tmp_path / "events.jsonl"
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        args = ["--fd", str(sock.fileno()), "--app-dir", str(tmp_path), "--lifespan", "off"]
        args += ["--log-level", "warning"]
        proc = subprocess.Popen(
            [*STREAMTAP, "run", "--events", str(events), "--", uvicorn, "asgi_app:app", *args],
            env=program_env(srv),
            pass_fds=(sock.fileno(),),
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        answers = []
        for path in ("/one", "/two"):
            url = f"http://127.0.0.1:{port}{path}"
            with urllib.request.urlopen(url, timeout=60) as response:
                answers.append(json.loads(response.read()))
        expected = [
            srv.answer_for([{"role": "user", "content": p}], model="m") for p in ("/one", "/two")
        ]
        assert answers == expected
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then exits 0 (older releases) or dies of the signal
        # it caught (newer ones): its own behaviour either way, as streamtap run is uvicorn.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    found = summaries(events.read_text(encoding="utf-8"))
    assert [e["streamtap.outcome"] for e in found] == ["ok", "ok"], stderr
    assert found[0]["process.pid"] == proc.pid  # uvicorn itself: streamtap run became it


# -- a program that never imports openai ---------------------------------------------------------

MODULES = """
    import json, sys
    print(json.dumps({
        "modules": sorted(sys.modules),
        "finders": [getattr(f, "__name__", type(f).__name__) for f in sys.meta_path],
    }))
"""


def test_a_program_without_openai_loads_neither_openai_nor_streamtap(tmp_path: Path) -> None:
    """The hook is in place (its finder is on sys.meta_path), yet nothing is imported for it:
    the modules loaded are those of the bare program, plus the sitecustomize module itself."""
    script = write(tmp_path / "no_openai.py", MODULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    bare = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    done = run(["--", sys.executable, str(script)], env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    seen = json.loads(done.stdout)
    assert "_OpenAIFinder" in seen["finders"]
    extra = set(seen["modules"]) - set(json.loads(bare.stdout)["modules"])
    assert not {m for m in seen["modules"] if m.split(".")[0] in ("openai", "streamtap")}
    assert extra <= {"sitecustomize"}, extra  # not even typing or importlib.util


def test_a_python_that_cannot_import_streamtap_runs_uninstrumented(
    srv: FakeServer, tmp_path: Path
) -> None:
    """A program run by another Python without streamtap gets one line on stderr and runs
    as it would have (simulated by blocking the import)."""
    script = write(
        tmp_path / "blocked.py",
        "import sys\nsys.modules['streamtap'] = None\n" + textwrap.dedent(SYNC),
    )
    done = run(["--", sys.executable, str(script)], program_env(srv))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
    assert "cannot import streamtap" in done.stderr
    assert summaries(done.stderr) == []
    assert "stream_options" not in srv.requests[-1].json


# -- exit status, signals, arguments ---------------------------------------------------------------


def test_exit_status_is_the_programs(tmp_path: Path) -> None:
    done = run(["--", sys.executable, "-c", "import sys; sys.exit(7)"], dict(os.environ))
    assert done.returncode == 7


@posix_only
def test_a_program_killed_by_sigterm_looks_killed_by_sigterm(tmp_path: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    done = run(["--", sys.executable, "-c", code], dict(os.environ))
    assert done.returncode == -signal.SIGTERM


@posix_only
def test_signals_sent_to_streamtap_run_reach_the_program(tmp_path: Path) -> None:
    """`streamtap run` becomes the program (same pid): a SIGTERM sent to the pid the caller
    started kills the program itself, as it would without streamtap."""
    code = "import os, sys, time; print(os.getpid(), flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [*STREAMTAP, "run", "--", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert int(proc.stdout.readline()) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


ARGS = ["--buffering", "x", "--", "-m", "two words", "ünïcode", "", "--events=no"]


@pytest.mark.parametrize("separator", [True, False])
def test_arguments_pass_through_untouched(separator: bool, tmp_path: Path) -> None:
    """The program gets exactly its arguments, flags that look like streamtap's and `--`
    included; without `--`, the command starts at the first word that is not a flag."""
    script = write(tmp_path / "argv.py", "import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    args = ["--no-retry", *(["--"] if separator else []), sys.executable, str(script), *ARGS]
    done = run(args, dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ARGS


def test_command_not_found_or_not_runnable(tmp_path: Path) -> None:
    """The shell's statuses: 127 for a command that is not there, 126 for one that cannot
    run."""
    done = run(["--", str(tmp_path / "no-such-program")], dict(os.environ))
    assert done.returncode == 127
    assert "command not found" in done.stderr
    not_executable = write(tmp_path / "data.txt", "not a program\n")
    done = run(["--", str(not_executable)], dict(os.environ))
    assert done.returncode == 126
    assert "cannot run" in done.stderr


# -- the user's own sitecustomize ------------------------------------------------------------------


@pytest.mark.parametrize("imports_openai", [False, True])
def test_the_users_sitecustomize_still_runs(
    imports_openai: bool, srv: FakeServer, tmp_path: Path
) -> None:
    """The user's sitecustomize (on their PYTHONPATH) runs, is *the* `sitecustomize` module,
    and the program is instrumented, even when that sitecustomize imports openai itself."""
    site_dir = tmp_path / "usersite"
    write(
        site_dir / "sitecustomize.py",
        "import builtins\nbuiltins.USER_SITE_RAN = True\n"
        + ("import openai\n" if imports_openai else ""),
    )
    check = "import builtins, sitecustomize\n"
    check += "print(getattr(builtins, 'USER_SITE_RAN', False), sitecustomize.__file__)\n"
    script = write(tmp_path / "check_site.py", check + textwrap.dedent(SYNC))
    env = program_env(srv, PYTHONPATH=str(site_dir))
    bare = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    done = run(["--", sys.executable, str(script)], env)
    assert done.returncode == 0, done.stderr
    first_line = done.stdout.splitlines()[0]
    assert first_line == bare.stdout.splitlines()[0]
    assert first_line == f"True {site_dir / 'sitecustomize.py'}"
    assert len(only_summaries(done.stderr)) == 2


def test_an_error_in_the_users_sitecustomize_is_reported_as_python_does(
    srv: FakeServer, tmp_path: Path
) -> None:
    site_dir = tmp_path / "usersite"
    write(site_dir / "sitecustomize.py", "raise RuntimeError('broken site')\n")
    script = write(tmp_path / "app.py", SYNC)
    env = program_env(srv, PYTHONPATH=str(site_dir))
    bare = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    done = run(["--", sys.executable, str(script)], env)
    assert done.returncode == bare.returncode == 0
    assert "broken site" in bare.stderr
    assert done.stderr.splitlines()[0] == bare.stderr.splitlines()[0]
    assert len(summaries(done.stderr)) == 2  # and the program is instrumented all the same


# -- where the events go -------------------------------------------------------------------------


def test_events_file_is_appended_and_stderr_left_to_the_program(
    srv: FakeServer, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"earlier": "line"}\n', encoding="utf-8")
    own = "import sys\nsys.stderr.write('own stderr\\n')\n"
    script = write(tmp_path / "app.py", own + textwrap.dedent(SYNC))
    done = run(
        ["--events", "events.jsonl", "--", sys.executable, str(script)],
        program_env(srv),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "own stderr\n"
    lines = events.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"earlier": "line"}'
    assert [e["streamtap.outcome"] for e in summaries("\n".join(lines))] == ["ok", "ok"]
    report = subprocess.run(
        [*STREAMTAP, "report", str(events)], capture_output=True, text=True, check=True
    )
    assert "lines: 3 read, 2 summaries, 0 malformed, 0 invalid summaries, 1 other JSON" in (
        report.stdout
    )


ONE_WORKER = """
    import openai
    client = openai.OpenAI(max_retries=0)
    for i in range(3):
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": str(i)}], stream=True)
        for _ in stream:
            pass
"""
WORKERS = """
    import subprocess, sys
    worker = sys.argv[1]
    procs = [subprocess.Popen([sys.executable, worker]) for _ in range(4)]
    sys.exit(max(p.wait() for p in procs))
"""


def test_several_processes_share_one_events_file(srv: FakeServer, tmp_path: Path) -> None:
    """Child processes (workers) are instrumented too, and their lines never interleave."""
    events = tmp_path / "events.jsonl"
    script = write(tmp_path / "workers.py", WORKERS)
    worker = write(tmp_path / "worker.py", ONE_WORKER)
    done = run(
        ["--events", str(events), "--", sys.executable, str(script), str(worker)],
        program_env(srv),
    )
    assert done.returncode == 0, done.stderr
    lines = events.read_text(encoding="utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is one whole event
    assert len(parsed) == 12
    assert len({e["process.pid"] for e in parsed}) == 4
    assert all(e["streamtap.outcome"] == "ok" for e in parsed)


# -- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hold-max-seconds", "-1"], "hold_max_seconds must be a positive number"),
        (["--buffering", "wrod"], "invalid choice: 'wrod'"),
        (["--max-attempts", "0"], "max_attempts must be >= 1"),
        (["--idle-timeout", "soon"], "invalid float value: 'soon'"),
        (["--tiktoken-dir", "/no/such/dir"], "tiktoken_dir '/no/such/dir' is not a directory"),
        (["--bufering", "word"], "unrecognized arguments"),
        (["--events", "/no/such/dir/events.jsonl"], "--events: cannot write"),
        ([], "give the command to run"),
    ],
)
def test_bad_flags_fail_before_the_program_starts(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()"
    command_part = ["--", sys.executable, "-c", code] if flags else []
    done = run([*flags, *command_part], dict(os.environ))
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("streamtap run: error:")
    assert not marker.exists()


def test_flags_reach_the_options(srv: FakeServer, tmp_path: Path) -> None:
    """Flags of every kind become the instrument options of the program: the summary says so,
    and `--no-include-usage` means no usage is asked for."""
    script = write(tmp_path / "app.py", SYNC)
    done = run(
        [
            "--buffering=line",
            "--no-include-usage",
            "--max-attempts",
            "5",
            "--idle-timeout",
            "none",
            "--encoding",
            "cl100k_base",
            "--",
            sys.executable,
            str(script),
        ],
        program_env(srv),
    )
    assert done.returncode == 0, done.stderr
    event = only_summaries(done.stderr)[0]
    assert event["streamtap.buffering.mode"] == "line"
    assert event["streamtap.tokens.encoding"] == "cl100k_base"
    assert "stream_options" not in srv.requests[-1].json


def test_every_option_a_command_line_can_spell_is_a_flag() -> None:
    """The flags are made from the option definitions: each bool, number, string and named
    choice option has one; options only code can give (callables, loggers, hooks) have none."""
    help_text = command.make_parser().format_help()
    code_only = {"token_counter", "logger", "hooks"}
    for field in dataclasses.fields(Options):
        flag = "--" + field.name.replace("_", "-")
        if field.name in code_only:
            assert flag not in help_text
        elif isinstance(field.default, bool):
            assert f"{flag}, --no-{field.name.replace('_', '-')}" in help_text
        else:
            assert flag in help_text, field.name
    assert "{auto,prefill,replay,continuation,off}" in help_text
    assert "{word,sentence,line,off}" in help_text


def test_run_help(tmp_path: Path) -> None:
    done = run(["--help"], dict(os.environ))
    assert done.returncode == 0
    assert done.stdout.startswith("usage: streamtap run [options] [--] command")
    assert "--no-retry" in done.stdout and "--events FILE" in done.stdout
    top = subprocess.run([*STREAMTAP, "--help"], capture_output=True, text=True, check=True)
    assert "run" in top.stdout


# -- packaging -----------------------------------------------------------------------------------


def test_the_wheel_ships_the_sitecustomize_directory(tmp_path: Path) -> None:
    """A wheel built from this tree (offline, with the setuptools the test extra installs)
    holds boot/sitecustomize.py, where `streamtap run` points PYTHONPATH."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("streamtap-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "streamtap/_launch/boot/sitecustomize.py" in names
    assert "streamtap/_launch/child.py" in names
    assert Path(command.BOOT_DIR, "sitecustomize.py").is_file()
