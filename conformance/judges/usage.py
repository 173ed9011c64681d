"""The token counts of one answer, judged once: usage arithmetic, and usage against the request and the answer.

The usage of a non-streaming answer is its body's; in a stream, every chunk that carries a usage
object is judged (usage.total.sum, usage.prompt-tokens.positive), and the usage chunk (the last
one with a usage) gives a stream's counts. The request (n, max_tokens, logprobs) is read from the
exchange's own request body.
"""

from __future__ import annotations

from typing import Any

from conformance.exchange import Exchange
from conformance.judges.logprobs import logprob_choices
from conformance.judges.registry import ANSWER, STREAM, Problem, judge
from conformance.judges.response import answer_objects, completion_body, int_value, token_limit
from conformance.judges.stream import as_stream, asked_stream, choice_count, chunk_choices, request_of

LENGTH = "length"


def usages(ex: Exchange) -> list[tuple[str, dict[str, Any]]]:
    """(where, usage) for each usage object of the answer: the body's, or each chunk's that carries one."""
    return [(where, obj["usage"]) for where, obj in answer_objects(ex) if isinstance(obj.get("usage"), dict)]


def finish_and_usage(ex: Exchange) -> tuple[dict[Any, Any], Any]:
    """finish_reason per choice index (as sent, whatever its type) and the usage of an answer or a stream.

    A stream's reason of a choice is the last non-null one it sent, its usage the last usage object.
    """
    if asked_stream(ex):
        chunks = as_stream(ex).chunks
        reasons = {c.get("index"): c["finish_reason"] for chunk in chunks for c in chunk_choices(chunk)
                   if c.get("finish_reason") is not None}
        found = [chunk["usage"] for chunk in chunks if isinstance(chunk.get("usage"), dict)]
        return reasons, found[-1] if found else None
    body = ex.json_object
    listed = body.get("choices")
    choices = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    return {c.get("index"): c.get("finish_reason") for c in choices}, body.get("usage")


@judge("usage.total.sum", on=[ANSWER, STREAM])
def total_is_sum(ex: Exchange) -> list[Problem]:
    """In every usage object, total_tokens equals prompt_tokens plus completion_tokens."""
    found = []
    for where, usage in usages(ex):
        p, c, t = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
        if isinstance(p, int) and isinstance(c, int) and isinstance(t, int) and t == p + c:
            continue
        found.append(Problem(f"{where}: total_tokens != prompt_tokens + completion_tokens",
                             expected=(p + c) if isinstance(p, int) and isinstance(c, int) else "integers", actual=t))
    return found


@judge("usage.prompt-tokens.positive", on=[ANSWER, STREAM])
def prompt_tokens_positive(ex: Exchange) -> list[Problem]:
    """prompt_tokens is a positive integer in every usage object."""
    found = []
    for where, usage in usages(ex):
        value = int_value(usage.get("prompt_tokens"))
        if value is None or value <= 0:
            found.append(Problem(f"{where}: prompt_tokens is not a positive integer", expected="> 0",
                                 actual=usage.get("prompt_tokens")))
    return found


@judge("usage.completion-tokens.logprob-count", on=[ANSWER])
def completion_tokens_count_entries(ex: Exchange) -> list[Problem]:
    """With logprobs true and n 1, completion_tokens equals the number of entries in logprobs.content."""
    body = completion_body(ex)
    if body is None or request_of(ex).get("logprobs") is not True or choice_count(ex) != 1:
        return []
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int):
        return []
    return [Problem("completion_tokens differs from the logprobs entry count", expected=len(entries), actual=tokens)
            for _, entries in logprob_choices(ex) if len(entries) != tokens]


@judge("usage.n.all-choices", on=[ANSWER, STREAM])
def both_choices_counted(ex: Exchange) -> list[Problem]:
    """With n 2 and both choices cut off by max_tokens (finish_reason length), completion_tokens is 2 times max_tokens."""
    request = request_of(ex)
    limit = token_limit(request)
    if ex.status != 200 or int_value(request.get("n")) != 2 or limit is None:
        return []
    if not asked_stream(ex) and completion_body(ex) is None:
        return []
    reasons, usage = finish_and_usage(ex)
    if sorted(reasons, key=repr) != [0, 1] or set(reasons.values()) != {LENGTH}:
        return []  # a choice is missing (another rule's) or ended early: the expected count is unknown
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int) or tokens == 2 * limit:
        return []
    return [Problem(f"both choices ran to max_tokens {limit}, but completion_tokens does not count both",
                    expected=2 * limit, actual=tokens)]


__all__ = ["finish_and_usage", "usages"]
