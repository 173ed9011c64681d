"""The reference model's one error hierarchy: every failure it raises is a `ReferenceModelError`.

Callers (the mock server, the CLI) catch the base class and map it to a status or exit code;
subclasses say which stage failed. Messages name the parameter or file, the rule and the value.
"""

from __future__ import annotations


class ReferenceModelError(Exception):
    """Base class of every error raised by `reference_model`."""


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


class ConfigError(ReferenceModelError):
    """A configuration value (CLI flag, environment variable, file) is invalid."""
