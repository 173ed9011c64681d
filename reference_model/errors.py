"""The reference model's one error hierarchy: every failure it raises is a `ReferenceModelError`.

Callers (the mock server, the CLI) catch the base class and map it to a status or exit code;
subclasses say which stage failed. Messages name the parameter or file, the rule and the value.
"""

from __future__ import annotations

import enum


class ReferenceModelError(Exception):
    """Base class of every error raised by `reference_model`."""


class Param(str, enum.Enum):
    """The inputs of a generation request, by the engine's own names (an API maps them to its fields)."""

    PROMPT = "prompt"  # the prompt's token ids (the templated conversation)
    MAX_TOKENS = "max_tokens"
    TEMPERATURE = "temperature"
    TOP_P = "top_p"
    FREQUENCY_PENALTY = "frequency_penalty"
    PRESENCE_PENALTY = "presence_penalty"
    SEED = "seed"
    LOGPROBS = "logprobs"
    TOP_LOGPROBS = "top_logprobs"
    STOP = "stop"  # index: which sequence, when one is at fault
    LOGIT_BIAS = "logit_bias"  # index: the token id, when one is at fault
    RESPONSE_FORMAT = "response_format"  # the JSON Schema or the regex the output must match
    TOOLS = "tools"  # the tool-call grammar as a whole
    TOOL_NAME = "tool_name"  # index: which tool
    TOOL_PARAMETERS = "tool_parameters"  # index: which tool: the JSON Schema of its arguments
    TOOL_CHOICE = "tool_choice"
    TOOL_CHOICE_NAME = "tool_choice_name"  # the function a named tool choice names
    MAX_CALLS = "max_calls"  # how many calls one output may hold
    GRAMMAR = "grammar"  # the grammar's state during generation (not an input: a failure there is a bug)


class RequestError(ReferenceModelError, ValueError):
    """An input the engine refuses: which one (`param`, and `index` within it), the rule, and what is wrong.

    `detail` says what is wrong without naming the input (a caller that names it its own way adds
    its name); the message (str) is the engine's full sentence.
    """

    def __init__(self, param: Param, detail: str, *, index: int | None = None, rule: str = "valid",
                 message: str | None = None) -> None:
        self.param = param
        self.index = index
        self.rule = rule
        self.detail = detail
        super().__init__(message if message is not None else f"{self.where}: {detail}")

    @property
    def where(self) -> str:
        """The input by the engine's name, with its index: `stop[1]`, `tool_name[0]`, `temperature`."""
        return self.param.value if self.index is None else f"{self.param.value}[{self.index}]"


class WeightsError(ReferenceModelError):
    """The GGUF weights could not be fetched, verified, extracted or read."""


class TokenizerError(ReferenceModelError):
    """The tokenizer could not be built, or an id or text is outside what it handles."""


class TemplateError(ReferenceModelError):
    """The chat template could not be loaded or rendered for the given messages."""


class ContextLengthError(ReferenceModelError):
    """A prompt plus requested tokens does not fit in the model's context window."""

    def __init__(self, message: str, *, prompt_tokens: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class PromptTooLongError(RequestError, ContextLengthError):
    """A request's prompt, or prompt plus max_tokens, does not fit the context (`check_context`).

    `param` is PROMPT when the prompt alone leaves no room, else MAX_TOKENS.
    """

    def __init__(self, param: Param, detail: str, *, prompt_tokens: int, limit: int) -> None:
        super().__init__(param, detail, rule="prompt + max_tokens <= context length")
        self.prompt_tokens = prompt_tokens
        self.limit = limit


def check_context(prompt_tokens: int, max_tokens: int | None, context_length: int) -> None:
    """The context rule, written once: the prompt leaves room for a token, and prompt + max_tokens fits.

    Raises PromptTooLongError. The server checks it while planning a request, the generator when
    it admits one: the same rule and the same message.
    """
    if prompt_tokens + 1 > context_length:
        raise PromptTooLongError(Param.PROMPT, f"the prompt is {prompt_tokens} tokens, which leaves no room for a "
                                 f"completion in the context length {context_length}",
                                 prompt_tokens=prompt_tokens, limit=context_length)
    if max_tokens is not None and prompt_tokens + max_tokens > context_length:
        raise PromptTooLongError(Param.MAX_TOKENS, f"{max_tokens} plus the prompt's {prompt_tokens} tokens is "
                                 f"{prompt_tokens + max_tokens}, more than the context length {context_length}; "
                                 f"at most {context_length - prompt_tokens} fits",
                                 prompt_tokens=prompt_tokens, limit=context_length)


class ConfigError(ReferenceModelError):
    """A configuration value (CLI flag, environment variable, file) is invalid."""
