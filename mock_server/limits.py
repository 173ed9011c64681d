"""The API's limits as this server enforces them: the request's edge, not the engine's.

The engine generates whatever it is given (any number of stop sequences, alternatives up to the
vocabulary); these bounds are the API's, checked where a request is planned (plan.py) and
reported by GET /info.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiLimits:
    """Bounds on one request."""

    max_choices: int = 8  # n
    max_stop_sequences: int = 4  # stop (the seeds' "up to 4 sequences"); the schema says so too
    max_top_logprobs: int = 5  # top_logprobs (the seeds' "between 0 and 5")
    # Calls in one answer when parallel_tool_calls is on: a small model may repeat a call, and a
    # bound ends the repetition with a complete answer instead of `length` and no usable call.
    max_tool_calls: int = 4


API_LIMITS = ApiLimits()
