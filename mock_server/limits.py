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
    # Messages in one request (OpenAI's bound too): checked before the schema, whose validation of
    # 100,000 messages took 30 s of CPU.
    max_messages: int = 2048
    max_stop_sequences: int = 4  # stop (the seeds' "up to 4 sequences"); the schema says so too
    # Characters in one stop sequence: the spec sets no bound, and this server refuses longer ones
    # with a 422 (a stop far longer than any answer can never match; matching costs memory and
    # time linear in the stop's length).
    max_stop_chars: int = 1024
    max_top_logprobs: int = 5  # top_logprobs (the seeds' "between 0 and 5")
    # Calls in one answer when parallel_tool_calls is on: a small model may repeat a call, and a
    # bound ends the repetition with a complete answer instead of `length` and no usable call.
    max_tool_calls: int = 4


API_LIMITS = ApiLimits()
