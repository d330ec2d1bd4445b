"""The OpenTelemetry and Prometheus summary hooks, checked against the real SDKs.

Each test feeds summary dicts (keys as in docs/events.md) to a hook and reads the metrics back:
OpenTelemetry through the SDK's `InMemoryMetricReader`, Prometheus through a fresh
`CollectorRegistry`.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from streamtap.otel import DURATION_BUCKETS, TOKEN_BUCKETS, OTelMetrics
from streamtap.prometheus import TTFT_BUCKETS, PrometheusMetrics

otel_sdk = pytest.importorskip("opentelemetry.sdk.metrics")
otel_export = pytest.importorskip("opentelemetry.sdk.metrics.export")
prom = pytest.importorskip("prometheus_client")


def summary(**fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "streamtap.schema_version": 1,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "server.address": "api.openai.com",
        "server.port": 443,
        "streamtap.stream": True,
        "streamtap.outcome": "ok",
        "streamtap.retries": 0,
    }
    ev.update(fields)
    return ev


def feed() -> list[dict[str, Any]]:
    """Three good streams, one error with a type, one without, one non-streamed call."""
    return [
        summary(
            **{
                "streamtap.duration": 1.5,
                "gen_ai.response.time_to_first_chunk": 0.3,
                "streamtap.time_to_first_token": 0.35,
                "streamtap.gap.mean": 0.02,
                "streamtap.time_per_output_token": 0.011,
                "streamtap.output_tokens_per_second": 90.0,
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 120,
            }
        ),
        summary(
            **{
                "streamtap.duration": 3.0,
                "gen_ai.response.time_to_first_chunk": 0.5,
                "streamtap.time_to_first_token": 0.6,
                "streamtap.gap.mean": 0.03,
                "streamtap.time_per_output_token": 0.02,
                "streamtap.output_tokens_per_second": 50.0,
                "gen_ai.usage.input_tokens": 200,
                "gen_ai.usage.output_tokens": 150,
                "streamtap.retries": 2,
                "streamtap.resume.strategy": "replay",
            }
        ),
        summary(
            **{
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "streamtap.duration": 0.9,
                "gen_ai.response.time_to_first_chunk": 0.2,
                "streamtap.time_to_first_token": 0.25,
                "streamtap.gap.mean": None,
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 1,
                "streamtap.retries": 1,
            }
        ),
        summary(
            **{
                "streamtap.outcome": "error",
                "error.type": "openai.APIConnectionError",
                "streamtap.duration": 12.0,
                "gen_ai.response.time_to_first_chunk": None,
                "gen_ai.usage.input_tokens": None,
                "gen_ai.usage.output_tokens": 7,
                "streamtap.usage.source": "streamtap",
            }
        ),
        summary(**{"streamtap.outcome": "error", "streamtap.duration": 0.05}),
        summary(
            **{
                "streamtap.stream": False,
                "streamtap.duration": 2.0,
                "gen_ai.response.time_to_first_chunk": 2.0,
                "streamtap.gap.mean": 0.5,
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.usage.output_tokens": 6,
            }
        ),
    ]


# -- OpenTelemetry -------------------------------------------------------------------------------


def otel_collect(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    reader = otel_export.InMemoryMetricReader()
    provider = otel_sdk.MeterProvider(metric_readers=[reader])
    hook = OTelMetrics(meter_provider=provider)
    for s in summaries:
        hook(s)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "streamtap"
            for m in sm.metrics:
                metrics[m.name] = m
    return metrics


def points(metric: Any) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset(p.attributes.items()): p for p in metric.data.data_points}


BASE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "server.address": "api.openai.com",
    "server.port": 443,
}
MINI = {
    **BASE,
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
}


def key(attrs: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset(attrs.items())


def test_otel_names_units_and_buckets() -> None:
    """The four GenAI client metrics, with the semconv units and advised bucket boundaries."""
    metrics = otel_collect(feed())
    assert set(metrics) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    }
    units = {name: m.unit for name, m in metrics.items()}
    assert units == {
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.token.usage": "{token}",
        "gen_ai.client.operation.time_to_first_chunk": "s",
        "gen_ai.client.operation.time_per_output_chunk": "s",
    }
    semconv_seconds = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                       20.48, 40.96, 81.92]  # fmt: skip
    semconv_tokens = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                      16777216, 67108864]  # fmt: skip
    assert list(DURATION_BUCKETS) == semconv_seconds
    assert list(TOKEN_BUCKETS) == semconv_tokens
    for name, m in metrics.items():
        want = semconv_tokens if name == "gen_ai.client.token.usage" else semconv_seconds
        for p in m.data.data_points:
            assert list(p.explicit_bounds) == want, name


def test_otel_duration_counts_sums_and_error_type() -> None:
    """Every call records its duration; failures carry `error.type` (`_OTHER` when unknown)."""
    dur = points(otel_collect(feed())["gen_ai.client.operation.duration"])
    assert set(dur) == {
        key(BASE),
        key(MINI),
        key({**BASE, "error.type": "openai.APIConnectionError"}),
        key({**BASE, "error.type": "_OTHER"}),
    }
    ok = dur[key(BASE)]
    assert ok.count == 3 and ok.sum == pytest.approx(1.5 + 3.0 + 2.0)
    assert (ok.min, ok.max) == (1.5, 3.0)
    # bucket i counts values in (bounds[i-1], bounds[i]]: 1.5 -> (1.28, 2.56], 2.0 too; 3.0 next
    assert ok.bucket_counts[DURATION_BUCKETS.index(2.56)] == 2
    assert ok.bucket_counts[DURATION_BUCKETS.index(5.12)] == 1
    assert sum(ok.bucket_counts) == 3
    err = dur[key({**BASE, "error.type": "openai.APIConnectionError"})]
    assert err.count == 1 and err.sum == 12.0
    assert dur[key({**BASE, "error.type": "_OTHER"})].sum == 0.05
    assert dur[key(MINI)].count == 1


def test_otel_token_usage_by_type() -> None:
    """Input and output tokens are separate points of one histogram (`gen_ai.token.type`)."""
    tok = points(otel_collect(feed())["gen_ai.client.token.usage"])
    inp = tok[key({**BASE, "gen_ai.token.type": "input"})]
    out = tok[key({**BASE, "gen_ai.token.type": "output"})]
    assert (inp.count, inp.sum) == (3, 100 + 200 + 5)  # the error had no input count
    assert (out.count, out.sum) == (4, 120 + 150 + 7 + 6)  # the `_OTHER` error had none
    assert tok[key({**MINI, "gen_ai.token.type": "input"})].sum == 10
    assert tok[key({**MINI, "gen_ai.token.type": "output"})].sum == 1
    assert all("error.type" not in dict(k) for k in tok)


def test_otel_streaming_metrics_only_for_streams() -> None:
    """Time to first chunk and per-chunk time are recorded for streamed calls only."""
    metrics = otel_collect(feed())
    ttfc = points(metrics["gen_ai.client.operation.time_to_first_chunk"])
    assert set(ttfc) == {key(BASE), key(MINI)}
    assert ttfc[key(BASE)].count == 2 and ttfc[key(BASE)].sum == pytest.approx(0.8)
    assert ttfc[key(MINI)].sum == 0.2
    tpoc = points(metrics["gen_ai.client.operation.time_per_output_chunk"])
    assert set(tpoc) == {key(BASE)}  # the mini stream's gap is null, the 2.0 s call not streamed
    assert tpoc[key(BASE)].count == 2 and tpoc[key(BASE)].sum == pytest.approx(0.05)


def test_otel_optional_attributes_left_out() -> None:
    """Unknown attributes are omitted; `server.port` only goes with `server.address`."""
    bare = {
        "gen_ai.request.model": None,
        "gen_ai.response.model": None,
        "server.address": None,
        "server.port": 443,
        "gen_ai.provider.name": "azure.ai.openai",
        "streamtap.duration": 1.0,
    }
    dur = points(otel_collect([summary(**bare)])["gen_ai.client.operation.duration"])
    assert set(dur) == {
        key({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "azure.ai.openai"})
    }


def test_otel_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no provider the global one is used: what the hook records reaches it."""
    from opentelemetry.metrics import _internal as otel_global

    reader = otel_export.InMemoryMetricReader()
    # The global provider, set for this test only (`set_meter_provider` works once a process).
    monkeypatch.setattr(
        otel_global, "_METER_PROVIDER", otel_sdk.MeterProvider(metric_readers=[reader])
    )
    hook = OTelMetrics()
    for s in feed():
        hook(s)
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "gen_ai.client.operation.duration" in names


