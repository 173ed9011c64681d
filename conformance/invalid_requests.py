"""The suite's corpus of invalid requests: each names the clause it breaks and the field at fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.samples import WEATHER_TOOL
from spec import limits

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


def _outside(clause_id: str, field: str, below: float, above: float, **extra: Any) -> list[InvalidCase]:
    """Two cases: the field `below` under its spec minimum and `above` over its maximum (spec/openapi.yaml)."""
    found = limits.bounds(field)
    integral = found.low is not None and float(found.low).is_integer() and float(below).is_integer()
    values = (found.below(below), found.above(above))
    return [_case(clause_id, f"{field} {value:g}", field, **extra, **{field: int(value) if integral else value})
            for value in values]


def invalid_cases(dialect: str) -> list[InvalidCase]:
    """Every invalid field value the errors.* clauses name, as requests (in clause order)."""
    tool = WEATHER_TOOL
    too_many = limits.max_stop_sequences() + 1
    n_low = limits.bounds("n").low or 1
    bias = limits.logit_bias_bounds()
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
        *_outside("errors.temperature.range", "temperature", 0.5, 0.5),
        *_outside("errors.top-p.range", "top_p", 0.1, 0.5),
        *_outside("errors.frequency-penalty.range", "frequency_penalty", 0.5, 0.5),
        *_outside("errors.presence-penalty.range", "presence_penalty", 0.5, 0.5),
        *_outside("errors.top-logprobs.range", "top_logprobs", 1, 1, logprobs=True),
        _case("errors.top-logprobs.without-logprobs", "top_logprobs 0 without logprobs", "top_logprobs", top_logprobs=0),
        _case("errors.top-logprobs.without-logprobs", "top_logprobs 2 with logprobs false", "top_logprobs",
              logprobs=False, top_logprobs=2),
        _case("errors.stop.too-many", f"{too_many} stop sequences", "stop",
              stop=[chr(ord("a") + i) for i in range(too_many)]),
        _case("errors.n.invalid", f"n {n_low - 1:g}", "n", n=int(n_low - 1)),
        _case("errors.n.invalid", f"n {n_low - 2:g}", "n", n=int(n_low - 2)),
        _case("errors.seed.negative", "seed -1", "seed", seed=-1),
        _case("errors.logit-bias.range", f"logit_bias {bias.above(1):g}", "logit_bias", logit_bias={"42": bias.above(1)}),
        _case("errors.logit-bias.range", f"logit_bias {bias.below(1):g}", "logit_bias", logit_bias={"42": bias.below(1)}),
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
