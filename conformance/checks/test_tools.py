"""Function calling: tool_choice modes, tool call shape and arguments, tool results, streamed tool calls.

The tools' argument schemas use enums, so a constrained call has a short bounded form on any model
(also on one with random weights) and max_tokens 36 suffices; names, descriptions and the prompt are short so that
two tools, the prompt and a call fit a 256-token context (the tiny test model's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from conformance.client import Exchange, StreamExchange, Target
from conformance.registry import clause
from conformance.verdicts import Fail, NotApplicable, require, unsupported_or_fail

FRESH = {"x-use-cache": "false"}
PROMPT = "Weather in Paris?"
MAX_TOKENS = 36

# Kept small: small-context models (256 tokens) must still fit two tools, the prompt and a call.
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Tokyo"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TIME_SCHEMA = {
    "type": "object",
    "properties": {"zone": {"enum": ["UTC", "JST"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "Weather.", "parameters": WEATHER_SCHEMA}}
TIME = {"type": "function", "function": {
    "name": "time", "description": "Time.", "parameters": TIME_SCHEMA}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {"weather": WEATHER_SCHEMA, "time": TIME_SCHEMA}
DESCRIPTIONS = {"weather": "Weather.", "time": "Time."}


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def _body(target: Target, **params: Any) -> dict[str, Any]:
    params.setdefault("tools", TOOLS)
    params.setdefault("max_tokens", MAX_TOKENS)
    return target.body(messages=[{"role": "user", "content": PROMPT}], temperature=0, **params)


def _ask(target: Target, feature: str = "tools", **params: Any) -> Exchange:
    return target.ok(_body(target, **params), feature=feature, headers=FRESH)


def _choices(ex: Exchange) -> list[dict[str, Any]]:
    choices = ex.json.get("choices")
    require(isinstance(choices, list) and bool(choices) and all(isinstance(c, dict) for c in choices),
            "the response holds no choices", actual=ex.body_text[:300], exchanges=ex)
    return choices


def _calls(choice: dict[str, Any]) -> list[Any]:
    calls = (choice.get("message") or {}).get("tool_calls")
    return calls if isinstance(calls, list) else []


def _all_calls(ex: Exchange) -> list[dict[str, Any]]:
    found = []
    for choice in _choices(ex):
        for call in _calls(choice):
            require(isinstance(call, dict), "a tool call is not an object", actual=call, exchanges=ex)
            found.append(call)
    return found


def _require_calls(ex: Exchange) -> list[dict[str, Any]]:
    """Every choice holds at least one tool call (Fail otherwise); return all calls."""
    for choice in _choices(ex):
        require(bool(_calls(choice)), "a forced tool choice produced a choice without tool calls",
                expected="message.tool_calls: [...]", actual=choice, exchanges=ex)
    return _all_calls(ex)


def _arguments(ex: Exchange, call: dict[str, Any]) -> dict[str, Any]:
    """function.arguments parsed (Fail unless a string holding a JSON object)."""
    function = call.get("function") or {}
    raw = function.get("arguments")
    require(isinstance(raw, str), "function.arguments must be a JSON string", expected="string",
            actual=raw, exchanges=ex)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise Fail(f"function.arguments is not JSON: {exc}", actual=raw, exchanges=ex) from None
    require(isinstance(value, dict), "function.arguments must hold a JSON object", actual=raw, exchanges=ex)
    return value


@dataclass
class Forced:
    """Responses with a forced tool call, shared by the call-shape checks."""

    required: Exchange   # tool_choice required
    named: Exchange      # tool_choice naming time (the second tool, off-topic for the prompt)

    @property
    def all(self) -> tuple[Exchange, Exchange]:
        return (self.required, self.named)


@pytest.fixture(scope="module")
def forced(target: Target) -> Forced:
    """One response with tool_choice required and one naming time."""
    return Forced(_ask(target, tool_choice="required"), _ask(target, tool_choice=_named("time")))


# --- tools.choice ------------------------------------------------------------------------------


@clause("tools.choice.auto")
def test_choice_auto(target: Target) -> None:
    """With tools and tool_choice auto or absent, the response is 200 and holds either text content or tool calls of declared functions."""
    for params in ({"tool_choice": "auto"}, {}):
        ex = _ask(target, **params)
        for choice in _choices(ex):
            calls = _calls(choice)
            content = (choice.get("message") or {}).get("content")
            require(bool(calls) or isinstance(content, str), "neither text content nor tool calls",
                    actual=choice, exchanges=ex)
            for call in calls:
                name = (call.get("function") or {}).get("name") if isinstance(call, dict) else None
                require(name in SCHEMAS, "a tool call names an undeclared function", expected=sorted(SCHEMAS),
                        actual=name, exchanges=ex)


@clause("tools.choice.none")
def test_choice_none(target: Target) -> None:
    """With tools and tool_choice none, no choice has tool_calls and no finish_reason is tool_calls."""
    ex = _ask(target, tool_choice="none")
    for choice in _choices(ex):
        require(not _calls(choice), "tool_choice none produced tool calls", actual=_calls(choice), exchanges=ex)
        require(choice.get("finish_reason") != "tool_calls", "tool_choice none reported finish_reason tool_calls",
                actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.choice.required")
def test_choice_required(forced: Forced) -> None:
    """With tools and tool_choice required, every choice holds at least one tool call and finish_reason tool_calls."""
    ex = forced.required
    _require_calls(ex)
    for choice in _choices(ex):
        require(choice.get("finish_reason") == "tool_calls", "tool_choice required must end with tool_calls",
                expected="tool_calls", actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.choice.named")
def test_choice_named(forced: Forced) -> None:
    """With tool_choice naming a declared function, every choice calls exactly that function."""
    ex = forced.named
    for choice in _choices(ex):
        names = [(c.get("function") or {}).get("name") for c in _calls(choice) if isinstance(c, dict)]
        require(names != [] and set(names) == {"time"}, "tool_choice named time must call time only",
                expected=["time"], actual=names or choice, exchanges=ex)


# --- tools.definition / tool_prompt --------------------------------------------------------------


@clause("tools.definition.accepted")
def test_definition_accepted(target: Target) -> None:
    """A tool of type function with a name, an optional description and a JSON Schema for its parameters is accepted."""
    bare = {"type": "function", "function": {"name": "time", "parameters": TIME_SCHEMA}}
    for tools in (TOOLS, [bare]):
        _ask(target, "tool definition", tools=tools, max_tokens=8)


@clause("tools.definition.arguments-alias")
def test_definition_arguments_alias(target: Target) -> None:
    """A function whose JSON Schema is given under arguments (the seeds' name) is treated like one given under parameters."""
    alias = {"type": "function", "function": {
        "name": "time", "description": DESCRIPTIONS["time"], "arguments": TIME_SCHEMA}}
    via_alias = _ask(target, "tool schema under arguments", tools=[alias], tool_choice="required")
    via_params = _ask(target, tools=[TIME], tool_choice="required")
    calls = _require_calls(via_alias)
    for call in calls:
        arguments = _arguments(via_alias, call)
        errors = sorted(jsonschema.Draft202012Validator(TIME_SCHEMA).iter_errors(arguments), key=str)
        require(not errors, "arguments ignore the schema given under `arguments`",
                expected=TIME_SCHEMA, actual=[e.message for e in errors], exchanges=via_alias)
    got = [((c.get("function") or {}).get("name"), _arguments(via_alias, c)) for c in calls]
    want = [((c.get("function") or {}).get("name"), _arguments(via_params, c)) for c in _all_calls(via_params)]
    require(got == want, "at temperature 0 the schema under `arguments` gave other calls than under `parameters`",
            expected=want, actual=got, exchanges=(via_alias, via_params))


@clause("tools.definition.strict-accepted")
def test_definition_strict_accepted(target: Target) -> None:
    """A function definition with strict true or false is accepted."""
    for strict in (True, False):
        tool = {"type": "function", "function": {**WEATHER["function"], "strict": strict}}
        ex = target.chat(_body(target, tools=[tool], max_tokens=8), headers=FRESH)
        require(ex.status == 200, f"a function definition with strict {strict} must be accepted",
                expected=200, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


@clause("tools.call.description-echo")
def test_call_description_echo(forced: Forced) -> None:
    """A tool call's function.description, when present and not null, equals the called function's declared description."""
    echoed = 0
    for ex in forced.all:
        for call in _all_calls(ex):
            function = call.get("function") or {}
            if function.get("description") is None:
                continue
            echoed += 1
            require(function["description"] == DESCRIPTIONS.get(function.get("name")),
                    "function.description differs from the declared description",
                    expected=DESCRIPTIONS.get(function.get("name")), actual=function["description"], exchanges=ex)
    if not echoed:
        raise NotApplicable("no tool call carried function.description (an optional echo)")


@clause("tools.tool-prompt.accepted")
def test_tool_prompt_accepted(target: Target) -> None:
    """A request with tools and a tool_prompt string is accepted and answered 200."""
    ex = target.chat(_body(target, tool_prompt="You may call these functions:", max_tokens=8), headers=FRESH)
    require(ex.status == 200, "tools with a tool_prompt must be answered 200", expected=200,
            actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


# --- tools.call ----------------------------------------------------------------------------------


@clause("tools.call.type")
def test_call_type(forced: Forced) -> None:
    """Every tool call has type function."""
    for ex in forced.all:
        for call in _require_calls(ex):
            require(call.get("type") == "function", "a tool call's type must be function", expected="function",
                    actual=call.get("type"), exchanges=ex)


@clause("tools.call.id-unique")
def test_call_id_unique(forced: Forced) -> None:
    """Every tool call id is a non-empty string, distinct from the other tool call ids of the response."""
    for ex in forced.all:
        ids = [call.get("id") for call in _require_calls(ex)]
        require(all(isinstance(i, str) and i for i in ids), "a tool call id is empty or not a string",
                actual=ids, exchanges=ex)
        require(len(set(ids)) == len(ids), "tool call ids repeat within one response", actual=ids, exchanges=ex)


@clause("tools.call.name-declared")
def test_call_name_declared(forced: Forced) -> None:
    """Every tool call names a function declared in the request's tools."""
    for ex in forced.all:
        for call in _require_calls(ex):
            name = (call.get("function") or {}).get("name")
            require(name in SCHEMAS, "a tool call names an undeclared function", expected=sorted(SCHEMAS),
                    actual=name, exchanges=ex)


@clause("tools.call.arguments-json")
def test_call_arguments_json(forced: Forced) -> None:
    """Every tool call's function.arguments is a string holding a JSON object."""
    for ex in forced.all:
        for call in _require_calls(ex):
            _arguments(ex, call)


@clause("tools.call.arguments-schema-valid")
def test_call_arguments_schema_valid(forced: Forced) -> None:
    """With tool_choice required or named, every tool call's arguments validate against the called function's declared JSON Schema (parameters, or arguments in the seeds' naming)."""
    for ex in forced.all:
        for call in _require_calls(ex):
            name = (call.get("function") or {}).get("name")
            schema = SCHEMAS.get(name)
            require(schema is not None, "a tool call names an undeclared function", actual=name, exchanges=ex)
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(_arguments(ex, call)), key=str)
            require(not errors, f"arguments of {name} do not validate against its schema",
                    expected=schema, actual=[e.message for e in errors], exchanges=ex)


@clause("tools.finish-reason.tool-calls")
def test_finish_reason_tool_calls(forced: Forced) -> None:
    """A choice whose message holds tool calls reports finish_reason tool_calls."""
    for ex in forced.all:
        for choice in _choices(ex):
            if _calls(choice):
                require(choice.get("finish_reason") == "tool_calls", "a choice with tool calls must end tool_calls",
                        expected="tool_calls", actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.absent.no-calls")
def test_absent_no_calls(target: Target) -> None:
    """A request without tools never gets a response with tool_calls."""
    ex = target.ok(target.body(messages=[{"role": "user", "content": PROMPT}], max_tokens=24, temperature=0),
                   headers=FRESH)
    for choice in _choices(ex):
        require(not (choice.get("message") or {}).get("tool_calls"), "tool calls without tools in the request",
                actual=choice, exchanges=ex)
        require(choice.get("finish_reason") != "tool_calls", "finish_reason tool_calls without tools",
                actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.result.next-turn")
def test_result_next_turn(target: Target, forced: Forced) -> None:
    """A follow-up request holding the assistant's tool calls and a tool message with the matching tool_call_id is answered 200."""
    calls = _require_calls(forced.required)
    call = calls[0]
    messages = [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.get("id"), "type": "function", "function": {
                "name": (call.get("function") or {}).get("name"),
                "arguments": (call.get("function") or {}).get("arguments")}}]},
        {"role": "tool", "tool_call_id": call.get("id"), "content": '{"temperature": 18, "sky": "clear"}'},
    ]
    # Without tools: the conversation alone must be accepted (and it fits small contexts).
    ex = target.chat(target.body(messages=messages, max_tokens=16, temperature=0), headers=FRESH)
    require(ex.status == 200, "a tool result turn must be answered 200", expected=200,
            actual=f"{ex.status} {ex.body_text[:300]}", exchanges=(forced.required, ex))


# --- tools.stream --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streamed(target: Target) -> StreamExchange:
    """A stream with tool_choice required at temperature 0."""
    ex = target.chat_stream(_body(target, tool_choice="required", stream=True), headers=FRESH)
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
    plain = _ask(target, tool_choice="required")
    want = [((c.get("function") or {}).get("name"), _arguments(plain, c)) for c in _all_calls(plain)]
    got = []
    for _, call in sorted(_assembled(streamed).items()):
        try:
            got.append((call["name"], json.loads(call["arguments"])))
        except ValueError:
            got.append((call["name"], call["arguments"]))
    require(got == want, "the streamed tool calls differ from the non-streamed ones", expected=want, actual=got,
            exchanges=(plain, streamed))
