"""The requests and readers the logprobs checks share (conformance/checks/test_logprobs*.py).

logprobs.content.present judges whether a request with logprobs true is answered with
logprobs.content; the readers here raise NotExercised with that root where there is nothing to judge.
The entry readers are conformance.judges.logprobs's (re-exported here), shared with the judges.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from conformance.client import Exchange, StreamExchange, Target
from conformance.judges.logprobs import (  # noqa: F401 - re-exported
    TOLERANCE,
    Streamed,
    content_of,
    entry_bytes,
    finite,
    text_of,
    tops_of,
    well_formed,
)
from conformance.judges.logprobs import read_stream as read_chunks
from conformance.samples import Deferred, need_answer
from conformance.verdicts import not_exercised

FRESH = {"x-use-cache": "false"}
PROMPT = "Name three colors and one animal."
TOP = 3
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


def entries_of(ex: Exchange, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """choice.logprobs.content: NotExercised (logprobs.content.present) unless a list of objects."""
    content = content_of(choice)
    if not well_formed(content):
        raise not_exercised("logprobs.content (a list of entries)", root=ROOT,
                            actual=choice.get("logprobs", "(absent)"), exchanges=ex)
    return content


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


def read_stream(ex: StreamExchange) -> Streamed:
    """The streamed content, logprobs.content entries and last usage object of a stream."""
    return read_chunks(ex.chunks)
