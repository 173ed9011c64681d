"""Transforms of the breakers in breakers_followups.py and of the servers in test_followups.py: what
llama-server, LiteLLM and the mock servers were seen doing."""

from __future__ import annotations

import json
from typing import Any

from tests.conformance.breaker_hooks import choices, request_json
from tests.conformance.breaking_proxy import Call, Reply

Chunks = list[dict[str, Any]]


def null_role_later(_req: dict[str, Any], chunks: Chunks) -> Chunks:
    """Every delta after a choice's first carries "role": null (the chunk schema allows assistant only)."""
    seen: set[Any] = set()
    for chunk in chunks:
        for choice in choices(chunk):
            if choice.get("index") in seen and isinstance(choice.get("delta"), dict):
                choice["delta"]["role"] = None
            seen.add(choice.get("index"))
    return chunks


def usage_chunk_with_choice(_req: dict[str, Any], chunks: Chunks) -> Chunks:
    """The usage chunk also carries an empty choice for index 0 (as LiteLLM's n 2 stream does)."""
    for chunk in chunks:
        if chunk.get("usage") is not None:
            chunk["choices"] = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}]
    return chunks


def error_event_mid_stream(events: list[str]) -> list[str]:
    """An error event after the first chunk of a 200 stream (a server reporting a failure in-band)."""
    error = json.dumps({"error": "the backend went away", "error_type": "overloaded"})
    return events[:1] + [error] + events[1:]


def is_hf_format(body: dict[str, Any]) -> bool:
    """The request has a response_format of the hf dialect (json or regex)."""
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json", "regex")


CANNED_TEXT = "I am a canned answer."


def canned_content(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic server: every answer holds the same text (ids stay fresh, as the mock mints them)."""
    for choice in choices(body):
        if isinstance(choice.get("message"), dict):
            choice["message"]["content"] = CANNED_TEXT
            choice["logprobs"] = None
    return body


def openai_refusal_of_hf_formats(call: Call) -> Call | Reply:
    """llama-server's answer to the hf dialect: a clean 400 in the OpenAI envelope naming response_format."""
    body = request_json(call)
    if not (call.is_chat and is_hf_format(body)):
        return call
    kind = body["response_format"]["type"]
    error = {"error": {"code": 400, "type": "invalid_request_error", "param": None,
                       "message": f'response_format type must be one of "text" or "json_object", but got: {kind}'}}
    return Reply(400, {"content-type": "application/json"}, json.dumps(error).encode())


__all__ = [
    "CANNED_TEXT", "canned_content", "error_event_mid_stream", "is_hf_format", "null_role_later",
    "openai_refusal_of_hf_formats", "usage_chunk_with_choice",
]


def stop_streamed(req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stream that stopped on a stop sequence also sends the stop text (as servers matching on tokens do)."""
    stops = req.get("stop")
    stop = stops if isinstance(stops, str) else (stops or [None])[0]
    if not stop:
        return chunks
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            if choice.get("finish_reason") == "stop":
                delta = choice.setdefault("delta", {})
                delta["content"] = (delta.get("content") or "") + stop
                return chunks
    return chunks
