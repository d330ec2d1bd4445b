"""The measured process: stream chat completions (or Responses API events, `--protocol
responses`) through the real SDK, raw or instrumented.

Run by `run.py` as a subprocess (under callgrind, or plain), never imported by the harness
itself, so every variant gets a fresh interpreter with only its own patches applied::

    python _workload.py cpu-callgrind --variant all --transport mock --sizes 100,1100
    python _workload.py cpu-wall --variants raw,shell,all --transport mock --sizes 200,2200
    python _workload.py memory --variant all --n 100000
    python _workload.py profile --variant all --n 20000

Prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import operator
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _sse  # noqa: E402

MESSAGES = [{"role": "user", "content": "Explain streaming in a few paragraphs."}]
MODEL = "gpt-4o-mini"
PROTOCOL = "chat"  # or "responses" (--protocol): which API the caller's loop streams

# streamtap configurations: the defaults, the "shell only" baseline, and one capability at a
# time on top of the shell.
SHELL = {"buffering": "off", "count_tokens": False, "retry": False, "include_usage": False}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "raw": None,
    "raw2": None,  # the raw SDK again, in its own process: the noise floor of the method
    "all": {},
    "shell": SHELL,
    "+buffering": {**SHELL, "buffering": "word"},
    "+tokens": {**SHELL, "count_tokens": True},
    "+retry": {**SHELL, "retry": True},
    "+usage": {**SHELL, "include_usage": True},
    # chunks decoded by pydantic-core instead of the SDK's construct_type: every capability
    # on, and the shell alone (what fast decoding itself costs or saves)
    "all+fast": {"fast_decode": True},
    "shell+fast": {**SHELL, "fast_decode": True},
}


def httpx_module() -> Any:
    """httpx (openai 1.x/2.x) or httpx2 (openai 3.x): whatever the SDK's client derives from."""
    import openai

    for cls in openai.DefaultHttpxClient.__mro__:
        if cls.__name__ == "Client" and cls.__module__.split(".")[0] in ("httpx", "httpx2"):
            return importlib.import_module(cls.__module__.split(".")[0])
    return importlib.import_module("httpx")


# -- transports ---------------------------------------------------------------------------------


class Body:
    """What the in-process transport answers: the SSE body for `n` chunks, in blocks."""

    def __init__(self, lazy: bool = False) -> None:
        self.n = 0
        self.lazy = lazy
        self._cache: dict[int, list[bytes]] = {}

    def blocks(self) -> Any:
        if self.lazy:
            return _sse.lazy_blocks(self.n, protocol=PROTOCOL)
        found = self._cache.get(self.n)
        if found is None:
            found = self._cache[self.n] = _sse.blocks(_sse.body(self.n, protocol=PROTOCOL))
        return iter(found)


def mock_clients(body: Body, is_async: bool) -> Any:
    import openai

    httpx = httpx_module()
    headers = {"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_bench"}

    if is_async:

        async def agen() -> Any:
            for b in body.blocks():
                yield b

        def ahandler(request: Any) -> Any:
            return httpx.Response(200, headers=headers, content=agen())

        transport = httpx.MockTransport(ahandler)
        return openai.AsyncOpenAI(
            base_url="http://127.0.0.1:9/v1",
            api_key="bench",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(transport=transport),
        )

    def handler(request: Any) -> Any:
        return httpx.Response(200, headers=headers, content=body.blocks())

    transport = httpx.MockTransport(handler)
    return openai.OpenAI(
        base_url="http://127.0.0.1:9/v1",
        api_key="bench",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=transport),
    )


