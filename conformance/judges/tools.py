"""Function calling in one answer, judged once: tool_choice modes, the shape of each tool call, finish_reason.

The functions a request declares and the tool_choice it sent are read from the exchange's own
request body; a judge reads the choices of a 200 non-streaming answer that are objects, and the
tool calls of their messages that are objects (a call that is not an object is the schema's).
Streamed tool calls are judged in tool_stream.py.

    declared(request) -> {name: Declared(schema, description)}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from conformance.exchange import Exchange
from conformance.judges.registry import ANSWER, Problem, judge
from conformance.judges.response import choice_list, completion_body, declares_tools
from conformance.judges.stream import request_of

FUNCTION = "function"
TOOL_CALLS = "tool_calls"


@dataclass(frozen=True)
class Declared:
    """A function the request declares: its JSON Schema (parameters, or arguments in the seeds' naming) and description."""

    schema: Any
    description: Any


def declared(request: dict[str, Any]) -> dict[str, Declared]:
    """The functions of the request's tools, by name."""
    found: dict[str, Declared] = {}
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            schema = function.get("parameters", function.get("arguments"))
            found[function["name"]] = Declared(schema, function.get("description"))
    return found


def tool_choice(request: dict[str, Any]) -> str | None:
    """The tool_choice mode: auto (also when absent or null), none, required, named; None for anything else."""
    choice = request.get("tool_choice")
    if choice is None or choice in ("auto", "none", "required"):
        return choice or "auto"
    return "named" if named_function(request) is not None else None


def named_function(request: dict[str, Any]) -> str | None:
    """The function a tool_choice {"type": "function", "function": {"name": ...}} names (None otherwise)."""
    choice = request.get("tool_choice")
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def message_of(choice: dict[str, Any]) -> dict[str, Any]:
    """A choice's message ({} when it is not an object)."""
    message = choice.get("message")
    return message if isinstance(message, dict) else {}


def choice_calls(choice: dict[str, Any]) -> list[Any]:
    """message.tool_calls of a choice, as sent ([] when it is not a list)."""
    calls = message_of(choice).get("tool_calls")
    return calls if isinstance(calls, list) else []


def function_of(call: Any) -> dict[str, Any]:
    """A tool call's function object ({} when the call or its function is not an object)."""
    function = call.get("function") if isinstance(call, dict) else None
    return function if isinstance(function, dict) else {}


def answer_choices(ex: Exchange) -> list[dict[str, Any]]:
    """The choices (objects) of a 200 non-streaming answer."""
    body = completion_body(ex)
    return choice_list(body) if body is not None else []


def answer_calls(ex: Exchange) -> list[dict[str, Any]]:
    """Every tool call (object) of every choice of a 200 non-streaming answer."""
    return [call for choice in answer_choices(ex) for call in choice_calls(choice) if isinstance(call, dict)]


def parsed_arguments(call: dict[str, Any]) -> Any:
    """function.arguments parsed as JSON, or None when it is not a string holding JSON."""
    raw = function_of(call).get("arguments")
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def arguments_problem(call: dict[str, Any]) -> Problem | None:
    """What is wrong with a call's function.arguments (None: a string holding a JSON object)."""
    raw = function_of(call).get("arguments")
    if not isinstance(raw, str):
        return Problem("function.arguments must be a JSON string", expected="string", actual=raw)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return Problem(f"function.arguments is not JSON: {exc}", expected="a JSON object", actual=raw)
    if not isinstance(value, dict):
        return Problem("function.arguments must hold a JSON object", expected="a JSON object", actual=raw)
    return None


def schema_errors(schema: Any, value: Any) -> list[str] | None:
    """The messages of value's violations of a JSON Schema (draft 2020-12); None when schema is no valid schema."""
    if not isinstance(schema, dict | bool):
        return None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return None
    return [e.message for e in sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=str)]


# --- tools.choice -----------------------------------------------------------------------------------


@judge("tools.choice.auto", on=[ANSWER])
def choice_auto(ex: Exchange) -> list[Problem]:
    """With tools and tool_choice auto or absent, each choice holds text content or tool calls of declared functions."""
    request = request_of(ex)
    if not declares_tools(request) or tool_choice(request) != "auto":
        return []
    names = declared(request)
    found = []
    for choice in answer_choices(ex):
        calls = choice_calls(choice)
        if not calls and not isinstance(message_of(choice).get("content"), str):
            found.append(Problem("neither text content nor tool calls", expected="content or tool_calls",
                                 actual=choice))
        found += [Problem("a tool call names an undeclared function", expected=sorted(names),
                          actual=function_of(call).get("name"))
                  for call in calls if function_of(call).get("name") not in names]
    return found


@judge("tools.choice.none", on=[ANSWER])
def choice_none(ex: Exchange) -> list[Problem]:
    """With tools and tool_choice none, no choice has tool_calls and no finish_reason is tool_calls."""
    request = request_of(ex)
    if not declares_tools(request) or tool_choice(request) != "none":
        return []
    found = []
    for choice in answer_choices(ex):
        if choice_calls(choice):
            found.append(Problem("tool_choice none produced tool calls", expected="no tool calls",
                                 actual=choice_calls(choice)))
        if choice.get("finish_reason") == TOOL_CALLS:
            found.append(Problem("tool_choice none reported finish_reason tool_calls", expected="not tool_calls",
                                 actual=choice.get("finish_reason")))
    return found


