"""A Starlette app that streams an instrumented completion to the browser as server-sent events.

    GET /                  the page (index.html: plain HTML and JavaScript, no build step)
    GET /stream?q=...      the answer as SSE: `token` events (whole words: streamtap's word
                           buffering), then `done` with the stream's numbers from
                           `streamtap.stats()`, or `failed` with the error

The page renders each `token` as it arrives and shows time to first token, tokens and retries
when the answer ends. A connection the server cuts mid-answer is resumed by streamtap: the page
sees one continuous answer. A browser that leaves (closes the tab, navigates away) cancels the
upstream request at once: its summary event says `cancelled`, and the connection to the model
server is closed rather than left to the garbage collector.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import openai
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import streamtap

PAGE = Path(__file__).with_name("index.html")
DEFAULT_QUESTION = "Why do streamed answers need word buffering?"


def create_app(client: openai.AsyncOpenAI, model: str) -> Starlette:
    """The app, streaming answers from `client` (instrumented by the caller) with `model`."""
    page = PAGE.read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def stream(request: Request) -> Response:
        question = request.query_params.get("q") or DEFAULT_QUESTION
        return EventStream(answer_events(client, model, question))

    return Starlette(routes=[Route("/", index), Route("/stream", stream)])


async def answer_events(
    client: openai.AsyncOpenAI, model: str, question: str
) -> AsyncGenerator[bytes, None]:
    """The SSE events of one answer. The upstream stream is closed however this ends (done,
    failed, or cancelled because the browser left)."""
    stream = None
    try:
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], stream=True
        )
        async for chunk in stream:
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                yield sse("token", text)
        yield sse("done", numbers(stream))
    except openai.OpenAIError as exc:  # streamtap.StreamInterrupted is one too
        yield sse("failed", {"error": type(exc).__name__, "message": str(exc)})
    finally:
        if stream is not None:
            with anyio.CancelScope(shield=True):  # runs even when the request was cancelled
                await stream.close()


def numbers(stream: Any) -> dict[str, Any]:
    """What the page shows when the answer ends, from streamtap's live statistics."""
    stats = streamtap.stats(stream)
    return {
        "time_to_first_token": stats.time_to_first_token,
        "tokens": stats.tokens,
        "token_source": stats.token_source,
        "retries": stats.retries,
        "chunks": stats.chunks,
        "elapsed": stats.elapsed,
    }


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; the data is JSON, so a newline in the text stays in one line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class EventStream(StreamingResponse):
    """A `text/event-stream` response that stops producing as soon as the browser leaves.

    The disconnect is watched for while the next event is awaited (whatever ASGI version the
    server speaks; not only noticed when a write fails), and cancels the producer: an answer
    nobody reads stops costing tokens.
    """

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._cancel_on_disconnect, receive, group.cancel_scope)
            try:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                async for event in self.events:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the browser left and the server said so on a write
                pass
            finally:
                with anyio.CancelScope(shield=True):
                    await self.events.aclose()
                group.cancel_scope.cancel()

    @staticmethod
    async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()
