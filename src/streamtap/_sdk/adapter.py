"""What a protocol adapter offers the drivers (`_drivers`) and what they may ask of it.

An adapter is a module (`chat` for chat completion chunks) or an object made per stream
(`responses.ResponsesAdapter` for the Responses API's events, which remembers each lane's last
delta event): the only code that reads or rewrites the SDK's stream items. It parses an item
into the events of the pure stream machine (`_machine`) and renders what the machine releases
back into items the caller gets. The drivers never look inside an item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .._core.resume import Send
from .._core.state import StreamState
from .._errors import internal_error
from .._exceptions import Diverged

# What `process_chunk` tells the driver to do with the item it was given. RELEASE: deliver the
# held text first (`flush_chunks(state, item)`: items of its own), then the item, which must not
# carry it (a Responses `.done` or `response.completed` event is never changed).
DELIVER, SKIP, ERROR, RELEASE = 1, 0, 2, 3


class Adapter(Protocol):
    def process_chunk(self, state: StreamState, chunk: Any, now: float, hide_usage: bool) -> int:
        """Feed one item to the machine and rewrite its text in place: DELIVER, SKIP (an item
        the caller asked not to see), ERROR (an in-band error: see `error_object`) or RELEASE
        (held text goes out first, in items of its own)."""
        ...

    def flush_chunks(self, state: StreamState, item: Any, now: float | None = None) -> list[Any]:
        """Items carrying held text: all of it (`now` None) or what is due by `now`; `item` is
        the last item read, which they are modelled on (None: none yet)."""
        ...

    def salvage(self, state: StreamState, chunk: Any) -> list[Any]:
        """After an internal error on `chunk`: what the caller gets, in the order of the text."""
        ...

    def error_object(self, chunk: Any) -> Exception:
        """The exception that stands for an in-band error item."""
        ...


class Splicer(Protocol):
    def checked(self, chunk: Any) -> list[Any]:
        """A resumed attempt's item as what the caller gets (none, the item, several): what
        the caller already has taken out; raises `Diverged` when it cannot continue the answer."""
        ...


class ResumeAdapter(Protocol):
    """A protocol's side of a resume, one per stream (`chat_resume.ChatResume` for chat
    completions): `recover.Resumer` decides whether, when and with which strategy, this knows
    what the follow-up request is and how its items continue the answer."""

    prefill_style: str | None
    """How the endpoint continues a partial answer (`prefill`), None when it cannot."""

    strategies: frozenset[str]
    """The `resume_strategy` settings it carries out; any other one counts as `auto`."""

    def interrupted(self, state: StreamState, last_chunk: Any, cause: str) -> None:
        """An attempt broke (called at every failure, before anything else is decided)."""
        ...

    def exact_resume(self, cause: str) -> str | None:
        """A resume the protocol makes exactly and without regenerating, whatever was delivered
        (a background response's re-attach): its strategy name; None lets `_core.resume`
        choose."""
        ...

    def refused(self, strategy: str, status: int) -> bool:
        """The follow-up request of `strategy` got HTTP `status`: True when the protocol falls
        back to another strategy from now on (a resume goes on), False to treat it as usual."""
        ...

    def answer_complete(self, state: StreamState) -> bool:
        """The answer is whole: only what a new request could not add was still to come."""
        ...

    def request(self, state: StreamState, strategy: str, kwargs: dict[str, Any]) -> Send:
        """The follow-up request for `strategy`, from a copy of the original request's
        `kwargs` (without the SDK's raw-response markers)."""
        ...

    def splice(self, state: StreamState, strategy: str) -> Splicer:
        """What the next attempt's items pass through (made before the held text is dropped)."""
        ...


# -- what the adapters share ------------------------------------------------------------------


def flat_usage(
    usage: Mapping[str, Any], totals: tuple[tuple[str, str], ...], cached_in: str, reasoning_in: str
) -> dict[str, int]:
    """A protocol's usage in the flat names the summary reads (chat completions' own): `totals`
    maps the protocol's counts to them; cached and reasoning tokens come from its two details
    objects (`cached_in`, `reasoning_in`)."""
    out: dict[str, int] = {}
    for src, dst in totals:
        v = usage.get(src)
        if isinstance(v, int):
            out[dst] = v
    for details, key in ((cached_in, "cached_tokens"), (reasoning_in, "reasoning_tokens")):
        d = usage.get(details)
        if isinstance(d, dict) and isinstance(d.get(key), int):
            out[key] = d[key]
    return out


def checked_splice(splice: Callable[[Any], list[Any]], item: Any, state: StreamState) -> list[Any]:
    """`splice(item)`; a failure of streamtap's own is reported (raised in strict mode) and then
    treated as a divergence: text that could not be checked is never delivered."""
    try:
        return splice(item)
    except Diverged:
        raise
    except Exception as err:
        internal_error("splicing a resumed attempt", err, state.internal_errors)
        raise Diverged("the resumed attempt could not be checked") from err
