"""A fake OpenAI-compatible server for tests: ``/v1/chat/completions`` and ``/v1/responses``.

:class:`FakeServer` listens on ``127.0.0.1`` only, on an asyncio event loop in a background
thread (thousands of concurrent connections), and speaks real HTTP/1.1 over real sockets: status
line, headers, keep-alive, chunked transfer encoding for streams and real SSE framing. Because it
runs in its own thread it serves sync and async clients alike::

    import openai
    from streamtap.testing import FakeServer, Fault, Reply

    with FakeServer() as server:
        server.enqueue(Reply(text="Hello, world!", fault=Fault.cut(at_byte=120)))
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        stream = client.chat.completions.create(model="m", messages=[...], stream=True)

Each request to ``.../chat/completions`` (or the Responses API's ``.../responses``, see
:class:`FakeServer`) takes the next queued :class:`Reply` (FIFO); when the queue is empty it
gets :attr:`FakeServer.default`, which is the deterministic *model mode*: the answer is a pure
function of the request (messages, ``seed``, ``model``), so the same request gives the same
text (see :func:`generate_answer`), ``max_tokens`` is honoured, and the prefill continuation
styles of vLLM / llama.cpp (``continue_final_message``) and DeepSeek / Mistral
(``"prefix": true``) answer with the exact rest of the original answer.

A :class:`Fault` attached to a reply breaks the response in a precise way: cut the connection
at an exact byte of the body (FIN or RST), stall, send an in-band error event, end without
``[DONE]``, answer an HTTP error, or send garbage.

What was sent is recorded per request (:attr:`FakeServer.responses`, :class:`RecordedResponse`):
the whole planned body and how many bytes of it went out, so a test can check a client's text
against exactly what the server sent. A ``responder`` callable can pick each request's reply
(e.g. by its messages) instead of the FIFO queue, for many concurrent clients.

Only the standard library is used. The package's modules, from the socket inward:
``server`` (:class:`FakeServer`: the event loop thread, connections, queue and records),
``connection`` (one client connection: reads, paced writes, aborts), ``http`` (request parsing,
response framing with pacing and transport faults), ``plans`` (what each route answers, request
validation), ``response_plans`` (the Responses API's routes, stored responses),
``compose`` (an answer's content from a reply and the request), ``bodies`` (its chunk or
completion JSON), ``responses`` (its Responses events or object), ``sse`` (event framing,
faults that rewrite events), ``answers`` (model-mode text, tokenizer, chunking), ``faults``,
``replies``, ``records`` and ``headers``.
"""

from __future__ import annotations

from .answers import DEFAULT_MODEL, estimate_tokens, generate_answer, split_tokens
from .answers import TokenCounter as TokenCounter
from .faults import Fault
from .faults import FaultKind as FaultKind
from .headers import HeaderValue as HeaderValue
from .records import RecordedRequest, RecordedResponse
from .replies import Reply, load_cassettes
from .server import FakeServer

# Also importable from here (``X as X`` above), as when this package was one module: the
# type aliases TokenCounter, FaultKind and HeaderValue.
__all__ = [
    "DEFAULT_MODEL",
    "FakeServer",
    "Fault",
    "RecordedRequest",
    "RecordedResponse",
    "Reply",
    "estimate_tokens",
    "generate_answer",
    "load_cassettes",
    "split_tokens",
]
