"""The error envelope, judged once: its shape, its fields, its Content-Type, and what a clear refusal is.

Two shapes are in use (spec/openapi.yaml, ErrorBody): Hugging Face/TGI `{"error": "...",
"error_type": "..."}` (plus `estimated_time` while a model loads) and OpenAI's `{"error": {"message",
"type", "param", "code"}}`. The errors.envelope.* judges apply to an answer with status 400 or more;
the fuzz phases and `verdicts.refused_clearly` use the same functions.
"""

from __future__ import annotations

import re
from typing import Any

from conformance.exchange import Exchange
from conformance.judges.registry import ERROR, Problem, judge

JSON_TYPE = re.compile(r"^\s*application/json\s*(;.*)?$", re.IGNORECASE)


def envelope_shape(body: Any) -> str | None:
    """`hf`, `openai` or `loading` for a recognised error envelope, else None."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, dict):
        return "openai"
    if isinstance(error, str):
        return "loading" if "estimated_time" in body else "hf"
    return None


def envelope_message(body: Any) -> str:
    """The envelope's human-readable message ('' when there is none or it is blank)."""
    shape = envelope_shape(body)
    if shape is None:
        return ""
    error = body["error"]
    message = error.get("message") if isinstance(error, dict) else error
    return message.strip() if isinstance(message, str) else ""


def envelope_problems(body: Any) -> list[str]:
    """What is wrong with an error envelope (empty when it is a well-formed HF, loading or OpenAI envelope)."""
    shape = envelope_shape(body)
    if shape is None:
        return ["body is not a JSON error envelope ({'error': '...'} or {'error': {'message': ...}})"]
    problems = []
    if shape in ("hf", "loading"):
        if not body["error"].strip():
            problems.append("error is an empty string")
        if shape == "hf" and not isinstance(body.get("error_type"), str):
            problems.append(f"error_type must be a string, got {body.get('error_type')!r}")
        if shape == "loading" and "error_type" in body and not isinstance(body["error_type"], str):
            problems.append(f"error_type must be a string when present, got {body['error_type']!r}")
    else:
        error = body["error"]
        for key in ("message", "type"):
            if not isinstance(error.get(key), str):
                problems.append(f"error.{key} must be a string, got {error.get(key)!r}")
        for key in ("param", "code"):
            if key not in error:
                problems.append(f"error.{key} is missing (string or null expected)")
            elif error[key] is not None and not isinstance(error[key], str):
                problems.append(f"error.{key} must be a string or null, got {error[key]!r}")
    return problems


def error_text(body: Any) -> str:
    """The message (and param) of an error envelope as one searchable string."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        return " ".join(str(error.get(k) or "") for k in ("message", "param"))
    return ""


def names_field(body: Any, field: str) -> bool:
    """True when the error's message or param names the field (its last path segment is enough)."""
    text = error_text(body).lower()
    leaf = re.split(r"[.\[\]]+", field.strip("."))
    leaf = [p for p in leaf if p and not p.isdigit()]
    candidates = {field.lower()} | ({leaf[-1].lower()} if leaf else set())
    return any(c and c in text for c in candidates)


def is_json_content_type(ex: Exchange) -> bool:
    """True when Content-Type is application/json (parameters allowed)."""
    return bool(JSON_TYPE.match(ex.header("content-type") or ""))


def clear_refusal(ex: Exchange) -> bool:
    """A 4xx other than 404/405 (a known route) whose body is an error envelope with a message."""
    return 400 <= ex.status < 500 and ex.status not in (404, 405) and bool(envelope_message(ex.json))


def _error(ex: Exchange) -> bool:
    return ex.status >= 400


@judge("errors.envelope.shape", on=[ERROR])
def envelope_is_one_shape(ex: Exchange) -> list[Problem]:
    """A 4xx or 5xx body is a JSON error envelope of the HF shape or the OpenAI shape."""
    if not _error(ex) or envelope_shape(ex.json) is not None:
        return []
    return [Problem(f"the {ex.status} body is not an error envelope",
                    expected="{'error': '...'} or {'error': {'message': ...}}", actual=ex.body_text[:300])]


def _fields(ex: Exchange, shape: str) -> list[Problem]:
    if not _error(ex) or envelope_shape(ex.json) != shape:
        return []
    return [Problem(text, expected=f"a complete {shape} envelope", actual=ex.json)
            for text in envelope_problems(ex.json)]


@judge("errors.envelope.hf-fields", on=[ERROR])
def hf_envelope_fields(ex: Exchange) -> list[Problem]:
    """An HF-shaped error envelope has a non-empty error message string and an error_type string."""
    return _fields(ex, "hf")


@judge("errors.envelope.openai-fields", on=[ERROR])
def openai_envelope_fields(ex: Exchange) -> list[Problem]:
    """An OpenAI-shaped envelope has message and type strings, and param and code as strings or null."""
    return _fields(ex, "openai")


@judge("errors.envelope.content-type", on=[ERROR])
def error_content_type(ex: Exchange) -> list[Problem]:
    """An error response has Content-Type application/json."""
    if not _error(ex) or is_json_content_type(ex):
        return []
    return [Problem("the error is not application/json", expected="application/json",
                    actual=ex.header("content-type"))]


__all__ = [
    "JSON_TYPE",
    "clear_refusal",
    "envelope_is_one_shape",
    "envelope_message",
    "envelope_problems",
    "envelope_shape",
    "error_content_type",
    "error_text",
    "hf_envelope_fields",
    "is_json_content_type",
    "names_field",
    "openai_envelope_fields",
]
