"""The stream rules, judged once: SSE framing, JSON events, the chunk state machine and the terminator.

Each judge takes one answered stream: a StreamExchange as the client reads it, or a plain Exchange
whose body holds the SSE text (the fuzz phases read streams that way; `as_stream` parses it). A
judge applies to a 200 answer to a request with stream true and returns [] for anything else; what
the request asked for (n, include_usage) is read from the exchange's own request body.
The usage-chunk rules are in stream_usage.py.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import fields
from typing import Any

from conformance.exchange import Exchange, StreamExchange
from conformance.judges.envelope import is_json_content_type
from conformance.judges.registry import STREAM, Problem, judge
from conformance.sse import DONE, parse_sse
from spec import limits, schemas

EVENT_STREAM_TYPE = re.compile(r"^\s*text/event-stream\s*(;.*)?$", re.IGNORECASE)
CHUNK_OBJECT = limits.const("ChatCompletionChunk", "object")
DELTA_ROLE = limits.const("ChunkDelta", "role")


# --- reading a stream -------------------------------------------------------------------------------


def as_stream(ex: Exchange) -> StreamExchange:
    """The exchange as a StreamExchange: itself, or its body parsed as SSE (every Exchange field kept)."""
    if isinstance(ex, StreamExchange):
        return ex
    parse = parse_sse(ex.body_text.encode("utf-8"))
    kept = {f.name: getattr(ex, f.name) for f in fields(Exchange) if f.init}
    return StreamExchange(**kept, raw_lines=parse.raw_lines, data=parse.data, chunks=parse.chunks, done=parse.done,
                          after_done=parse.after_done, error_event=parse.error_event,
                          framing_errors=parse.framing_errors, non_json_events=parse.non_json_events)


def request_of(ex: Exchange) -> dict[str, Any]:
    """The JSON object the exchange's request sent ({} when it sent none)."""
    try:
        body = json.loads(ex.request_body or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def asked_stream(ex: Exchange) -> bool:
    """The request asked for a stream (or the client read it as one)."""
    return isinstance(ex, StreamExchange) or request_of(ex).get("stream") is True


def answered_stream(ex: Exchange) -> StreamExchange | None:
    """The stream to judge: a 200 answer to a stream request, parsed; None for anything else."""
    if ex.status != 200 or not asked_stream(ex):
        return None
    return as_stream(ex)


def choice_count(ex: Exchange) -> int:
    """The n the request asked for (1 when absent or not a positive integer)."""
    n = request_of(ex).get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def chunk_choices(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunk's choices that are objects."""
    found = chunk.get("choices")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def delta_of(choice: dict[str, Any]) -> dict[str, Any]:
    """The choice's delta ({} when absent or not an object)."""
    delta = choice.get("delta")
    return delta if isinstance(delta, dict) else {}


def stream_texts(ex: StreamExchange) -> tuple[dict[Any, str], dict[Any, Any]]:
    """The concatenated delta content and the finish_reason of each choice index of a stream.

    Keyed by the index each choice sent, whatever its type (a server may send none, or a string).
    """
    texts: dict[Any, str] = defaultdict(str)
    reasons: dict[Any, Any] = {}
    for chunk in ex.chunks:
        for choice in chunk_choices(chunk):
            index = choice.get("index")
            delta = delta_of(choice)
            if isinstance(delta.get("content"), str):
                texts[index] += delta["content"]
            if choice.get("finish_reason") is not None:
                reasons[index] = choice["finish_reason"]
    return texts, reasons


def finish_counts(ex: StreamExchange) -> dict[Any, int]:
    """Per choice index seen: how many chunks carry a non-null finish_reason for it."""
    counts: dict[Any, int] = defaultdict(int)
    for chunk in ex.chunks:
        for choice in chunk_choices(chunk):
            counts[choice.get("index")] += choice.get("finish_reason") is not None
    return dict(counts)


# --- the judges -------------------------------------------------------------------------------------


@judge("stream.content-type.event-stream", on=[STREAM])
def event_stream_answer(ex: Exchange) -> list[Problem]:
    """A request with stream true is answered 200 with Content-Type text/event-stream."""
    if not asked_stream(ex):
        return []
    if ex.status != 200:
        return [Problem("not answered 200", expected=200, actual=f"{ex.status} {ex.body_text[:200]}")]
    if not EVENT_STREAM_TYPE.match(ex.header("content-type") or ""):
        return [Problem("Content-Type is not text/event-stream", expected="text/event-stream",
                        actual=ex.header("content-type"))]
    return []


@judge("stream.framing.data-lines", on=[STREAM])
def data_lines(ex: Exchange) -> list[Problem]:
    """Every event is carried on data: lines and ends with a blank line; other lines are SSE comments or fields."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    found = []
    if stream.framing_errors:
        found.append(Problem("SSE framing errors", expected="data: lines, each event ended by a blank line",
                             actual=stream.framing_errors[:10]))
    # Two data: lines without a blank line between them merge into one event: a missing event end.
    merged = [d for d in stream.data if "\n" in d]
    if merged:
        found.append(Problem("consecutive data: lines without the blank line that ends an event",
                             expected="one data: line per event", actual=merged[:3]))
    return found


@judge("stream.event.json", on=[STREAM])
def json_events(ex: Exchange) -> list[Problem]:
    """Every data payload other than [DONE] is one JSON object."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    found = []
    if stream.non_json_events:
        found.append(Problem("data payloads that are not one JSON object", expected="JSON object",
                             actual=stream.non_json_events[:5]))
    if not stream.chunks:
        found.append(Problem("no JSON chunk at all", actual=stream.data[:5]))
    return found


@judge("stream.chunk.schema-valid", on=[STREAM])
def chunks_schema_valid(ex: Exchange) -> list[Problem]:
    """Every chunk validates against ChatCompletionChunk; an error event in a 200 stream is no chunk."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    found = []
    for i, chunk in enumerate(stream.chunks):
        violations = schemas.validate("chunk", chunk)
        if violations:
            found.append(Problem(f"chunk {i} does not match the spec schema ChatCompletionChunk: "
                                 + "; ".join(v.message for v in violations[:5]),
                                 expected="a valid ChatCompletionChunk",
                                 actual=[{"path": v.path, "rule": v.rule, "pointer": v.schema_pointer}
                                         for v in violations[:10]]))
    if stream.error_event is not None:
        found.append(Problem("an error event in a 200 stream, which is no ChatCompletionChunk",
                             expected="chunks, then data: [DONE]", actual=json.dumps(stream.error_event)[:200]))
    return found


@judge("stream.chunk.object", on=[STREAM])
def chunk_object(ex: Exchange) -> list[Problem]:
    """Every chunk's object field is the string chat.completion.chunk."""
    stream = answered_stream(ex)
    bad = [c.get("object") for c in stream.chunks if c.get("object") != CHUNK_OBJECT] if stream else []
    return [Problem(f"object is not {CHUNK_OBJECT}", expected=CHUNK_OBJECT, actual=bad[:5])] if bad else []


def _consistent(ex: Exchange, field: str, *, non_empty: bool = False) -> list[Problem]:
    """One value of `field` across the stream's chunks (a non-empty string when `non_empty`)."""
    stream = answered_stream(ex)
    if stream is None or not stream.chunks:
        return []
    values = [c.get(field, "(absent)") for c in stream.chunks]
    distinct = list(dict.fromkeys(map(repr, values)))
    if len(distinct) > 1:
        return [Problem(f"chunks carry different {field} values", expected=f"one {field}", actual=distinct[:5])]
    if non_empty and not (isinstance(values[0], str) and values[0].strip()):
        return [Problem(f"{field} is not a non-empty string", expected="non-empty string", actual=values[0])]
    return []


@judge("stream.chunk.id-consistent", on=[STREAM])
def same_id(ex: Exchange) -> list[Problem]:
    """Every chunk of one stream carries the same non-empty id."""
    return _consistent(ex, "id", non_empty=True)


@judge("stream.chunk.model-consistent", on=[STREAM])
def same_model(ex: Exchange) -> list[Problem]:
    """Every chunk of one stream carries the same model."""
    return _consistent(ex, "model")


@judge("stream.chunk.created-consistent", on=[STREAM])
def same_created(ex: Exchange) -> list[Problem]:
    """Every chunk of one stream carries the same created value."""
    return _consistent(ex, "created")


@judge("stream.chunk.choice-index", on=[STREAM])
def choice_indices(ex: Exchange) -> list[Problem]:
    """Every chunk choice has an integer index between 0 and n-1."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    n = choice_count(ex)
    found = []
    for i, chunk in enumerate(stream.chunks):
        for choice in chunk_choices(chunk):
            index = choice.get("index")
            if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < n):
                found.append(Problem(f"chunk {i}: choice index outside 0..{n - 1}",
                                     expected=f"integer in [0, {n - 1}]", actual=index))
    return found


@judge("stream.delta.role-first", on=[STREAM])
def role_first(ex: Exchange) -> list[Problem]:
    """The first delta of each choice has role assistant; a later delta.role, when present, is assistant too.

    The chunk schema makes role the constant assistant wherever it is present, so a null role is
    wrong in any delta, the first one included.
    """
    stream = answered_stream(ex)
    if stream is None:
        return []
    seen: set[Any] = set()
    found = []
    for i, chunk in enumerate(stream.chunks):
        for choice in chunk_choices(chunk):
            index, delta = choice.get("index"), delta_of(choice)
            if index not in seen:
                seen.add(index)
                if delta.get("role") != DELTA_ROLE:
                    found.append(Problem(f"chunk {i}: the first delta of choice {index} has no role {DELTA_ROLE}",
                                         expected=DELTA_ROLE, actual=delta.get("role", "(absent)")))
            elif "role" in delta and delta["role"] != DELTA_ROLE:
                found.append(Problem(f"chunk {i}: a later delta.role of choice {index} is not {DELTA_ROLE}",
                                     expected=f"{DELTA_ROLE} or absent", actual=delta["role"]))
    return found


@judge("stream.delta.content-string", on=[STREAM])
def content_strings(ex: Exchange) -> list[Problem]:
    """Every delta.content is a string, null or absent."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    return [Problem(f"chunk {i}: delta.content is neither string nor null", expected="string or null",
                    actual=delta_of(choice).get("content"))
            for i, chunk in enumerate(stream.chunks) for choice in chunk_choices(chunk)
            if not (delta_of(choice).get("content") is None or isinstance(delta_of(choice).get("content"), str))]


