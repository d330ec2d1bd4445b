"""Response headers: values given as a string or a list, merged over the server's defaults."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Union

HeaderValue = Union[str, Sequence[str]]
"""A header value; a sequence sends the header once per item."""


# Hop-by-hop and framing headers: never replayed from a recording, always set by the server.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _iter_headers(headers: Mapping[str, HeaderValue]) -> Iterator[tuple[str, str]]:
    for name, value in headers.items():
        if isinstance(value, str):
            yield name, value
        else:
            for item in value:
                yield name, str(item)


def _merge_headers(
    defaults: list[tuple[str, str]], extra: Mapping[str, HeaderValue]
) -> list[tuple[str, str]]:
    """*defaults* overridden by *extra* (case-insensitive); framing headers are dropped."""
    given = list(_iter_headers(extra))
    overridden = {name.lower() for name, _ in given}
    merged = [(k, v) for k, v in defaults if k.lower() not in overridden]
    merged.extend(
        (name, value)
        for name, value in given
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    )
    return merged
