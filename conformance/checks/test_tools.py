"""Function calling: tool_choice modes, tool definitions, tool call shape and arguments, tool results.

Streamed tool calls are checked in test_tools_stream.py; the shared requests are in conformance/tool_calls.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from conformance.client import Exchange, Target
from conformance.judges import enforce
from conformance.judges.stream import request_of
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
    choice_calls,
    observed_calls,
    parsed_arguments,
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

    def judge(self, clause_id: str) -> None:
        """The clause's judge on each forced response that holds calls; then NotExercised for one that does not."""
        for ex, _ in self.calls():
            enforce(clause_id, ex, _label(ex))

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


def _label(ex: Exchange) -> str:
    """What a tool request forced: its tool_choice."""
    return f"tool_choice {json.dumps(request_of(ex).get('tool_choice'))}"


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
        response_choices(ex)
        enforce("tools.choice.auto", ex, f"tool_choice {params.get('tool_choice', 'absent')}")


@clause("tools.choice.none")
def test_choice_none(target: Target) -> None:
    """With tools and tool_choice none, no choice has tool_calls and no finish_reason is tool_calls."""
    ex = ask_tools(target, tool_choice="none")
    response_choices(ex)
    enforce("tools.choice.none", ex, "tool_choice none")


@clause("tools.choice.required")
def test_choice_required(forced: Forced, responses: SampleSet) -> None:
    """With tools and tool_choice required, every choice holds at least one tool call and finish_reason tool_calls."""
    for ex in [forced.required] + [s.exchange for s in responses.rooted("tools.choice.required")]:
        _completion(ex, "tool_choice required")
        response_choices(ex)
        enforce("tools.choice.required", ex, "tool_choice required")


@clause("tools.choice.named")
def test_choice_named(forced: Forced) -> None:
    """With tool_choice naming a declared function, every choice calls exactly that function."""
    ex = forced.named
    _completion(ex, "tool_choice naming a function")
    response_choices(ex)
    enforce("tools.choice.named", ex, "tool_choice naming time")


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
        enforce("tools.call.description-echo", ex, _label(ex))
        echoed += sum((call.get("function") or {}).get("description") is not None for call in calls)
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
    forced.judge("tools.call.type")


@clause("tools.call.id-unique")
def test_call_id_unique(forced: Forced) -> None:
    """Every tool call id is a non-empty string, distinct from the other tool call ids of the response."""
    forced.judge("tools.call.id-unique")


@clause("tools.call.name-declared")
def test_call_name_declared(forced: Forced) -> None:
    """Every tool call names a function declared in the request's tools."""
    forced.judge("tools.call.name-declared")


@clause("tools.call.arguments-json")
def test_call_arguments_json(forced: Forced) -> None:
    """Every tool call's function.arguments is a string holding a JSON object."""
    forced.judge("tools.call.arguments-json")


@clause("tools.call.arguments-schema-valid")
def test_call_arguments_schema_valid(forced: Forced) -> None:
    """With tool_choice required or named, every tool call's arguments validate against the called function's declared JSON Schema (parameters, or arguments in the seeds' naming)."""
    later = Deferred()
    for ex, calls in forced.calls():
        enforce("tools.call.arguments-schema-valid", ex, _label(ex))
        for call in calls:
            name = (call.get("function") or {}).get("name")
            with later:
                if not (isinstance(name, str) and name in SCHEMAS):
                    raise not_exercised("a call of a declared function", root="tools.call.name-declared",
                                        actual=name, exchanges=ex)
                _named_arguments(ex, [call])
    later.settle()


@clause("tools.finish-reason.tool-calls")
def test_finish_reason_tool_calls(forced: Forced) -> None:
    """A choice whose message holds tool calls reports finish_reason tool_calls."""
    for ex, _ in forced.calls():
        response_choices(ex)
        enforce("tools.finish-reason.tool-calls", ex, _label(ex))


@clause("tools.absent.no-calls")
def test_absent_no_calls(target: Target) -> None:
    """A request without tools never gets a response with tool_calls."""
    ex = target.chat(target.body(messages=[{"role": "user", "content": PROMPT}], max_tokens=24, temperature=0),
                     headers=FRESH)
    need_answer(ex, "a request without tools", "request.messages.accepted")
    response_choices(ex)
    enforce("tools.absent.no-calls", ex, "a request without tools")


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
