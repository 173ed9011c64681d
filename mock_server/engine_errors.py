"""The engine's refusals in the API's words: which request field each of reference_model's inputs is.

reference_model names what it refuses by its own typed names (`Param`, with an index for a tool,
a stop sequence or a logit_bias token); this module alone knows where each sits in a chat
completion request. Two depend on the request: the token limit (`max_tokens` or
`max_completion_tokens`, whichever was sent) and the response format's schema or pattern (its
place differs between the hf and OpenAI dialects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mock_server.errors import ValidationFailed
from reference_model.errors import Param, RequestError


@dataclass(frozen=True)
class FieldNames:
    """Where this request's inputs sit that are not always in the same place."""

    max_tokens: str = "max_tokens"
    response_format: str = "response_format"  # e.g. response_format.value, response_format.json_schema.schema


def _indexed(template: str, plain: str) -> Callable[[int | None, FieldNames], str]:
    return lambda index, _names: plain if index is None else template.format(index)


FIELDS: dict[Param, Callable[[int | None, FieldNames], str]] = {
    Param.PROMPT: lambda _i, _n: "messages",
    Param.MAX_TOKENS: lambda _i, names: names.max_tokens,
    Param.TEMPERATURE: lambda _i, _n: "temperature",
    Param.TOP_P: lambda _i, _n: "top_p",
    Param.FREQUENCY_PENALTY: lambda _i, _n: "frequency_penalty",
    Param.PRESENCE_PENALTY: lambda _i, _n: "presence_penalty",
    Param.SEED: lambda _i, _n: "seed",
    Param.LOGPROBS: lambda _i, _n: "logprobs",
    Param.TOP_LOGPROBS: lambda _i, _n: "top_logprobs",
    Param.STOP: _indexed("stop[{}]", "stop"),
    Param.LOGIT_BIAS: _indexed("logit_bias.{}", "logit_bias"),
    Param.RESPONSE_FORMAT: lambda _i, names: names.response_format,
    Param.TOOLS: lambda _i, _n: "tools",
    Param.TOOL_NAME: _indexed("tools[{}].function.name", "tools"),
    Param.TOOL_PARAMETERS: _indexed("tools[{}].function.parameters", "tools"),
    Param.TOOL_CHOICE: lambda _i, _n: "tool_choice",
    Param.TOOL_CHOICE_NAME: lambda _i, _n: "tool_choice.function.name",
    Param.MAX_CALLS: lambda _i, _n: "parallel_tool_calls",
    Param.GRAMMAR: lambda _i, names: names.response_format,
}


def field_of(error: RequestError, names: FieldNames = FieldNames()) -> str:
    """The request field an engine error is about, as a path below `$`."""
    return FIELDS[error.param](error.index, names)


def api_error(error: RequestError, names: FieldNames = FieldNames()) -> ValidationFailed:
    """The 422 of an engine refusal: the field, what is wrong, the rule."""
    field = field_of(error, names)
    return ValidationFailed(f"$.{field}: {error.detail} [rule: {error.rule}]", param=field)