class Clients:
    """One client per stream length (loopback: one FakeServer port per length)."""

    def __init__(
        self, transport: str, urls: dict[int, str], lazy: bool = False, is_async: bool = False
    ) -> None:
        import openai

        self.transport = transport
        self.body = Body(lazy=lazy)
        self._by_n: dict[int, Any] = {}
        if transport == "mock":
            self._mock = mock_clients(self.body, is_async)
        else:
            for n in sorted(urls):
                self._by_n[n] = openai.OpenAI(base_url=urls[n], api_key="bench", max_retries=0)

    def all(self) -> list[Any]:
        return [self._mock] if self.transport == "mock" else list(self._by_n.values())

    def get(self, n: int) -> Any:
        self.body.n = n
        return self._mock if self.transport == "mock" else self._by_n[n]

    def pick(self, n: int, wrapped: list[Any]) -> Any:
        """The (possibly wrapped) client for streams of *n* chunks; sets the mock's body."""
        self.body.n = n
        return wrapped[0] if self.transport == "mock" else wrapped[list(self._by_n).index(n)]


# -- instrumentation ----------------------------------------------------------------------------


def apply(variant: str, clients: list[Any]) -> list[Any]:
    """Instrument *clients* for *variant*; returns the clients to use (wrappers may replace)."""
    if variant.startswith("peer:"):
        import _peers

        return [_peers.setup(variant[5:], c) for c in clients]
    opts = VARIANTS[variant]
    if opts is None:
        return clients
    import streamtap

    for c in clients:
        streamtap.instrument(c, **opts)
    return clients


def reset() -> None:
    """Undo every streamtap patch (the raw SDK again)."""
    if "streamtap" in sys.modules:
        sys.modules["streamtap"].uninstrument()


# -- the caller's loop --------------------------------------------------------------------------


def consume(client: Any) -> int:
    """What a typical caller does: print-ish every piece of text. Returns characters seen."""
    import openai

    if isinstance(client, openai.AsyncOpenAI):
        return asyncio.run(consume_async(client))
    if PROTOCOL == "responses":
        return consume_responses(client)
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    seen = 0
    for chunk in stream:
        if chunk.choices:
            text = chunk.choices[0].delta.content
            if text:
                seen += len(text)
    return seen


def consume_responses(client: Any) -> int:
    """The same for a Responses API stream: print-ish every text delta."""
    stream = client.responses.create(model=MODEL, input=MESSAGES, stream=True)
    seen = 0
    for event in stream:
        if event.type == "response.output_text.delta":
            seen += len(event.delta)
    return seen


async def consume_responses_async(client: Any) -> int:
    stream = await client.responses.create(model=MODEL, input=MESSAGES, stream=True)
    seen = 0
    async for event in stream:
        if event.type == "response.output_text.delta":
            seen += len(event.delta)
    return seen


async def consume_async(client: Any) -> int:
    if PROTOCOL == "responses":
        return await consume_responses_async(client)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    seen = 0
    async for chunk in stream:
        if chunk.choices:
            text = chunk.choices[0].delta.content
            if text:
                seen += len(text)
    return seen


def check(clients: Clients, n: int, client: Any) -> None:
    seen = consume(client)
    want = len(_sse.text_of(n)) if n <= 4096 else None
    if want is not None and seen != want:
        raise SystemExit(f"bench: the caller saw {seen} characters, expected {want}")


# -- modes --------------------------------------------------------------------------------------


def _clients_for(args: argparse.Namespace, sizes: list[int], lazy: bool = False) -> Clients:
    urls = json.loads(args.urls) if args.urls else {}
    return Clients(
        args.transport,
        {int(k): v for k, v in urls.items()},
        lazy=lazy,
        is_async=args.api == "async",
    )


def virtual_clock() -> Any:
    """Give streamtap a deterministic clock, as fast as chunks arrive natively.

    Under callgrind the process runs some 50 times slower, so the word buffer's time bound
    (0.15 s) would fire after a few chunks instead of never, and how often it fires would depend
    on the machine's load: the same code measured 17k to 25k instructions per chunk from run to
    run. This clock reads from a fixed list of times whose steps spread like real inter-chunk
    gaps (log-normal around 20 µs, several powers of two wide, so the gap histogram does real
    work), so the code that runs is the code that runs at full speed, and every run is the
    same. `iter(list).__next__` is a C call, like `perf_counter`.

    It goes where streamtap reads its clock, `runtime.clock` (the test seam). Returns the
    iterator, so the caller can check it was read: a clock set where nothing reads it measured
    the real clock's random hold releases for a whole release (see README, 2026-12-02, third
    session). None for the raw SDK.
    """
    if "streamtap" not in sys.modules:
        return None
    rng = random.Random(20)
    t = 1000.0
    times = []
    for _ in range(200_000):
        t += rng.lognormvariate(-10.8, 1.0)  # e**-10.8 s: 20 µs
        times.append(t)
    ticks = iter(times)
    from streamtap._runtime import runtime

    runtime.clock = ticks.__next__
    return ticks


