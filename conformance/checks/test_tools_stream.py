"""Function calling in streams: tool-call deltas, their indices and fragments, parity with a plain answer.

Each check judges its own rule on the stream it reads; what it must observe first (a 200 stream with
tool-call deltas, well-formed fragments) is checked with need(...), naming the clause that judges it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.client import StreamExchange, Target
from conformance.judges import enforce
from conformance.registry import clause
from conformance.samples import require_repeatable
from conformance.tool_calls import (
    FRESH,
    WEATHER,
    observed_calls,
    parsed_arguments,
    tool_body,
)
from conformance.verdicts import NotApplicable, need, not_exercised, refused_clearly, require

SEED = 23
TWO_CITIES = "Weather in Paris and in Tokyo? Call the tool once per city."


@pytest.fixture(scope="module")
def streamed(target: Target) -> StreamExchange:
    """A stream with tool_choice required at temperature 0 (kept whatever the answer)."""
    return target.chat_stream(tool_body(target, tool_choice="required", seed=SEED, stream=True), headers=FRESH)


def _need_stream(ex: StreamExchange, what: str = "a stream with tool_choice required") -> None:
    """NotExercised (tools.choice.required) unless the tool-call stream was answered 200."""
    need(ex.status == 200, f"a 200 answer to {what}", root="tools.choice.required",
         actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


def _choice_deltas(ex: StreamExchange) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """(choice index, tool-call delta, the choice) for every tool-call delta of every chunk, in order.

    NotExercised (stream.chunk.schema-valid) for delta.tool_calls that is not an array of objects:
    the chunk schema judges that shape, and no fragment can be read from it.
    """
    _need_stream(ex)
    for chunk in ex.chunks:
        for choice in chunk.get("choices") or []:
            calls = (choice.get("delta") or {}).get("tool_calls") if isinstance(choice, dict) else None
            if calls is None:
                continue
            need(isinstance(calls, list) and all(isinstance(c, dict) for c in calls),
                 "delta.tool_calls as an array of fragment objects", root="stream.chunk.schema-valid",
                 actual=calls, exchanges=ex)
            for call in calls:
                yield choice.get("index"), call, choice


def _deltas(ex: StreamExchange, what: str = "a stream with tool_choice required") -> list[dict[str, Any]]:
    """Every tool-call delta of the stream: NotExercised (tools.choice.required) when there is none."""
    found = [delta for _, delta, _ in _choice_deltas(ex)]
    need(bool(found), f"a tool-call delta in {what}", root="tools.choice.required", exchanges=ex)
    return found


def _index(delta: dict[str, Any]) -> int | None:
    """The delta's index when it is an integer (not a bool), else None."""
    index = delta.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _assembled(ex: StreamExchange) -> dict[int, dict[str, str]]:
    """index -> {"name", "arguments"} assembled from the deltas (NotExercised for unreadable fragments)."""
    calls: dict[int, dict[str, str]] = {}
    for delta in _deltas(ex):
        index = _index(delta)
        if index is None:
            raise not_exercised("an integer index on every tool-call delta", root="tools.stream.index-integer",
                                actual=delta, exchanges=ex)
        function = delta.get("function") or {}
        arguments = function.get("arguments")
        need(arguments is None or isinstance(arguments, str), "function.arguments fragments that are strings",
             root="stream.chunk.schema-valid", actual=arguments, exchanges=ex)
        call = calls.setdefault(index, {"name": "", "arguments": ""})
        if isinstance(function.get("name"), str):
            call["name"] += function["name"]
        call["arguments"] += arguments or ""
    return calls


def _judge(streamed: StreamExchange, clause_id: str) -> None:
    """The clause's judge on the tool-call stream, once its deltas are known to be readable (NotExercised else)."""
    _deltas(streamed)
    enforce(clause_id, streamed, "stream with tool_choice required")


@clause("stream.chunk.schema-valid")
def test_tool_chunk_schema(streamed: StreamExchange) -> None:
    """Every chunk of a stream with tool calls validates against the ChatCompletionChunk schema."""
    _need_stream(streamed)
    enforce("stream.chunk.schema-valid", streamed, "stream with tool_choice required")


@clause("tools.stream.index-integer")
def test_stream_index_integer(streamed: StreamExchange) -> None:
    """Every tool-call delta in a stream carries an integer index."""
    _judge(streamed, "tools.stream.index-integer")


