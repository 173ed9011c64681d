"""The requests and readers the logprobs checks share (conformance/checks/test_logprobs*.py).

logprobs.content.present judges whether a request with logprobs true is answered with
logprobs.content; the readers here raise NotExercised with that root where there is nothing to judge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from conformance.client import Exchange, StreamExchange, Target
from conformance.samples import Deferred, need_answer
from conformance.verdicts import not_exercised

FRESH = {"x-use-cache": "false"}
PROMPT = "Name three colors and one animal."
TOP = 3
TOLERANCE = 1e-3
ROOT = "logprobs.content.present"  # judges that a logprobs request is answered with logprobs.content


def logprobs_body(target: Target, **params: Any) -> dict[str, Any]:
    """A request body for PROMPT with the given parameters."""
    return target.body(messages=[{"role": "user", "content": PROMPT}], **params)


def send(target: Target, **params: Any) -> Exchange:
    """A fresh request for PROMPT, kept whatever the answer."""
    return target.chat(logprobs_body(target, **params), headers=FRESH)


def choices_of(ex: Exchange, root: str = ROOT) -> list[dict[str, Any]]:
    """The choices of a 200 answer: NotExercised (root) unless it is 200 with a list of choice objects."""
    need_answer(ex, "a request with logprobs true", root)
    choices = ex.json_object.get("choices")
    if not (isinstance(choices, list) and choices and all(isinstance(c, dict) for c in choices)):
        raise not_exercised("a choice in the response", root="response.choices.count", actual=ex.body_text[:300],
                            exchanges=ex)
    return choices


def content_of(choice: dict[str, Any]) -> Any:
    """choice.logprobs.content as sent (None when logprobs is not an object)."""
    logprobs = choice.get("logprobs")
    return logprobs.get("content") if isinstance(logprobs, dict) else None


def well_formed(content: Any) -> TypeGuard[list[dict[str, Any]]]:
    """logprobs.content is a list of entry objects."""
    return isinstance(content, list) and all(isinstance(e, dict) for e in content)


def entries_of(ex: Exchange, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """choice.logprobs.content: NotExercised (logprobs.content.present) unless a list of objects."""
    content = content_of(choice)
    if not well_formed(content):
        raise not_exercised("logprobs.content (a list of entries)", root=ROOT,
                            actual=choice.get("logprobs", "(absent)"), exchanges=ex)
    return content


def text_of(choice: dict[str, Any]) -> str:
    """message.content of a choice ("" when it is not a string)."""
    content = (choice.get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """An entry's UTF-8 bytes: `bytes` when given, else the token string encoded."""
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in raw):
        return bytes(raw)
    return str(entry.get("token", "")).encode("utf-8")


def tops_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """An entry's top_logprobs ([] when it is not a list)."""
    tops = entry.get("top_logprobs")
    return tops if isinstance(tops, list) else []


def each_choice(exchanges: tuple[Exchange, ...]) -> Iterator[tuple[Exchange, dict[str, Any], list[dict[str, Any]]]]:
    """(exchange, choice, its content entries) for every choice that has entries; then NotExercised for one without."""
    later = Deferred()
    for ex in exchanges:
        choices: list[dict[str, Any]] = []
        with later:
            choices = choices_of(ex)
        for choice in choices:
            found = None
            with later:
                found = entries_of(ex, choice)
            if found is not None:
                yield ex, choice, found
    later.settle()


def finite(value: Any) -> TypeGuard[float]:
    """A finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Streamed:
    """What a stream with logprobs carried, per choice index."""

    text: dict[Any, str]
    entries: dict[Any, list[dict[str, Any]]]
    usage: Any


def read_stream(ex: StreamExchange) -> Streamed:
    """The streamed content, logprobs.content entries and last usage object of a stream."""
    out = Streamed({}, {}, None)
    for chunk in ex.chunks:
        if isinstance(chunk.get("usage"), dict):
            out.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            found = choice.get("delta")
            delta = found if isinstance(found, dict) else {}
            if isinstance(delta.get("content"), str):
                out.text[index] = out.text.get(index, "") + delta["content"]
            content = content_of(choice)
            if isinstance(content, list):
                out.entries.setdefault(index, []).extend(e for e in content if isinstance(e, dict))
    return out