@judge("tools.choice.required", on=[ANSWER])
def choice_required(ex: Exchange) -> list[Problem]:
    """With tools and tool_choice required, every choice holds at least one tool call and finish_reason tool_calls."""
    request = request_of(ex)
    if not declares_tools(request) or tool_choice(request) != "required":
        return []
    found = []
    for choice in answer_choices(ex):
        calls = choice_calls(choice)
        if not calls:
            found.append(Problem("a forced tool choice produced a choice without tool calls",
                                 expected="message.tool_calls: [...]", actual=choice))
        found += [Problem("a tool call is not an object", expected="an object", actual=call)
                  for call in calls if not isinstance(call, dict)]
        if choice.get("finish_reason") != TOOL_CALLS:
            found.append(Problem("tool_choice required must end with tool_calls", expected=TOOL_CALLS,
                                 actual=choice.get("finish_reason")))
    return found


@judge("tools.choice.named", on=[ANSWER])
def choice_named(ex: Exchange) -> list[Problem]:
    """With tool_choice naming a declared function, every choice calls exactly that function."""
    request = request_of(ex)
    name = named_function(request)
    if name is None or name not in declared(request):
        return []
    found = []
    for choice in answer_choices(ex):
        names = [function_of(call).get("name") for call in choice_calls(choice) if isinstance(call, dict)]
        if not names or set(names) != {name}:
            found.append(Problem(f"tool_choice named {name} must call {name} only", expected=[name],
                                 actual=names or choice))
    return found


# --- tools.call -------------------------------------------------------------------------------------


@judge("tools.call.description-echo", on=[ANSWER])
def description_echo(ex: Exchange) -> list[Problem]:
    """A tool call's function.description, when present and not null, equals the called function's declared description."""
    names = declared(request_of(ex))
    found = []
    for call in answer_calls(ex):
        function = function_of(call)
        if function.get("description") is None:
            continue
        name = function.get("name")
        want = names[name].description if isinstance(name, str) and name in names else None
        if function["description"] != want:
            found.append(Problem("function.description differs from the declared description", expected=want,
                                 actual=function["description"]))
    return found


@judge("tools.call.type", on=[ANSWER])
def call_type(ex: Exchange) -> list[Problem]:
    """Every tool call has type function."""
    return [Problem("a tool call's type must be function", expected=FUNCTION, actual=call.get("type"))
            for call in answer_calls(ex) if call.get("type") != FUNCTION]


@judge("tools.call.id-unique", on=[ANSWER])
def call_ids(ex: Exchange) -> list[Problem]:
    """Every tool call id is a non-empty string, distinct from the other tool call ids of the answer."""
    ids = [call.get("id") for call in answer_calls(ex)]
    found = []
    if not all(isinstance(i, str) and i for i in ids):
        found.append(Problem("a tool call id is empty or not a string", expected="non-empty strings", actual=ids))
    if len(set(map(repr, ids))) != len(ids):
        found.append(Problem("tool call ids repeat within one response", expected="distinct ids", actual=ids))
    return found


@judge("tools.call.name-declared", on=[ANSWER])
def call_name_declared(ex: Exchange) -> list[Problem]:
    """Every tool call names a function declared in the request's tools."""
    names = declared(request_of(ex))
    return [Problem("a tool call names an undeclared function", expected=sorted(names),
                    actual=function_of(call).get("name"))
            for call in answer_calls(ex) if function_of(call).get("name") not in names]


@judge("tools.call.arguments-json", on=[ANSWER])
def call_arguments_json(ex: Exchange) -> list[Problem]:
    """Every tool call's function.arguments is a string holding a JSON object."""
    return [problem for call in answer_calls(ex) if (problem := arguments_problem(call)) is not None]


@judge("tools.call.arguments-schema-valid", on=[ANSWER])
def call_arguments_schema_valid(ex: Exchange) -> list[Problem]:
    """With tool_choice required or named, every call's arguments validate against the called function's declared
    JSON Schema (a call of an undeclared function, or whose arguments are no JSON object, is another rule's)."""
    request = request_of(ex)
    if tool_choice(request) not in ("required", "named"):
        return []
    names = declared(request)
    found = []
    for call in answer_calls(ex):
        name, arguments = function_of(call).get("name"), parsed_arguments(call)
        if not isinstance(name, str) or name not in names or not isinstance(arguments, dict):
            continue
        errors = schema_errors(names[name].schema, arguments)
        if errors:
            found.append(Problem(f"arguments of {name} do not validate against its schema",
                                 expected=names[name].schema, actual=errors))
    return found


@judge("tools.finish-reason.tool-calls", on=[ANSWER])
def finish_tool_calls(ex: Exchange) -> list[Problem]:
    """A choice whose message holds tool calls reports finish_reason tool_calls."""
    return [Problem("a choice with tool calls must end tool_calls", expected=TOOL_CALLS,
                    actual=choice.get("finish_reason"))
            for choice in answer_choices(ex) if choice_calls(choice) and choice.get("finish_reason") != TOOL_CALLS]


@judge("tools.absent.no-calls", on=[ANSWER])
def no_calls_without_tools(ex: Exchange) -> list[Problem]:
    """The answer to a request without tools has no tool_calls and no finish_reason tool_calls."""
    if declares_tools(request_of(ex)):
        return []
    found = []
    for choice in answer_choices(ex):
        if message_of(choice).get("tool_calls"):
            found.append(Problem("tool calls without tools in the request", expected="no tool_calls", actual=choice))
        if choice.get("finish_reason") == TOOL_CALLS:
            found.append(Problem("finish_reason tool_calls without tools", expected="not tool_calls",
                                 actual=choice.get("finish_reason")))
    return found


__all__ = [
    "Declared", "answer_calls", "answer_choices", "arguments_problem", "choice_calls", "declared", "function_of",
    "message_of", "named_function", "parsed_arguments", "schema_errors", "tool_choice",
]
