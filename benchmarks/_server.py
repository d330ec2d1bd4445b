"""Loopback servers for the benchmarks: `streamtap.testing.FakeServer`, in its own process.

The server runs in a separate process so that its CPU time and instructions are never counted
as the client's. It loads the `testing/` package straight from the checkout (standard library
only), so it works in any venv and does not need streamtap's dependencies. One FakeServer (one
port) per stream length, each answering every request with the same `Reply(raw=...)` body::

    python _server.py --sizes 100,1100 [--delay 0.01] [--first-delay 0.2] [--max-seconds 900]

or, for scripted servers, a JSON list of specs (each gets its own port)::

    python _server.py --spec '[{"name": "lat", "n": 200, "delay": 0.02},
                               {"name": "resume", "n": 60, "cut_after": 20,
                                "first_delay": 0.2, "trials": 10}]'

A spec with `cut_after` queues `trials` pairs of replies: the body cut (FIN) after that many
SSE events, then the whole body again after `first_delay` (the resume request); the default
reply, once the queue is empty, is the whole body after `first_delay`.

Prints `{"<n or name>": "http://127.0.0.1:<port>/v1", ...}` on one line, then serves until
its stdin closes (the harness holding the pipe) or `--max-seconds` pass, whichever is first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _sse  # noqa: E402

TESTING = HERE.parent / "src" / "streamtap" / "testing"


def load_testing() -> ModuleType:
    # Loaded as a top-level package of its own: its modules import each other relatively and
    # only the standard library, so streamtap's own __init__ (and its dependencies) never runs.
    spec = importlib.util.spec_from_file_location(
        "_streamtap_testing_bench",
        TESTING / "__init__.py",
        submodule_search_locations=[str(TESTING)],
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100,1100")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--first-delay", type=float, default=0.0)
    p.add_argument("--spec", default="")
    p.add_argument("--max-seconds", type=float, default=900.0)
    args = p.parse_args()
    try:  # many concurrent connections: one descriptor each
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    except (ValueError, OSError):
        pass
    testing = load_testing()
    if args.spec:
        specs = json.loads(args.spec)
    else:
        specs = [
            {"name": x, "n": int(x), "delay": args.delay, "first_delay": args.first_delay}
            for x in args.sizes.split(",")
        ]
    servers = {}
    for spec in specs:
        raw = _sse.body(int(spec["n"]))
        reply = testing.Reply(
            raw=raw, delay=spec.get("delay", 0.0), first_delay=spec.get("first_delay", 0.0)
        )
        # keep-alive long enough for slow (valgrind) clients between streams
        server = testing.FakeServer(default=reply, keepalive_timeout=600.0, write_timeout=600.0)
        if spec.get("cut_after") is not None:
            cut = testing.Reply(
                raw=raw,
                delay=spec.get("delay", 0.0),
                fault=testing.Fault.cut(after_events=int(spec["cut_after"])),
            )
            for _ in range(int(spec.get("trials", 1))):
                server.enqueue(cut, reply)
        server.start()
        servers[str(spec["name"])] = server
    print(json.dumps({str(n): s.base_url for n, s in servers.items()}), flush=True)
    done = threading.Event()

    def watch_stdin() -> None:
        try:
            sys.stdin.read()
        finally:
            done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait(args.max_seconds)
    for s in servers.values():
        s.close(timeout=2.0)
    errors = [e for s in servers.values() for e in s.errors]
    if errors:
        print(f"server errors: {errors!r}", file=sys.stderr)
    time.sleep(0)


if __name__ == "__main__":
    main()
