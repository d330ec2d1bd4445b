"""The chat adapter's side of a resume: how a resumed attempt's chunks continue the answer.

A `Splice` reads and rewrites the chunks of the new attempt (chat protocol facts: choices,
deltas, finish reasons, usage, logprobs) so that the caller sees one answer; `_recover` decides
when to resume and with which strategy, and hands the new stream's chunks through it.
"""

from __future__ import annotations

from typing import Any

from .._core import resume as _resume
from .._core.state import CONTENT, REASONING, REFUSAL, StreamState, key_index, lane_key
from .._exceptions import Diverged
from .adapter import checked_splice
from .chat import usage_dict
from .pydantic_compat import extra_store, extras


def stamp(state: StreamState, last_chunk: Any) -> tuple[Any, Any, Any]:
    """The first attempt's (id, created, model), which every resumed chunk carries."""
    created = last_chunk.__dict__.get("created") if last_chunk is not None else None
    return (state.response_id, created, state.response_model)


class Splice:
    """Makes the chunks of a resumed attempt continue the answer the caller has.

    Text is the visible part; every other field must reach the caller exactly once too. A
    replay sends the whole answer again: the text the caller has is skipped after checking it
    matches; a choice whose `finish_reason` the caller has keeps it out of the new attempt
    (and any text after it is a divergence); usage already reported is taken out (it still
    counts as the attempt's billed usage in the summary); the logprobs entries the caller has
    (those of the delivered text, and of the text the word buffer held and dropped at the
    break) are cut from the front; a role chunk is delivered only for a choice the caller has
    not seen yet.
    """

    __slots__ = (
        "finished",
        "fresh",
        "held",
        "logprob_bytes",
        "opaque",
        "overlap_done",
        "pos",
        "prefix",
        "seen",
        "stamp",
        "state",
        "strategy",
        "usage_seen",
    )

    def __init__(
        self,
        strategy: str,
        stamp: tuple[Any, Any, Any],
        prefix: dict[int, str],
        state: StreamState,
        *,
        finished: set[int] | None = None,
        seen: set[int] | None = None,
        usage_seen: bool = False,
        logprob_bytes: dict[int, int] | None = None,
        opaque: dict[int, list[Any]] | None = None,
    ) -> None:
        self.state = state  # chunks dropped here still count as received
        self.strategy = strategy
        self.stamp = stamp  # first attempt's (id, created, model)
        self.prefix = prefix  # replay: delivered text per lane key; continuation: {0: text}
        self.pos = dict.fromkeys(prefix, 0)
        self.held: list[Any] = []
        self.overlap_done = strategy != "continuation"
        self.finished = finished or set()  # choices whose finish_reason the caller has
        self.seen = seen if seen is not None else set()  # choices the caller has chunks of
        self.usage_seen = usage_seen  # an earlier attempt reported usage
        self.logprob_bytes = logprob_bytes or {}  # lane key -> bytes of logprobs to drop
        # Replay: per choice, the content parts the caller has (`machine.opaque`), in order.
        self.opaque = {i: list(reversed(p)) for i, p in (opaque or {}).items() if p}
        # No chunk reached the caller yet: the new attempt is the answer, every chunk of it
        # (Azure's first `choices: []` chunk with its filter results included).
        self.fresh = not state.chunk_count and not prefix

    def __call__(self, chunk: Any) -> list[Any]:
        d = chunk.__dict__
        if self.fresh or d.get("object") == "error":
            # An in-band error object is no part of the answer: nothing in it to splice, and it
            # must reach the driver as sent, whose resume decision it is (it has no choices, so
            # the payload check below would drop it and the attempt would seem to end cleanly).
            return [chunk]
        rid, created, model = self.stamp
        if rid:
            d["id"] = rid
        if created:
            d["created"] = created
        if model:
            d["model"] = model
        if self.strategy == "replay" and (self.prefix or self.opaque):
            self._skip(chunk)
        if self.finished or self.usage_seen or self.logprob_bytes:
            self._once(chunk)
        if not self.overlap_done:
            out = self._trim(chunk)
        else:
            out = [chunk] if self._has_payload(chunk) else []
        if not out:
            self.state.chunk_count += 1
            self.state.timing.chunk(self.state.clock())
        return out

    def checked(self, chunk: Any) -> list[Any]:
        """`self(chunk)`, a failure of streamtap's own taken for a divergence (`checked_splice`)."""
        return checked_splice(self, chunk, self.state)

    def _skip(self, chunk: Any) -> None:
        """Replay: drop the text the caller has, after checking it is the same text."""
        for choice in chunk.__dict__.get("choices") or ():
            cd = choice.__dict__
            index = cd.get("index") or 0
            delta = cd.get("delta")
            if delta is not None:
                dd = delta.__dict__
                extra = extra_store(delta)
                for channel, field, store in (
                    (CONTENT, "content", dd),
                    (REFUSAL, "refusal", dd),
                    (REASONING, "reasoning_content", extra),
                    (REASONING, "reasoning", extra),
                ):
                    text = store.get(field)
                    key = lane_key(index, channel)
                    if not text or key not in self.prefix or type(text) is not str:
                        continue
                    want = self.prefix[key]
                    pos = self.pos[key]
                    n = min(len(text), len(want) - pos)
                    if text[:n] != want[pos : pos + n]:
                        raise Diverged(
                            f"replay diverged from the delivered text at character {pos}"
                        )
                    self.pos[key] = pos + n
                    if self.pos[key] == len(want):
                        del self.prefix[key]
                    store[field] = text[n:]
                content = dd.get("content")
                if content and type(content) is not str:
                    self._skip_parts(dd, index, content)
                if dd.get("tool_calls") and self._pending(index):
                    raise Diverged("replay produced a tool call before the delivered text ended")
            if cd.get("finish_reason") and self._pending(index):
                raise Diverged("replay finished before reaching the delivered text")

    def _skip_parts(self, dd: dict[str, Any], index: int, parts: Any) -> None:
        """Replay: drop content parts the caller has (the same, in the same order); new parts
        may come only once everything delivered has been seen again."""
        want = self.opaque.get(index)
        if not want:
            if self._pending(index):
                raise Diverged("replay produced content parts before the delivered text ended")
            return
        if parts != want.pop():
            raise Diverged("replay diverged from the delivered content parts")
        if not want:
            del self.opaque[index]
        dd["content"] = None

    def _pending(self, index: int) -> bool:
        return index in self.opaque or any(key_index(k) == index for k in self.prefix)

    def _once(self, chunk: Any) -> None:
        """Take out what the caller already has apart from text: finish, usage, logprobs."""
        d = chunk.__dict__
        if self.usage_seen:
            usage = d.get("usage")
            # The usage chunk, or usage riding on chunks whose text is being skipped (servers
            # that report running usage on every chunk): the caller had it. It still counts
            # as this attempt's usage in the summary (the attempt is billed).
            if usage is not None and (self.prefix or not d.get("choices")):
                self.state.usage = usage_dict(usage)
                d["usage"] = None
        for choice in d.get("choices") or ():
            cd = choice.__dict__
            index = cd.get("index") or 0
            if index in self.finished:
                if _text_or_tool(cd.get("delta")):
                    raise Diverged("replay went on after the end of a choice the caller has")
                cd["finish_reason"] = None
            if self.logprob_bytes and cd.get("logprobs") is not None:
                self._drop_logprobs(cd, index)

    def _drop_logprobs(self, cd: dict[str, Any], index: int) -> None:
        lp = cd["logprobs"]
        budget = self.logprob_bytes
        for channel, field in ((CONTENT, "content"), (REFUSAL, "refusal")):
            key = lane_key(index, channel)
            left = budget.get(key)
            if left:
                left = _drop_entries(lp, field, left)
                if left:
                    budget[key] = left
                else:
                    del budget[key]
        ld = lp.__dict__
        if not ld.get("content") and not ld.get("refusal"):
            cd["logprobs"] = None

    def _has_payload(self, chunk: Any) -> bool:
        """Whether a chunk still says anything the caller has not already been told."""
        d = chunk.__dict__
        if d.get("usage") is not None:
            return True
        found = False
        for c in d.get("choices") or ():
            cd = c.__dict__
            index = cd.get("index") or 0
            if _choice_payload(cd, index not in self.seen):
                self.seen.add(index)
                found = True
        return found

    def _trim(self, chunk: Any) -> list[Any]:
        """Continuation: hold the first characters until any repeated overlap can be cut."""
        self.held.append(chunk)
        want = self.prefix.get(0, "")
        texts = [_content(c) for c in self.held]
        joined = "".join(texts)
        decisive = len(joined) >= min(len(want), 400) or any(
            _finished(c) or _tool_calls(c) for c in self.held
        )
        if not decisive:
            return []
        self.overlap_done = True
        cut = _resume.trim_overlap(want, joined)
        out = []
        for c in self.held:
            if cut:
                cut -= _cut_content(c, cut)
            if self._has_payload(c):
                out.append(c)
        self.held = []
        return out


