"""Reusable expectations over exchanges: refusals and completions.

Each function either returns quietly or raises Fail with the exchange as evidence, so a check
reads as a list of the rules it verifies. The error envelope and the media types are judged in
conformance.judges (envelope, stream); their helpers are re-exported here for the checks.
"""

from __future__ import annotations

from typing import Any

from conformance.client import Exchange
from conformance.judges.envelope import (  # noqa: F401 - re-exported
    JSON_TYPE,
    envelope_problems,
    envelope_shape,
    error_text,
    is_json_content_type,
    names_field,
)
from conformance.judges.stream import EVENT_STREAM_TYPE  # noqa: F401 - re-exported
from conformance.verdicts import Fail, require


def refused_4xx(ex: Exchange, what: str) -> None:
    """Fail unless the request was refused with a 4xx status."""
    require(400 <= ex.status < 500, f"{what}: expected a 4xx refusal, got {ex.status}",
            expected="4xx", actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)


def completion(ex: Exchange, what: str = "request") -> dict[str, Any]:
    """Fail unless the exchange is 200 with a JSON object; return it."""
    require(ex.status == 200, f"{what}: expected 200, got {ex.status}", expected=200,
            actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)
    body = ex.json
    if not isinstance(body, dict):
        raise Fail(f"{what}: 200 but the body is not a JSON object", expected="JSON object",
                   actual=ex.body_text[:300], exchanges=ex)
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


def raise_fail(message: str, ex: Exchange | list[Exchange], **kw: Any) -> None:
    """Raise Fail with the exchange(s) as evidence."""
    raise Fail(message, exchanges=ex if isinstance(ex, list) else (ex,), **kw)
