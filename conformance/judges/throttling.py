"""A throttled answer, judged once: a 429 says when to retry.

    Retry-After: <non-negative integer seconds> | <HTTP date>
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

from conformance.exchange import Exchange
from conformance.judges.registry import ERROR, Problem, judge

RETRY_SECONDS = re.compile(r"^\s*\d+\s*$")


def http_date(value: str) -> bool:
    """The value is an HTTP date."""
    try:
        return parsedate_to_datetime(value) is not None
    except (TypeError, ValueError):
        return False


def valid_retry_after(value: str | None) -> bool:
    """A Retry-After value: a non-negative integer of seconds or an HTTP date."""
    return value is not None and (bool(RETRY_SECONDS.match(value)) or http_date(value))


@judge("headers.retry-after.429", on=[ERROR])
def retry_after(ex: Exchange) -> list[Problem]:
    """A 429 answer carries a Retry-After header holding a non-negative integer of seconds or an HTTP date."""
    if ex.status != 429 or valid_retry_after(ex.header("retry-after")):
        return []
    return [Problem("a 429 without a valid Retry-After header", expected="seconds or an HTTP date",
                    actual=ex.header("retry-after"))]


__all__ = ["RETRY_SECONDS", "http_date", "valid_retry_after"]