@clause("tools.stream.first-fragment")
def test_stream_first_fragment(streamed: StreamExchange) -> None:
    """The first delta for each tool-call index carries its id, type function and function.name."""
    _judge(streamed, "tools.stream.first-fragment")


@clause("tools.stream.name-once")
def test_stream_name_once(streamed: StreamExchange) -> None:
    """In a stream, function.name and id appear only in the first delta of each tool-call index, and later deltas of that index carry argument fragments only."""
    _judge(streamed, "tools.stream.name-once")


@clause("tools.stream.arguments-concatenate")
def test_stream_arguments_concatenate(streamed: StreamExchange) -> None:
    """For each tool-call index, the concatenated function.arguments fragments form a JSON object."""
    _assembled(streamed)
    enforce("tools.stream.arguments-concatenate", streamed, "stream with tool_choice required")


def _plain_calls(ex: Any) -> list[tuple[Any, Any]]:
    """(name, parsed arguments) of each tool call of a non-streaming answer."""
    choices = ex.json.get("choices") if isinstance(ex.json, dict) else None
    calls = [c for ch in choices or [] if isinstance(ch, dict) for c in (ch.get("message") or {}).get("tool_calls") or []
             if isinstance(c, dict)]
    return [((c.get("function") or {}).get("name"), parsed_arguments(c)) for c in calls]


@clause("tools.stream.parity")
def test_stream_parity(target: Target, streamed: StreamExchange) -> None:
    """At temperature 0, the tool calls assembled from a stream have the same names and arguments as the same request made without streaming."""
    body = tool_body(target, tool_choice="required", seed=SEED)
    plain = target.chat(body, headers=FRESH)
    observed_calls(plain, "tools.choice.required", "the same request without streaming")
    want = _plain_calls(plain)
    need(all(isinstance(arguments, dict) for _, arguments in want), "non-streamed arguments holding JSON objects",
         root="tools.call.arguments-json", actual=want, exchanges=plain)
    got = []
    for _, call in sorted(_assembled(streamed).items()):
        try:
            got.append((call["name"], json.loads(call["arguments"])))
        except ValueError:
            got.append((call["name"], call["arguments"]))
    if got != want:
        require_repeatable(target, body, plain, _plain_calls)
    require(got == want, "the streamed tool calls differ from the non-streamed ones", expected=want, actual=got,
            exchanges=(plain, streamed))


@pytest.fixture(scope="module")
def parallel(target: Target) -> StreamExchange:
    """A stream asking for two tool calls (two cities), with parallel_tool_calls true unless that is refused."""
    body = dict(tool_body(target, tools=[WEATHER], tool_choice="required", stream=True, max_tokens=72),
                messages=[{"role": "user", "content": TWO_CITIES}])
    ex = target.chat_stream(dict(body, parallel_tool_calls=True), headers=FRESH)
    if refused_clearly(ex):  # an optional field: ask again without it
        ex = target.chat_stream(body, headers=FRESH)
    return ex


@clause("tools.stream.index-distinct")
def test_stream_index_distinct(parallel: StreamExchange) -> None:
    """In a stream, each tool call of a choice has its own index, and a delta carrying a new tool call id never reuses the index of an earlier call."""
    enforce("tools.stream.index-distinct", parallel, "stream asking for two tool calls")
    _deltas(parallel, "a stream asking for two tool calls")
    calls: dict[Any, set[Any]] = {}  # choice -> the calls seen (by id, else by index)
    for choice, delta, _ in _choice_deltas(parallel):
        calls.setdefault(choice, set()).add(delta.get("id") or ("index", repr(delta.get("index"))))
    most = max((len(found) for found in calls.values()), default=0)
    if most < 2:
        raise NotApplicable(f"asked for two tool calls, the target made {most} in a choice: distinct indices "
                            "cannot be observed", exchanges=parallel)


@clause("tools.stream.finish-reason")
def test_stream_finish_reason(streamed: StreamExchange) -> None:
    """A streamed choice that carried tool-call deltas ends with finish_reason tool_calls."""
    _judge(streamed, "tools.stream.finish-reason")
    with_calls = {choice for choice, _, _ in _choice_deltas(streamed)}
    reasons = {choice.get("index") for chunk in streamed.chunks for choice in chunk.get("choices") or []
               if isinstance(choice, dict) and choice.get("finish_reason") is not None}
    for choice in sorted(with_calls, key=repr):
        need(choice in reasons, f"a finish_reason for choice {choice}", root="stream.finish-reason.exactly-once",
             exchanges=streamed)
