"""streamtap benchmarks: overhead against the raw SDK and the peers, memory, scaling, concurrency,
latency and resume. See benchmarks/README.md for the method and the latest results.

    python benchmarks/run.py                 # everything (< 15 min on 2 cores)
    python benchmarks/run.py --quick         # smoke run (< 2 min)
    python benchmarks/run.py cpu peers       # only some benchmarks
    python benchmarks/run.py --python /tmp/venv2/bin/python cpu   # another openai line

Every measured process is a subprocess (`_workload.py`, `_live.py`) of the interpreter given
by --python (default: this one), so each variant starts from a clean, unpatched SDK. Loopback
servers run in their own processes (`_server.py`: streamtap.testing.FakeServer; `_aserver.py`).
Results go to benchmarks/results/<benchmark>.json and a Markdown report to
benchmarks/results/report.md (printed at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import _cg  # noqa: E402

BENCHMARKS = (
    "cpu",
    "peers",
    "memory",
    "scaling",
    "concurrency",
    "latency",
    "resume",
    "responses",
)
CPU_VARIANTS = (
    "raw",
    "raw2",
    "shell",
    "+buffering",
    "+tokens",
    "+retry",
    "+usage",
    "all",
    "all+fast",
)
PEERS = (
    "otel-openai-v2",
    "otel-openai-v2-content",
    "openllmetry",
    "openinference",
    "logfire",
    "langsmith",
)
PEER_VENV = Path(os.environ.get("STREAMTAP_BENCH_PEERS_VENV", HERE / ".venv-peers"))
# What the peers venv holds. opentelemetry-instrumentation-openai-v2 2.4b0 imports
# `opentelemetry.util.genai.instruments`, which opentelemetry-util-genai 1.2b0+ no longer has,
# and imports `httpx` (not installed by openai 3.x, which uses httpx2): both pinned/added here.
PEER_PACKAGES = (
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai<1.2",
    "httpx",
    "opentelemetry-instrumentation-openai",
    "openinference-instrumentation-openai",
    "logfire",
    "langsmith",
)


# -- plumbing -----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env_for(python: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    # The encodings come from the copy shipped in streamtap: nothing is downloaded.
    env.setdefault("STREAMTAP_TIKTOKEN_DOWNLOAD", "0")
    return env


def run_json(
    cmd: list[str],
    python: str,
    timeout: float,
    prefix: list[str] = (),  # type: ignore[assignment]
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    full = [*prefix, *cmd]
    env = env_for(python)
    env.update(extra_env or {})
    done = subprocess.run(
        full, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"command failed ({done.returncode}): {' '.join(full)}\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1])  # type: ignore[no-any-return]


@contextlib.contextmanager
def server(
    python: str, args: list[str], script: str = "_server.py", cpu: int | None = None
) -> Iterator[dict[str, str]]:
    """A loopback server process; yields its {name: base_url}; stops it on exit."""
    prefix = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    proc = subprocess.Popen(
        [*prefix, python, str(HERE / script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(python),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        yield json.loads(line)
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def save(name: str, data: Any) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def load(name: str) -> Any:
    p = RESULTS / f"{name}.json"
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    return None if "error" in data and len(data) <= 2 else data


def source_state() -> dict[str, Any]:
    """Which streamtap was measured: HEAD, files changed since, and a hash of src/."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "src" / "streamtap").rglob("*.py")):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())

    def git(*a: str) -> str:
        r = subprocess.run(
            ["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=False
        )
        return r.stdout.rstrip()

    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "src_changed_since_head": [
            ln[3:] for ln in git("status", "--porcelain", "--", "src").splitlines()
        ],
        "src_sha256": h.hexdigest()[:16],
    }


