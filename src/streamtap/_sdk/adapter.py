"""What a protocol adapter offers the drivers (`_drivers`) and what they may ask of it.

An adapter is a module (`_chat` for chat completion chunks; the Responses API's events next):
the only code that reads or rewrites the SDK's stream items. It parses an item into the
events of the pure stream machine (`_machine`) and renders what the machine releases back into
items the caller gets. The drivers never look inside an item.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._core.state import Lane, StreamState

# What `process_chunk` tells the driver to do with the item it was given.
DELIVER, SKIP, ERROR = 1, 0, 2


class Adapter(Protocol):
    def process_chunk(self, state: StreamState, chunk: Any, now: float, hide_usage: bool) -> int:
        """Feed one item to the machine and rewrite its text in place: DELIVER, SKIP (an item
        the caller asked not to see) or ERROR (an in-band error: see `error_object`)."""
        ...

    def flush_chunks(
        self,
        state: StreamState,
        last_chunk: Any,
        now: float | None = None,
        lanes: list[Lane] | None = None,
    ) -> list[Any]:
        """Items carrying held text: all of it (`now` None) or what is due by `now`."""
        ...

    def salvage(self, state: StreamState, chunk: Any) -> list[Any]:
        """After an internal error on `chunk`: what the caller gets, in the order of the text."""
        ...

    def error_object(self, chunk: Any) -> Exception:
        """The exception that stands for an in-band error item."""
        ...
