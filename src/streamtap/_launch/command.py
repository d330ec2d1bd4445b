"""`streamtap run [options] -- command ...`: check the flags, then become the command.

The flags are made from the option definitions (`_options.Options` and the literal types of
`_types`), so every option a command line can express is a flag with no second list to keep:
booleans as `--retry` / `--no-retry`, named values with their choices, numbers, and `none` for
the timeouts that take None. Options that only code can give (callables, loggers, compiled
regexes) are not flags. The values are checked by `make_options`, as `instrument()` checks them,
before anything starts.

Then the process replaces itself with the command (exec on POSIX): same pid, so the command's
exit status, its signals (a SIGTERM sent to this pid reaches the program) and its standard
streams are its own. Only the environment differs: `boot/` first on PYTHONPATH and the options
and events file in two variables (`child.py`). Nothing is written anywhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .child import EVENTS_ENV, OPTIONS_ENV

BOOT_DIR = str(Path(__file__).resolve().parent / "boot")

_USAGE = "streamtap run [options] [--] command [args ...]"
_DESCRIPTION = """\
Run a program with every OpenAI client it creates instrumented, without editing it: whole-word
buffering, token counts, resume on interruption, and one summary event per call, written as JSON
lines to standard error or to --events FILE. The options are those of streamtap.instrument()
(README, "Configuration"); bad values are refused before the program starts. The program's own
output, exit status, signals and arguments are untouched."""
_EPILOG = """\
examples:
  streamtap run -- python app.py --port 8000
  streamtap run --buffering sentence --events events.jsonl -- python -m mypackage
  streamtap run --no-retry -- uvicorn app:app --workers 4

Works for any Python program the command starts (children and workers too), through
PYTHONPATH and sitecustomize: not under python -I, -E or -S, which ignore them."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag made from one option."""

    name: str
    kind: str
    """`bool`, `int`, `float` or `str`."""
    default: Any
    nullable: bool = False
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def option_flags() -> list[Flag]:
    """The flags for every option whose values a command line can spell."""
    from .._options import Options

    flags = []
    for field in dataclasses.fields(Options):
        flag = _flag(field.name, str(field.type), field.default)
        if flag is not None:
            flags.append(flag)
    return flags


def _flag(name: str, annotation: str, default: Any) -> Flag | None:
    """A flag for an option of this (string) annotation, or None if code alone can give it."""
    kinds: list[str] = []
    choices: list[str] = []
    nullable = False
    for part in (p.strip() for p in annotation.split("|")):
        if part == "None":
            nullable = True
        elif part in ("bool", "int", "float", "str"):
            kinds.append(part)
        else:
            choices.extend(_literal_values(part))
    if choices:
        return Flag(name, "str", default, nullable, tuple(choices))
    if len(kinds) != 1:
        return None
    return Flag(name, kinds[0], default, nullable)


def _literal_values(type_name: str) -> list[str]:
    """The string values of a `_types` alias that is a Literal (or a Union holding one)."""
    from .. import _types

    alias = getattr(_types, type_name, None)
    if alias is None:
        return []
    if typing.get_origin(alias) is typing.Literal:
        return [v for v in typing.get_args(alias) if isinstance(v, str)]
    if typing.get_origin(alias) is typing.Union:
        return [
            v
            for arg in typing.get_args(alias)
            if typing.get_origin(arg) is typing.Literal
            for v in typing.get_args(arg)
            if isinstance(v, str)
        ]
    return []


def _converter(flag: Flag) -> Callable[[str], Any]:
    base: Callable[[str], Any] = {"int": int, "float": float, "str": str}[flag.kind]
    if not flag.nullable:
        return base

    def convert(text: str) -> Any:
        return None if text.lower() == "none" else base(text)

    convert.__name__ = base.__name__  # argparse names the type in its error message
    return convert


def _add_flag(parser: argparse._ActionsContainer, flag: Flag) -> None:
    default = "none" if flag.default is None else flag.default
    if flag.kind == "bool":
        parser.add_argument(
            flag.option,
            dest=flag.name,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=f"(default: {'on' if flag.default else 'off'})",
        )
        return
    choices = [*flag.choices, *(["none"] if flag.nullable and flag.choices else [])]
    parser.add_argument(
        flag.option,
        dest=flag.name,
        metavar=_metavar(flag, choices),
        choices=choices or None,
        type=str if choices else _converter(flag),
        default=argparse.SUPPRESS,
        help=f"(default: {default})",
    )


def _metavar(flag: Flag, choices: list[str]) -> str:
    if choices:
        return "{" + ",".join(choices) + "}"
    return flag.kind.upper() + ("|none" if flag.nullable else "")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamtap run",
        usage=_USAGE,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--events",
        metavar="FILE",
        help="append the summary events to FILE (JSON lines; several processes may share it) "
        "instead of writing them to standard error",
    )
    group = parser.add_argument_group("instrument() options")
    for flag in option_flags():
        _add_flag(group, flag)
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def parse(argv: Sequence[str]) -> tuple[dict[str, Any], str | None, list[str]]:
    """(options, events file or None, command) from `streamtap run`'s arguments; exits with
    status 2 and a message for bad ones, as argparse does."""
    parser = make_parser()
    args = _parse_args(parser, list(argv))
    ns = vars(args)
    command: list[str] = ns.pop("command")
    events: str | None = ns.pop("events")
    options = {k: (None if v == "none" else v) for k, v in ns.items()}
    if not command:
        parser.error("give the command to run, e.g. streamtap run -- python app.py")
    _validate(parser, options)
    tiktoken_dir = options.get("tiktoken_dir")
    if isinstance(tiktoken_dir, str):  # the program may change directory
        options["tiktoken_dir"] = os.path.abspath(tiktoken_dir)
    if events is not None:
        events = _events_file(parser, events)
    return options, events, command


def _parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Everything after the first `--` is the command, whatever it looks like; without `--`,
    the command starts at the first argument that is not a flag or a flag's value."""
    if "--" in argv:
        cut = argv.index("--")
        args = parser.parse_args(argv[:cut])
        if not args.command:
            args.command = argv[cut + 1 :]
            return args
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        del args.command[0]
    return args


def _validate(parser: argparse.ArgumentParser, options: dict[str, Any]) -> None:
    from .._options import make_options

    try:
        make_options(None, **options)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc).removeprefix("streamtap: "))


def _events_file(parser: argparse.ArgumentParser, path: str) -> str:
    """The events file as an absolute path (the program may change directory), checked to be
    writable now rather than at the first summary."""
    full = os.path.abspath(path)
    try:
        with open(full, "ab"):
            pass
    except OSError as exc:
        parser.error(f"--events: cannot write to {path}: {exc.strerror or exc}")
    return full


def child_environment(
    options: dict[str, Any], events: str | None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The command's environment: the caller's, with `boot/` first on PYTHONPATH and the two
    variables `child.py` reads."""
    env = dict(os.environ if base is None else base)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOT_DIR + (os.pathsep + path if path else "")
    env[OPTIONS_ENV] = json.dumps(options)
    if events is not None:
        env[EVENTS_ENV] = events
    else:
        env.pop(EVENTS_ENV, None)
    return env


def run_main(argv: Sequence[str]) -> int:
    """`streamtap run`: on POSIX it does not return when the command starts."""
    options, events, command = parse(argv)
    env = child_environment(options, events)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":  # no exec that keeps the process: wait for the command
        return subprocess.call(command, env=env)
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:  # the shell's statuses: 127 not found, 126 cannot run
        print(f"streamtap run: command not found: {command[0]}", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"streamtap run: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 126
    return 0  # pragma: no cover - execvpe does not return
