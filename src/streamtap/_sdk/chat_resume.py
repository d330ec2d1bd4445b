"""The chat adapter's side of a resume: the follow-up request, and the splice of its chunks.

`recover.Resumer` is protocol-neutral: it describes the failure, asks `_core.resume` whether,
when and with which strategy to go on, and carries out the plan. What a chat-completions
request looks like is this module's: how to ask the server to continue a partial assistant
message (prefill, in the vLLM or the DeepSeek / Mistral style), to write on after it
(continuation) or to answer again (replay), and which `chat_splice.Splice` makes the new
attempt's chunks continue the answer. A second protocol brings its own `ResumeAdapter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .._core import machine
from .._core import resume as _resume
from .._core.resume import Send
from .._core.state import REASONING, StreamState, key_channel
from .chat_splice import Splice, stamp

CONTINUE_PROMPT = (
    "Your previous message was cut off. Continue it exactly where it stopped: do not repeat "
    "anything, do not add an introduction, start with the very next characters."
)

# Endpoints known to continue a partial assistant message ("prefix": true).
_PREFIX_HOSTS = ("api.deepseek.com", "api.mistral.ai")
_STRATEGIES = frozenset({"auto", "prefill", "replay", "continuation"})


class ChatResume:
    """Resuming one chat-completions request `create(*args, **kwargs)`: built per stream by
    `recover.Resumer` (cheaply: nothing is copied before a resume)."""

    __slots__ = ("args", "create", "kwargs", "prefill_style", "stamp")

    strategies = _STRATEGIES

    def __init__(
        self, client: Any, create: Any, args: Any, kwargs: dict[str, Any], prefill: str | None
    ) -> None:
        self.create = create
        self.args = args
        self.kwargs = kwargs
        self.prefill_style = prefill_style(client, prefill)
        """How this endpoint continues a partial assistant message; None: it cannot."""
        self.stamp: tuple[Any, Any, Any] | None = None

    def interrupted(self, state: StreamState, last_chunk: Any, cause: str) -> None:
        """The stream broke: remember what every resumed chunk must carry (the first attempt's
        id, created and model), once."""
        if self.stamp is None:
            self.stamp = stamp(state, last_chunk)

    def exact_resume(self, cause: str) -> str | None:
        """None: a chat completion lives only in its stream (the strategies of `_core.resume`)."""
        return None

    def refused(self, strategy: str, status: int) -> bool:
        """False: a refused prefill is `recover`'s to remember (per endpoint)."""
        return False

    def answer_complete(self, state: StreamState) -> bool:
        """Every choice has its finish_reason: only usage or `[DONE]` was still to come."""
        n = self.kwargs.get("n")
        count = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        return machine.complete(state, expected=count)

    def request(self, state: StreamState, strategy: str, kwargs: dict[str, Any]) -> Send:
        """The follow-up request for *strategy*, from the original request's *kwargs* (a copy,
        without the SDK's raw-response markers): the same request (replay), or one that carries
        the delivered text as the last assistant message (prefill, continuation), with the
        token limits lowered by the tokens already produced."""
        if strategy == "replay":
            return Send(self.create, self.args, kwargs)
        delivered = _lane_text(state, 0)
        messages = list(kwargs.get("messages") or [])
        for key in ("max_tokens", "max_completion_tokens"):
            reduced = _resume.reduced_limit(kwargs.get(key), state.tokens_total)
            if reduced is not None:
                kwargs[key] = reduced
        if strategy == "prefill":
            if self.prefill_style == "prefix":
                messages.append({"role": "assistant", "content": delivered, "prefix": True})
            else:
                messages.append({"role": "assistant", "content": delivered})
                extra = dict(kwargs.get("extra_body") or {})
                extra.update(continue_final_message=True, add_generation_prompt=False)
                kwargs["extra_body"] = extra
        else:  # continuation
            messages.append({"role": "assistant", "content": delivered})
            messages.append({"role": "user", "content": CONTINUE_PROMPT})
        kwargs["messages"] = messages
        return Send(self.create, self.args, kwargs)

    def splice(self, state: StreamState, strategy: str) -> Splice:
        """The splice for the next attempt (before the held text is dropped: it needs it)."""
        assert self.stamp is not None
        state.settle(keep_latest=False)
        delivered = {
            k: ln.captured.getvalue()
            for k, ln in state.lanes.items()
            if ln.chars and ln.captured is not None
        }
        held = {
            k: ln.seg.held
            for k, ln in state.lanes.items()
            if ln.seg is not None and ln.seg.held_chars
        }
        if strategy == "replay":
            prefix = dict(delivered)
        elif strategy == "continuation":
            prefix = {0: delivered.get(0, "")}
        else:
            prefix = {}
        return Splice(
            strategy,
            self.stamp,
            prefix,
            state,
            finished=set(state.finish_reasons),
            seen=set(state.choice_indexes),
            usage_seen=state.usage_prior is not None,
            logprob_bytes=_logprob_bytes(strategy, delivered, held),
            opaque=state.opaque if strategy == "replay" else None,
        )


def _logprob_bytes(
    strategy: str, delivered: Mapping[int, str], held: Mapping[int, str]
) -> dict[int, int]:
    """Per lane, the bytes of text whose logprobs the caller already has: those of the text
    delivered and of the text held now (they came with the chunks that carried it). A replay
    sends both again, a prefill the held part; a continuation writes anew (nothing to drop)."""
    out: dict[int, int] = {}
    if strategy == "continuation":
        return out
    for key in set(delivered) | set(held):
        if key_channel(key) == REASONING:
            continue
        text = held.get(key, "")
        if strategy == "replay":
            text = delivered.get(key, "") + text
        if text:
            out[key] = len(text.encode("utf-8", "surrogatepass"))
    return out


def _lane_text(state: StreamState, key: int) -> str:
    state.settle(keep_latest=False)
    lane = state.lanes.get(key)
    return lane.captured.getvalue() if lane is not None and lane.captured is not None else ""


def prefill_style(client: Any, configured: str | None) -> str | None:
    """How this endpoint continues a partial assistant message, if it can."""
    if configured is not None:
        return configured
    try:
        host = urlsplit(str(client.base_url)).hostname or ""
    except Exception:
        host = ""
    if any(host == h or host.endswith("." + h) for h in _PREFIX_HOSTS):
        return "prefix"
    return None