def test_otel_tolerates_empty_and_odd_summaries() -> None:
    """Missing, null and wrongly typed fields never raise, and are left out: only the
    well-formed values of these summaries are recorded."""
    metrics = otel_collect(
        [
            {},
            summary(
                **{
                    "streamtap.duration": "slow",
                    "gen_ai.usage.output_tokens": True,
                    "gen_ai.usage.input_tokens": 7,
                }
            ),
            summary(
                **{
                    "streamtap.duration": float("nan"),
                    "server.port": "443",
                    "gen_ai.response.time_to_first_chunk": 0.5,
                }
            ),
        ]
    )
    assert set(metrics) == {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
    }
    (tokens,) = metrics["gen_ai.client.token.usage"].data.data_points
    assert (tokens.attributes["gen_ai.token.type"], tokens.sum) == ("input", 7)
    (ttfc,) = metrics["gen_ai.client.operation.time_to_first_chunk"].data.data_points
    assert "server.port" not in ttfc.attributes
    assert ttfc.sum == 0.5


def test_otel_missing_dependency_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry installed the error says what to install."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'streamtap\[otel\]'"):
        OTelMetrics()


# -- Prometheus ----------------------------------------------------------------------------------


def prom_registry(summaries: list[dict[str, Any]], **kw: Any) -> Any:
    registry = prom.CollectorRegistry()
    hook = PrometheusMetrics(registry=registry, **kw)
    for s in summaries:
        hook(s)
    return registry