@judge("stream.finish-reason.exactly-once", on=[STREAM])
def finish_once(ex: Exchange) -> list[Problem]:
    """Each choice seen (choice 0 whenever there are chunks) has exactly one chunk with a non-null finish_reason."""
    stream = answered_stream(ex)
    if stream is None or not stream.chunks:
        return []
    counts = finish_counts(stream)
    judged = sorted((set(counts) & set(range(choice_count(ex)))) | {0})
    return [Problem(f"choice {index} has {counts.get(index, 0)} finish_reason chunks", expected=1,
                    actual=counts.get(index, 0)) for index in judged if counts.get(index, 0) != 1]


@judge("stream.finish-reason.last", on=[STREAM])
def finish_last(ex: Exchange) -> list[Problem]:
    """No chunk after the one carrying a choice's finish_reason adds content or tool_calls to that choice."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    finished: set[Any] = set()
    found = []
    for i, chunk in enumerate(stream.chunks):
        for choice in chunk_choices(chunk):
            index, delta = choice.get("index"), delta_of(choice)
            if index in finished and (delta.get("content") or delta.get("tool_calls")):
                found.append(Problem(f"chunk {i}: choice {index} grows after its finish_reason",
                                     expected="no content or tool_calls", actual=delta))
            if choice.get("finish_reason") is not None:
                finished.add(index)
    return found


@judge("stream.terminator.done", on=[STREAM])
def done_last(ex: Exchange) -> list[Problem]:
    """The last event of every stream is data: [DONE]."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    last = stream.data[-1] if stream.data else None
    if stream.done and last is not None and last.strip() == DONE:
        return []
    return [Problem("the last event is not data: [DONE]", expected=DONE, actual=last)]


