"""Function calling in one stream, judged once: tool-call deltas, their indices and fragments, the finish_reason.

A judge reads the tool-call deltas of a 200 stream: each object in a delta.tool_calls list, with the
index of the choice that carried it. A delta.tool_calls that is not a list of objects is the chunk
schema's to judge (stream.chunk.schema-valid) and is skipped here; so is a delta whose index is not
an integer, for every rule but tools.stream.index-integer. A call is keyed by (choice index, call index).

    tool_deltas(stream) -> [(choice index, delta)]; delta = {index, id?, type?, function: {name?, arguments?}}
"""

from __future__ import annotations

import json
from typing import Any

from conformance.exchange import Exchange, StreamExchange
from conformance.judges.registry import STREAM, Problem, judge
from conformance.judges.response import int_value
from conformance.judges.stream import answered_stream, chunk_choices, delta_of
from conformance.judges.tools import FUNCTION, TOOL_CALLS, function_of


def tool_deltas(stream: StreamExchange) -> list[tuple[Any, dict[str, Any]]]:
    """(choice index, tool-call delta) for every tool-call delta of every chunk, in order."""
    found = []
    for chunk in stream.chunks:
        for choice in chunk_choices(chunk):
            calls = delta_of(choice).get("tool_calls")
            if isinstance(calls, list) and all(isinstance(c, dict) for c in calls):
                found += [(choice.get("index"), call) for call in calls]
    return found


def _deltas(ex: Exchange) -> list[tuple[Any, dict[str, Any]]]:
    stream = answered_stream(ex)
    return tool_deltas(stream) if stream is not None else []


def assembled(ex: Exchange) -> dict[tuple[Any, int], dict[str, str]]:
    """(choice, call index) -> {"name", "arguments"} assembled from the deltas with an integer index;
    a call with an argument fragment that is not a string is left out."""
    calls: dict[tuple[Any, int], dict[str, str]] = {}
    broken: set[tuple[Any, int]] = set()
    for choice, delta in _deltas(ex):
        index = int_value(delta.get("index"))
        if index is None:
            continue
        key = (choice, index)
        function = function_of(delta)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            broken.add(key)
            continue
        call = calls.setdefault(key, {"name": "", "arguments": ""})
        if isinstance(function.get("name"), str):
            call["name"] += function["name"]
        call["arguments"] += arguments or ""
    return {key: call for key, call in calls.items() if key not in broken}


@judge("tools.stream.index-integer", on=[STREAM])
def index_integer(ex: Exchange) -> list[Problem]:
    """Every tool-call delta in a stream carries an integer index (0 or more)."""
    found = []
    for _, delta in _deltas(ex):
        index = int_value(delta.get("index"))
        if index is None or index < 0:
            found.append(Problem("a tool-call delta must carry an integer index", expected="integer >= 0",
                                 actual=delta))
    return found


@judge("tools.stream.first-fragment", on=[STREAM])
def first_fragment(ex: Exchange) -> list[Problem]:
    """The first delta of each tool call carries its id, type function and function.name."""
    seen: set[tuple[Any, Any]] = set()
    found = []
    for choice, delta in _deltas(ex):
        key = (choice, repr(delta.get("index")))
        if key in seen:
            continue
        seen.add(key)
        function = function_of(delta)
        if not (isinstance(delta.get("id"), str) and delta["id"] and delta.get("type") == FUNCTION
                and isinstance(function.get("name"), str) and function["name"]):
            found.append(Problem(f"the first delta of tool call {delta.get('index')} must carry id, type function "
                                 "and function.name", expected="id, type function, function.name", actual=delta))
    return found


@judge("tools.stream.name-once", on=[STREAM])
def name_once(ex: Exchange) -> list[Problem]:
    """function.name and id appear only in the first delta of each tool call; later deltas carry argument fragments only.

    An empty name or id adds nothing to what a client assembles; a repeated one doubles the name.
    """
    seen: set[tuple[Any, Any]] = set()
    found = []
    for choice, delta in _deltas(ex):
        key = (choice, repr(delta.get("index")))
        if key not in seen:
            seen.add(key)
            continue
        repeated = {k: v for k, v in (("id", delta.get("id")), ("function.name", function_of(delta).get("name"))) if v}
        if repeated:
            found.append(Problem(f"a later delta of tool call {delta.get('index')} repeats {sorted(repeated)}",
                                 expected="argument fragments only", actual=delta))
    return found


@judge("tools.stream.arguments-concatenate", on=[STREAM])
def arguments_concatenate(ex: Exchange) -> list[Problem]:
    """For each tool call, the concatenated function.arguments fragments form a JSON object."""
    found = []
    for (_, index), call in assembled(ex).items():
        try:
            value = json.loads(call["arguments"])
        except ValueError as exc:
            found.append(Problem(f"tool call {index}: the argument fragments do not form JSON: {exc}",
                                 expected="a JSON object", actual=call["arguments"]))
            continue
        if not isinstance(value, dict):
            found.append(Problem(f"tool call {index}: the arguments are not a JSON object", expected="a JSON object",
                                 actual=call["arguments"]))
    return found


@judge("tools.stream.index-distinct", on=[STREAM])
def index_distinct(ex: Exchange) -> list[Problem]:
    """Each tool call of a choice has its own index: a delta carrying a new call id never reuses an earlier call's index."""
    current: dict[tuple[Any, str], Any] = {}  # (choice, index) -> the id of the call being streamed there
    found = []
    for choice, delta in _deltas(ex):
        index, call_id = delta.get("index"), delta.get("id")
        if not call_id:
            continue
        key = (choice, repr(index))
        earlier = current.get(key)
        if earlier is not None and earlier != call_id:
            found.append(Problem(f"choice {choice}: tool call {call_id!r} reuses index {index} of the earlier call "
                                 f"{earlier!r}", expected="a new index for each call", actual=delta))
        current[key] = call_id
    return found


@judge("tools.stream.finish-reason", on=[STREAM])
def finish_reason(ex: Exchange) -> list[Problem]:
    """A streamed choice that carried tool-call deltas ends with finish_reason tool_calls (its first non-null one)."""
    stream = answered_stream(ex)
    if stream is None:
        return []
    with_calls = {repr(choice): choice for choice, _ in tool_deltas(stream)}
    reasons: dict[str, Any] = {}
    for chunk in stream.chunks:
        for choice in chunk_choices(chunk):
            if choice.get("finish_reason") is not None:
                reasons.setdefault(repr(choice.get("index")), choice["finish_reason"])
    return [Problem(f"choice {choice} carried tool-call deltas but did not end tool_calls", expected=TOOL_CALLS,
                    actual=reasons[key])
            for key, choice in sorted(with_calls.items()) if key in reasons and reasons[key] != TOOL_CALLS]


__all__ = ["assembled", "tool_deltas"]
