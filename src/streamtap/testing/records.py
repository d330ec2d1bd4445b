"""Records: every request received and every answer (chat completions, Responses API) sent,
byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .replies import Reply
from .sse import _is_done_event


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received (any path)."""

    method: str
    path: str
    """The path without the query string, e.g. ``/v1/chat/completions``."""
    query: str
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ``", "``."""
    body: bytes
    json: Any
    """The parsed JSON body, or ``None`` if the body is empty or not JSON."""
    received_at: float
    """``time.perf_counter()`` when the request had been read completely."""
    connection_id: int
    """Which connection it came on (1, 2, ...): equal ids mean the connection was reused."""
    request_id: str
    """The ``x-request-id`` the server answered with (``req_<n>``)."""


@dataclass
class RecordedResponse:
    """An answer the server gave (chat completions or Responses API), and how much of it went
    out.

    The server updates the progress fields just before each write, so once a client has seen
    the end of its stream (or its break) they say exactly what it was sent.
    """

    request_id: str
    """The ``x-request-id`` of the request it answers (``req_<n>``)."""
    status: int
    sse: bool
    """The body is an SSE stream (else a JSON document or an error body)."""
    events: tuple[bytes, ...]
    """The whole planned body, split into SSE events (body faults already applied)."""
    reply: Reply
    """The :class:`Reply` that produced it (its ``fault`` says how it was broken)."""
    bytes_sent: int = 0
    """Body bytes written (not counting HTTP chunked framing)."""
    cut: bool = False
    """The connection was dropped before the HTTP message was finished."""
    complete: bool = False
    """Every event was written and the HTTP message finished."""

    @property
    def events_sent(self) -> int:
        """How many events were written completely."""
        total = 0
        for count, event in enumerate(self.events):
            total += len(event)
            if total > self.bytes_sent:
                return count
        return len(self.events)

    def chunks(self, *, sent: bool = True) -> list[dict[str, Any]]:
        """The JSON objects of the SSE events (those written completely when *sent*);
        ``[DONE]``, comments and data that is not a JSON object are skipped."""
        out: list[dict[str, Any]] = []
        if not self.sse:
            return out
        for event in self.events[: self.events_sent if sent else None]:
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")
            )
            try:
                obj = json.loads(data) if data and data.strip() != b"[DONE]" else None
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def text(self, choice: int = 0, *, sent: bool = True) -> str:
        """The ``delta.content`` of *choice* in the events (sent completely, when *sent*); in a
        Responses API stream, the ``response.output_text.delta`` text (*choice* 0)."""
        out: list[str] = []
        for chunk in self.chunks(sent=sent):
            if chunk.get("type") == "response.output_text.delta" and choice == 0:
                out.append(str(chunk.get("delta") or ""))
            for c in chunk.get("choices") or ():
                if isinstance(c, dict) and c.get("index", 0) == choice:
                    out.append(str(c.get("delta", {}).get("content") or ""))
        return "".join(out)

    def finish_reasons(self, choice: int = 0, *, sent: bool = True) -> list[str]:
        """Every non-null ``finish_reason`` of *choice* (normally one, in the last chunk)."""
        return [
            str(c["finish_reason"])
            for chunk in self.chunks(sent=sent)
            for c in chunk.get("choices") or ()
            if isinstance(c, dict) and c.get("index", 0) == choice and c.get("finish_reason")
        ]

    @property
    def done_sent(self) -> bool:
        """A ``data: [DONE]`` event was written completely."""
        return any(_is_done_event(e) for e in self.events[: self.events_sent])