@judge("stream.terminator.nothing-after", on=[STREAM])
def nothing_after_done(ex: Exchange) -> list[Problem]:
    """Nothing but whitespace follows data: [DONE], and the response ends after it (nothing to judge without one)."""
    stream = answered_stream(ex)
    if stream is None or not stream.done:
        return []
    found = []
    if stream.after_done:
        found.append(Problem("lines after data: [DONE]", expected="nothing", actual=stream.after_done[:5]))
    if stream.stalled or stream.overran:
        found.append(Problem("the response did not end after data: [DONE]", expected="end of response",
                             actual="connection held open"))
    return found


@judge("stream.liveness.no-stall")
def no_stall(ex: Exchange) -> list[Problem]:
    """No wait for an event exceeded the client's stall timeout, and the stream ended before its deadline."""
    if not isinstance(ex, StreamExchange):
        return []
    found = []
    if ex.stalled:
        found.append(Problem("no byte within the stall timeout", expected="an event within the stall timeout",
                             actual="stalled"))
    if ex.overran:
        found.append(Problem("still streaming at the overall deadline", expected="the stream ends",
                             actual="abandoned"))
    return found


@judge("stream.errors.before-stream")
def refused_before_stream(ex: Exchange) -> list[Problem]:
    """The answer to a stream request with an invalid parameter is a 4xx JSON error response, not an event stream."""
    if not 400 <= ex.status < 500:
        return [Problem("not refused with a 4xx", expected="4xx", actual=f"{ex.status} {ex.body_text[:300]}")]
    if not (is_json_content_type(ex) and isinstance(ex.json, dict)):
        return [Problem("the 4xx is not a JSON body", expected="application/json error envelope",
                        actual=f"{ex.header('content-type')} {ex.body_text[:200]}")]
    return []


__all__ = [
    "CHUNK_OBJECT", "DELTA_ROLE", "EVENT_STREAM_TYPE", "answered_stream", "as_stream", "asked_stream", "choice_count",
    "chunk_choices", "delta_of", "finish_counts", "request_of",
]
