"""`python -m examples.web` (or `./run web`): the web example on http://127.0.0.1:8000/.

Without options it answers from streamtap's embedded fake server, started in this process (no
API key, no network), paced like a model. With `--base-url URL` or `OPENAI_API_KEY` in the
environment, from a real OpenAI-compatible endpoint. Summary events go to standard error as
JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Iterator

import openai
import uvicorn

import streamtap
from streamtap.testing import FakeServer, Fault, RecordedRequest, Reply

from .app import create_app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with backend(args) as client:
        streamtap.instrument(
            client,
            buffering=args.buffering,
            hold_max_seconds=args.hold_max_seconds,
            # The embedded server continues a partial answer as vLLM does: a cut answer is
            # resumed by prefill (elsewhere streamtap picks the way, see docs/resume.md).
            prefill="vllm" if embedded(client) else None,
        )
        streamtap.configure_logging(json=True)
        app = create_app(client, args.model)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        # Listening before the address is printed: a browser that connects at once is queued by
        # the kernel until uvicorn accepts, never refused.
        sock.listen(128)
        host, port = sock.getsockname()[:2]
        print(f"streamtap web example: http://{host}:{port}/", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        asyncio.run(server.serve(sockets=[sock]))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.web",
        description="Stream an instrumented answer to the browser, word by word.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument(
        "--base-url",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="an OpenAI-compatible endpoint (OPENAI_API_KEY from the environment); default: "
        "the embedded fake server, or OpenAI itself if OPENAI_API_KEY is set",
    )
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument(
        "--buffering",
        choices=["word", "sentence", "line", "off"],
        default="word",
        help="streamtap's buffering: what each update of the page ends on (default: word)",
    )
    parser.add_argument(
        "--hold-max-seconds",
        type=float,
        default=0.15,
        help="the longest text waits for its boundary before it is shown anyway (default 0.15)",
    )
    parser.add_argument(
        "--delay", type=float, default=0.04, help="embedded server: seconds between chunks"
    )
    parser.add_argument(
        "--cut-after",
        type=int,
        default=None,
        metavar="N",
        help="embedded server: cut each answer's connection after N chunks (streamtap "
        "resumes it; the page shows the retry)",
    )
    return parser.parse_args(argv)


EMBEDDED_KEY = "embedded"


def embedded(client: openai.AsyncOpenAI) -> bool:
    return client.api_key == EMBEDDED_KEY


@contextlib.contextmanager
def backend(args: argparse.Namespace) -> Iterator[openai.AsyncOpenAI]:
    """The client: a real endpoint's if one is configured, else the embedded server's."""
    key = os.environ.get("OPENAI_API_KEY")
    if args.base_url or key:
        if not key:
            sys.exit("python -m examples.web: set OPENAI_API_KEY to use --base-url")
        yield openai.AsyncOpenAI(base_url=args.base_url, api_key=key)
        return
    paced = Reply.model_mode(delay=args.delay)
    cut_after = args.cut_after

    def first_attempt_cut(request: RecordedRequest) -> Reply | None:
        """A fresh question is cut after N chunks; streamtap's resume (a prefill request,
        ending with the partial answer) is not."""
        messages = (request.json or {}).get("messages") or [{}]
        if cut_after is None or messages[-1].get("role") == "assistant":
            return None
        return Reply.model_mode(delay=args.delay, fault=Fault.cut(after_events=cut_after))

    with FakeServer(default=paced, responder=first_attempt_cut) as server:
        yield openai.AsyncOpenAI(base_url=server.base_url, api_key=EMBEDDED_KEY, max_retries=0)


if __name__ == "__main__":
    sys.exit(main())
