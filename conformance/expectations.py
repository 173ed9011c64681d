"""Reusable expectations over exchanges: error envelopes, refusals, completions.

Each function either returns quietly or raises Fail with the exchange as evidence, so a check
reads as a list of the rules it verifies.
"""

from __future__ import annotations

import re
from typing import Any

from conformance.client import Exchange
from conformance.verdicts import Fail, require

JSON_TYPE = re.compile(r"^\s*application/json\s*(;.*)?$", re.IGNORECASE)
EVENT_STREAM_TYPE = re.compile(r"^\s*text/event-stream\s*(;.*)?$", re.IGNORECASE)


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


def refused_4xx(ex: Exchange, what: str) -> None:
    """Fail unless the request was refused with a 4xx status."""
    require(400 <= ex.status < 500, f"{what}: expected a 4xx refusal, got {ex.status}",
            expected="4xx", actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)


def completion(ex: Exchange, what: str = "request") -> dict[str, Any]:
    """Fail unless the exchange is 200 with a JSON object; return it."""
    require(ex.status == 200, f"{what}: expected 200, got {ex.status}", expected=200,
            actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)
    body = ex.json
    require(isinstance(body, dict), f"{what}: 200 but the body is not a JSON object",
            expected="JSON object", actual=ex.body_text[:300], exchanges=ex)
    return body


def choice_contents(body: dict[str, Any]) -> list[Any]:
    """The message content of each choice, in order (missing ones as None)."""
    out = []
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        out.append(message.get("content") if isinstance(message, dict) else None)
    return out


def first_content(ex: Exchange, what: str) -> Any:
    """Content of choice 0 of a 200 completion; Fail if there is no choice."""
    body = completion(ex, what)
    contents = choice_contents(body)
    require(bool(contents), f"{what}: the response has no choices", actual=body.get("choices"), exchanges=ex)
    return contents[0]


def is_json_content_type(ex: Exchange) -> bool:
    """True when Content-Type is application/json (parameters allowed)."""
    return bool(JSON_TYPE.match(ex.header("content-type") or ""))


def raise_fail(message: str, ex: Exchange | list[Exchange], **kw: Any) -> None:
    """Raise Fail with the exchange(s) as evidence."""
    raise Fail(message, exchanges=ex if isinstance(ex, list) else (ex,), **kw)
