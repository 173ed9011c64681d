"""Constants the spec defines, read from spec/openapi.yaml: the enums and bounds checks judge by.

The checks never copy these values: a change to the document changes what the suite expects.

    from spec import limits
    limits.finish_reasons()          # ('stop', 'length', 'tool_calls', 'content_filter')
    limits.bounds("temperature")     # Bounds(low=0, high=2, low_exclusive=False)
    limits.max_stop_sequences()      # 4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spec.document import shared_document
from spec.errors import SpecError

# FinishReason's enum also accepts TGI's legacy names; its x-chatconform-note calls them departures
# that the suite reports, so they are not among the values a conforming answer uses.
LEGACY_FINISH_REASONS = ("eos_token", "stop_sequence")


@dataclass(frozen=True)
class Bounds:
    """The range of a numeric request field: `minimum`/`exclusiveMinimum` and `maximum` (None: unbounded)."""

    low: float | None
    high: float | None
    low_exclusive: bool = False

    def below(self, step: float) -> float:
        """A value `step` below the lower bound."""
        if self.low is None:
            raise SpecError("this field has no lower bound")
        return self.low - step

    def above(self, step: float) -> float:
        """A value `step` above the upper bound."""
        if self.high is None:
            raise SpecError("this field has no upper bound")
        return self.high + step


def _component(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = shared_document()["components"]["schemas"][name]
    return schema


def request_property(name: str) -> dict[str, Any]:
    """The ChatCompletionRequest property schema of a field (SpecError when there is none)."""
    properties: dict[str, Any] = _component("ChatCompletionRequest")["properties"]
    if name not in properties:
        raise SpecError(f"ChatCompletionRequest has no property {name!r}")
    found: dict[str, Any] = properties[name]
    return found


def const(schema_name: str, property_name: str) -> str:
    """The `const` value a component schema gives one of its properties (e.g. ChatCompletionChunk.object)."""
    prop = _component(schema_name)["properties"][property_name]
    if "const" not in prop:
        raise SpecError(f"{schema_name}.{property_name} has no const value in the spec")
    return str(prop["const"])


def finish_reasons() -> tuple[str, ...]:
    """The finish_reason values of a conforming answer: FinishReason's enum without the legacy names."""
    enum = _component("FinishReason")["enum"]
    return tuple(str(value) for value in enum if value not in LEGACY_FINISH_REASONS)


def reasoning_efforts() -> tuple[str, ...]:
    """The reasoning_effort values the request schema enumerates (null aside)."""
    return tuple(str(value) for value in request_property("reasoning_effort")["enum"] if value is not None)


def bounds(name: str) -> Bounds:
    """The numeric range of a request field (temperature, top_p, the penalties, top_logprobs, n, seed ...)."""
    prop = request_property(name)
    exclusive = "exclusiveMinimum" in prop
    low = prop.get("exclusiveMinimum", prop.get("minimum"))
    return Bounds(low, prop.get("maximum"), exclusive)


def top_logprobs_range() -> tuple[int, int]:
    """The smallest and the largest top_logprobs the spec allows (inclusive)."""
    found = bounds("top_logprobs")
    if found.low is None or found.high is None:
        raise SpecError("top_logprobs has no closed range in the spec")
    return int(found.low), int(found.high)


def max_stop_sequences() -> int:
    """The most stop sequences a request may give (maxItems of stop's array form)."""
    for variant in request_property("stop")["oneOf"]:
        if variant.get("type") == "array":
            return int(variant["maxItems"])
    raise SpecError("stop has no array form with maxItems in the spec")


def logit_bias_bounds() -> Bounds:
    """The range of a logit_bias value (LogitBias' additionalProperties)."""
    values = _component("LogitBias")["additionalProperties"]
    return Bounds(values.get("minimum"), values.get("maximum"))


__all__ = [
    "LEGACY_FINISH_REASONS", "Bounds", "bounds", "const", "finish_reasons", "logit_bias_bounds", "max_stop_sequences",
    "reasoning_efforts", "request_property", "top_logprobs_range",
]
