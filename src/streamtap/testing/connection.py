"""One client connection on the server's event loop: bounded reads, paced writes, aborts."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Literal, Protocol

_POLL = 0.05  # seconds: how often an abort checks that the written bytes reached the kernel


class _Closed(Exception):
    """The connection is gone (peer hung up, fault, or server shutdown)."""


class _Host(Protocol):
    """What a connection needs from its server (the server module imports this one)."""

    write_timeout: float
    _stopping: bool

    def _connection_opened(self, peer: _Peer) -> int: ...

    def _connection_closed(self, peer: _Peer) -> None: ...


class _Peer(asyncio.Protocol):
    """One client connection on the server's event loop: bounded, hang-up-aware reads, writes
    and waits. A handler coroutine drives it; at most one of them waits on it at a time."""

    def __init__(self, server: _Host) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.write_timeout = server.write_timeout
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.eof = False  # the client sent FIN (no more request bytes)
        self.closed = False  # the connection is gone (either side), nothing more can be sent
        self.paused = False  # the client is not reading: the kernel's send buffer is full
        self._waiter: asyncio.Future[None] | None = None
        self.conn_id = 0

    # asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - platform dependent
                pass
        # Small buffer: a write is handed to the kernel at once or the writer waits for it.
        transport.set_write_buffer_limits(high=64 * 1024)
        self.conn_id = self.server._connection_opened(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the write side open: a half-closed client may still read

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        self.server._connection_closed(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    # waiting primitives ----------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to *seconds*, returning early when any callback above fires."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        handle = self.loop.call_later(max(0.0, seconds), _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    # reading ---------------------------------------------------------------------------
    async def _fill(self, deadline: float) -> bool:
        """Wait for more bytes; False on EOF. Raises _Closed on close/stop/timeout."""
        size = len(self.buffer)
        while len(self.buffer) == size:
            if self.closed or self.server._stopping:
                raise _Closed
            if self.eof:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Closed
            await self._sleep(remaining)
        return True

    async def read_until(self, marker: bytes, limit: int, deadline: float) -> bytes | None:
        """Bytes up to and including *marker*; None on a clean EOF before any byte."""
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                out, self.buffer = (
                    self.buffer[: index + len(marker)],
                    self.buffer[index + len(marker) :],
                )
                return out
            if len(self.buffer) > limit:
                raise _Closed
            if not await self._fill(deadline):
                if self.buffer:
                    raise _Closed
                return None

    async def read_exact(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill(deadline):
                raise _Closed
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    # writing ---------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Hand *data* to the kernel; wait (up to write_timeout) while the client is not
        reading."""
        if self.closed or self.server._stopping or self.transport is None:
            raise _Closed
        self.transport.write(data)
        deadline = time.monotonic() + self.write_timeout
        while self.paused:
            if self.closed or self.server._stopping or time.monotonic() >= deadline:
                raise _Closed
            await self._sleep(deadline - time.monotonic())

    # waiting ---------------------------------------------------------------------------
    async def wait(self, seconds: float) -> None:
        """Sleep *seconds*; raise _Closed at once on server shutdown or if the peer hangs up."""
        deadline = time.monotonic() + seconds
        while True:
            if self.closed or self.eof or self.server._stopping:
                raise _Closed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self._sleep(remaining)

    # closing ---------------------------------------------------------------------------
    async def abort(self, mode: Literal["close", "rst"]) -> None:
        """Drop the connection: FIN (``close``) or RST (``rst``), after the bytes written so
        far have reached the kernel."""
        transport = self.transport
        if self.closed or transport is None:
            self.close()
            return
        deadline = time.monotonic() + self.write_timeout
        while transport.get_write_buffer_size() and not self.closed:
            if self.server._stopping or time.monotonic() >= deadline:
                break
            await self._sleep(min(_POLL, deadline - time.monotonic()))
        sock = transport.get_extra_info("socket")
        if mode == "rst" and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:  # pragma: no cover
                pass
        elif sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        transport.abort()
        self.closed = True

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
