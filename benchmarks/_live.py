"""Measured processes that need real time over loopback: concurrency, latency, resume.

Run by `run.py` as subprocesses against `_server.py` (another process), one variant per
process (`raw` or a streamtap variant from `_workload.VARIANTS`)::

    python _live.py concurrency --variant all --url http://127.0.0.1:P/v1 --streams 1000
    python _live.py latency --variant all --url ... --n 200 --api sync
    python _live.py resume --variant all --url ... --ttft-url ... --trials 5 --api async

A transport wrapper time-stamps every block of body bytes as the SDK pulls it off the socket,
so "arrival" is the moment the SDK could first have had the chunk, for raw and instrumented
clients alike. Prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _sse  # noqa: E402
import _workload  # noqa: E402

clock = time.perf_counter


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(q * (len(v) - 1))))
    return v[k]


def dist_ms(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": pct(values, 0.5) * 1e3,  # type: ignore[operator]
        "p90": pct(values, 0.9) * 1e3,  # type: ignore[operator]
        "p99": pct(values, 0.99) * 1e3,  # type: ignore[operator]
        "max": max(values) * 1e3,
        "mean": statistics.fmean(values) * 1e3,
    }


# -- time-stamping transport ---------------------------------------------------------------------


class Tap:
    """Arrival times of SSE events of the current response, and when its body broke."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []  # event index -> time its last byte was read
        self.broke_at: float | None = None
        self.ended_at: float | None = None
        self.responses = 0

    def new_response(self) -> None:
        self.responses += 1

    def block(self, data: bytes, t: float) -> None:
        self.arrivals.extend([t] * data.count(b"\n\n"))


