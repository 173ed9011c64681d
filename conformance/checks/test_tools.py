"""Function calling: tool_choice modes, tool definitions, tool call shape and arguments, tool results.

Streamed tool calls are checked in test_tools_stream.py; the shared requests are in conformance/tool_calls.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from conformance.client import Exchange, Target
from conformance.registry import clause
from conformance.samples import Deferred, SampleSet, need_answer, require_repeatable
from conformance.tool_calls import (
    ABSENT,
    DESCRIPTIONS,
    FRESH,
    PROMPT,
    SCHEMAS,
    TIME,
    TIME_SCHEMA,
    TOOLS,
    WEATHER,
    ask_tools,
    call_arguments,
    choice_calls,
    observed_calls,
    parsed_arguments,
    require_calls,
    response_choices,
    tool_body,
    tool_named,
    tool_result_turn,
)
from conformance.verdicts import Fail, NotApplicable, need, not_exercised, require, unsupported_or_fail


@dataclass
class Forced:
    """Responses with a forced tool call, answered or not, shared by the call-shape checks."""

    required: Exchange   # tool_choice required
    named: Exchange      # tool_choice naming time (the second tool, off-topic for the prompt)

    def calls(self) -> Iterator[tuple[Exchange, list[dict[str, Any]]]]:
        """(exchange, its tool calls) of each forced response that holds calls; then NotExercised, naming
        the tool_choice clause, for one that does not (so that a Fail on the other wins)."""
        later = Deferred()
        for ex, root in ((self.required, "tools.choice.required"), (self.named, "tools.choice.named")):
            calls: list[dict[str, Any]] = []
            with later:
                calls = observed_calls(ex, root, f"a request with {root.rsplit('.', 1)[-1]} tool_choice")
            if calls:
                yield ex, calls
        later.settle()


@pytest.fixture(scope="module")
def forced(target: Target) -> Forced:
    """One response with tool_choice required and one naming time (kept whatever the answer)."""
    return Forced(*target.many([lambda: target.chat(tool_body(target, tool_choice="required"), headers=FRESH),
                                lambda: target.chat(tool_body(target, tool_choice=tool_named("time")), headers=FRESH)]))


def _completion(ex: Exchange, feature: str) -> None:
    """200 + JSON object, or Fail/Unsupported (as Target.ok): for the check whose own request it is."""
    if ex.status != 200:
        unsupported_or_fail(ex, feature)
    require(isinstance(ex.json, dict), f"{feature}: 200 but the body is not a JSON object", expected="JSON object",
            actual=ex.body_text[:300], exchanges=ex)


# --- tools.choice ------------------------------------------------------------------------------


@clause("tools.choice.auto")
def test_choice_auto(target: Target) -> None:
    """With tools and tool_choice auto or absent, the response is 200 and holds either text content or tool calls of declared functions."""
    for params in ({"tool_choice": "auto"}, {}):
        ex = ask_tools(target, **params)
        for choice in response_choices(ex):
            calls = choice_calls(choice)
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
    ex = ask_tools(target, tool_choice="none")
    for choice in response_choices(ex):
        require(not choice_calls(choice), "tool_choice none produced tool calls", actual=choice_calls(choice), exchanges=ex)
        require(choice.get("finish_reason") != "tool_calls", "tool_choice none reported finish_reason tool_calls",
                actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.choice.required")
def test_choice_required(forced: Forced, responses: SampleSet) -> None:
    """With tools and tool_choice required, every choice holds at least one tool call and finish_reason tool_calls."""
    for ex in [forced.required] + [s.exchange for s in responses.rooted("tools.choice.required")]:
        _completion(ex, "tool_choice required")
        require_calls(ex)
        for choice in response_choices(ex):
            require(choice.get("finish_reason") == "tool_calls", "tool_choice required must end with tool_calls",
                    expected="tool_calls", actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.choice.named")
def test_choice_named(forced: Forced) -> None:
    """With tool_choice naming a declared function, every choice calls exactly that function."""
    ex = forced.named
    _completion(ex, "tool_choice naming a function")
    for choice in response_choices(ex):
        names = [(c.get("function") or {}).get("name") for c in choice_calls(choice) if isinstance(c, dict)]
        require(names != [] and set(names) == {"time"}, "tool_choice named time must call time only",
                expected=["time"], actual=names or choice, exchanges=ex)


# --- tools.definition / tool_prompt --------------------------------------------------------------


@clause("tools.definition.accepted")
def test_definition_accepted(target: Target) -> None:
    """A tool of type function with a name, an optional description and a JSON Schema for its parameters is accepted."""
    bare = {"type": "function", "function": {"name": "time", "parameters": TIME_SCHEMA}}
    for tools in (TOOLS, [bare]):
        ask_tools(target, "tool definition", tools=tools, max_tokens=8)


def _calls_of(ex: Exchange) -> list[dict[str, Any]]:
    """The tool calls (objects) of every choice of an answer, [] when there are none."""
    choices = ex.json.get("choices") if isinstance(ex.json, dict) else None
    return [c for ch in choices or [] if isinstance(ch, dict) for c in choice_calls(ch) if isinstance(c, dict)]


def _named_arguments(ex: Exchange, calls: list[dict[str, Any]], judge: bool = True) -> list[tuple[Any, Any]]:
    """(name, parsed arguments) per call: NotExercised (tools.call.arguments-json) for arguments that are not JSON,
    unless `judge` is False (then the raw text stands in)."""
    out = []
    for call in calls:
        arguments = parsed_arguments(call)
        if judge:
            need(isinstance(arguments, dict), "tool call arguments holding a JSON object", root="tools.call.arguments-json",
                 actual=(call.get("function") or {}).get("arguments"), exchanges=ex)
        out.append(((call.get("function") or {}).get("name"), arguments))
    return out


@clause("tools.definition.arguments-alias")
def test_definition_arguments_alias(target: Target) -> None:
    """A function whose JSON Schema is given under arguments (the seeds' name) is treated like one given under parameters."""
    alias = {"type": "function", "function": {
        "name": "time", "description": DESCRIPTIONS["time"], "arguments": TIME_SCHEMA}}
    params_body = tool_body(target, tools=[TIME], tool_choice="required")
    via_alias, via_params = target.many([
        lambda: ask_tools(target, "tool schema under arguments", tools=[alias], tool_choice="required"),
        lambda: target.chat(params_body, headers=FRESH)])
    alias_calls = _calls_of(via_alias)
    if not alias_calls:  # a failure of this clause only when the same request under parameters gets a call
        observed_calls(via_params, "tools.choice.required", "the same function with its schema under parameters")
        raise Fail("with the schema under `arguments` no tool call was made, under `parameters` one was",
                   expected="message.tool_calls", actual=response_choices(via_alias), exchanges=(via_alias, via_params))
    got = _named_arguments(via_alias, alias_calls)
    for _, arguments in got:
        errors = sorted(jsonschema.Draft202012Validator(TIME_SCHEMA).iter_errors(arguments), key=str)
        require(not errors, "arguments ignore the schema given under `arguments`",
                expected=TIME_SCHEMA, actual=[e.message for e in errors], exchanges=via_alias)
    want = _named_arguments(via_params, observed_calls(via_params, "tools.choice.required", "the schema under parameters"))
    if got != want:
        require_repeatable(target, params_body, via_params, lambda ex: _named_arguments(ex, _calls_of(ex), judge=False))
    require(got == want, "at temperature 0 the schema under `arguments` gave other calls than under `parameters`",
            expected=want, actual=got, exchanges=(via_alias, via_params))


@clause("tools.definition.strict-accepted")
def test_definition_strict_accepted(target: Target) -> None:
    """A function definition with strict true or false is accepted."""
    for strict in (True, False):
        tool = {"type": "function", "function": {**WEATHER["function"], "strict": strict}}
        ex = target.chat(tool_body(target, tools=[tool], max_tokens=8), headers=FRESH)
        require(ex.status == 200, f"a function definition with strict {strict} must be accepted",
                expected=200, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


@clause("tools.call.description-echo")
def test_call_description_echo(forced: Forced) -> None:
    """A tool call's function.description, when present and not null, equals the called function's declared description."""
    echoed = 0
    for ex, calls in forced.calls():
        for call in calls:
            function = call.get("function") or {}
            if function.get("description") is None:
                continue
            echoed += 1
            name = function.get("name")
            declared = DESCRIPTIONS.get(name) if isinstance(name, str) else None
            require(function["description"] == declared, "function.description differs from the declared description",
                    expected=declared, actual=function["description"], exchanges=ex)
    if not echoed:
        raise NotApplicable("no tool call carried function.description (an optional echo)")


@clause("tools.tool-prompt.accepted")
def test_tool_prompt_accepted(target: Target) -> None:
    """A request with tools and a tool_prompt string is accepted and answered 200."""
    ex = target.chat(tool_body(target, tool_prompt="You may call these functions:", max_tokens=8), headers=FRESH)
    require(ex.status == 200, "tools with a tool_prompt must be answered 200", expected=200,
            actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


# --- tools.call ----------------------------------------------------------------------------------


@clause("tools.call.type")
def test_call_type(forced: Forced) -> None:
    """Every tool call has type function."""
    for ex, calls in forced.calls():
        for call in calls:
            require(call.get("type") == "function", "a tool call's type must be function", expected="function",
                    actual=call.get("type"), exchanges=ex)


@clause("tools.call.id-unique")
def test_call_id_unique(forced: Forced) -> None:
    """Every tool call id is a non-empty string, distinct from the other tool call ids of the response."""
    for ex, calls in forced.calls():
        ids = [call.get("id") for call in calls]
        require(all(isinstance(i, str) and i for i in ids), "a tool call id is empty or not a string",
                actual=ids, exchanges=ex)
        require(len(set(ids)) == len(ids), "tool call ids repeat within one response", actual=ids, exchanges=ex)


@clause("tools.call.name-declared")
def test_call_name_declared(forced: Forced) -> None:
    """Every tool call names a function declared in the request's tools."""
    for ex, calls in forced.calls():
        for call in calls:
            name = (call.get("function") or {}).get("name")
            require(name in SCHEMAS, "a tool call names an undeclared function", expected=sorted(SCHEMAS),
                    actual=name, exchanges=ex)


@clause("tools.call.arguments-json")
def test_call_arguments_json(forced: Forced) -> None:
    """Every tool call's function.arguments is a string holding a JSON object."""
    for ex, calls in forced.calls():
        for call in calls:
            call_arguments(ex, call)


@clause("tools.call.arguments-schema-valid")
def test_call_arguments_schema_valid(forced: Forced) -> None:
    """With tool_choice required or named, every tool call's arguments validate against the called function's declared JSON Schema (parameters, or arguments in the seeds' naming)."""
    later = Deferred()
    for ex, calls in forced.calls():
        for call in calls:
            name = (call.get("function") or {}).get("name")
            with later:
                schema = SCHEMAS.get(name) if isinstance(name, str) else None
                if schema is None:
                    raise not_exercised("a call of a declared function", root="tools.call.name-declared",
                                        actual=name, exchanges=ex)
                arguments = _named_arguments(ex, [call])[0][1]
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(arguments), key=str)
                require(not errors, f"arguments of {name} do not validate against its schema",
                        expected=schema, actual=[e.message for e in errors], exchanges=ex)
    later.settle()


@clause("tools.finish-reason.tool-calls")
def test_finish_reason_tool_calls(forced: Forced) -> None:
    """A choice whose message holds tool calls reports finish_reason tool_calls."""
    for ex, _ in forced.calls():
        for choice in response_choices(ex):
            if choice_calls(choice):
                require(choice.get("finish_reason") == "tool_calls", "a choice with tool calls must end tool_calls",
                        expected="tool_calls", actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.absent.no-calls")
def test_absent_no_calls(target: Target) -> None:
    """A request without tools never gets a response with tool_calls."""
    ex = target.chat(target.body(messages=[{"role": "user", "content": PROMPT}], max_tokens=24, temperature=0),
                     headers=FRESH)
    need_answer(ex, "a request without tools", "request.messages.accepted")
    for choice in response_choices(ex):
        require(not (choice.get("message") or {}).get("tool_calls"), "tool calls without tools in the request",
                actual=choice, exchanges=ex)
        require(choice.get("finish_reason") != "tool_calls", "finish_reason tool_calls without tools",
                actual=choice.get("finish_reason"), exchanges=ex)


@clause("tools.result.next-turn")
def test_result_next_turn(target: Target) -> None:
    """A follow-up request holding the assistant's tool calls and a tool message with the matching tool_call_id is answered 200."""
    # Built by hand with a fixed call, so that it does not depend on the target's own tool calls. Without
    # tools: the conversation alone must be accepted (and it fits small contexts). The assistant's content
    # takes each allowed form until one is accepted: refusing some forms is message.assistant.tool-calls-content's.
    tried = []
    for content in (None, ABSENT, ""):
        ex = target.chat(target.body(messages=tool_result_turn(content), max_tokens=16, temperature=0), headers=FRESH)
        tried.append(ex)
        if ex.status == 200:
            return
    raise Fail("a tool result turn must be answered 200 (assistant content null, absent and \"\" all tried)",
               expected=200, actual=[f"{ex.status} {ex.body_text[:150]}" for ex in tried], exchanges=tried)
