"""What streamtap reads from the client and the HTTP exchange, whatever the protocol: the
static fields of the summary event, the endpoint's identity, status and request id."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .._core.state import StreamState

# `openai.api.type` (OpenTelemetry's OpenAI conventions) per API; both are operation `chat`.
CHAT_COMPLETIONS, RESPONSES = "chat_completions", "responses"


def request_fields(
    client: Any, kwargs: dict[str, Any], stream: bool, api: str = CHAT_COMPLETIONS
) -> dict[str, Any]:
    """The static fields of the summary event for one request (no secrets, no content)."""
    host: str | None = None
    port: int | None = None
    try:
        parts = urlsplit(str(client.base_url))
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except Exception:  # a client without a usable base_url: leave the fields out
        pass
    model = kwargs.get("model")
    return {
        "gen_ai.operation.name": "chat",
        "openai.api.type": api,
        "gen_ai.provider.name": provider_name(client),
        "gen_ai.request.model": model if isinstance(model, str) else None,
        "server.address": host,
        "server.port": port,
        "streamtap.stream": stream,
    }


def endpoint_key(client: Any) -> str:
    """Identifies an endpoint for per-endpoint memory (e.g. 'rejects stream_options')."""
    try:
        return str(client.base_url)
    except Exception:
        return ""


def provider_name(client: Any) -> str:
    for cls in type(client).__mro__:
        if cls.__name__ in ("AzureOpenAI", "AsyncAzureOpenAI"):
            return "azure.ai.openai"
    return "openai"


def response_meta(state: StreamState, response: Any) -> None:
    """Record status and request id from an httpx(2) response."""
    if response is None:
        return
    try:
        state.status_code = response.status_code
        headers = response.headers
        state.request_id = headers.get("x-request-id") or headers.get("apim-request-id")
    except Exception:  # not an httpx response (a user's own transport object)
        pass


def error_meta(state: StreamState, exc: BaseException) -> None:
    """Status and request id of an `openai.APIStatusError`."""
    response = getattr(exc, "response", None)
    if response is not None and state.status_code is None:
        response_meta(state, response)