def _drop_entries(lp: Any, field: str, nbytes: int) -> int:
    """Drop the leading logprobs entries that cover `nbytes` bytes of text; the bytes left."""
    entries = lp.__dict__.get(field)
    if not entries:
        return nbytes
    k = 0
    for entry in entries:
        size = _entry_bytes(entry)
        if size > nbytes:
            if nbytes:  # straddles the boundary: the tokens differ from before, stop dropping
                nbytes = 0
            break
        nbytes -= size
        k += 1
    if k:
        lp.__dict__[field] = entries[k:]
    return nbytes


def _entry_bytes(entry: Any) -> int:
    ed = entry.__dict__
    raw = ed.get("bytes")
    if isinstance(raw, list):
        return len(raw)
    token = ed.get("token")
    return len(token.encode("utf-8", "surrogatepass")) if isinstance(token, str) else 0


def _text_or_tool(delta: Any) -> bool:
    if delta is None:
        return False
    dd = delta.__dict__
    if dd.get("content") or dd.get("refusal") or dd.get("tool_calls") or dd.get("function_call"):
        return True
    extra = extras(delta)
    return extra is not None and any(isinstance(v, str) and v for v in extra.values())


def _choice_payload(cd: dict[str, Any], role_counts: bool) -> bool:
    if cd.get("finish_reason"):
        return True
    lp = cd.get("logprobs")
    if lp is not None and (lp.__dict__.get("content") or lp.__dict__.get("refusal")):
        return True
    delta = cd.get("delta")
    if delta is None:
        return False
    if _text_or_tool(delta):
        return True
    return role_counts and bool(delta.__dict__.get("role"))