def versions(python: str) -> dict[str, str]:
    code = (
        "import json,sys,openai,pydantic;"
        "print(json.dumps({'python': sys.version.split()[0], 'openai': openai.__version__,"
        "'pydantic': pydantic.VERSION}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout)  # type: ignore[no-any-return]
    except ValueError:
        return {}


# -- callgrind ----------------------------------------------------------------------------------


LAYOUTS = 3  # set from --layouts


def callgrind(
    python: str,
    variant: str,
    transport: str,
    sizes: tuple[int, int],
    urls: dict[str, str] | None,
    outdir: Path,
    keep: bool = False,
    api: str = "sync",
    simulate: bool = False,
    layouts: int = 1,
    protocol: str = "chat",
) -> dict[str, Any]:
    """Instructions per chunk: (I_long - I_short) / (N_long - N_short), one process.

    layouts > 1 repeats the measurement in that many processes whose heaps are laid out
    differently (a few dozen extra environment variables shift every later allocation) and
    reports the median: where strings and types land decides hash-table and method-cache
    collisions, which moves a variant by up to about 2,000 instructions per chunk either way.

    simulate=True adds callgrind's cache and branch-predictor simulation and reports its
    cycle estimate per chunk, CEst = Ir + 10 (L1 misses + mispredicted branches) + 100 LL misses
    (callgrind_annotate's formula): instructions that miss caches cost more than others.
    """
    if _cg.load() is None:
        raise SystemExit("bench: needs a C compiler and <valgrind/callgrind.h> (valgrind-dev)")
    tag = f"{variant.replace(':', '_').replace('+', 'p')}-{transport}-{api}-{sizes[0]}-{sizes[1]}"
    tag += f"-{protocol}"
    if simulate:
        tag += "-sim"
    prefix = str(outdir / f"cg.{tag}.out")
    cmd = [
        python,
        str(HERE / "_workload.py"),
        "cpu-callgrind",
        "--variant",
        variant,
        "--transport",
        transport,
        "--sizes",
        f"{sizes[0]},{sizes[1]}",
        "--api",
        api,
        "--protocol",
        protocol,
    ]
    if urls:
        cmd += ["--urls", json.dumps(urls)]
    vg = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        *(["--cache-sim=yes", "--branch-sim=yes"] if simulate else []),
        f"--callgrind-out-file={prefix}",
    ]
    t0 = time.monotonic()
    per_layout: list[float] = []
    kept: tuple[int, int, dict[str, Any]] | None = None
    for layout in range(layouts):
        pad = {f"STREAMTAP_BENCH_LAYOUT_{i}": "x" * (i % 40 + 1) for i in range(layout * 17)}
        out_file = prefix if layout == 0 else f"{prefix}.L{layout}"
        vg[-1] = f"--callgrind-out-file={out_file}"
        run_json(cmd, python, timeout=1800, prefix=vg, extra_env=pad)
        dumps = _cg.dump_files(out_file)
        short, long = _cg.total_ir(dumps["short"]), _cg.total_ir(dumps["long"])
        per_layout.append((long - short) / (sizes[1] - sizes[0]))
        if layout == 0:
            kept = (short, long, dumps)  # the one kept for attribution and the cache events
        else:
            for d in [*dumps.values(), out_file]:
                Path(d).unlink(missing_ok=True)
    assert kept is not None
    short, long, dumps = kept
    per_chunk = statistics.median(per_layout)
    out = {
        "variant": variant,
        "transport": transport if api == "sync" else f"{transport}-{api}",
        "sizes": list(sizes),
        "ir_short": short,
        "ir_long": long,
        "ir_per_chunk": per_chunk,
        "ir_per_chunk_layouts": per_layout,
        "ir_per_request": short - sizes[0] * per_chunk,
        "seconds": round(time.monotonic() - t0, 1),
    }
    if simulate:
        ev_s, ev_l = _cg.totals(dumps["short"]), _cg.totals(dumps["long"])
        per = {k: (ev_l[k] - ev_s[k]) / (sizes[1] - sizes[0]) for k in ev_s}
        misses = sum(per.get(k, 0.0) for k in ("I1mr", "D1mr", "D1mw", "Bcm", "Bim"))
        last = sum(per.get(k, 0.0) for k in ("ILmr", "DLmr", "DLmw"))
        out["events_per_chunk"] = per
        out["cest_per_chunk"] = per["Ir"] + 10 * misses + 100 * last
    if keep:
        out["dumps"] = {k: str(v) for k, v in dumps.items()}
    else:
        for p in outdir.glob(f"cg.{tag}.out*"):
            p.unlink()
    return out


def attribute(raw: dict[str, Any], inst: dict[str, Any], top: int = 25) -> list[dict[str, Any]]:
    """Per-chunk exclusive instructions by (object, function): instrumented minus raw."""

    def per_chunk(r: dict[str, Any]) -> dict[tuple[str, str], float]:
        s = _cg.self_cost(r["dumps"]["short"])
        lg = _cg.self_cost(r["dumps"]["long"])
        dn = r["sizes"][1] - r["sizes"][0]
        return {k: (lg.get(k, 0) - s.get(k, 0)) / dn for k in set(s) | set(lg)}

    a, b = per_chunk(raw), per_chunk(inst)
    by_obj: dict[str, float] = {}
    rows = []
    for k in set(a) | set(b):
        d = b.get(k, 0.0) - a.get(k, 0.0)
        obj = Path(k[0]).name
        by_obj[obj] = by_obj.get(obj, 0.0) + d
        rows.append({"object": obj, "function": k[1], "extra_ir_per_chunk": round(d, 1)})
    rows.sort(key=lambda r: -abs(r["extra_ir_per_chunk"]))
    objs = sorted(by_obj.items(), key=lambda kv: -abs(kv[1]))
    return [
        {"by_object": [{"object": o, "extra_ir_per_chunk": round(v, 1)} for o, v in objs[:12]]},
        *rows[:top],
    ]


def parallel(jobs: list[Any], workers: int = 2) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(j) for j in jobs]
        return [f.result() for f in futures]


# -- benchmarks ---------------------------------------------------------------------------------