def check_clock_read(ticks: Any) -> None:
    """Fail the measurement if streamtap never read the virtual clock (it reads elsewhere)."""
    if ticks is not None and operator.length_hint(ticks) == 200_000:
        raise SystemExit("bench: streamtap never read the virtual clock; see virtual_clock()")


def mode_callgrind(args: argparse.Namespace) -> dict[str, Any]:
    import _cg

    short, long = (int(x) for x in args.sizes.split(","))
    clients = _clients_for(args, [short, long])
    wrapped = apply(args.variant, clients.all())
    ticks = virtual_clock()

    def client_for(n: int) -> Any:
        return clients.pick(n, wrapped)

    # Warm up (uninstrumented when the control library is there): lazy imports, pydantic
    # model building, tiktoken encodings, connection set-up.
    check(clients, short, client_for(short))
    check(clients, long, client_for(long))
    check_clock_read(ticks)
    gc.collect()
    # Everything the warm-up left is moved out of the collector's reach: the collections that
    # run while measuring then scan what the streams allocate, not the whole process heap
    # (whether one such full scan falls inside the measured window or not otherwise moves a
    # variant by thousands of instructions per chunk).
    gc.freeze()
    cg = _cg.load()
    if cg is None or not cg.running:
        raise SystemExit("bench: not running under callgrind with the control library")
    cg.start()
    cg.zero()
    check(clients, short, client_for(short))
    cg.dump("short")
    check(clients, long, client_for(long))
    cg.dump("long")
    cg.stop()
    return {"variant": args.variant, "sizes": [short, long], "api": args.api}


