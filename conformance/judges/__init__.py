"""One judge for each rule: the clause checks, the fuzz phases and any offline reader share them.

A judge is a function of one exchange (conformance.exchange.Exchange or StreamExchange, nothing of
the live Target) that returns the list of Problems the exchange shows against one clause, registered
under that clause's ID, as schemathesis registers its checks as named functions of one response:

    from conformance import judges
    judges.problems("stream.chunk.object", exchange)        # -> [Problem(...), ...]
    judges.enforce("stream.chunk.object", exchange, label)  # raises Fail with the first problem

A clause check decides what to judge (its samples) and what it must have observed first
(`need(...)`); the judge decides only whether what it was given keeps the rule. Modules: registry
(the decorator and the lookup), envelope (error envelopes, clear refusals), stream and stream_usage
(the SSE state machine).
"""

from __future__ import annotations

from conformance.judges import envelope, stream, stream_usage  # noqa: F401 - importing registers the judges
from conformance.judges.registry import (
    JUDGES,
    Judge,
    Problem,
    UnknownJudge,
    enforce,
    judge,
    judge_of,
    problems,
    problems_of,
)

__all__ = ["JUDGES", "Judge", "Problem", "UnknownJudge", "enforce", "judge", "judge_of", "problems", "problems_of"]
