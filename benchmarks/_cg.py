"""Callgrind client requests from Python, and reading callgrind's output files.

Valgrind's client requests are magic instruction sequences, so Python cannot issue them itself.
`load()` compiles a four-function shared library from `<valgrind/callgrind.h>` (once, cached
under ``benchmarks/.build``) and loads it with ctypes. Outside valgrind the requests are no-ops.
If no C compiler or header is there, `load()` returns None and the harness falls back to
instrumenting the whole process (slower, same per-chunk numbers: start-up still cancels out
because per-chunk costs are taken as differences between two streams).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections import defaultdict
from pathlib import Path

_BUILD = Path(__file__).resolve().parent / ".build"

_SOURCE = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
int cg_running(void) { return RUNNING_ON_VALGRIND; }
"""


class Control:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        lib.cg_dump.argtypes = [ctypes.c_char_p]

    @property
    def running(self) -> bool:
        return bool(self._lib.cg_running())

    def start(self) -> None:
        self._lib.cg_start()

    def stop(self) -> None:
        self._lib.cg_stop()

    def zero(self) -> None:
        self._lib.cg_zero()

    def dump(self, name: str) -> None:
        self._lib.cg_dump(name.encode())


def load() -> Control | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        return None
    tag = hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]
    lib = _BUILD / f"cgctl-{tag}.so"
    if not lib.exists():
        _BUILD.mkdir(exist_ok=True)
        # Unique per process and thread: run.py builds from two threads at once on a fresh clone.
        me = f"{os.getpid()}.{threading.get_ident()}"
        src = _BUILD / f"cgctl-{tag}.{me}.c"
        src.write_text(_SOURCE)
        tmp = lib.with_suffix(f".{me}.tmp")
        done = subprocess.run(
            [cc, "-O1", "-shared", "-fPIC", "-o", str(tmp), str(src)],
            capture_output=True,
            check=False,
        )
        src.unlink(missing_ok=True)
        if done.returncode != 0:
            return None
        os.replace(tmp, lib)
    return Control(ctypes.CDLL(str(lib)))


# -- reading callgrind.out files ----------------------------------------------------------------

_TOTALS = re.compile(r"^(?:totals|summary):\s+(\d+)", re.M)


def total_ir(path: str | os.PathLike[str]) -> int:
    """Instructions (Ir) in one callgrind output file."""
    text = Path(path).read_text(errors="replace")
    m = _TOTALS.search(text)
    if m is None:
        raise ValueError(f"no totals in {path}")
    return int(m.group(1))


def totals(path: str | os.PathLike[str]) -> dict[str, int]:
    """Every event's total in one callgrind output file (Ir, and with --cache-sim/--branch-sim
    also Dr, Dw, I1mr, D1mr, ..., Bc, Bcm, Bi, Bim)."""
    text = Path(path).read_text(errors="replace")
    ev = re.search(r"^events:\s+(.*)$", text, re.M)
    tot = re.search(r"^(?:totals|summary):\s+(.*)$", text, re.M)
    if ev is None or tot is None:
        raise ValueError(f"no events/totals in {path}")
    return dict(zip(ev.group(1).split(), (int(x) for x in tot.group(1).split())))


def dump_files(prefix: str) -> dict[str, Path]:
    """The dumps of one run by trigger name ("short", "long"), from their `desc: Trigger:`."""
    out: dict[str, Path] = {}
    for p in sorted(Path(prefix).parent.glob(Path(prefix).name + "*")):
        try:
            head = p.read_text(errors="replace")[:4000]
        except OSError:
            continue
        m = re.search(r"^desc: Trigger: Client Request: (\S+)", head, re.M)
        if m:
            out[m.group(1)] = p
    return out


def self_cost(path: str | os.PathLike[str]) -> dict[tuple[str, str], int]:
    """Exclusive Ir per (object, function) in one callgrind output file."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}, "cob": {}, "cfn": {}}
    # callgrind compresses repeated names as "(id) name" then "(id)"; ob/cob share a table,
    # and so do fn/cfn.
    shared = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}
    tables: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    del names
    ob = fn = "?"
    costs: dict[tuple[str, str], int] = defaultdict(int)
    skip = False
    positions = 1
    with open(path, errors="replace") as fh:
        for line in fh:
            if not line or line == "\n":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) > positions:
                    try:
                        costs[(ob, fn)] += int(parts[positions])
                    except ValueError:
                        pass
                continue
            key, _, value = line.rstrip("\n").partition("=")
            if key in shared:
                table = tables[shared[key]]
                value = value.strip()
                m = re.match(r"\((\d+)\)(?:\s+(.*))?$", value)
                if m:
                    if m.group(2) is not None:
                        table[m.group(1)] = m.group(2)
                    resolved = table.get(m.group(1), value)
                else:
                    resolved = value
                if key == "ob":
                    ob = resolved
                elif key == "fn":
                    fn = resolved
            elif key == "calls":
                skip = True
            elif key == "positions":
                positions = len(value.split())
    return dict(costs)
