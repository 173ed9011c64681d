"""One judge for each rule: the clause checks, the fuzz phases and any offline reader share them.

A judge is a function of one exchange (conformance.exchange.Exchange or StreamExchange, nothing of
the live Target) that returns the list of Problems the exchange shows against one clause, registered
under that clause's ID, as schemathesis registers its checks as named functions of one response:

    from conformance import judges
    judges.problems("stream.chunk.object", exchange)        # -> [Problem(...), ...]
    judges.enforce("stream.chunk.object", exchange, label)  # raises Fail with the first problem

A clause check decides what to judge (its samples) and what it must have observed first
(`need(...)`); the judge decides only whether what it was given keeps the rule. `chatconform lint`
runs the same judges over recorded exchanges (cassettes), each on the kinds of answer it names
(registry.SCOPES). Modules: registry (the decorator and the lookup), envelope (error envelopes,
clear refusals), stream and stream_usage (the SSE state machine), response (a chat completion's
body), usage, params (max_tokens, stop), logprobs, tools and tool_stream (function calling),
formats (response_format), models (GET /v1/models), throttling (429).
"""

from __future__ import annotations

from conformance.judges import (  # noqa: F401 - importing registers the judges
    envelope,
    formats,
    logprobs,
    models,
    params,
    response,
    stream,
    stream_usage,
    throttling,
    tool_stream,
    tools,
    usage,
)
from conformance.judges.registry import (
    ANSWER,
    ERROR,
    JUDGES,
    KINDS,
    MODELS,
    SCOPES,
    STREAM,
    Judge,
    Problem,
    UnknownJudge,
    enforce,
    judge,
    judge_of,
    offline,
    problems,
    problems_of,
)

__all__ = ["ANSWER", "ERROR", "JUDGES", "KINDS", "MODELS", "SCOPES", "STREAM", "Judge", "Problem", "UnknownJudge",
           "enforce", "judge", "judge_of", "offline", "problems", "problems_of"]
