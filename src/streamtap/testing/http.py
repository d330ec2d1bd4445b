"""HTTP/1.1 on a connection: reading a request, writing a response plan (chunked,
content-length or close-delimited framing) with its pacing and transport faults."""

from __future__ import annotations

import http
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .connection import _Closed, _Peer
from .faults import Fault
from .records import RecordedResponse
from .replies import Reply

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Plan:
    status: int
    headers: list[tuple[str, str]]
    events: list[bytes]
    framing: Literal["chunked", "length", "close"]
    keep_alive: bool


async def _read_request(peer: _Peer, idle_timeout: float) -> _Request | None:
    """Read one request; None on a clean EOF between requests. Malformed input: _Closed."""
    try:
        return await _parse_request(peer, idle_timeout)
    except (ValueError, UnicodeError) as exc:
        raise _Closed from exc


async def _parse_request(peer: _Peer, idle_timeout: float) -> _Request | None:
    head = await peer.read_until(b"\r\n\r\n", _MAX_HEADER_BYTES, time.monotonic() + idle_timeout)
    if head is None:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _Closed
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    deadline = time.monotonic() + 30.0
    if headers.get("expect", "").lower() == "100-continue":
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        for _ in range(_MAX_BODY_BYTES):
            size_line = await peer.read_until(b"\r\n", 1024, deadline)
            if size_line is None:
                raise _Closed
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers, if any, end with an empty line
                for _ in range(100):
                    trailer = await peer.read_until(b"\r\n", _MAX_HEADER_BYTES, deadline)
                    if trailer in (None, b"\r\n"):
                        break
                break
            if len(body) + size > _MAX_BODY_BYTES:
                raise _Closed
            body += await peer.read_exact(size, deadline)
            await peer.read_exact(2, deadline)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > _MAX_BODY_BYTES:
            raise _Closed
        body = await peer.read_exact(length, deadline)
    return _Request(method, target, version, headers, body)


def _pause(delay: float | Sequence[float], index: int) -> float:
    """The pause before event *index* (>= 1)."""
    if isinstance(delay, (int, float)):
        return float(delay)
    return float(delay[index - 1]) if index - 1 < len(delay) else 0.0


def _pieces(event: bytes, split: Literal["event", "byte"] | int) -> Iterator[bytes]:
    if split == "event":
        yield event
        return
    size = 1 if split == "byte" else int(split)
    for start in range(0, len(event), size):
        yield event[start : start + size]


def _head(plan: _Plan) -> bytes:
    """The status line and headers, with the framing headers the plan calls for."""
    try:
        phrase = http.HTTPStatus(plan.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {plan.status} {phrase}"]
    lines.extend(f"{name}: {value}" for name, value in plan.headers)
    if plan.framing == "chunked":
        lines.append("transfer-encoding: chunked")
    elif plan.framing == "length":
        lines.append(f"content-length: {sum(len(e) for e in plan.events)}")
    lines.append("connection: keep-alive" if _keeps_alive(plan) else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _keeps_alive(plan: _Plan) -> bool:
    return plan.keep_alive and plan.framing != "close"


class _BodyWriter:
    """Writes one plan's body events: framing, the record's progress, and the transport
    faults (cut at a byte or after an event, stall) at the points they apply."""

    def __init__(
        self, peer: _Peer, plan: _Plan, fault: Fault | None, record: RecordedResponse | None
    ) -> None:
        self.peer = peer
        self.record = record
        self.chunked = plan.framing == "chunked"
        kind = fault.kind if fault is not None else None
        self.mode: Literal["close", "rst"] = fault.mode if fault is not None else "close"
        self.cut_bytes = fault.at_byte if fault is not None and kind == "cut" else None
        self.cut_events = fault.after_events if fault is not None and kind == "cut" else None
        self.stall = fault if fault is not None and kind == "stall" else None
        self.sent = 0

    async def write(self, piece: bytes) -> None:
        # Progress first: a client that saw these bytes finds the record already counting them.
        if self.record is not None:
            self.record.bytes_sent = self.sent + len(piece)
        if piece:
            if self.chunked:
                await self.peer.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                await self.peer.send(piece)

    async def drop(self, mode: Literal["close", "rst"]) -> Literal[False]:
        if self.record is not None:
            self.record.cut = True
        await self.peer.abort(mode)
        return False

    async def checkpoint(self, done_events: int) -> bool:
        """Apply event-count faults; False once the connection has been dropped."""
        stall = self.stall
        if stall is not None and stall.after_events == done_events:
            await self.peer.wait(stall.seconds)
            if stall.then == "close":
                return await self.drop(stall.mode)
        if self.cut_events is not None and self.cut_events == done_events:
            return await self.drop(self.mode)
        return True

    async def event(self, event: bytes, split: Literal["event", "byte"] | int) -> bool:
        """Write one event in *split* pieces; False once a byte cut dropped the connection."""
        for piece in _pieces(event, split):
            if self.cut_bytes is not None and self.sent + len(piece) >= self.cut_bytes:
                await self.write(piece[: self.cut_bytes - self.sent])
                return await self.drop(self.mode)
            await self.write(piece)
            self.sent += len(piece)
        return True

    async def end(self, count: int) -> bool:
        """After all *count* events: faults due at or past the end; False if dropped."""
        stall = self.stall
        if stall is not None and stall.after_events is not None and stall.after_events >= count:
            self.stall = replace(stall, after_events=count)
        if self.cut_events is not None and self.cut_events > count:
            self.cut_events = count
        if not await self.checkpoint(count):
            return False
        if self.cut_bytes is not None:  # cut at or past the end of the body
            return await self.drop(self.mode)
        return True


async def send_plan(
    peer: _Peer,
    plan: _Plan,
    fault: Fault | None,
    reply: Reply,
    record: RecordedResponse | None = None,
) -> bool:
    """Write *plan* to the socket, applying pacing and transport faults; keep *record*'s
    progress one step ahead of each write, so it is final once the client saw the end.

    Returns whether the connection may serve another request.
    """
    if reply.header_delay > 0:
        await peer.wait(reply.header_delay)
    await peer.send(_head(plan))
    writer = _BodyWriter(peer, plan, fault, record)
    for index, event in enumerate(plan.events):
        pause = reply.first_delay if index == 0 else _pause(reply.delay, index)
        if pause > 0:
            await peer.wait(pause)
        if not await writer.checkpoint(index) or not await writer.event(event, reply.split):
            return False
    if not await writer.end(len(plan.events)):
        return False
    if record is not None:
        record.complete = True
    if writer.chunked:
        await peer.send(b"0\r\n\r\n")
    elif plan.framing == "close":
        await peer.abort("close")
        return False
    return _keeps_alive(plan)
