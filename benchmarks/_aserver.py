"""A minimal asyncio SSE server on 127.0.0.1, for the 1,000-stream concurrency benchmark.

`streamtap.testing.FakeServer` serves each connection from its own thread, polling every 50 ms;
with 1,000 paced connections on a 2-core machine its threads fight over the GIL and the CPU
(see benchmarks/README.md for what happened). This server does only what that benchmark needs,
on one event loop: answer every `POST .../chat/completions` with the same pre-built SSE body,
one event per `delay` seconds, chunked, keep-alive. Standard library only::

    python _aserver.py --n 40 --delay 0.25 [--max-seconds 600]

Prints `{"conc": "http://127.0.0.1:<port>/v1"}` on one line, then serves until its stdin closes
or `--max-seconds` pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _sse  # noqa: E402


async def serve(n: int, delay: float, first_delay: float, max_seconds: float) -> None:
    events = _sse.events(n)
    stats = {"connections": 0, "requests": 0, "aborted": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                stats["requests"] += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                    b"x-request-id: req_bench\r\ntransfer-encoding: chunked\r\n"
                    b"connection: keep-alive\r\n\r\n"
                )
                for i, event in enumerate(events):
                    pause = first_delay if i == 0 else delay
                    if pause:
                        await asyncio.sleep(pause)
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            stats["aborted"] += 1
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"conc": f"http://127.0.0.1:{port}/v1"}), flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def watch() -> None:
        try:
            sys.stdin.read()
        finally:
            loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=watch, daemon=True).start()
    try:
        await asyncio.wait_for(stdin_closed.wait(), timeout=max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    print(json.dumps(stats), file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--delay", type=float, default=0.25)
    p.add_argument("--first-delay", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, default=600.0)
    args = p.parse_args()
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    except (ValueError, OSError):
        pass
    asyncio.run(serve(args.n, args.delay, args.first_delay, args.max_seconds))


if __name__ == "__main__":
    main()