def bench_cpu(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    sizes = (100, 300) if quick else (100, 600)
    # (transport, api, variants): every capability on the in-process transport; the main
    # variants over loopback and for async clients.
    plan = (
        [
            ("mock", "sync", ("raw", "all", "all+fast")),
            ("mock", "async", ("raw", "all", "all+fast")),
        ]
        if quick
        else [
            ("mock", "sync", CPU_VARIANTS),
            ("loopback", "sync", ("raw", "shell", "all", "all+fast")),
            ("mock", "async", ("raw", "shell", "+buffering", "all", "all+fast")),
        ]
    )
    # Instruction counts barely move between runs, so the other views use shorter streams.
    short_sizes = (100, 300) if quick else (100, 600)
    transports = ("mock",) if quick else ("mock", "loopback")
    out: dict[str, Any] = {"sizes": list(sizes), "callgrind": {}, "wall": {}}
    for transport, api, variants_ in plan:
        key = transport if api == "sync" else f"{transport}-{api}"
        log(f"cpu: callgrind, {key}, {len(variants_)} variants")
        sz = sizes if key == "mock" else short_sizes
        ctx = (
            server(python, ["--sizes", f"{sz[0]},{sz[1]}"])
            if transport == "loopback"
            else contextlib.nullcontext({})
        )
        with ctx as urls:
            jobs = [
                (
                    lambda v=v, sz=sz, transport=transport, key=key, api=api, urls=urls: callgrind(
                        python,
                        v,
                        transport,
                        sz,
                        urls or None,
                        tmp,
                        keep=(key == "mock" and v in ("raw", "all")),
                        api=api,
                        layouts=LAYOUTS if transport == "mock" else 1,
                    )
                )
                for v in variants_
            ]
            res = parallel(jobs)
        out["callgrind"][key] = {r["variant"]: r for r in res}
    if not quick:
        log("cpu: callgrind with cache and branch simulation (cycle estimate), raw and all")
        res = parallel(
            [
                lambda v=v: callgrind(python, v, "mock", short_sizes, None, tmp, simulate=True)
                for v in ("raw", "all")
            ]
        )
        out["cycles"] = {r["variant"]: r for r in res}
    variants = plan[0][2]
    # Where streamtap's extra instructions go (C level: interpreter, regex, tiktoken...).
    cgm = out["callgrind"]["mock"]
    out["attribution"] = attribute(cgm["raw"], cgm["all"])
    for r in cgm.values():
        r.pop("dumps", None)
    for p in tmp.glob("cg.*"):
        p.unlink()
    # Second view: interleaved wall-clock runs, medians.
    wsizes = (200, 1200) if quick else (200, 2200)
    reps = 2 if quick else 5
    for transport in transports:
        log(f"cpu: interleaved wall-clock, {transport} transport")
        ctx = (
            server(python, ["--sizes", f"{wsizes[0]},{wsizes[1]}"], cpu=1)
            if transport == "loopback"
            else contextlib.nullcontext({})
        )
        with ctx as urls:
            cmd = [
                python,
                str(HERE / "_workload.py"),
                "cpu-wall",
                "--variants",
                ",".join(variants),
                "--transport",
                transport,
                "--sizes",
                f"{wsizes[0]},{wsizes[1]}",
                "--reps",
                str(reps),
                "--max-seconds",
                "60" if quick else "150",
            ]
            if urls:
                cmd += ["--urls", json.dumps(urls)]
            out["wall"][transport] = run_json(cmd, python, timeout=600)
    # Python-level attribution: cProfile of one instrumented stream.
    log("cpu: cProfile of the all-on variant")
    prof = run_json(
        [
            python,
            str(HERE / "_workload.py"),
            "profile",
            "--variant",
            "all",
            "--n",
            "3000" if quick else "20000",
        ],
        python,
        timeout=600,
    )
    out["profile"] = prof
    return out


def bench_responses(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    """Per-event cost of a Responses API stream (`responses.create(stream=True)`, one message
    of text deltas) raw, with every capability on, and with `fast_decode=True` as well, next to
    the chat path's per-chunk cost measured the same way in the same run: sync and async,
    in-process transport."""
    sizes = (100, 300) if quick else (100, 600)
    variants = ("raw", "all", "all+fast")
    keys = [(p, a) for p in ("chat", "responses") for a in ("sync", "async")]
    jobs = [
        (
            lambda protocol=protocol, api=api, v=v: callgrind(
                python, v, "mock", sizes, None, tmp, api=api, layouts=LAYOUTS, protocol=protocol
            )
        )
        for protocol, api in keys
        for v in variants
    ]
    log(f"responses: callgrind, {len(jobs)} measurements")
    results = parallel(jobs)
    out: dict[str, Any] = {"sizes": list(sizes), "callgrind": {}}
    for n, (protocol, api) in enumerate(keys):
        raw, inst, fast = (r["ir_per_chunk"] for r in results[3 * n : 3 * n + 3])
        out["callgrind"][f"{protocol}-{api}"] = {
            "raw": raw,
            "all": inst,
            "ratio": inst / raw,
            "extra": inst - raw,
            "all+fast": fast,
            "fast_ratio": fast / raw,
        }
    return out


def ensure_peer_venv(base_python: str, openai_version: str) -> str:
    py = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".streamtap-bench-peers"
    want = f"openai=={openai_version}\n" + "\n".join(PEER_PACKAGES)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return str(py)
    log(f"peers: creating {PEER_VENV} (PyPI: {', '.join(PEER_PACKAGES)})")
    subprocess.run([base_python, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=False, capture_output=True)
    done = subprocess.run(
        [*pip, f"openai=={openai_version}", "-e", str(ROOT), *PEER_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"peers venv install failed:\n{done.stderr[-3000:]}")
    stamp.write_text(want)
    return str(py)


def bench_peers(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    ver = versions(python).get("openai", "3.54.0")
    try:
        peer_py = ensure_peer_venv(sys.executable if python == sys.executable else python, ver)
    except Exception as exc:
        log(f"peers: venv failed: {exc}")
        return {"error": str(exc)}
    sizes = (100, 300) if quick else (100, 600)
    variants = ["raw", "all", *(f"peer:{p}" for p in PEERS)]
    log(f"peers: callgrind in {PEER_VENV} ({len(variants)} variants)")
    results: dict[str, Any] = {}

    def job(v: str) -> Any:
        try:
            return callgrind(peer_py, v, "mock", sizes, None, tmp, layouts=LAYOUTS)
        except Exception as exc:  # a peer that fails is reported, not fatal
            return {"variant": v, "error": str(exc)[-1500:]}

    for r in parallel([lambda v=v: job(v) for v in variants]):
        results[r["variant"]] = r
    return {
        "sizes": list(sizes),
        "venv": str(PEER_VENV),
        "versions": versions(peer_py),
        "callgrind": results,
    }


def bench_memory(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    n = 10_000 if quick else 100_000
    out: dict[str, Any] = {"n": n, "runs": {}}
    for v in ("raw", "all", "all+fast"):
        log(f"memory: {v}, {n} chunks (RSS)")
        r = run_json(
            [python, str(HERE / "_workload.py"), "memory", "--variant", v, "--n", str(n)],
            python,
            timeout=900,
        )
        # tracemalloc slows every allocation down: two shorter streams, to see the slope.
        r["tracemalloc"] = {}
        for tn in (n // 10, n // 4):
            log(f"memory: {v}, {tn} chunks (tracemalloc)")
            t = run_json(
                [
                    python,
                    str(HERE / "_workload.py"),
                    "memory",
                    "--variant",
                    v,
                    "--n",
                    str(tn),
                    "--tracemalloc",
                ],
                python,
                timeout=900,
            )
            r["tracemalloc"][str(tn)] = t["tracemalloc_peak_bytes"]
        out["runs"][v] = r
    return out


def bench_scaling(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    sizes = "1000,10000" if quick else "1000,10000,100000"
    log(f"scaling: thread CPU time per chunk at {sizes} chunks, raw vs all, interleaved")
    out = run_json(
        [
            python,
            str(HERE / "_workload.py"),
            "scaling",
            "--variants",
            "raw,all",
            "--sizes",
            sizes,
            "--reps",
            "2" if quick else "3",
            "--max-seconds",
            "60" if quick else "240",
        ],
        python,
        timeout=1200,
    )
    if not quick:
        log("scaling: callgrind slopes 100->1,100 and 1,100->4,100 chunks")
        jobs = []
        for v in ("raw", "all"):
            jobs.append(lambda v=v: callgrind(python, v, "mock", (100, 1100), None, tmp))
            jobs.append(lambda v=v: callgrind(python, v, "mock", (1100, 4100), None, tmp))
        res = parallel(jobs)
        out["callgrind"] = {f"{r['variant']}:{r['sizes'][0]}-{r['sizes'][1]}": r for r in res}
    return out


def bench_concurrency(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    streams = 1000
    n, delay, ramp = (10, 0.5, 3.0) if quick else (30, 0.5, 5.0)
    out: dict[str, Any] = {"streams": streams, "n": n, "delay": delay, "ramp": ramp, "runs": []}
    # Client on CPU 0, server on CPU 1, so neither starves the other of a core.
    client_prefix = ["taskset", "-c", "0"] if shutil.which("taskset") else []

    def args(urls: dict[str, str]) -> list[str]:
        """The workload's options shared by every concurrency run."""
        return [
            "--url",
            urls["conc"],
            "--n",
            str(n),
            "--delay",
            str(delay),
            "--streams",
            str(streams),
            "--ramp",
            str(ramp),
            "--max-seconds",
            "120",
        ]

    order = ["raw", "all"] if quick else ["raw", "all", "all", "raw"]
    with server(python, ["--n", str(n), "--delay", str(delay)], "_aserver.py", cpu=1) as urls:
        for v in order:
            log(f"concurrency: {streams} async streams, {v} (asyncio loopback server)")
            r = run_json(
                [python, str(HERE / "_live.py"), "concurrency", "--variant", v, *args(urls)],
                python,
                timeout=300,
                prefix=client_prefix,
            )
            r["server"] = "asyncio"
            out["runs"].append(r)
    if not quick:
        # Does FakeServer (a thread per connection) cope with 1,000 paced streams?
        spec = json.dumps([{"name": "conc", "n": n, "delay": delay}])
        with server(python, ["--spec", spec], cpu=1) as urls:
            log(f"concurrency: {streams} async streams, raw, against FakeServer")
            r = run_json(
                [python, str(HERE / "_live.py"), "concurrency", "--variant", "raw", *args(urls)],
                python,
                timeout=300,
                prefix=client_prefix,
            )
            r["server"] = "FakeServer"
            out["runs"].append(r)
    return out


def bench_latency(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    n, delay, reps = (40, 0.02, 1) if quick else (200, 0.02, 3)
    slow_n, slow_delay = (4, 0.3) if quick else (8, 0.3)
    spec = json.dumps(
        [
            {"name": "paced", "n": n, "delay": delay},
            {"name": "slow", "n": slow_n, "delay": slow_delay},
        ]
    )
    runs = []
    with server(python, ["--spec", spec], cpu=1) as urls:
        for name, nn, dd in (("paced", n, delay), ("slow", slow_n, slow_delay)):
            for api in ("sync", "async"):
                for v in ("raw", "all"):
                    if name == "slow" and (v == "raw" or (quick and api == "sync")):
                        continue
                    log(f"latency: {name} ({dd}s gaps), {api}, {v}")
                    r = run_json(
                        [
                            python,
                            str(HERE / "_live.py"),
                            "latency",
                            "--variant",
                            v,
                            "--api",
                            api,
                            "--url",
                            urls[name],
                            "--n",
                            str(nn),
                            "--delay",
                            str(dd),
                            "--reps",
                            str(reps if name == "paced" else 1),
                        ],
                        python,
                        timeout=300,
                    )
                    r["scenario"] = name
                    runs.append(r)
    return {"runs": runs}


def bench_resume(python: str, quick: bool, tmp: Path) -> dict[str, Any]:
    trials = 2 if quick else 6
    n, cut, first = 60, 20, 0.2
    spec = json.dumps(
        [
            {
                "name": "resume-sync",
                "n": n,
                "cut_after": cut,
                "first_delay": first,
                "trials": trials,
            },
            {
                "name": "resume-async",
                "n": n,
                "cut_after": cut,
                "first_delay": first,
                "trials": trials,
            },
            {"name": "ttft", "n": n, "first_delay": first},
        ]
    )
    runs = []
    with server(python, ["--spec", spec], cpu=1) as urls:
        for api in ("sync", "async"):
            log(f"resume: {api}, {trials} trials")
            runs.append(
                run_json(
                    [
                        python,
                        str(HERE / "_live.py"),
                        "resume",
                        "--variant",
                        "all",
                        "--api",
                        api,
                        "--url",
                        urls[f"resume-{api}"],
                        "--ttft-url",
                        urls["ttft"],
                        "--n",
                        str(n),
                        "--cut-after",
                        str(cut),
                        "--first-delay",
                        str(first),
                        "--trials",
                        str(trials),
                    ],
                    python,
                    timeout=300,
                )
            )
    return {"runs": runs}


# -- report -------------------------------------------------------------------------------------


def pctf(x: float) -> str:
    return f"{x:+.1f}%"


def stamp(data: dict[str, Any]) -> str:
    m = data.get("meta") or {}
    src = m.get("source") or {}
    return (
        f"_({m.get('mode', '?')} run, {m.get('when', '?')}, {m.get('seconds', '?')} s; "
        f"streamtap at {src.get('git_head', '?')} + working tree, src sha256 "
        f"{src.get('src_sha256', '?')})_\n"
    )


def report(meta: dict[str, Any]) -> str:
    L: list[str] = []
    w = L.append
    w(
        f"Run: {meta['when']}, {meta['mode']}, python {meta['versions'].get('python')}, "
        f"openai {meta['versions'].get('openai')}, pydantic {meta['versions'].get('pydantic')}, "
        f"{os.cpu_count()} cores.\n"
    )
    cpu = load("cpu")
    if cpu:
        w("### Per-chunk CPU cost (callgrind instructions, same SSE bytes through the real SDK)\n")
        w(stamp(cpu))
        transports = list(cpu["callgrind"])
        w(
            "| variant | "
            + " | ".join(f"{t}: Ir/chunk | {t}: vs raw | {t}: Ir/request extra" for t in transports)
            + " |"
        )
        w("|---" * (1 + 3 * len(transports)) + "|")
        for v in CPU_VARIANTS:
            if v not in cpu["callgrind"][transports[0]]:
                continue
            cells = []
            for t in transports:
                r = cpu["callgrind"][t].get(v)
                raw = cpu["callgrind"][t]["raw"]
                if r is None:
                    cells += ["", "", ""]
                    continue
                cells.append(f"{r['ir_per_chunk']:,.0f}")
                cells.append(
                    "baseline"
                    if v == "raw"
                    else pctf((r["ir_per_chunk"] / raw["ir_per_chunk"] - 1) * 100)
                )
                cells.append(
                    "" if v == "raw" else f"{r['ir_per_request'] - raw['ir_per_request']:,.0f}"
                )
            w(f"| {v} | " + " | ".join(cells) + " |")
        w("")
        w(
            "Each capability row is the shell-only baseline plus that one capability; `all` is "
            "the defaults. Ir/request extra: the per-stream intercept minus raw's.\n"
        )
        cyc = cpu.get("cycles")
        if cyc and "raw" in cyc and "all" in cyc:
            a, b = cyc["raw"], cyc["all"]
            w("#### Instructions are not cycles: callgrind's cache and branch simulation\n")
            w("| per chunk (in-process, sync) | raw | all | all vs raw |\n|---|---|---|---|")
            rows = [
                ("instructions (Ir)", "Ir"),
                ("L1 instruction misses", "I1mr"),
                ("L1 data misses (read + write)", None),
                ("mispredicted branches (cond. + indirect)", None),
            ]
            for label, key in rows:
                if key is not None:
                    x, y = a["events_per_chunk"].get(key, 0), b["events_per_chunk"].get(key, 0)
                elif label.startswith("L1 data"):
                    x = sum(a["events_per_chunk"].get(k, 0) for k in ("D1mr", "D1mw"))
                    y = sum(b["events_per_chunk"].get(k, 0) for k in ("D1mr", "D1mw"))
                else:
                    x = sum(a["events_per_chunk"].get(k, 0) for k in ("Bcm", "Bim"))
                    y = sum(b["events_per_chunk"].get(k, 0) for k in ("Bcm", "Bim"))
                w(f"| {label} | {x:,.0f} | {y:,.0f} | {pctf((y / x - 1) * 100) if x else ''} |")
            w(
                f"| **cycle estimate** (Ir + 10 × L1 misses and mispredictions + 100 × LL misses)"
                f" | {a['cest_per_chunk']:,.0f} | {b['cest_per_chunk']:,.0f} | "
                f"**{pctf((b['cest_per_chunk'] / a['cest_per_chunk'] - 1) * 100)}** |"
            )
            w("")
        w("#### Second view: interleaved wall-clock (medians)\n")
        w(
            "| variant | "
            + " | ".join(
                f"{t}: µs/chunk (wall) | {t}: vs raw | {t}: µs/chunk (CPU) | {t}: vs raw"
                for t in cpu["wall"]
            )
            + " |"
        )
        w("|---" * (1 + 4 * len(cpu["wall"])) + "|")
        for v in CPU_VARIANTS:
            cells = []
            ok = False
            for wr in cpu["wall"].values():
                r = wr["variants"].get(v)
                raw = wr["variants"]["raw"]
                if r is None:
                    cells += ["", "", "", ""]
                    continue
                ok = True
                cells += [
                    f"{r['wall_per_chunk_us']:.1f}",
                    "baseline"
                    if v == "raw"
                    else pctf((r["wall_per_chunk_us"] / raw["wall_per_chunk_us"] - 1) * 100),
                    f"{r['cpu_per_chunk_us']:.1f}",
                    "baseline"
                    if v == "raw"
                    else pctf((r["cpu_per_chunk_us"] / raw["cpu_per_chunk_us"] - 1) * 100),
                ]
            if ok:
                w(f"| {v} | " + " | ".join(cells) + " |")
        w("")
        attr = cpu.get("attribution")
        if attr:
            w("#### Where the extra instructions go (all-on minus raw, per chunk, callgrind)\n")
            w("| object | extra Ir/chunk |\n|---|---|")
            for o in attr[0]["by_object"][:8]:
                w(f"| {o['object']} | {o['extra_ir_per_chunk']:,.0f} |")
            w("")
            w("| function (object) | extra Ir/chunk |\n|---|---|")
            for r in attr[1:16]:
                w(f"| `{r['function'][:70]}` ({r['object']}) | {r['extra_ir_per_chunk']:,.0f} |")
            w("")
        prof = cpu.get("profile")
        if prof:
            w(
                f"#### cProfile of the all-on variant ({prof['n']:,} chunks): streamtap's "
                "functions by own time\n"
            )
            w("| function | calls/chunk | own µs/chunk | cumulative µs/chunk |\n|---|---|---|---|")
            rows = [r for r in prof["rows"] if "streamtap" in r["file"]][:15]
            for r in rows:
                short = r["file"].split("streamtap/")[-1]
                w(
                    f"| `{short}:{r['line']} {r['function']}` | {r['calls'] / prof['n']:.2f} | "
                    f"{r['tottime_us_per_chunk']:.2f} | {r['cumtime_us_per_chunk']:.2f} |"
                )
            w("")
    peers = load("peers")
    if peers and "callgrind" in peers:
        cg = peers["callgrind"]
        raw = cg.get("raw", {}).get("ir_per_chunk")
        w("### Peers (callgrind, in-process transport, same bytes, one process each)\n")
        w(stamp(peers))
        w(
            f"Peers venv: python {peers['versions'].get('python')}, openai "
            f"{peers['versions'].get('openai')}.\n"
        )
        w("| instrumentation | Ir/chunk | vs raw SDK | Ir/request extra |\n|---|---|---|---|")
        for v, r in cg.items():
            if "error" in r:
                w(f"| {v} | failed: {r['error'].splitlines()[-1][:120]} | | |")
                continue
            rel = "baseline" if v == "raw" else pctf((r["ir_per_chunk"] / raw - 1) * 100)
            extra = (
                "" if v == "raw" else f"{r['ir_per_request'] - cg['raw']['ir_per_request']:,.0f}"
            )
            name = "streamtap (all on)" if v == "all" else v
            w(f"| {name} | {r['ir_per_chunk']:,.0f} | {rel} | {extra} |")
        w("")
    mem = load("memory")
    if mem:
        w(f"### Memory over one {mem['n']:,}-chunk stream (in-process transport)\n")
        w(stamp(mem))
        tns = list(next(iter(mem["runs"].values())).get("tracemalloc", {}))
        w(
            "| variant | RSS before the stream (MiB) | peak RSS (MiB) | peak - before (MiB) | "
            + " | ".join(f"tracemalloc peak, {int(t):,} chunks (KiB)" for t in tns)
            + " |\n|---|---|---|---|"
            + "---|" * len(tns)
        )
        for v, r in mem["runs"].items():
            tm = r.get("tracemalloc", {})
            w(
                f"| {v} | {r['rss_before_kb'] / 1024:.1f} | {r['peak_rss_kb'] / 1024:.1f} | "
                f"{(r['peak_rss_kb'] - r['rss_before_kb']) / 1024:.1f} | "
                + " | ".join(f"{tm.get(t, 0) / 1024:,.0f}" for t in tns)
                + " |"
            )
        w("")
    sc = load("scaling")
    if sc:
        w("### Scaling: per-chunk cost against stream length\n")
        w(stamp(sc))
        w(
            "| chunks/stream | raw µs/chunk (thread CPU, min of reps) | all µs/chunk | all vs raw |"
            "\n|---|---|---|---|"
        )
        for n in sc["sizes"]:
            a, b = sc["variants"]["raw"][str(n)], sc["variants"]["all"][str(n)]
            w(f"| {n:,} | {a:.1f} | {b:.1f} | {pctf((b / a - 1) * 100)} |")
        w("")
        if "callgrind" in sc:
            w("| callgrind slope | raw Ir/chunk | all Ir/chunk | all vs raw |\n|---|---|---|---|")
            for span in ("100-1100", "1100-4100"):
                a = sc["callgrind"].get(f"raw:{span}")
                b = sc["callgrind"].get(f"all:{span}")
                if a and b:
                    w(
                        f"| {span} chunks | {a['ir_per_chunk']:,.0f} | {b['ir_per_chunk']:,.0f} | "
                        f"{pctf((b['ir_per_chunk'] / a['ir_per_chunk'] - 1) * 100)} |"
                    )
            w("")
    conc = load("concurrency")
    if conc:
        w(
            f"### Concurrency: {conc['streams']:,} async streams over loopback, {conc['n']} chunks "
            f"each at {conc['delay']} s gaps, started over {conc['ramp']} s\n"
        )
        w(stamp(conc))
        w(
            "| server | variant | chunks sent by the server | chunks the callers got | errors |"
            " client CPU µs per server chunk | loop lag p50 / p99 / max (ms) | TTFT p50 / p99"
            " (ms) | elapsed (s) |\n|---|---|---|---|---|---|---|---|---|"
        )
        for r in conc["runs"]:
            lag, tt = r["lag_ms"], r["ttft_ms"]
            sent = r["streams"] * (r["n"] + 3)  # role + n content + finish + usage chunks
            w(
                f"| {r['server']} | {r['variant']} | {sent:,} | {r['chunks']:,} | {r['errors']} | "
                f"{r['cpu_s'] / sent * 1e6:.0f} | {lag.get('p50', 0):.1f} / "
                f"{lag.get('p99', 0):.0f} / {lag.get('max', 0):.0f} | {tt.get('p50', 0):.0f} / "
                f"{tt.get('p99', 0):.0f} | {r['elapsed_s']:.1f} |"
            )
        w("")
    lat = load("latency")
    if lat:
        w("### Latency the caller feels (loopback, paced server)\n")
        w(stamp(lat))
        w(
            "| scenario | api | variant | arrival → caller has the whole delta: p50 / p90 / p99 /"
            " max (ms) | arrival → caller has its first char: p50 / p99 / max (ms) | deltas"
            " held > 2 ms | TTFT warm (ms) | first content chunk arrived (ms) | TTFT cold,"
            " first request (ms) |\n|---|---|---|---|---|---|---|---|---|"
        )
        for r in lat["runs"]:
            d = r["latency_ms"]
            f = r.get("first_char_latency_ms") or {}
            w(
                f"| {r['scenario']} ({r['delay']} s gaps) | {r['api']} | {r['variant']} | "
                f"{d['p50']:.2f} / {d['p90']:.2f} / {d['p99']:.2f} / {d['max']:.2f} | "
                f"{f.get('p50', float('nan')):.2f} / {f.get('p99', float('nan')):.2f} / "
                f"{f.get('max', float('nan')):.2f} | "
                f"{r['held_fraction'] * 100:.0f}% | {r['ttft_ms']:.1f} | "
                f"{r['first_content_arrival_ms']:.1f} | {r['cold_ttft_ms']:.0f} |"
            )
        w("")
    res = load("resume")
    if res:
        w("### Resume: break → first resumed chunk at the caller\n")
        w(stamp(res))
        w(
            "| api | trials ok | strategy | break → first resumed chunk p50 / max (ms) | backoff "
            "wait p50 (ms) | server TTFT, raw SDK, fresh connection (ms) | overhead p50 / max "
            "(ms) |\n|---|---|---|---|---|---|---|"
        )
        for r in res["runs"]:
            g, b, o = r["break_to_first_resumed_ms"], r["backoff_wait_ms"], r["overhead_ms"]
            strat = ",".join(sorted({str(t["strategy"]) for t in r["trials"]}))
            w(
                f"| {r['api']} | {r['ok']}/{len(r['trials'])} | {strat} | "
                f"{g.get('p50', float('nan')):.1f} / {g.get('max', float('nan')):.1f} | "
                f"{b.get('p50', float('nan')):.1f} | {r['server_ttft_raw_ms']:.1f} | "
                f"{o.get('p50', float('nan')):.1f} / {o.get('max', float('nan')):.1f} |"
            )
        w("")
    rs = load("responses")
    if rs and "callgrind" in rs:
        w("### The Responses API: instructions per event, raw and all capabilities on\n")
        w(stamp(rs))
        w(
            "| stream | raw SDK (Ir/event) | streamtap, all on (Ir/event) | extra | ratio "
            "| all on + fast_decode (Ir/event) | ratio |\n|---|---|---|---|---|---|---|"
        )
        for key, r in rs["callgrind"].items():
            fast = r.get("all+fast")  # (absent from results of runs before it was measured)
            tail = f"{fast:,.0f} | {r['fast_ratio']:.3f}" if fast is not None else " | "
            w(
                f"| {key} | {r['raw']:,.0f} | {r['all']:,.0f} | {r['extra']:+,.0f} | "
                f"{r['ratio']:.3f} | {tail} |"
            )
        w("")
    return "\n".join(L)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "benchmarks", nargs="*", help="which to run (default: all): " + ", ".join(BENCHMARKS)
    )
    p.add_argument("--quick", action="store_true", help="smoke run, < 2 min")
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of the venv to measure (has openai + streamtap's deps)",
    )
    p.add_argument("--report-only", action="store_true", help="rebuild the report from results/")
    p.add_argument(
        "--layouts",
        type=int,
        default=None,
        help="heap layouts per callgrind measurement of the in-process and peers runs, median "
        "reported (default 3; 1 with --quick)",
    )
    args = p.parse_args()
    global RESULTS, LAYOUTS
    LAYOUTS = args.layouts if args.layouts is not None else (1 if args.quick else 3)
    if args.quick:  # never overwrite the full run's results (the ones in README.md)
        RESULTS = HERE / "results" / "quick"
    # --quick alone skips the peers (their venv takes minutes to build the first time);
    # `run.py --quick peers` runs a quick peers benchmark.
    chosen = args.benchmarks or [b for b in BENCHMARKS if not (args.quick and b == "peers")]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "versions": versions(args.python),
        "benchmarks": chosen,
        "source": source_state(),
    }
    if args.report_only:
        meta = load("meta") or meta
    else:
        if not shutil.which("valgrind") and {"cpu", "peers"} & set(chosen):
            raise SystemExit("bench: valgrind is needed for cpu/peers (apt-get install valgrind)")
        t0 = time.monotonic()
        fns = {
            "cpu": bench_cpu,
            "peers": bench_peers,
            "memory": bench_memory,
            "scaling": bench_scaling,
            "concurrency": bench_concurrency,
            "latency": bench_latency,
            "resume": bench_resume,
            "responses": bench_responses,
        }
        with tempfile.TemporaryDirectory(prefix="streamtap-bench-") as tmp:
            for name in chosen:
                t = time.monotonic()
                try:
                    data = fns[name](args.python, args.quick, Path(tmp))
                except Exception as exc:
                    log(f"{name}: FAILED: {exc}")
                    data = {"error": str(exc)}
                    save(name, data)
                    continue
                data["meta"] = {**meta, "seconds": round(time.monotonic() - t, 1)}
                save(name, data)
                log(f"{name}: done in {time.monotonic() - t:.0f} s")
        meta["seconds"] = round(time.monotonic() - t0, 1)
        save("meta", meta)
    text = report(meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
