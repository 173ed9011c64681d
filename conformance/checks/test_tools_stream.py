"""Function calling in streams: tool-call deltas, their indices and fragments, parity with a plain answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.client import StreamExchange, Target
from conformance.registry import clause
from conformance.tool_calls import (
    FRESH,
    all_calls,
    ask_tools,
    call_arguments,
    tool_body,
)
from conformance.verdicts import Fail, require, unsupported_or_fail

# --- tools.stream --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streamed(target: Target) -> StreamExchange:
    """A stream with tool_choice required at temperature 0."""
    ex = target.chat_stream(tool_body(target, tool_choice="required", stream=True), headers=FRESH)
    if ex.status != 200:
        unsupported_or_fail(ex, "tools in a stream")
    return ex


def _deltas(ex: StreamExchange) -> list[dict[str, Any]]:
    """Every tool-call delta of every chunk, in order."""
    found = []
    for chunk in ex.chunks:
        for choice in chunk.get("choices") or []:
            calls = (choice.get("delta") or {}).get("tool_calls") if isinstance(choice, dict) else None
            if isinstance(calls, list):
                found += [c for c in calls if isinstance(c, dict)]
            elif calls is not None:
                raise Fail("delta.tool_calls must be an array of fragments", actual=calls, exchanges=ex)
    require(bool(found), "a stream with tool_choice required carried no tool-call delta", exchanges=ex)
    return found


def _assembled(ex: StreamExchange) -> dict[int, dict[str, str]]:
    """index -> {"name", "arguments"} assembled from the deltas."""
    calls: dict[int, dict[str, str]] = {}
    for delta in _deltas(ex):
        index = delta.get("index")
        require(isinstance(index, int) and not isinstance(index, bool), "a tool-call delta without integer index",
                actual=delta, exchanges=ex)
        function = delta.get("function") or {}
        call = calls.setdefault(index, {"name": "", "arguments": ""})
        if isinstance(function.get("name"), str):
            call["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            call["arguments"] += function["arguments"]
    return calls


@clause("tools.stream.index-integer")
def test_stream_index_integer(streamed: StreamExchange) -> None:
    """Every tool-call delta in a stream carries an integer index."""
    for delta in _deltas(streamed):
        index = delta.get("index")
        require(isinstance(index, int) and not isinstance(index, bool) and index >= 0,
                "a tool-call delta must carry an integer index", expected="integer >= 0", actual=delta,
                exchanges=streamed)


@clause("tools.stream.first-fragment")
def test_stream_first_fragment(streamed: StreamExchange) -> None:
    """The first delta for each tool-call index carries its id, type function and function.name."""
    seen: set[Any] = set()
    for delta in _deltas(streamed):
        index = delta.get("index")
        if index in seen:
            continue
        seen.add(index)
        function = delta.get("function") or {}
        require(isinstance(delta.get("id"), str) and bool(delta["id"]) and delta.get("type") == "function"
                and isinstance(function.get("name"), str) and bool(function["name"]),
                f"the first delta of tool call {index} must carry id, type function and function.name",
                actual=delta, exchanges=streamed)


@clause("tools.stream.arguments-concatenate")
def test_stream_arguments_concatenate(streamed: StreamExchange) -> None:
    """For each tool-call index, the concatenated function.arguments fragments form a JSON object."""
    for index, call in _assembled(streamed).items():
        try:
            value = json.loads(call["arguments"])
        except ValueError as exc:
            raise Fail(f"tool call {index}: the argument fragments do not form JSON: {exc}",
                       actual=call["arguments"], exchanges=streamed) from None
        require(isinstance(value, dict), f"tool call {index}: the arguments are not a JSON object",
                actual=call["arguments"], exchanges=streamed)


@clause("tools.stream.parity")
def test_stream_parity(target: Target, streamed: StreamExchange) -> None:
    """At temperature 0, the tool calls assembled from a stream have the same names and arguments as the same request made without streaming."""
    plain = ask_tools(target, tool_choice="required")
    want = [((c.get("function") or {}).get("name"), call_arguments(plain, c)) for c in all_calls(plain)]
    got = []
    for _, call in sorted(_assembled(streamed).items()):
        try:
            got.append((call["name"], json.loads(call["arguments"])))
        except ValueError:
            got.append((call["name"], call["arguments"]))
    require(got == want, "the streamed tool calls differ from the non-streamed ones", expected=want, actual=got,
            exchanges=(plain, streamed))
