"""POST /v1/chat/completions: plan, generate through the scheduler, answer as JSON or as SSE.

Before the 200 is sent every error is a JSON error response (the generator's admission of the
request included, so a stream with a bad parameter never starts). After a stream began, an error
is one last `data: <envelope>` event and the stream ends without [DONE]. Whatever ends the
handler (finish, error, client gone: aiohttp cancels the handler, or a write fails) cancels the
ticket, so the generator drops the request at its next step. An answer is rendered from events,
live from a ticket or replayed from the cache (`Replay`), the same way; a live answer that ran to
its end hands its generation to `Answer.keep` (the cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from mock_server.backend import Backend
from mock_server.cache import Generation
from mock_server.engine_errors import api_error
from mock_server.errors import ApiError, GenerationFailed, InternalError, envelope
from mock_server.faults import NO_FAULTS, Fault, Faults, InjectedFault, break_body
from mock_server.keepalive import PacedWriter
from mock_server.latency import NO_LATENCY, LatencyProfile, LatencySchedule, log_delay
from mock_server.plan import Plan
from mock_server.render import (
    ChoiceResult,
    ChunkRenderer,
    Identity,
    completion_body,
    usage_of,
)
from mock_server.request import ChatRequest
from mock_server.scheduler import Admitted, ChoiceEvent, Ticket, TicketItem
from mock_server.sse_framing import PLAIN_FRAMING, Framing
from reference_model.generation import Finished, TokenEvent

log = logging.getLogger("mock_server.chat")
DONE = "[DONE]"  # the data of the stream's last event


def fingerprint(backend: Backend, version: str) -> str:
    """system_fingerprint: server build, weight format and model hash."""
    return f"chatconform-{version}-{backend.info.weights}-{backend.info.digest[:12]}"


class EventSource(Protocol):
    """A stream of Admitted/ChoiceEvent items: a live `Ticket` or a cached `Replay`."""

    closed: bool

    async def next(self, timeout: float | None = None) -> TicketItem:
        """The next item (an ApiError is raised); TimeoutError when none comes within `timeout` seconds."""
        ...

    def cancel(self) -> None:
        """Stop producing items (idempotent)."""
        ...


class Replay:
    """A cached generation played back as a ticket would: each choice's tokens, then its finish."""

    def __init__(self, generation: Generation) -> None:
        events: list[ChoiceEvent] = []
        for index, choice in enumerate(generation.choices):
            events += [ChoiceEvent(index, token) for token in choice.tokens]
            events.append(ChoiceEvent(index, choice.finished))
        self._items = deque(events)
        self.closed = False

    async def next(self, timeout: float | None = None) -> TicketItem:
        """The next event (always at hand)."""
        return self._items.popleft()

    def cancel(self) -> None:
        """Nothing runs behind a replay."""
        self.closed = True


@dataclass(frozen=True)
class Answer:
    """What one answer is rendered from: its events, how many choices, the prompt's size."""

    source: EventSource
    choices: int
    prompt_tokens: int
    keep: Callable[[Generation], None] | None = None  # given the generation once the answer is complete

    @classmethod
    def live(cls, ticket: Ticket, plan: Plan, keep: Callable[[Generation], None] | None = None) -> Answer:
        """An answer generated now."""
        return cls(ticket, len(plan.requests), plan.prompt_tokens, keep)

    @classmethod
    def replay(cls, generation: Generation) -> Answer:
        """An answer from the cache."""
        return cls(Replay(generation), len(generation.choices), generation.prompt_tokens)

    def completed(self, results: list[ChoiceResult]) -> None:
        """Hand the finished generation to `keep`."""
        if self.keep is not None:
            self.keep(Generation.of(self.prompt_tokens, results))


async def collect(source: EventSource, n: int) -> list[ChoiceResult]:
    """Run a source to the end; the finished choices in index order."""
    results = [ChoiceResult(i) for i in range(n)]
    left = n
    while left:
        item = await source.next()
        if not isinstance(item, ChoiceEvent):
            continue
        result = results[item.index]
        event = item.event
        if isinstance(event, TokenEvent):
            result.tokens.append(event)
        elif isinstance(event, Finished):
            result.finished = event
            left -= 1
    source.closed = True
    return results


async def admit(backend: Backend, plan: Plan) -> Ticket:
    """Submit the plan and wait until the generator accepted it (errors raise before any response)."""
    ticket = backend.submit(plan.requests, functools.partial(api_error, names=plan.fields))
    try:
        item = await ticket.next()
    except BaseException:
        ticket.cancel()
        raise
    assert isinstance(item, Admitted), f"the first item of a ticket is Admitted, got {item!r}"
    return ticket


