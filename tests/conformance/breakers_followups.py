"""Breakers of the verdict defects seen on real servers (llama-server, LiteLLM, the mock servers):
rules the stream judges now hold every stream to, whichever check or fuzz phase reads it.

A null delta.role after the first delta, a usage chunk that also carries a choice, and an error
event inside a 200 stream. See breakers.py for what a breaker is; the transforms live in
breaker_followups_hooks.py, and the verdicts these servers must NOT get are in test_followups.py.
"""

from __future__ import annotations

from tests.conformance.breaker_followups_hooks import (
    error_event_mid_stream,
    null_role_later,
    stop_streamed,
    usage_chunk_with_choice,
)
from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_hooks import on_chunks, on_events
from tests.conformance.breaking_proxy import Breaker

FOLLOWUPS: tuple[Breaker, ...] = (
    # the chunk schema makes delta.role the constant assistant: null is wrong after the first delta too
    _b("later-role-null", "stream.delta.role-first", "every delta after the first carries role null",
       reply=on_chunks(null_role_later)),
    # found by its non-null usage, the usage chunk is judged where it is wrong: its choices are not empty
    _b("usage-chunk-with-choice", "stream.usage.last-chunk", "the usage chunk also carries a choice (LiteLLM, n 2)",
       reply=on_chunks(usage_chunk_with_choice)),
    # once judged by the fuzz phases alone: an error payload in a 200 stream is no ChatCompletionChunk
    _b("error-event-in-200-stream", "stream.chunk.schema-valid", "an error event after the first chunk of a 200 stream",
       reply=on_events(error_event_mid_stream)),
    # the non-streamed answer leaves the stop text out, the stream sends it: the two must agree
    _b("stop-streamed", "params.stop.stream-excluded", "a stream that stopped on a stop sequence sends the stop text too",
       reply=on_chunks(stop_streamed)),
)
