"""The peers: other OpenAI stream instrumentations, each set up with in-memory exporters.

Used only inside the peers venv (`run.py peers` creates it), one peer per process. Nothing is
sent anywhere: OpenTelemetry-based peers get a `TracerProvider` with a `SimpleSpanProcessor`
into an `InMemorySpanExporter` (plus in-memory metric readers and log exporters where the
instrumentation takes them); Logfire runs with `send_to_logfire=False` and the same in-memory
span exporter; LangSmith traces in its ``enabled="local"`` mode (runs are built but kept in
the process) with its endpoint pointed at a closed loopback port in case anything leaks.

`setup(name, client)` instruments and returns the client to use; `collected()` says how much
telemetry was recorded, so the harness can check the peer really did its work.
"""

from __future__ import annotations

import os
from typing import Any

# Never talk to anything but loopback, whatever a peer tries.
os.environ.setdefault("LANGSMITH_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("LANGSMITH_API_KEY", "bench-no-network")
os.environ.setdefault("LOGFIRE_SEND_TO_LOGFIRE", "false")
os.environ.setdefault("LOGFIRE_CONSOLE", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "false")
os.environ.setdefault("TRACELOOP_TELEMETRY", "false")

PEERS = {
    "otel-openai-v2": "OpenTelemetry contrib opentelemetry-instrumentation-openai-v2",
    "otel-openai-v2-content": (
        "the same with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true"
    ),
    "openllmetry": "OpenLLMetry opentelemetry-instrumentation-openai",
    "openinference": "OpenInference openinference-instrumentation-openai",
    "logfire": "Logfire instrument_openai (send_to_logfire=False)",
    "langsmith": "LangSmith wrap_openai (tracing enabled='local')",
}

_state: dict[str, Any] = {}


def _otel() -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    out: dict[str, Any] = {"tracer_provider": tp}
    _state["spans"] = spans
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        out["meter_provider"] = MeterProvider(metric_readers=[reader])
        _state["metrics"] = reader
    except ImportError:
        pass
    try:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor

        logs = InMemoryLogExporter()
        lp = LoggerProvider()
        lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
        out["logger_provider"] = lp
        _state["logs"] = logs
    except ImportError:
        pass
    return out


def setup(name: str, client: Any) -> Any:
    if name == "otel-openai-v2-content":
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
        name = "otel-openai-v2"
    if name == "otel-openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(skip_dep_check=True, **_otel())
        return client
    if name == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as LLMetry

        kw = _otel()
        LLMetry().instrument(skip_dep_check=True, **kw)
        return client
    if name == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        kw = _otel()
        OpenInference().instrument(skip_dep_check=True, tracer_provider=kw["tracer_provider"])
        return client
    if name == "logfire":
        import logfire
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        spans = InMemorySpanExporter()
        _state["spans"] = spans
        if "logfire" not in _state:
            logfire.configure(
                send_to_logfire=False,
                console=False,
                inspect_arguments=False,
                additional_span_processors=[SimpleSpanProcessor(spans)],
            )
            _state["logfire"] = True
        logfire.instrument_openai(client)
        return client
    if name == "langsmith":
        import langsmith
        from langsmith.wrappers import wrap_openai

        langsmith.configure(enabled="local")
        return wrap_openai(client)
    raise SystemExit(f"bench: unknown peer {name!r}; known: {', '.join(PEERS)}")


def collected() -> dict[str, int]:
    """How much telemetry the peer produced (a sanity check that it was active)."""
    out: dict[str, int] = {}
    spans = _state.get("spans")
    if spans is not None:
        out["spans"] = len(spans.get_finished_spans())
    logs = _state.get("logs")
    if logs is not None:
        try:
            out["logs"] = len(logs.get_finished_logs())
        except Exception:
            pass
    return out
