"""POST /v1/chat/completions: plan, generate through the scheduler, answer as JSON or as SSE.

Before the 200 is sent every error is a JSON error response (the generator's admission of the
request included, so a stream with a bad parameter never starts). After a stream began, an error
is one last `data: <envelope>` event and the stream ends without [DONE]. Whatever ends the
handler (finish, error, client gone: aiohttp cancels the handler, or a write fails) cancels the
ticket, so the generator drops the request at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from reference_model.generation import Finished, TokenEvent

from mock_server.backend import Backend
from mock_server.errors import ApiError, GenerationFailed, InternalError, envelope
from mock_server.faults import NO_FAULTS, Faults, InjectedFault, break_body
from mock_server.plan import Plan
from mock_server.render import (
    SSE_DONE,
    ChoiceResult,
    ChunkRenderer,
    Identity,
    completion_body,
    sse,
    usage_of,
)
from mock_server.request import ChatRequest
from mock_server.scheduler import Admitted, ChoiceEvent, Ticket

log = logging.getLogger("mock_server.chat")


def fingerprint(backend: Backend, version: str) -> str:
    """system_fingerprint: server build, weight format and model hash."""
    return f"chatconform-{version}-{backend.info.weights}-{backend.info.digest[:12]}"


async def collect(ticket: Ticket, n: int) -> list[ChoiceResult]:
    """Run a ticket to the end; the finished choices in index order."""
    results = [ChoiceResult(i) for i in range(n)]
    left = n
    while left:
        item = await ticket.next()
        if not isinstance(item, ChoiceEvent):
            continue
        result = results[item.index]
        event = item.event
        if isinstance(event, TokenEvent):
            result.content.append(event.text)
            if event.logprob is not None:
                result.logprobs.append(event.logprob)
        elif isinstance(event, Finished):
            result.finished = event
            left -= 1
    ticket.closed = True
    return results


async def admit(backend: Backend, plan: Plan) -> Ticket:
    """Submit the plan and wait until the generator accepted it (errors raise before any response)."""
    ticket = backend.submit(plan.requests)
    try:
        item = await ticket.next()
    except BaseException:
        ticket.cancel()
        raise
    assert isinstance(item, Admitted), f"the first item of a ticket is Admitted, got {item!r}"
    return ticket


async def complete(ticket: Ticket, plan: Plan, request: ChatRequest, ident: Identity,
                   faults: Faults = NO_FAULTS) -> dict[str, Any]:
    """The non-streaming body."""
    try:
        results = await collect(ticket, len(plan.requests))
    finally:
        ticket.cancel()
    body = completion_body(ident, results, usage_of(plan.prompt_tokens, results), logprobs=request.logprobs)
    return break_body(body, faults)


async def stream(http: web.Request, ticket: Ticket, plan: Plan, request: ChatRequest, ident: Identity,
                 error_style: str, headers: dict[str, str], faults: Faults = NO_FAULTS) -> web.StreamResponse:
    """The SSE answer: role chunks, one chunk per token, tool calls, finish, usage, [DONE]."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache", **headers})
    render = ChunkRenderer(ident, include_usage=request.include_usage)
    n = len(plan.requests)
    results = [ChoiceResult(i) for i in range(n)]
    token_chunks = 0

    async def send(chunk: dict[str, Any]) -> None:
        await response.write(sse(break_body(chunk, faults)))

    try:
        await response.prepare(http)
        for i in range(n):
            role = render.role(i)
            if "no-role" in faults:
                role["choices"][0]["delta"].pop("role")
            await send(role)
        left = n
        while left:
            try:
                item = await ticket.next()
            except ApiError as exc:
                await response.write(sse(envelope(exc, error_style)))
                await response.write_eof()
                return response
            if not isinstance(item, ChoiceEvent):
                continue
            event, index = item.event, item.index
            if isinstance(event, TokenEvent):
                logprobs = [event.logprob] if event.logprob is not None else None
                if event.text or logprobs:
                    await send(render.delta(index, {"content": event.text}, logprobs=logprobs))
                    token_chunks += 1
                    if "error-mid-stream" in faults:
                        failure = InjectedFault("injected fault: the stream failed after it began")
                        await response.write(sse(envelope(failure, error_style)))
                        await response.write_eof()
                        return response
                continue
            results[index].finished = event
            left -= 1
            if event.text:
                await send(render.delta(index, {"content": event.text}))
            if event.tool_calls:
                await send(render.tool_calls(index, event.tool_calls))
            for _ in range(2 if "double-finish" in faults else 1):
                await send(render.delta(index, {}, finish_reason=event.reason.value))
        ticket.closed = True
        if request.include_usage and "no-usage-chunk" not in faults:
            await send(render.usage(usage_of(plan.prompt_tokens, results)))
        if "no-done" not in faults:
            await response.write(SSE_DONE)
        await response.write_eof()
    except ConnectionError:
        log.info("client of %s went away; generation cancelled", ident.id)
    except asyncio.CancelledError:  # client gone, or the server is shutting down: say so if anyone listens
        with contextlib.suppress(Exception):
            await response.write(sse(envelope(GenerationFailed("the stream was cancelled: the server is stopping "
                                                               "or the client went away"), error_style)))
        raise
    except Exception as exc:  # a bug after the 200 was sent: the spec's final error event
        log.exception("stream %s failed", ident.id)
        if response.prepared:
            failure = InternalError(f"the stream failed: {type(exc).__name__}")
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write(sse(envelope(failure, error_style)))
                await response.write_eof()
        else:
            raise
    finally:
        ticket.cancel()
    return response