def tapped_transport(tap: Tap, is_async: bool) -> Any:
    httpx = _workload.httpx_module()

    class SyncTapStream(httpx.SyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __iter__(self) -> Any:
            try:
                for data in self.inner:
                    tap.block(data, clock())
                    yield data
            except Exception:
                if tap.broke_at is None:
                    tap.broke_at = clock()
                raise
            tap.ended_at = clock()

        def close(self) -> None:
            self.inner.close()

    class AsyncTapStream(httpx.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __aiter__(self) -> Any:
            try:
                async for data in self.inner:
                    tap.block(data, clock())
                    yield data
            except Exception:
                if tap.broke_at is None:
                    tap.broke_at = clock()
                raise
            tap.ended_at = clock()

        async def aclose(self) -> None:
            await self.inner.aclose()

    class SyncTap(httpx.HTTPTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            r = super().handle_request(request)
            tap.new_response()
            return httpx.Response(
                r.status_code,
                headers=r.headers,
                stream=SyncTapStream(r.stream),
                extensions=r.extensions,
            )

    class AsyncTap(httpx.AsyncHTTPTransport):  # type: ignore[misc,name-defined]
        async def handle_async_request(self, request: Any) -> Any:
            r = await super().handle_async_request(request)
            tap.new_response()
            return httpx.Response(
                r.status_code,
                headers=r.headers,
                stream=AsyncTapStream(r.stream),
                extensions=r.extensions,
            )

    return AsyncTap() if is_async else SyncTap()


def make_client(url: str, is_async: bool, transport: Any = None, **kw: Any) -> Any:
    import openai

    if is_async:
        http = openai.DefaultAsyncHttpxClient(transport=transport) if transport else None
        return openai.AsyncOpenAI(base_url=url, api_key="bench", http_client=http, **kw)
    http = openai.DefaultHttpxClient(transport=transport) if transport else None
    return openai.OpenAI(base_url=url, api_key="bench", http_client=http, **kw)


def instrument(variant: str, client: Any, **extra: Any) -> None:
    opts = _workload.VARIANTS[variant]
    if opts is None:
        return
    import streamtap

    streamtap.instrument(client, **{**opts, **extra})


# -- latency ------------------------------------------------------------------------------------


def _records_to_latency(
    tap: Tap, records: list[tuple[int, float]], deltas: list[str], start: float
) -> dict[str, Any]:
    """Per delta: time from its arrival to the caller having all of its text ("lat"), and to
    the caller having its first character ("lat_first")."""
    lat: list[float] = []
    lat_first: list[float] = []
    k = kf = 0
    acc = 0
    for j, d in enumerate(deltas):
        begin, acc = acc, acc + len(d)
        if j + 1 >= len(tap.arrivals):
            break
        arrived = tap.arrivals[j + 1]  # event 0 is the role chunk
        while kf < len(records) and records[kf][0] <= begin:
            kf += 1
        while k < len(records) and records[k][0] < acc:
            k += 1
        if k >= len(records) or kf >= len(records):
            break
        lat.append(records[k][1] - arrived)
        lat_first.append(max(0.0, records[kf][1] - arrived))
    first_text = records[0][1] - start if records else None
    first_arrival = tap.arrivals[1] - start if len(tap.arrivals) > 1 else None
    return {
        "lat": lat,
        "lat_first": lat_first,
        "ttft": first_text,
        "first_content_arrival": first_arrival,
    }


def read_timed(client: Any, records: list[tuple[int, float]], got: list[str]) -> float:
    """Stream once; record (characters so far, time) for each piece of text. Returns start."""
    start = clock()
    stream = client.chat.completions.create(
        model=_workload.MODEL, messages=_workload.MESSAGES, stream=True
    )
    seen = 0
    for chunk in stream:
        if chunk.choices:
            text = chunk.choices[0].delta.content
            if text:
                seen += len(text)
                records.append((seen, clock()))
                got.append(text)
    return start


async def aread_timed(client: Any, records: list[tuple[int, float]], got: list[str]) -> float:
    start = clock()
    stream = await client.chat.completions.create(
        model=_workload.MODEL, messages=_workload.MESSAGES, stream=True
    )
    seen = 0
    async for chunk in stream:
        if chunk.choices:
            text = chunk.choices[0].delta.content
            if text:
                seen += len(text)
                records.append((seen, clock()))
                got.append(text)
    await client.close()
    return start


def mode_latency(args: argparse.Namespace) -> dict[str, Any]:
    is_async = args.api == "async"
    deltas = _sse.deltas(args.n)
    results: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []

    def hook(ev: Any) -> None:
        summaries.append(dict(ev))

    cold_ttft: float | None = None
    for rep in range(args.reps + 1):  # rep 0: the process's first request (cold), kept apart
        tap = Tap()
        client = make_client(args.url, is_async, tapped_transport(tap, is_async), max_retries=0)
        extra = {"hooks": [hook]} if _workload.VARIANTS[args.variant] is not None else {}
        instrument(args.variant, client, **extra)
        records: list[tuple[int, float]] = []
        got: list[str] = []
        if is_async:
            start = asyncio.run(aread_timed(client, records, got))
        else:
            start = read_timed(client, records, got)
            client.close()
        if records[-1][0] != len("".join(deltas)):
            raise SystemExit("bench: text mismatch in latency run")
        measured = _records_to_latency(tap, records, deltas, start)
        if rep == 0:
            cold_ttft = measured["ttft"]
            summaries.clear()
        else:
            results.append(measured)
        if "streamtap" in sys.modules:
            sys.modules["streamtap"].uninstrument()
    lat = [x for r in results for x in r["lat"]]
    lat_first = [x for r in results for x in r["lat_first"]]
    held = [x for x in lat if x > args.held_threshold]
    out = {
        "variant": args.variant,
        "api": args.api,
        "n": args.n,
        "delay": args.delay,
        "latency_ms": dist_ms(lat),
        "first_char_latency_ms": dist_ms(lat_first),
        "held_fraction": len(held) / len(lat) if lat else None,
        "held_ms": dist_ms(held),
        "ttft_ms": statistics.median(r["ttft"] for r in results) * 1e3,
        "cold_ttft_ms": cold_ttft * 1e3 if cold_ttft is not None else None,
        "first_content_arrival_ms": statistics.median(r["first_content_arrival"] for r in results)
        * 1e3,
    }
    if summaries:
        out["summary_hold_max_ms"] = (
            max(s.get("streamtap.buffering.hold_max", 0.0) for s in summaries) * 1e3
        )
    return out


# -- concurrency --------------------------------------------------------------------------------


async def _concurrency(args: argparse.Namespace) -> dict[str, Any]:
    client = make_client(args.url, True, max_retries=args.max_retries, timeout=args.max_seconds)
    instrument(args.variant, client)
    stop = asyncio.Event()
    lags: list[float] = []

    async def ticker() -> None:
        period = 0.01
        while not stop.is_set():
            t = clock()
            await asyncio.sleep(period)
            lags.append(clock() - t - period)

    errors: list[str] = []
    chunks = 0
    ttfts: list[float] = []
    want = len(_sse.text_of(args.n))

    async def one(i: int) -> None:
        nonlocal chunks
        await asyncio.sleep(args.ramp * i / max(1, args.streams))  # staggered start
        start = clock()
        first = True
        seen = 0
        try:
            stream = await client.chat.completions.create(
                model=_workload.MODEL, messages=_workload.MESSAGES, stream=True
            )
            async for chunk in stream:
                chunks += 1
                if chunk.choices:
                    text = chunk.choices[0].delta.content
                    if text:
                        if first:
                            ttfts.append(clock() - start)
                            first = False
                        seen += len(text)
            if seen != want:
                errors.append(f"stream {i}: {seen} of {want} characters")
        except Exception as exc:  # counted and reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}")

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.2)
    lags.clear()
    c0 = time.process_time()
    t0 = clock()
    tasks = [asyncio.create_task(one(i)) for i in range(args.streams)]
    _done, pending = await asyncio.wait(tasks, timeout=args.max_seconds)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
        errors.append(f"{len(pending)} streams still running after {args.max_seconds}s")
    elapsed = clock() - t0
    cpu = time.process_time() - c0
    stop.set()
    await tick
    await client.close()
    return {
        "variant": args.variant,
        "streams": args.streams,
        "ramp_s": args.ramp,
        "delay": args.delay,
        "n": args.n,
        "chunks": chunks,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "cpu_per_chunk_us": cpu / chunks * 1e6 if chunks else None,
        "lag_ms": dist_ms(lags),
        "ttft_ms": dist_ms(ttfts),
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def mode_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    except (ValueError, OSError):
        pass
    gc.collect()
    return asyncio.run(_concurrency(args))


# -- resume -------------------------------------------------------------------------------------


def mode_resume(args: argparse.Namespace) -> dict[str, Any]:
    is_async = args.api == "async"
    deltas = _sse.deltas(args.n)
    full = "".join(deltas)
    delivered_before_cut = "".join(deltas[: max(0, args.cut_after - 1)])
    summaries: list[dict[str, Any]] = []

    def hook(ev: Any) -> None:
        summaries.append(dict(ev))

    # The server's own time to first token, through the raw SDK on a fresh connection.
    ttft_raw: list[float] = []
    for i in range(args.trials + 1):  # the first one warms up (lazy imports), not counted
        client = make_client(args.ttft_url, False, max_retries=0)
        start = clock()
        for chunk in client.chat.completions.create(
            model=_workload.MODEL, messages=_workload.MESSAGES, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                if i:
                    ttft_raw.append(clock() - start)
                break
        client.close()

    trials: list[dict[str, Any]] = []
    for _ in range(args.trials):
        tap = Tap()
        client = make_client(args.url, is_async, tapped_transport(tap, is_async), max_retries=0)
        instrument(args.variant, client, hooks=[hook])
        records: list[tuple[int, float]] = []
        got: list[str] = []
        if is_async:
            asyncio.run(aread_timed(client, records, got))
        else:
            read_timed(client, records, got)
            client.close()
        sys.modules["streamtap"].uninstrument()
        text = "".join(got)
        s = summaries[-1] if summaries else {}
        waits = [a.get("wait", 0.0) for a in s.get("streamtap.attempts", []) if "wait" in a]
        broke = tap.broke_at
        # The first text the caller got after the break: the first record after it.
        after = [t for (_pos, t) in records if broke is not None and t > broke]
        trials.append(
            {
                "ok": text == full,
                "retries": s.get("streamtap.retries"),
                "strategy": s.get("streamtap.resume.strategy"),
                "wait_s": sum(waits),
                "break_to_first_resumed_s": (after[0] - broke) if after and broke else None,
                "responses": tap.responses,
                "delivered_before_cut": len(delivered_before_cut),
            }
        )
    ttft_med = statistics.median(ttft_raw)
    gaps = [t["break_to_first_resumed_s"] for t in trials if t["break_to_first_resumed_s"]]
    over = [
        t["break_to_first_resumed_s"] - t["wait_s"] - ttft_med
        for t in trials
        if t["break_to_first_resumed_s"]
    ]
    return {
        "variant": args.variant,
        "api": args.api,
        "n": args.n,
        "cut_after_events": args.cut_after,
        "first_delay_s": args.first_delay,
        "server_ttft_raw_ms": ttft_med * 1e3,
        "break_to_first_resumed_ms": dist_ms(gaps),
        "backoff_wait_ms": dist_ms([t["wait_s"] for t in trials]),
        # signed: negative when the resume request beat the fresh-connection baseline
        "overhead_ms": dist_ms(over) | {"min": min(over) * 1e3} if over else {},
        "ok": sum(t["ok"] for t in trials),
        "trials": trials,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["concurrency", "latency", "resume"])
    p.add_argument("--variant", default="all")
    p.add_argument("--url", required=True)
    p.add_argument("--ttft-url", default="")
    p.add_argument("--api", choices=["sync", "async"], default="sync")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--delay", type=float, default=0.0, help="the server's pacing (reported)")
    p.add_argument("--first-delay", type=float, default=0.0, help="reported")
    p.add_argument("--cut-after", type=int, default=20)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--ramp", type=float, default=2.0, help="seconds over which streams start")
    p.add_argument("--max-retries", type=int, default=0)
    p.add_argument("--held-threshold", type=float, default=0.002)
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args()
    fn = {"concurrency": mode_concurrency, "latency": mode_latency, "resume": mode_resume}[
        args.mode
    ]
    out = fn(args)
    import openai

    out["openai"] = openai.__version__
    out["python"] = sys.version.split()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