async def complete(answer: Answer, request: ChatRequest, ident: Identity,
                   faults: Faults = NO_FAULTS, latency: LatencyProfile = NO_LATENCY) -> dict[str, Any]:
    """The non-streaming body; with a latency profile, it waits what the stream's tokens would have."""
    try:
        results = await collect(answer.source, answer.choices)
    finally:
        answer.source.cancel()
    tokens = sum(len(r.tokens) for r in results)
    if faults.slow_s:
        await asyncio.sleep(faults.slow_s * tokens)
    if not latency.off:
        schedule = latency.schedule(request.seed)
        delays = schedule.take(max(tokens, 1))  # a stream holds its first token ttft, every later one itl
        for i, delay in enumerate(delays, 1):
            log_delay(ident.id, i, delay)
        await asyncio.sleep(sum(delays))
    answer.completed(results)
    body = completion_body(ident, results, usage_of(answer.prompt_tokens, results), logprobs=request.logprobs)
    return break_body(body, faults)


async def stream(http: web.Request, answer: Answer, request: ChatRequest, ident: Identity, error_style: str,
                 headers: dict[str, str], faults: Faults = NO_FAULTS, keepalive: float = 0.0,
                 framing: Framing = PLAIN_FRAMING, latency: LatencyProfile = NO_LATENCY) -> web.StreamResponse:
    """The SSE answer: role chunks, one chunk per token, tool calls, finish, usage, [DONE].

    keepalive: seconds of silence after which a `: keep-alive` comment is sent (0: never).
    framing: how the events are written (sse_framing.py); latency: delays added before tokens (latency.py).
    """
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache", **headers})
    render = ChunkRenderer(ident, include_usage=request.include_usage)
    n = answer.choices
    results = [ChoiceResult(i) for i in range(n)]
    source = answer.source
    framer = framing.framer(request.seed)
    # its first silence starts about when the headers go out
    out = PacedWriter(response, keepalive, framer.comment("keep-alive"))
    schedule: LatencySchedule | None = None if latency.off else latency.schedule(request.seed)

    async def send_event(payload: dict[str, Any] | str) -> None:
        await out.write_pieces(framer.event(payload))

    async def send(chunk: dict[str, Any]) -> None:
        await send_event(break_body(chunk, faults))

    async def hold() -> None:  # the latency profile's delay before the next token
        if schedule is not None:
            delay = schedule.next()
            log_delay(ident.id, schedule.drawn, delay)
            await out.pause(delay)

    try:
        await response.prepare(http)
        for i in range(n):
            role = render.role(i)
            if Fault.NO_ROLE in faults:
                role["choices"][0]["delta"].pop("role")
            await send(role)
        left = n
        while left:
            try:
                item = await out.next(source)
            except ApiError as exc:
                await send_event(envelope(exc, error_style))
                await response.write_eof()
                return response
            if not isinstance(item, ChoiceEvent):
                continue
            event, index = item.event, item.index
            if isinstance(event, TokenEvent):
                results[index].tokens.append(event)
                if faults.slow_s:
                    await out.pause(faults.slow_s)
                await hold()
                logprobs = [event.logprob] if event.logprob is not None else None
                if event.tool_calls:
                    for chunk in render.tool_calls(index, event.tool_calls, logprobs):
                        await send(chunk)
                elif event.text or logprobs:
                    await send(render.delta(index, {"content": event.text}, logprobs=logprobs))
                else:
                    continue
                # After the first token chunk, content or tool call alike (a tool-call answer too).
                if Fault.ERROR_MID_STREAM in faults:
                    failure = InjectedFault("injected fault: the stream failed after it began")
                    await send_event(envelope(failure, error_style))
                    await response.write_eof()
                    return response
                continue
            results[index].finished = event
            left -= 1
            if schedule is not None and schedule.drawn == 0:  # an answer without tokens: ttft still applies
                await hold()
            if event.text:
                await send(render.delta(index, {"content": event.text}))
            for _ in range(2 if Fault.DOUBLE_FINISH in faults else 1):
                await send(render.delta(index, {}, finish_reason=event.reason.value))
        source.closed = True
        if request.include_usage and Fault.NO_USAGE_CHUNK not in faults:
            await send(render.usage(usage_of(answer.prompt_tokens, results)))
        if Fault.NO_DONE not in faults:
            await send_event(DONE)
        await response.write_eof()
        answer.completed(results)
    except ConnectionError:
        log.info("client of %s went away; generation cancelled", ident.id)
    except asyncio.CancelledError:  # client gone, or the server is shutting down: say so if anyone listens
        with contextlib.suppress(Exception):
            gone = GenerationFailed("the stream was cancelled: the server is stopping or the client went away")
            await response.write(b"".join(framer.event(envelope(gone, error_style))))
        raise
    except Exception as exc:  # a bug after the 200 was sent: the spec's final error event
        log.exception("stream %s failed", ident.id)
        if response.prepared:
            bug = InternalError(f"the stream failed: {type(exc).__name__}")
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write(b"".join(framer.event(envelope(bug, error_style))))
                await response.write_eof()
        else:
            raise
    finally:
        source.cancel()
    return response
