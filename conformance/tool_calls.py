"""The requests and response readers the function-calling checks share (conformance/checks/test_tools*.py).

The tools' argument schemas use enums, so a constrained call has a short bounded form on any model
(also on one with random weights) and max_tokens 36 suffices; names, descriptions and the prompt are short so that
two tools, the prompt and a call fit a 256-token context (the tiny test model's).
"""

from __future__ import annotations

from typing import Any

from conformance.client import Exchange, Target
from conformance.judges.tools import choice_calls, parsed_arguments  # noqa: F401 - re-exported
from conformance.verdicts import Fail, need, not_exercised

FRESH = {"x-use-cache": "false"}
PROMPT = "Weather in Paris?"
MAX_TOKENS = 36

# Kept small: small-context models (256 tokens) must still fit two tools, the prompt and a call.
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Tokyo"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"enum": ["UTC", "JST"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "weather", "description": "Weather.", "parameters": WEATHER_SCHEMA}}
TIME: dict[str, Any] = {"type": "function", "function": {
    "name": "time", "description": "Time.", "parameters": TIME_SCHEMA}}
TOOLS = [WEATHER, TIME]
SCHEMAS: dict[str, dict[str, Any]] = {"weather": WEATHER_SCHEMA, "time": TIME_SCHEMA}
DESCRIPTIONS = {"weather": "Weather.", "time": "Time."}


# The assistant turn of a hand-built tool-result conversation: a fixed call, so that the follow-up
# request does not depend on the target's own tool calls (judged by their own clauses).
FIXED_CALL: dict[str, Any] = {"id": "call_chatconform_1", "type": "function",
              "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
ABSENT = object()  # tool_result_turn(content=ABSENT): the assistant message has no content key


def tool_result_turn(content: Any = None) -> list[dict[str, Any]]:
    """user, assistant (FIXED_CALL and the given content, or none with ABSENT), tool result for that call."""
    assistant: dict[str, Any] = {"role": "assistant", "tool_calls": [FIXED_CALL]}
    if content is not ABSENT:
        assistant["content"] = content
    return [{"role": "user", "content": PROMPT}, assistant,
            {"role": "tool", "tool_call_id": FIXED_CALL["id"], "content": '{"temperature": 18, "sky": "clear"}'}]


def tool_named(name: str) -> dict[str, Any]:
    """A tool_choice naming one function."""
    return {"type": "function", "function": {"name": name}}


def tool_body(target: Target, **params: Any) -> dict[str, Any]:
    """A temperature 0 request with the two tools (unless given) and the weather prompt."""
    params.setdefault("tools", TOOLS)
    params.setdefault("max_tokens", MAX_TOKENS)
    return target.body(messages=[{"role": "user", "content": PROMPT}], temperature=0, **params)


def ask_tools(target: Target, feature: str = "tools", **params: Any) -> Exchange:
    """tool_body sent uncached: 200 + JSON object, or Fail/Unsupported."""
    return target.ok(tool_body(target, **params), feature=feature, headers=FRESH)


def response_choices(ex: Exchange) -> list[dict[str, Any]]:
    """The choices of a completion (Fail when there are none)."""
    choices = ex.json_object.get("choices")
    if not (isinstance(choices, list) and choices and all(isinstance(c, dict) for c in choices)):
        raise Fail("the response holds no choices", actual=ex.body_text[:300], exchanges=ex)
    return choices


def observed_calls(ex: Exchange, root: str, what: str) -> list[dict[str, Any]]:
    """The tool calls (objects) of a response a check needs: NotExercised (root) unless it is 200 with calls."""
    body = ex.json if ex.status == 200 else None
    if not isinstance(body, dict):
        raise not_exercised(f"a 200 answer to {what}", root=root, actual=f"{ex.status} {ex.body_text[:200]}",
                            exchanges=ex)
    found = body.get("choices")
    choices = found if isinstance(found, list) else []
    calls = [c for choice in choices if isinstance(choice, dict) for c in choice_calls(choice) if isinstance(c, dict)]
    need(bool(calls), f"a tool call in the answer to {what}", root=root, actual=choices, exchanges=ex)
    return calls
