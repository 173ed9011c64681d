"""Generation parameters that one answer shows kept or broken: max_tokens and stop sequences.

The limit is the request's max_tokens (or max_completion_tokens, which means the same); the
counts are the answer's usage.completion_tokens. A judge has nothing to say about an answer without
the request field it is about, or without the usage it counts with (response.usage.present judges that).
"""

from __future__ import annotations

from conformance.exchange import Exchange
from conformance.judges.registry import ANSWER, Problem, judge
from conformance.judges.response import completion_body, declares_tools, stop_sequences, token_limit
from conformance.judges.stream import choice_count, request_of

LENGTH = "length"
STOP = "stop"


def completion_tokens(ex: Exchange) -> int | None:
    """usage.completion_tokens of a 200 non-streaming answer, when it is an integer."""
    body = completion_body(ex)
    usage = body.get("usage") if body is not None else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) else None


@judge("params.max-tokens.respected", on=[ANSWER])
def within_max_tokens(ex: Exchange) -> list[Problem]:
    """completion_tokens is at most max_tokens for each choice asked for (n times max_tokens in all)."""
    limit, used = token_limit(request_of(ex)), completion_tokens(ex)
    if limit is None or used is None:
        return []
    allowed = limit * choice_count(ex)
    if used <= allowed:
        return []
    return [Problem(f"completion_tokens exceeds max_tokens {limit}", expected=f"<= {allowed}", actual=used)]


@judge("params.max-tokens.length-reported", on=[ANSWER])
def cut_off_reports_length(ex: Exchange) -> list[Problem]:
    """A generation cut off by max_tokens reports finish_reason length and completion_tokens equal to max_tokens.

    Judged on an answer of one choice to a request with max_tokens and neither stop sequences nor
    tools: the generation was cut off unless it ended with stop before the limit (a count above
    the limit is params.max-tokens.respected's).
    """
    request = request_of(ex)
    body = completion_body(ex)
    limit, used = token_limit(request), completion_tokens(ex)
    if body is None or limit is None or used is None or choice_count(ex) != 1 or stop_sequences(request) \
            or declares_tools(request):
        return []
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        return []
    finish = first.get("finish_reason")
    if (finish == STOP and used < limit) or used > limit:
        return []
    found = []
    if finish != LENGTH:
        found.append(Problem(f"a generation cut off at max_tokens {limit} must report length",
                             expected="finish_reason length",
                             actual=f"finish_reason {finish!r}, completion_tokens {used}"))
    if used != limit:
        found.append(Problem("a generation cut off by max_tokens must use exactly max_tokens tokens", expected=limit,
                             actual=used))
    return found


@judge("params.stop.excluded-from-output", on=[ANSWER])
def stop_excluded(ex: Exchange) -> list[Problem]:
    """The returned content of every choice contains none of the request's stop sequences."""
    stops = stop_sequences(request_of(ex))
    body = completion_body(ex)
    if body is None or not stops:
        return []
    found = []
    choices = body.get("choices")
    for i, choice in enumerate(choices if isinstance(choices, list) else []):
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and any(stop in content for stop in stops):
            found.append(Problem(f"choice {i}: the content contains a stop sequence", expected=f"none of {stops}",
                                 actual=content))
    return found


__all__ = ["completion_tokens"]