LABELS = {"model": "gpt-4o", "provider": "openai", "server": "api.openai.com:443"}
MINI_LABELS = {**LABELS, "model": "gpt-4o-mini"}


def test_prometheus_histograms() -> None:
    """TTFT, duration, time per output token and tokens/s: counts, sums and buckets."""
    reg = prom_registry(feed())
    get = reg.get_sample_value
    assert get("streamtap_time_to_first_token_seconds_count", LABELS) == 2
    assert get("streamtap_time_to_first_token_seconds_sum", LABELS) == pytest.approx(0.95)
    assert get("streamtap_time_to_first_token_seconds_bucket", {**LABELS, "le": "0.5"}) == 1
    assert get("streamtap_time_to_first_token_seconds_bucket", {**LABELS, "le": "0.75"}) == 2
    assert get("streamtap_time_to_first_token_seconds_bucket", {**LABELS, "le": "+Inf"}) == 2
    assert get("streamtap_time_to_first_token_seconds_count", MINI_LABELS) == 1
    les = {
        s.labels["le"]
        for m in reg.collect()
        if m.name == "streamtap_time_to_first_token_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    assert les == {str(float(b)) for b in TTFT_BUCKETS} | {"+Inf"}

    ok = {**LABELS, "outcome": "ok"}
    assert get("streamtap_stream_duration_seconds_count", ok) == 3
    assert get("streamtap_stream_duration_seconds_sum", ok) == pytest.approx(6.5)
    err = {**LABELS, "outcome": "error"}
    assert get("streamtap_stream_duration_seconds_count", err) == 2
    assert get("streamtap_stream_duration_seconds_sum", err) == pytest.approx(12.05)

    assert get("streamtap_time_per_output_token_seconds_count", LABELS) == 2
    assert get("streamtap_time_per_output_token_seconds_sum", LABELS) == pytest.approx(0.031)
    assert get("streamtap_output_tokens_per_second_sum", LABELS) == 140.0
    assert get("streamtap_output_tokens_per_second_bucket", {**LABELS, "le": "50.0"}) == 1


def test_prometheus_counters() -> None:
    """Streams by outcome, errors by type, tokens by type, retries and resumed streams."""
    get = prom_registry(feed()).get_sample_value
    assert get("streamtap_streams_total", {**LABELS, "outcome": "ok"}) == 3
    assert get("streamtap_streams_total", {**LABELS, "outcome": "error"}) == 2
    assert get("streamtap_streams_total", {**MINI_LABELS, "outcome": "ok"}) == 1
    assert get("streamtap_errors_total", {**LABELS, "error_type": "openai.APIConnectionError"}) == 1
    assert get("streamtap_errors_total", {**LABELS, "error_type": "unknown"}) == 1
    assert get("streamtap_tokens_total", {**LABELS, "type": "input"}) == 305
    assert get("streamtap_tokens_total", {**LABELS, "type": "output"}) == 283
    assert get("streamtap_tokens_total", {**MINI_LABELS, "type": "output"}) == 1
    assert get("streamtap_retries_total", LABELS) == 2
    assert get("streamtap_retries_total", MINI_LABELS) == 1
    assert get("streamtap_resumed_streams_total", {**LABELS, "strategy": "replay"}) == 1
    assert get("streamtap_resumed_streams_total", {**MINI_LABELS, "strategy": "none"}) == 1


def test_prometheus_namespace_and_custom_buckets() -> None:
    """The namespace prefixes every name; bucket boundaries can be overridden."""
    reg = prom_registry(feed()[:1], namespace="llm", ttft_buckets=(0.1, 1.0))
    get = reg.get_sample_value
    assert get("llm_time_to_first_token_seconds_bucket", {**LABELS, "le": "1.0"}) == 1
    assert get("llm_time_to_first_token_seconds_bucket", {**LABELS, "le": "0.1"}) == 0
    assert get("llm_streams_total", {**LABELS, "outcome": "ok"}) == 1
    assert get("streamtap_streams_total", {**LABELS, "outcome": "ok"}) is None


def test_prometheus_unknown_labels_and_odd_values() -> None:
    """Missing labels become `unknown`; nulls and wrong types are skipped, never raised."""
    reg = prom_registry(
        [
            {},
            {"streamtap.outcome": "ok", "server.address": "localhost", "server.port": None},
            summary(**{"streamtap.time_to_first_token": "x", "gen_ai.usage.input_tokens": True}),
            summary(**{"streamtap.duration": float("inf"), "streamtap.retries": None}),
        ]
    )
    get = reg.get_sample_value
    unknown = {"model": "unknown", "provider": "unknown", "server": "unknown"}
    assert get("streamtap_streams_total", {**unknown, "outcome": "unknown"}) == 1
    local = {"model": "unknown", "provider": "unknown", "server": "localhost"}
    assert get("streamtap_streams_total", {**local, "outcome": "ok"}) == 1
    assert get("streamtap_streams_total", {**LABELS, "outcome": "ok"}) == 2
    assert get("streamtap_time_to_first_token_seconds_count", LABELS) is None
    assert get("streamtap_stream_duration_seconds_count", {**LABELS, "outcome": "ok"}) is None
    assert get("streamtap_tokens_total", {**LABELS, "type": "input"}) is None


def test_prometheus_default_registry_once() -> None:
    """`registry=None` uses the global REGISTRY; a second instance there is refused."""
    hook = PrometheusMetrics(namespace="streamtap_test_default")
    try:
        hook(feed()[0])
        value = prom.REGISTRY.get_sample_value(
            "streamtap_test_default_streams_total", {**LABELS, "outcome": "ok"}
        )
        assert value == 1
        with pytest.raises(ValueError, match="Duplicated"):
            PrometheusMetrics(namespace="streamtap_test_default")
    finally:
        for collector in list(prom.REGISTRY._collector_to_names):
            names = prom.REGISTRY._collector_to_names[collector]
            if any(n.startswith("streamtap_test_default") for n in names):
                prom.REGISTRY.unregister(collector)


def test_prometheus_missing_dependency_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client installed the error says what to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'streamtap\[prometheus\]'"):
        PrometheusMetrics(registry=object())


# -- with the real library -----------------------------------------------------------------------


def test_hooks_through_instrument(server: Any, events: Any) -> None:
    """`instrument(client, hooks=[...])` feeds both hooks; what they record matches the
    summaries, and neither hook raised (the hook runner would have logged an error)."""
    import openai

    import streamtap

    reader = otel_export.InMemoryMetricReader()
    provider = otel_sdk.MeterProvider(metric_readers=[reader])
    registry = prom.CollectorRegistry()
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    streamtap.instrument(
        client, hooks=[OTelMetrics(meter_provider=provider), PrometheusMetrics(registry)]
    )
    for i in range(3):
        for _chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"tell me about rivers {i}"}],
            stream=True,
        ):
            pass
    summaries = events.summaries
    assert len(summaries) == 3
    assert events.errors() == []

    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}  # fmt: skip
    duration = metrics["gen_ai.client.operation.duration"].data.data_points
    assert sum(p.count for p in duration) == 3
    assert sum(p.sum for p in duration) == pytest.approx(
        sum(s["streamtap.duration"] for s in summaries)
    )
    (point,) = duration
    attrs = dict(point.attributes)
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["server.address"] == "127.0.0.1" and isinstance(attrs["server.port"], int)
    assert "error.type" not in attrs
    ttfc = metrics["gen_ai.client.operation.time_to_first_chunk"].data.data_points
    assert sum(p.count for p in ttfc) == 3
    out_tokens = sum(s["gen_ai.usage.output_tokens"] for s in summaries)
    usage = metrics["gen_ai.client.token.usage"].data.data_points
    assert sum(p.sum for p in usage if p.attributes["gen_ai.token.type"] == "output") == out_tokens

    server_label = f"127.0.0.1:{attrs['server.port']}"
    labels = {"model": "gpt-4o-mini", "provider": "openai", "server": server_label}
    get = registry.get_sample_value
    assert get("streamtap_streams_total", {**labels, "outcome": "ok"}) == 3
    assert get("streamtap_tokens_total", {**labels, "type": "output"}) == out_tokens
    assert get("streamtap_time_to_first_token_seconds_count", labels) == 3
