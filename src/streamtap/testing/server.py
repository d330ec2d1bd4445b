"""The fake server: an asyncio event loop in a daemon thread, its connections, its queue."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .answers import DEFAULT_MODEL, TokenCounter, estimate_tokens, generate_answer
from .compose import AnswerMemory, Composer
from .connection import _Closed, _Peer
from .faults import Fault, _openai_error
from .headers import _iter_headers
from .http import _Plan, _read_request, _Request, send_plan
from .plans import chat_plan, json_plan, refusal
from .records import RecordedRequest, RecordedResponse
from .replies import Reply
from .response_plans import ResponseStore, responses_plan, retrieve_plan
from .sse import _dumps

_log = logging.getLogger("streamtap.testing")

_MAX_REQUESTS_PER_CONNECTION = 100_000
_MEMORY = 512  # model-mode answers remembered for prefill continuation
_STORED = 512  # Responses API answers kept for `GET .../responses/{id}`
_RESPONSE_PATH = re.compile(r"/responses/([^/]+)$")

_INVALID_JSON = _openai_error(
    "We could not parse the JSON body of your request. (HINT: This likely "
    "means you aren't using your HTTP library correctly.)"
)
_MODELS = _dumps(
    {
        "object": "list",
        "data": [{"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "fake"}],
    }
)


class FakeServer:
    """An OpenAI-compatible chat-completions and Responses API server on ``127.0.0.1``.

    Use it as a (sync or async) context manager, or call :meth:`start` and :meth:`close`::

        with FakeServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
            server.enqueue(Reply(text="Hello!"), Fault.http_error(429))

    Routes: ``POST <anything>/chat/completions`` (so ``/v1/...`` and Azure's
    ``/openai/deployments/<d>/chat/completions`` both work), ``POST <anything>/responses``,
    ``GET <anything>/responses/{id}``, ``GET <anything>/models``; other paths get a 404 JSON
    error. Every request is recorded in :attr:`requests`, and every answer of the model routes
    in :attr:`responses` (what was sent, byte for byte).

    The Responses API: a request is answered like the chat request it amounts to (its
    ``instructions`` and ``input`` as messages, ``max_output_tokens`` as the token limit), so
    the same replies script both protocols. Streamed (``stream: true``), the answer is
    OpenAI's event sequence, named ``event:`` lines and a ``sequence_number`` on each:
    ``response.created`` (and ``response.queued`` for ``background: true``),
    ``response.in_progress``, then per output item ``response.output_item.added``, its parts
    and deltas (a reply's ``reasoning`` as a reasoning summary, its text as
    ``response.output_text.delta``, its refusal, its ``tool_calls`` as function calls) and
    ``response.output_item.done``, then ``response.completed`` with usage
    (``response.incomplete`` when ``max_output_tokens`` cut it); no ``[DONE]``. Not streamed:
    the ``response`` object (``queued`` for a background request). Faults apply as for chat
    (``no_done`` drops the terminal event; see also :meth:`Fault.response_failed`). Every
    composed answer is stored: ``GET .../responses/{id}`` returns it, and for a background
    response ``GET .../responses/{id}?stream=true&starting_after=N`` streams its events after
    sequence number *N* again, as generated (the faults of the request that created it are
    not stored); such a GET takes the next reply too, whose fault and pacing apply to it.

    All connections are served by one asyncio event loop in one daemon thread, so thousands of
    concurrent streams cost no thread each (the listen backlog is 4096).

    Args:
        default: the reply when the queue is empty (default: ``Reply.model_mode()``).
        nondeterministic: model mode gives a different answer to every request (to force a
            replayed request to diverge). Prefill still continues any answer served before.
        supports_prefill: when False, requests carrying ``continue_final_message``,
            ``add_generation_prompt`` or a message with ``prefix`` get a 400, as from OpenAI.
        supports_stream_options: when False, requests carrying ``stream_options`` get a 400.
        answer_length: default *length* for model mode (see :func:`generate_answer`).
        token_counter: counts tokens for usage and ``max_tokens`` (default
            :func:`estimate_tokens`); a reply's own ``token_counter`` wins.
        keepalive_timeout: idle seconds before the server closes a kept-alive connection.
        write_timeout: seconds without write progress (client not reading) before giving up.
        port: 0 picks a free port.
        responder: called with each valid request of a model route (chat completions,
            Responses API: a :class:`RecordedRequest`)
            before the queue is looked at; the :class:`Reply` (or bare :class:`Fault`) it
            returns answers the request, ``None`` falls through to the queue and
            :attr:`default`. It runs on the server's event loop: keep it quick, never block.
        history: keep only the last *history* :attr:`requests` and :attr:`responses` (None:
            all of them); long-running tests bound memory with it or with
            :meth:`take_responses`.

    Requests refused by validation (bad JSON, unsupported parameters) do not consume a queued
    reply.
    """

    def __init__(
        self,
        *,
        default: Reply | None = None,
        nondeterministic: bool = False,
        supports_prefill: bool = True,
        supports_stream_options: bool = True,
        answer_length: int | None = None,
        token_counter: TokenCounter | None = None,
        keepalive_timeout: float = 15.0,
        write_timeout: float = 30.0,
        port: int = 0,
        responder: Callable[[RecordedRequest], Reply | Fault | None] | None = None,
        history: int | None = None,
    ) -> None:
        self.default: Reply = default if default is not None else Reply.model_mode()
        """The reply used when the queue is empty."""
        self.nondeterministic = nondeterministic
        self.supports_prefill = supports_prefill
        self.supports_stream_options = supports_stream_options
        self.answer_length = answer_length
        self.token_counter: TokenCounter = token_counter or estimate_tokens
        self.keepalive_timeout = keepalive_timeout
        self.write_timeout = write_timeout
        self.responder = responder
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised while serving (a test can assert it stays empty)."""
        self._port = port
        self._lock = threading.Lock()
        self._stopping = False
        self._queue: deque[Reply] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=history)
        self._responses: deque[RecordedResponse] = deque(maxlen=history)
        self._peers: dict[int, _Peer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._request_count = 0
        self._connection_count = 0
        self._memory = AnswerMemory(self._lock, _MEMORY)
        self._stored = ResponseStore(_STORED)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeServer:
        """Bind ``127.0.0.1:<port>``, start serving in a daemon thread, return self."""
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._port))
            listener.listen(4096)  # thousands of clients may connect at the same moment
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run_loop, args=(listener,), name=f"FakeServer:{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def _run_loop(self, listener: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._listener = loop.run_until_complete(
                loop.create_server(lambda: _Peer(self), sock=listener)
            )
            if self._stopping:  # closed before the loop got here
                self._listener.close()
            loop.run_forever()
        except Exception as exc:  # pragma: no cover - a bug in this module
            _log.exception("FakeServer's event loop failed")
            self.errors.append(exc)
        finally:
            listener.close()
            loop.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving: close the listening socket and every connection, stop the thread.

        Never blocks for more than about *timeout* seconds. Safe to call twice.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            done.result(max(0.0, deadline - time.monotonic()))
        except Exception:  # pragma: no cover - timed out or the loop is gone
            pass
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # pragma: no cover - already closed
            pass
        thread.join(max(0.0, deadline - time.monotonic()))
        self._loop = self._thread = self._listener = None

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            peers = list(self._peers.values())
            tasks = list(self._tasks)
        for peer in peers:  # wakes every waiting handler; each ends on _Closed
            peer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            task.cancel()
        await asyncio.sleep(0)  # let connection_lost callbacks run

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> FakeServer:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port (valid after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (for Azure clients: ``azure_endpoint=server.url``)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, for ``openai.OpenAI(base_url=...)``."""
        return self.url + "/v1"

    # scripting -------------------------------------------------------------------------
    def enqueue(self, *replies: Reply | Fault) -> None:
        """Queue replies, consumed first in, first out, one per request of a model route.

        A bare :class:`Fault` means ``Reply.model_mode(fault=fault)``.
        """
        with self._lock:
            for reply in replies:
                self._queue.append(reply if isinstance(reply, Reply) else Reply(fault=reply))

    @property
    def queued(self) -> int:
        """How many queued replies have not been used yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def responses(self) -> list[RecordedResponse]:
        """A snapshot of every model route's answer so far (one per request that got one,
        in the order they started); each one's progress is final once its stream ended."""
        with self._lock:
            return list(self._responses)

    def take_responses(self) -> list[RecordedResponse]:
        """Like :attr:`responses`, but forgets them (for long runs: memory stays bounded)."""
        with self._lock:
            out = list(self._responses)
            self._responses.clear()
            return out

    def clear(self) -> None:
        """Forget recorded requests and responses, queued replies and errors."""
        with self._lock:
            self._requests.clear()
            self._responses.clear()
            self._queue.clear()
            self.errors.clear()

    def open_connections(self) -> int:
        """How many client connections are open right now."""
        with self._lock:
            return len(self._peers)

    def wait_for_open_connections(self, count: int = 0, timeout: float = 2.0) -> bool:
        """Wait until :meth:`open_connections` equals *count*; False if *timeout* ran out.

        The server notices a client hang-up at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.open_connections() == count:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def answer_for(
        self,
        messages: Sequence[Mapping[str, Any]],
        seed: int | None = None,
        model: str = DEFAULT_MODEL,
        *,
        choice: int = 0,
    ) -> str:
        """The full model-mode answer this server gives to such a request (deterministic
        servers only): :func:`generate_answer` with :attr:`answer_length`."""
        return generate_answer(messages, seed, model, self.answer_length, choice=choice)

    # connections -----------------------------------------------------------------------
    def _connection_opened(self, peer: _Peer) -> int:
        with self._lock:
            self._connection_count += 1
            conn_id = self._connection_count
            self._peers[conn_id] = peer
        if self._stopping:
            peer.close()
            return conn_id
        task = peer.loop.create_task(self._serve_connection(peer, conn_id))
        with self._lock:
            self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return conn_id

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.discard(task)

    def _connection_closed(self, peer: _Peer) -> None:
        with self._lock:
            self._peers.pop(peer.conn_id, None)

    async def _serve_connection(self, peer: _Peer, conn_id: int) -> None:
        try:
            for _ in range(_MAX_REQUESTS_PER_CONNECTION):
                request = await _read_request(peer, self.keepalive_timeout)
                if request is None or not await self._respond(peer, request, conn_id):
                    break
        except (_Closed, asyncio.CancelledError):
            pass
        except Exception as exc:  # pragma: no cover - a bug in this module
            _log.exception("FakeServer failed while serving connection %d", conn_id)
            with self._lock:
                self.errors.append(exc)
        finally:
            peer.close()

    # request handling ------------------------------------------------------------------
    async def _respond(self, peer: _Peer, request: _Request, conn_id: int) -> bool:
        path, _, query = request.target.partition("?")
        try:
            parsed: Any = json.loads(request.body) if request.body else None
            json_ok = True
        except ValueError:
            parsed, json_ok = None, False
        recorded, number = self._record_request(request, path, query, parsed, conn_id)
        keep_alive = request.version == "HTTP/1.1" and (
            "close" not in request.headers.get("connection", "").lower()
        )
        body = parsed if json_ok and isinstance(parsed, dict) else None
        route = self._route(request, path, query, body, number, recorded.request_id)
        if callable(route):  # an answer the queued replies, faults and pacing apply to
            return await self._serve(peer, request, recorded, keep_alive, route)
        route.keep_alive = route.keep_alive and keep_alive
        return await send_plan(peer, route, None, Reply())

    def _route(
        self,
        request: _Request,
        path: str,
        query: str,
        body: dict[str, Any] | None,
        number: int,
        request_id: str,
    ) -> Callable[[Reply], _Plan] | _Plan:
        """What answers a request: a plan made from the next reply, or a fixed plan (errors,
        the model list). `body` is None when the body is not a JSON object."""
        base = path.rstrip("/")
        retrieved = _RESPONSE_PATH.search(base) if request.method == "GET" else None
        if retrieved is not None:
            response_id = retrieved.group(1)
            return lambda reply: retrieve_plan(reply, response_id, query, request_id, self._stored)
        if request.method == "POST" and base.endswith("/responses"):
            if body is None:
                return json_plan(400, _INVALID_JSON, request_id)
            responses_body = body
            return lambda reply: responses_plan(
                reply, responses_body, number, request_id, self._composer(), self._stored
            )
        if request.method == "POST" and base.endswith("/chat/completions"):
            if body is None:
                return json_plan(400, _INVALID_JSON, request_id)
            error = refusal(
                body,
                supports_prefill=self.supports_prefill,
                supports_stream_options=self.supports_stream_options,
            )
            if error is not None:
                return json_plan(400, error, request_id)
            chat = body
            return lambda reply: chat_plan(reply, chat, number, request_id, self._composer())
        if request.method == "GET" and base.endswith("/models"):
            return json_plan(200, _MODELS, request_id)
        error = _openai_error(f"Invalid URL ({request.method} {path})", code="unknown_url")
        return json_plan(404, error, request_id)

    def _record_request(
        self, request: _Request, path: str, query: str, parsed: Any, conn_id: int
    ) -> tuple[RecordedRequest, int]:
        """Number the request and record it; returns the record and the number."""
        with self._lock:
            self._request_count += 1
            number = self._request_count
            recorded = RecordedRequest(
                method=request.method,
                path=path,
                query=query,
                headers=dict(request.headers),
                body=request.body,
                json=parsed,
                received_at=time.perf_counter(),
                connection_id=conn_id,
                request_id=f"req_{number}",
            )
            self._requests.append(recorded)
        return recorded, number

    async def _serve(
        self,
        peer: _Peer,
        request: _Request,
        recorded: RecordedRequest,
        keep_alive: bool,
        make_plan: Callable[[Reply], _Plan],
    ) -> bool:
        """Answer a model route's request with the next reply: *make_plan* turns it into what
        is sent; the reply's transport faults and pacing apply to it."""
        reply = self._next_reply(recorded)
        fault = reply.fault
        if fault is not None and fault.kind == "disconnect":
            self._record(recorded, reply, _Plan(0, [], [], "close", False)).cut = True
            await peer.abort(fault.mode)
            return False
        plan = make_plan(reply)
        if (request.version != "HTTP/1.1" or reply.close_delimited) and plan.framing == "chunked":
            plan.framing = "close"
        closes = any(
            k.lower() == "connection" and "close" in v.lower()
            for k, v in _iter_headers(reply.headers)
        )
        plan.keep_alive = plan.keep_alive and keep_alive and not closes
        return await send_plan(peer, plan, fault, reply, self._record(recorded, reply, plan))

    def _composer(self) -> Composer:
        return Composer(self.token_counter, self.answer_length, self.nondeterministic, self._memory)

    def _next_reply(self, recorded: RecordedRequest) -> Reply:
        scripted = self.responder(recorded) if self.responder is not None else None
        if scripted is not None:
            return scripted if isinstance(scripted, Reply) else Reply(fault=scripted)
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: RecordedRequest, reply: Reply, plan: _Plan) -> RecordedResponse:
        sse = any(
            k == "content-type" and v.startswith("text/event-stream") for k, v in plan.headers
        )
        record = RecordedResponse(request.request_id, plan.status, sse, tuple(plan.events), reply)
        with self._lock:
            self._responses.append(record)
        return record
