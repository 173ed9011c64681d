"""A breaking proxy: forwards to a conforming server and breaks exactly one clause on the way.

`BreakingProxy` is an aiohttp server on 127.0.0.1 and a free port, run in a daemon thread with its
own event loop, that forwards every request to an upstream base URL. The `Breaker` in use may
rewrite the request (or answer it itself), then rewrite the reply: status, headers, JSON body, or
the list of SSE `data:` payloads of a stream. Every breaker declares the clause IDs the suite must
flag when it runs against the proxy. The catalogue of breakers is `BREAKERS`.

Streams are read from the upstream in full (the tiny model is fast), rewritten as a list of event
payloads and sent again as `data: <payload>` + blank line, unless the breaker set raw bytes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Self

from aiohttp import ClientSession, ClientTimeout, web

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-encoding",
                         "date", "server", "keep-alive"})
MAX_BODY = 128 * 1024 * 1024  # the suite sends a 64 MiB body to check 413
STALL_HOLD_S = 300.0  # a stalled stream holds the connection this long, unless the client leaves first


@dataclass
class Call:
    """One request as the proxy received it (after the breaker's request rewrite: as forwarded)."""

    method: str
    path: str  # path and query, e.g. "/v1/chat/completions"
    headers: dict[str, str]  # lower-case names
    body: bytes
    state: dict[str, Any]  # the breaker's scratch space across calls; emptied by BreakingProxy.use

    def json(self) -> Any | None:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_chat(self) -> bool:
        """A POST to one of the chat routes."""
        return self.method == "POST" and self.path.split("?")[0].endswith("/chat/completions")

    @property
    def streaming(self) -> bool:
        """The request asks for a stream."""
        body = self.json()
        return isinstance(body, dict) and body.get("stream") is True

    def with_json(self, body: Any) -> Call:
        """A copy of this call with another JSON body."""
        return replace(self, body=json.dumps(body).encode())


@dataclass
class Reply:
    """One answer: status, headers (lower-case names), body; `events` holds the SSE payloads of a stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: list[str] | None = None  # data payloads in order, "[DONE]" included; None: send `body` as is
    stall_after: int | None = None  # send this many events, then no byte more (the connection stays open)

    def json(self) -> Any | None:
        """The parsed body, or None when it is not JSON (or a stream)."""
        if self.events is not None:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def with_json(self, body: Any) -> Reply:
        """A copy of this reply with another JSON body."""
        return replace(self, body=json.dumps(body).encode(), events=None)

    @property
    def ok_json(self) -> bool:
        """A 200 JSON object answer (not a stream)."""
        return self.status == 200 and self.events is None and isinstance(self.json(), dict)


RequestHook = Callable[[Call], "Call | Reply"]
ReplyHook = Callable[[Call, Reply], Reply]


@dataclass(frozen=True)
class Breaker:
    """One deliberate violation: how it rewrites traffic, and the clauses the suite must flag for it."""

    name: str
    clauses: tuple[str, ...]  # each must get verdict FAIL (run with --strict, so SHOULD clauses too)
    description: str
    request: RequestHook | None = None
    reply: ReplyHook | None = None
    suite_args: tuple[str, ...] = ()  # extra `chatconform check` flags this case needs (e.g. a short --timeout)
    upstream: str = "open"  # the mock it fronts: "open", "keyed" (requires KEYED_TOKEN), "loading" (fresh, 503 at first)
    model: str = "tiny"  # "tiny": observable on the random-weight model; "real": needs SmolLM2 (slow tests)


IDENTITY = Breaker("identity", (), "forwards everything unchanged")


class BreakingProxy:
    """An HTTP proxy on 127.0.0.1:<free port> in a daemon thread; `use(breaker)` picks the violation."""

    def __init__(self, upstream: str, breaker: Breaker = IDENTITY) -> None:
        self.upstream = upstream.rstrip("/")
        self.breaker = breaker
        self.state: dict[str, Any] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._session: ClientSession | None = None  # the upstream client, made inside the proxy's loop

    @property
    def url(self) -> str:
        """The proxy's base URL (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def use(self, breaker: Breaker) -> BreakingProxy:
        """Apply this breaker from the next request on, with fresh state."""
        self.breaker = breaker
        self.state = {}
        return self

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="breaking-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("breaking proxy did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"breaking proxy failed to start: {self._error}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up on a stalled stream ends its handler
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        async with ClientSession(timeout=ClientTimeout(total=600), auto_decompress=True) as session:
            self._session = session
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        breaker = self.breaker
        call = Call(request.method, request.path_qs, {k.lower(): v for k, v in request.headers.items()},
                    await request.read(), self.state)
        outcome = breaker.request(call) if breaker.request else call
        if isinstance(outcome, Reply):
            return await self._send(request, outcome)
        reply = await self._forward(outcome)
        if breaker.reply is not None:
            reply = breaker.reply(outcome, reply)
        return await self._send(request, reply)

    async def _forward(self, call: Call) -> Reply:
        assert self._session is not None, "the proxy forwards only while running"
        headers = {k: v for k, v in call.headers.items() if k not in HOP_HEADERS}
        async with self._session.request(call.method, self.upstream + call.path, headers=headers,
                                         data=call.body or None, allow_redirects=False) as resp:
            body = await resp.read()
            out_headers = {k.lower(): v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
        reply = Reply(resp.status, out_headers, body)
        if out_headers.get("content-type", "").startswith("text/event-stream"):
            reply.events = parse_sse(body.decode("utf-8"))
            reply.body = b""
        return reply

    async def _send(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.events is None:
            return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        events = reply.events if reply.stall_after is None else reply.events[:reply.stall_after]
        for payload in events:
            await response.write(f"data: {payload}\n\n".encode())
        if reply.stall_after is not None:
            await asyncio.sleep(STALL_HOLD_S)  # no byte more: the client must give up by its own timeout
        await response.write_eof()
        return response


def parse_sse(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order (one line per event, as the mock sends them)."""
    return [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]


def sse_text(events: list[str]) -> bytes:
    """Events framed as the spec wants them: `data: <payload>` and a blank line each."""
    return "".join(f"data: {payload}\n\n" for payload in events).encode()
