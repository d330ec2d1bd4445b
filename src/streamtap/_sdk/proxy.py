"""Stream proxies: what the caller gets instead of the SDK's `Stream` / `AsyncStream`.

A proxy is a `wrapt.ObjectProxy`, so `isinstance(s, openai.Stream)`, `.response` and every other
attribute behave as on the SDK's object. Iterating one runs its driver (`_drivers`), one
generator per proxy, made on first use; closing one closes that generator and records the end
(`_run.Run.finish`).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

import wrapt

from .._core.state import StreamState
from . import log as _log
from .drivers import async_chunks, sync_chunks
from .run import Run


class StreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """Stands in for `openai.Stream[ChatCompletionChunk]`."""

    def __init__(self, stream: Any, run: Run) -> None:
        super().__init__(stream)
        self._self_run = run
        self._self_gen: Generator[Any, None, None] | None = None

    def _self_chunks(self) -> Iterator[Any]:
        gen = self._self_gen
        if gen is None:
            run = self._self_run
            gen = self._self_gen = sync_chunks(run)
            run.gen = weakref.ref(gen)
        return gen

    def __iter__(self) -> Iterator[Any]:
        return self._self_chunks()

    def __next__(self) -> Any:
        return next(self._self_chunks())

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._self_close("exit")

    def close(self) -> None:
        self._self_close("close")

    def _self_close(self, how: str) -> None:
        run = self._self_run
        gen = self._self_gen
        if gen is not None and not run.state.finished:
            run.closing = how
            gen.close()
        if not run.state.finished:
            run.finish("cancelled", how)
        run.stream.close()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("streamtap stream proxies cannot be pickled")


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """Stands in for `openai.AsyncStream[ChatCompletionChunk]`."""

    def __init__(self, stream: Any, run: Run) -> None:
        super().__init__(stream)
        self._self_run = run
        self._self_gen: AsyncGenerator[Any, None] | None = None

    def _self_chunks(self) -> AsyncIterator[Any]:
        gen = self._self_gen
        if gen is None:
            gen = self._self_gen = async_chunks(self._self_run)
        return gen

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._self_chunks()

    async def __anext__(self) -> Any:
        return await self._self_chunks().__anext__()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._self_close("exit")

    async def close(self) -> None:
        await self._self_close("close")

    async def _self_close(self, how: str) -> None:
        run = self._self_run
        gen = self._self_gen
        if gen is not None and not run.state.finished:
            run.closing = how
            await gen.aclose()
        if not run.state.finished:
            run.finish("cancelled", how)
        await run.stream.close()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("streamtap stream proxies cannot be pickled")


def run_of(obj: Any) -> Run | None:
    """The run behind a proxy, or behind the SDK's `.stream()` helper wrapping one."""
    for candidate in (obj, getattr(obj, "_raw_stream", None)):
        if isinstance(candidate, (StreamProxy, AsyncStreamProxy)):
            run: Run = candidate._self_run
            return run
    return None


class ResponseProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """Stands in for the raw response of `with_raw_response` / `with_streaming_response`.

    `.parse()` returns a stream proxy (the same one every time, as the SDK caches its parse).
    """

    def __init__(self, response: Any, wrap: Callable[[Any], Any], state: StreamState) -> None:
        super().__init__(response)
        self._self_wrap = wrap
        self._self_state = state
        self._self_parsed: tuple[Any, Any] | None = None

    def _self_adopt(self, parsed: Any) -> Any:
        cached = self._self_parsed
        if cached is not None and cached[0] is parsed:
            return cached[1]
        proxy = self._self_wrap(parsed)
        self._self_parsed = (parsed, proxy)
        return proxy

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if inspect.isawaitable(parsed):
            return self._self_aparse(parsed)
        return self._self_adopt(parsed)

    async def _self_aparse(self, awaitable: Any) -> Any:
        return self._self_adopt(await awaitable)

    def __enter__(self) -> ResponseProxy:
        return self

    def __exit__(self, *exc_info: object) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> ResponseProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)

    def __del__(self) -> None:
        try:
            state = self._self_state
            if self._self_parsed is None and state.finish("ok", "raw", state.clock()):
                # The caller read the raw body itself; streamtap saw no chunks to time.
                _log.emit(state)
        except Exception:  # interpreter shutdown
            pass