def _content(chunk: Any) -> str:
    for choice in chunk.__dict__.get("choices") or ():
        delta = choice.__dict__.get("delta")
        if delta is not None and (choice.__dict__.get("index") or 0) == 0:
            text = delta.__dict__.get("content")
            return text if isinstance(text, str) else ""
    return ""


def _cut_content(chunk: Any, count: int) -> int:
    """Cut up to `count` leading characters of choice 0's content (and their logprobs)."""
    for choice in chunk.__dict__.get("choices") or ():
        cd = choice.__dict__
        delta = cd.get("delta")
        if delta is None or (cd.get("index") or 0) != 0:
            continue
        text = delta.__dict__.get("content")
        if not isinstance(text, str) or not text:
            return 0
        take = min(count, len(text))
        delta.__dict__["content"] = text[take:]
        lp = cd.get("logprobs")
        if lp is not None:
            _drop_entries(lp, "content", len(text[:take].encode("utf-8", "surrogatepass")))
        return take
    return 0


def _finished(chunk: Any) -> bool:
    return any(c.__dict__.get("finish_reason") for c in chunk.__dict__.get("choices") or ())


def _tool_calls(chunk: Any) -> bool:
    for c in chunk.__dict__.get("choices") or ():
        delta = c.__dict__.get("delta")
        if delta is not None and delta.__dict__.get("tool_calls"):
            return True
    return False
