"""Requests made once per session and shared by several checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.client import Exchange


@dataclass
class Sample:
    """A request the suite made once per session and several checks inspect."""

    label: str
    body: dict[str, Any]
    exchange: Exchange


# A small tool used to provoke a tool call (tool_choice required).
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def bodies_and_chunks(responses: list[Sample], streams: list[Sample]) -> list[tuple[str, dict[str, Any], Any]]:
    """(label, body, exchange) for every response body and every stream chunk of the samples."""
    out = [(f"response {s.label}", s.exchange.json, s.exchange) for s in responses]
    for s in streams:
        out += [(f"stream {s.label} chunk {i}", chunk, s.exchange) for i, chunk in enumerate(s.exchange.chunks)]
    return out
