"""The suite's corpus of invalid requests: each names the clause it breaks and the field at fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.samples import WEATHER_TOOL

_REMOVE = object()  # marks a key to delete from the base body


@dataclass(frozen=True)
class InvalidCase:
    """One invalid request: the clause it breaks, a label, body overrides and the field the error should name."""

    clause_id: str
    label: str
    overrides: tuple[tuple[str, Any], ...]
    field: str

    def body(self, base: dict[str, Any]) -> dict[str, Any]:
        """The base body with the overrides applied (a _REMOVE value deletes the key)."""
        body = dict(base)
        for key, value in self.overrides:
            if value is _REMOVE:
                body.pop(key, None)
            else:
                body[key] = value
        return body


def _case(clause_id: str, label: str, field: str, **overrides: Any) -> InvalidCase:
    return InvalidCase(clause_id, label, tuple(overrides.items()), field)


def _user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def _schema_format(dialect: str, schema: Any) -> dict[str, Any]:
    if dialect == "openai":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return {"type": "json", "value": schema}


def invalid_cases(dialect: str) -> list[InvalidCase]:
    """Every invalid field value the errors.* clauses name, as requests (in clause order)."""
    tool = WEATHER_TOOL
    return [
        _case("errors.messages.missing", "messages missing", "messages", messages=_REMOVE),
        _case("errors.messages.empty", "messages empty", "messages", messages=[]),
        _case("errors.message.role-invalid", "role wizard", "role", messages=[{"role": "wizard", "content": "Hi."}]),
        _case("errors.message.role-invalid", "role missing", "role", messages=[{"content": "Hi."}]),
        _case("errors.message.content-invalid", "content missing", "content", messages=[{"role": "user"}]),
        _case("errors.message.content-invalid", "content number", "content", messages=_user(42)),
        _case("errors.message.content-invalid", "content object", "content", messages=_user({"text": "Hi."})),
        _case("errors.content-part.type-unknown", "part type audio", "type",
              messages=_user([{"type": "audio", "audio": "Hi."}])),
        _case("errors.content-part.type-unknown", "text part without text", "text", messages=_user([{"type": "text"}])),
        _case("errors.content-part.type-unknown", "image part without image_url", "image_url",
              messages=_user([{"type": "image_url"}])),
        _case("errors.field.wrong-type", "temperature string", "temperature", temperature="0.5"),
        _case("errors.field.wrong-type", "max_tokens string", "max_tokens", max_tokens="8"),
        _case("errors.field.wrong-type", "stream string", "stream", stream="yes"),
        # Other wrong JSON types that lenient servers coerce or drop in silence (and then answer 200).
        _case("errors.field.wrong-type", "stop number", "stop", stop=5),
        _case("errors.field.wrong-type", "frequency_penalty boolean", "frequency_penalty", frequency_penalty=True),
        _case("errors.field.wrong-type", "max_tokens fractional", "max_tokens", max_tokens=4.5),
        _case("errors.field.wrong-type", "logprobs integer", "logprobs", logprobs=1),
        _case("errors.field.wrong-type", "temperature boolean", "temperature", temperature=True),
        _case("errors.field.wrong-type", "n fractional", "n", n=1.5),
        _case("errors.max-tokens.negative", "max_tokens -1", "max_tokens", max_tokens=-1),
        _case("errors.max-tokens.beyond-context", "max_tokens 10^9", "max_tokens", max_tokens=1_000_000_000),
        _case("errors.temperature.range", "temperature -0.5", "temperature", temperature=-0.5),
        _case("errors.temperature.range", "temperature 2.5", "temperature", temperature=2.5),
        _case("errors.top-p.range", "top_p -0.1", "top_p", top_p=-0.1),
        _case("errors.top-p.range", "top_p 1.5", "top_p", top_p=1.5),
        _case("errors.frequency-penalty.range", "frequency_penalty -2.5", "frequency_penalty", frequency_penalty=-2.5),
        _case("errors.frequency-penalty.range", "frequency_penalty 2.5", "frequency_penalty", frequency_penalty=2.5),
        _case("errors.presence-penalty.range", "presence_penalty -2.5", "presence_penalty", presence_penalty=-2.5),
        _case("errors.presence-penalty.range", "presence_penalty 2.5", "presence_penalty", presence_penalty=2.5),
        _case("errors.top-logprobs.range", "top_logprobs -1", "top_logprobs", logprobs=True, top_logprobs=-1),
        _case("errors.top-logprobs.range", "top_logprobs 6", "top_logprobs", logprobs=True, top_logprobs=6),
        _case("errors.top-logprobs.without-logprobs", "top_logprobs 0 without logprobs", "top_logprobs", top_logprobs=0),
        _case("errors.top-logprobs.without-logprobs", "top_logprobs 2 with logprobs false", "top_logprobs",
              logprobs=False, top_logprobs=2),
        _case("errors.stop.too-many", "five stop sequences", "stop", stop=["a", "b", "c", "d", "e"]),
        _case("errors.n.invalid", "n 0", "n", n=0),
        _case("errors.n.invalid", "n -1", "n", n=-1),
        _case("errors.seed.negative", "seed -1", "seed", seed=-1),
        _case("errors.logit-bias.range", "logit_bias 101", "logit_bias", logit_bias={"42": 101}),
        _case("errors.logit-bias.range", "logit_bias -101", "logit_bias", logit_bias={"42": -101}),
        _case("errors.tool-choice.unknown-function", "tool_choice names an unknown function", "tool_choice",
              tools=[tool], tool_choice={"type": "function", "function": {"name": "no_such_function"}}),
        _case("errors.tool-choice.invalid", "tool_choice sometimes", "tool_choice", tools=[tool], tool_choice="sometimes"),
        _case("errors.tool-choice.without-tools", "tool_choice required without tools", "tool_choice",
              tool_choice="required"),
        _case("errors.tool-choice.without-tools", "tool_choice names a function without tools", "tool_choice",
              tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        _case("errors.tools.invalid-definition", "tool without function.name", "name",
              tools=[{"type": "function", "function": {"parameters": {"type": "object"}}}]),
        _case("errors.tools.invalid-definition", "tool type retrieval", "type",
              tools=[{"type": "retrieval", "function": tool["function"]}]),
        _case("errors.format.invalid-schema", "schema with type 12", "response_format",
              response_format=_schema_format(dialect, {"type": 12})),
        _case("errors.format.invalid-schema", "schema with an unknown type name", "response_format",
              response_format=_schema_format(dialect, {"type": "objekt"})),
        _case("errors.format.invalid-regex", "regex that does not compile", "response_format",
              response_format={"type": "regex", "value": "(unclosed"}),
        _case("errors.format.type-unknown", "response_format type xml", "response_format",
              response_format={"type": "xml"}),
        _case("errors.stream-options.type", "include_usage string", "include_usage",
              stream=True, stream_options={"include_usage": "yes"}),
    ]
