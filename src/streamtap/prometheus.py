"""Prometheus metrics, recorded from streamtap's summary events.

    from streamtap.prometheus import PrometheusMetrics
    streamtap.instrument(client, hooks=[PrometheusMetrics()])  # prometheus_client.REGISTRY

With the default namespace `streamtap`:

| metric | type | labels |
| --- | --- | --- |
| `streamtap_time_to_first_token_seconds` | histogram | model, provider, server |
| `streamtap_stream_duration_seconds` | histogram | model, provider, server, outcome |
| `streamtap_time_per_output_token_seconds` | histogram | model, provider, server |
| `streamtap_output_tokens_per_second` | histogram | model, provider, server |
| `streamtap_tokens_total` | counter | model, provider, server, type (`input`, `output`) |
| `streamtap_streams_total` | counter | model, provider, server, outcome |
| `streamtap_errors_total` | counter | model, provider, server, error_type |
| `streamtap_retries_total` | counter | model, provider, server |
| `streamtap_resumed_streams_total` | counter | model, provider, server, strategy |

`model` is the requested model (`gen_ai.request.model`), `server` is `host:port`. Labels whose
value is unknown are `unknown`. Create one instance per registry: registering the same names
twice in one registry is an error in prometheus_client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DURATION_BUCKETS",
    "TOKENS_PER_SECOND_BUCKETS",
    "TPOT_BUCKETS",
    "TTFT_BUCKETS",
    "PrometheusMetrics",
]

TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TPOT_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5)
TOKENS_PER_SECOND_BUCKETS = (5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0)

_INSTALL_HINT = (
    "streamtap.prometheus.PrometheusMetrics needs prometheus_client: "
    "pip install 'streamtap[prometheus]'"
)
_UNKNOWN = "unknown"
_LABELS = ("model", "provider", "server")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _label(value: Any) -> str:
    return value if isinstance(value, str) and value else _UNKNOWN


class PrometheusMetrics:
    """A summary hook that updates Prometheus histograms and counters.

    `registry=None` registers in `prometheus_client.REGISTRY`. Buckets can be overridden with
    the keyword arguments; the defaults suit hosted LLM APIs (TTFT 50 ms to 1 min).
    """

    def __init__(
        self,
        registry: Any = None,
        namespace: str = "streamtap",
        *,
        ttft_buckets: Sequence[float] = TTFT_BUCKETS,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        tpot_buckets: Sequence[float] = TPOT_BUCKETS,
        tokens_per_second_buckets: Sequence[float] = TOKENS_PER_SECOND_BUCKETS,
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        reg = prom.REGISTRY if registry is None else registry
        common: dict[str, Any] = {"namespace": namespace, "registry": reg}
        self._add_histograms(
            prom, common, ttft_buckets, duration_buckets, tpot_buckets, tokens_per_second_buckets
        )
        self._add_counters(prom, common)

    def _add_histograms(
        self,
        prom: Any,
        common: dict[str, Any],
        ttft_buckets: Sequence[float],
        duration_buckets: Sequence[float],
        tpot_buckets: Sequence[float],
        tokens_per_second_buckets: Sequence[float],
    ) -> None:
        """The timing histograms: one observation per stream."""
        self._ttft = prom.Histogram(
            "time_to_first_token_seconds",
            "Request start to the first chunk with text, reasoning, refusal or a tool call.",
            _LABELS,
            buckets=ttft_buckets,
            **common,
        )
        self._duration = prom.Histogram(
            "stream_duration_seconds",
            "Request start to the end of the stream, however it ended.",
            (*_LABELS, "outcome"),
            buckets=duration_buckets,
            **common,
        )
        self._tpot = prom.Histogram(
            "time_per_output_token_seconds",
            "Decode duration divided by (output tokens - 1), one value per stream.",
            _LABELS,
            buckets=tpot_buckets,
            **common,
        )
        self._tps = prom.Histogram(
            "output_tokens_per_second",
            "Output tokens divided by decode duration, one value per stream.",
            _LABELS,
            buckets=tokens_per_second_buckets,
            **common,
        )

    def _add_counters(self, prom: Any, common: dict[str, Any]) -> None:
        """The counters: tokens, streams, errors, retries and resumed streams."""
        self._tokens = prom.Counter(
            "tokens", "Tokens used, by type (input, output).", (*_LABELS, "type"), **common
        )
        self._streams = prom.Counter(
            "streams", "Streams finished, by outcome.", (*_LABELS, "outcome"), **common
        )
        self._errors = prom.Counter(
            "errors", "Streams that ended in an error, by error type.", (*_LABELS, "error_type"),
            **common,
        )  # fmt: skip
        self._retries = prom.Counter(
            "retries", "Retried or resumed attempts (streamtap.retries).", _LABELS, **common
        )
        self._resumed = prom.Counter(
            "resumed_streams",
            "Streams with at least one retry, by the strategy of the last resume.",
            (*_LABELS, "strategy"),
            **common,
        )

    def __call__(self, summary: Mapping[str, Any]) -> None:
        get = summary.get
        address = get("server.address")
        port = get("server.port")
        if isinstance(address, str) and address:
            server = f"{address}:{port}" if isinstance(port, int) else address
        else:
            server = _UNKNOWN
        labels = (_label(get("gen_ai.request.model")), _label(get("gen_ai.provider.name")), server)
        outcome = _label(get("streamtap.outcome"))

        self._streams.labels(*labels, outcome).inc()
        if outcome == "error":
            self._errors.labels(*labels, _label(get("error.type"))).inc()
        duration = _number(get("streamtap.duration"))
        if duration is not None:
            self._duration.labels(*labels, outcome).observe(duration)
        for key, hist in (
            ("streamtap.time_to_first_token", self._ttft),
            ("streamtap.time_per_output_token", self._tpot),
            ("streamtap.output_tokens_per_second", self._tps),
        ):
            value = _number(get(key))
            if value is not None:
                hist.labels(*labels).observe(value)
        for key, token_type in (
            ("gen_ai.usage.input_tokens", "input"),
            ("gen_ai.usage.output_tokens", "output"),
        ):
            count = _number(get(key))
            if count is not None and count > 0:
                self._tokens.labels(*labels, token_type).inc(count)
        retries = _number(get("streamtap.retries"))
        if retries is not None and retries > 0:
            self._retries.labels(*labels).inc(retries)
            strategy = get("streamtap.resume.strategy")
            if not (isinstance(strategy, str) and strategy):
                strategy = "none"  # plain retries before the first chunk name no strategy
            self._resumed.labels(*labels, strategy).inc()
