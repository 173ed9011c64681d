"""Breakers of the transport clauses: connections closed without an answer.

See breakers.py for what a breaker is. A request hook that raises asyncio.CancelledError makes the
proxy (aiohttp) close the connection without sending a response: what a client sees from a server
that drops a request ("Server disconnected without sending a response").
"""

from __future__ import annotations

import asyncio

from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaking_proxy import Breaker, Call


def drop_every_chat(call: Call) -> Call:
    """Every chat request: the connection is closed without an answer, however often it is sent."""
    if call.is_chat:
        raise asyncio.CancelledError  # aiohttp closes the connection, answering nothing
    return call


def drop_first_sending(call: Call) -> Call:
    """A chat request is dropped the first time it arrives, and answered when the same request comes again.

    As llama-server does with a request on a reused keep-alive connection: the client's retry on a
    fresh connection gets the answer.
    """
    if not call.is_chat:
        return call
    key = (call.path, call.body, call.headers.get("x-wait-for-model"), call.headers.get("x-use-cache"))
    seen: set[tuple[object, ...]] = call.state.setdefault("seen", set())
    if key in seen:
        seen.discard(key)  # the next identical request is dropped again: a first sending once more
        return call
    seen.add(key)
    raise asyncio.CancelledError


TRANSPORT: tuple[Breaker, ...] = (
    _b("chat-never-answered", "transport.answer.every-request",
       "every chat request's connection is closed without an answer", request=drop_every_chat),
    _b("first-sending-dropped", "transport.keep-alive.reusable",
       "a chat request is dropped the first time it arrives (a kept-alive connection closed unanswered)",
       request=drop_first_sending),
)