def mode_wall(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved wall-clock runs of several variants in one process, medians."""
    short, long = (int(x) for x in args.sizes.split(","))
    variants = args.variants.split(",")
    clients = _clients_for(args, [short, long])
    rng = random.Random(1)
    times: dict[str, dict[int, list[float]]] = {v: {short: [], long: []} for v in variants}
    cpu: dict[str, dict[int, list[float]]] = {v: {short: [], long: []} for v in variants}
    gc.collect()
    deadline = time.monotonic() + args.max_seconds
    for rep in range(args.reps + 1):  # rep 0 is a warm-up
        order = variants[:]
        rng.shuffle(order)
        for v in order:
            reset()
            cs = apply(v, clients.all())
            for n in (short, long):
                c = clients.pick(n, cs)
                t0 = time.perf_counter()
                c0 = time.thread_time()
                check(clients, n, c)
                c1 = time.thread_time()
                t1 = time.perf_counter()
                if rep:
                    times[v][n].append(t1 - t0)
                    cpu[v][n].append(c1 - c0)
        if time.monotonic() > deadline:
            break
    reset()
    out: dict[str, Any] = {"sizes": [short, long], "variants": {}}
    for v in variants:
        ts, tl = statistics.median(times[v][short]), statistics.median(times[v][long])
        cs_, cl = statistics.median(cpu[v][short]), statistics.median(cpu[v][long])
        out["variants"][v] = {
            "wall_per_chunk_us": (tl - ts) / (long - short) * 1e6,
            "cpu_per_chunk_us": (cl - cs_) / (long - short) * 1e6,
            "wall_long_per_chunk_us": tl / long * 1e6,
            "reps": len(times[v][long]),
        }
    return out


def mode_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Per-chunk time at several stream lengths, raw vs instrumented, interleaved."""
    sizes = [int(x) for x in args.sizes.split(",")]
    variants = args.variants.split(",")
    clients = _clients_for(args, sizes, lazy=True)
    rng = random.Random(2)
    cpu: dict[str, dict[int, list[float]]] = {v: {n: [] for n in sizes} for v in variants}
    # warm-up
    for v in variants:
        reset()
        cs = apply(v, clients.all())
        check(clients, 200, clients.pick(200, cs))
    deadline = time.monotonic() + args.max_seconds
    for _rep in range(args.reps):
        for n in sizes:
            order = variants[:]
            rng.shuffle(order)
            for v in order:
                reset()
                cs = apply(v, clients.all())
                c = clients.pick(n, cs)
                gc.collect()
                c0 = time.thread_time()
                consume(c)
                cpu[v][n].append((time.thread_time() - c0) / n * 1e6)
        if time.monotonic() > deadline:
            break
    reset()
    return {
        "sizes": sizes,
        # The minimum over repetitions: interference (other tenants, a preempted vCPU) only
        # ever adds time, so the fastest repetition is the least disturbed one.
        "variants": {v: {str(n): min(cpu[v][n]) for n in sizes} for v in variants},
        "medians": {v: {str(n): statistics.median(cpu[v][n]) for n in sizes} for v in variants},
        "reps": len(cpu[variants[0]][sizes[0]]),
    }


def mode_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS and tracemalloc peak over one long stream (in-process transport)."""
    import tracemalloc

    clients = _clients_for(args, [args.n], lazy=True)
    cs = apply(args.variant, clients.all())
    check(clients, 200, clients.pick(200, cs))  # warm-up: imports, encodings, models
    if VARIANTS.get(args.variant) is not None:
        # The encoding loads in a background thread (no request waits for it): let it finish
        # before the window, or its ~25 MB land in the stream's tracemalloc peak.
        from streamtap._core import tokens as _tokens

        _tokens.counter_factory(None, encoding="o200k_base")
    gc.collect()
    rss_before = _rss_kb()
    clients.pick(args.n, cs)
    if args.tracemalloc:
        tracemalloc.start()
        tracemalloc.reset_peak()
    consume(cs[0])
    peak_traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    if args.tracemalloc:
        tracemalloc.stop()
    return {
        "variant": args.variant,
        "n": args.n,
        "rss_before_kb": rss_before,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "tracemalloc_peak_bytes": peak_traced,
    }


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mode_profile(args: argparse.Namespace) -> dict[str, Any]:
    """cProfile of one instrumented stream: streamtap's functions by own time per chunk."""
    import cProfile
    import pstats

    clients = _clients_for(args, [args.n], lazy=True)
    cs = apply(args.variant, clients.all())
    check(clients, 200, clients.pick(200, cs))
    clients.pick(args.n, cs)
    prof = cProfile.Profile()
    prof.enable()
    consume(cs[0])
    prof.disable()
    st = pstats.Stats(prof)
    rows = []
    total = 0.0
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        total += tt
        rows.append(
            {
                "file": filename,
                "line": line,
                "function": name,
                "calls": nc,
                "tottime_us_per_chunk": tt / args.n * 1e6,
                "cumtime_us_per_chunk": ct / args.n * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["tottime_us_per_chunk"])
    return {
        "variant": args.variant,
        "n": args.n,
        "total_us_per_chunk": total / args.n * 1e6,
        "rows": rows[:80],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["cpu-callgrind", "cpu-wall", "scaling", "memory", "profile"])
    p.add_argument("--variant", default="all")
    p.add_argument("--variants", default="raw,all")
    p.add_argument("--transport", choices=["mock", "loopback"], default="mock")
    p.add_argument("--api", choices=["sync", "async"], default="sync")
    p.add_argument("--protocol", choices=["chat", "responses"], default="chat")
    p.add_argument("--urls", default="")
    p.add_argument("--sizes", default="100,1100")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--tracemalloc", action="store_true")
    args = p.parse_args()
    global PROTOCOL
    PROTOCOL = args.protocol
    fn = {
        "cpu-callgrind": mode_callgrind,
        "cpu-wall": mode_wall,
        "scaling": mode_scaling,
        "memory": mode_memory,
        "profile": mode_profile,
    }[args.mode]
    out = fn(args)
    import openai

    out["openai"] = openai.__version__
    out["python"] = sys.version.split()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
