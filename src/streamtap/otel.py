"""OpenTelemetry GenAI client metrics, recorded from streamtap's summary events.

    from streamtap.otel import OTelMetrics
    streamtap.instrument(client, hooks=[OTelMetrics()])  # the global MeterProvider

Names, units, attributes and bucket boundaries follow the OpenTelemetry GenAI semantic
conventions, "Generative AI client metrics" (`docs/gen-ai/gen-ai-metrics.md`, status
Development), as published in open-telemetry/semantic-conventions-genai in 2026 (the version
that references semantic-conventions v1.42.0; the two streaming metrics were added by
semantic-conventions PR #3377) and matching the constants of the Python package
opentelemetry-semantic-conventions 0.66b2:

| metric | unit | recorded | attributes besides the common ones |
| --- | --- | --- | --- |
| `gen_ai.client.operation.duration` | `s` | every call | `error.type` when it failed |
| `gen_ai.client.token.usage` | `{token}` | once per known count | `gen_ai.token.type` |
| `gen_ai.client.operation.time_to_first_chunk` | `s` | streamed calls only | |
| `gen_ai.client.operation.time_per_output_chunk` | `s` | streamed calls only | |

Common attributes: `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.response.model`, `server.address`, `server.port` (each when known). `error.type` goes on
the duration only, as the conventions list it only there.

The conventions define `time_per_output_chunk` per chunk. A summary holds the gaps' aggregates,
not every gap, so this hook records one value per stream: the stream's mean gap between
chunks (`streamtap.gap.mean`). Its distribution is over streams, not over chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "OTelMetrics"]

# ExplicitBucketBoundaries advised by the conventions.
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

_INSTALL_HINT = (
    "streamtap.otel.OTelMetrics needs the OpenTelemetry API and SDK: pip install 'streamtap[otel]'"
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("streamtap")
    except Exception:  # not installed (running from a source tree)
        return ""


class OTelMetrics:
    """A summary hook that records the GenAI client metrics on an OpenTelemetry meter.

    `meter_provider=None` uses the global provider (`opentelemetry.metrics.set_meter_provider`).
    Instruments are created once here; each call only builds the attributes and records.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        meter = metrics.get_meter("streamtap", _version(), meter_provider=meter_provider)

        def histogram(
            name: str, unit: str, description: str, buckets: Sequence[float]
        ) -> Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=buckets,
            )

        self._duration = histogram(
            "gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS
        )
        self._tokens = histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used.",
            TOKEN_BUCKETS,
        )
        self._ttfc = histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk, measured from when the client issues the "
            "generation request to when the first chunk is received in the response stream.",
            DURATION_BUCKETS,
        )
        self._tpoc = histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time per output chunk: streamtap records each stream's mean time between "
            "consecutive chunks.",
            DURATION_BUCKETS,
        )

    def __call__(self, summary: Mapping[str, Any]) -> None:
        get = summary.get
        attrs: dict[str, str | int] = {
            "gen_ai.operation.name": get("gen_ai.operation.name") or "chat",
            "gen_ai.provider.name": get("gen_ai.provider.name") or "openai",
        }
        for key in ("gen_ai.request.model", "gen_ai.response.model", "server.address"):
            value = get(key)
            if isinstance(value, str) and value:
                attrs[key] = value
        port = get("server.port")
        if isinstance(port, int) and not isinstance(port, bool) and "server.address" in attrs:
            attrs["server.port"] = port

        duration = _number(get("streamtap.duration"))
        if duration is not None:
            error = get("error.type")
            if isinstance(error, str) and error:
                self._duration.record(duration, {**attrs, "error.type": error})
            elif get("streamtap.outcome") == "error":
                self._duration.record(duration, {**attrs, "error.type": "_OTHER"})
            else:
                self._duration.record(duration, attrs)

        for key, token_type in (
            ("gen_ai.usage.input_tokens", "input"),
            ("gen_ai.usage.output_tokens", "output"),
        ):
            count = _number(get(key))
            if count is not None:
                self._tokens.record(count, {**attrs, "gen_ai.token.type": token_type})

        if get("streamtap.stream") is False:  # the streaming metrics are for streamed calls only
            return
        ttfc = _number(get("gen_ai.response.time_to_first_chunk"))
        if ttfc is not None:
            self._ttfc.record(ttfc, attrs)
        gap = _number(get("streamtap.gap.mean"))
        if gap is not None:
            self._tpoc.record(gap, attrs)
