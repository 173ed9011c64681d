"""Unit checks of the bounds behind the abuse cases: linear stop matching, schema depth, log redaction."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import pytest

from mock_server import log_redact
from reference_model.errors import Param
from reference_model.grammar import MAX_SCHEMA_DEPTH, ConstraintError, _check_schema, json_depth
from reference_model.stopping import StopMatcher, cut_at_stop


def peak_bytes_of_matcher(stop_length: int) -> int:
    """Peak traced memory while building a matcher for one stop and feeding it its near-miss."""
    tracemalloc.start()
    try:
        matcher = StopMatcher(["ab" * (stop_length // 2)])
        matcher.push("ab" * (stop_length // 2 - 1) + "a")
        assert not matcher.stopped and len(matcher.held) == stop_length - 1
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stop_matching_costs_memory_linear_in_the_stop() -> None:
    # Keeping every prefix (the old way) cost about n^2 / 2 characters: 200 MB for n = 20,000.
    small, large = peak_bytes_of_matcher(2_000), peak_bytes_of_matcher(20_000)
    assert large < 40 * 20_000  # a list of ints and a few copies of the text
    assert large < 15 * small


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("hello world", ["o w"], ("hell", True)),
    ("abcabd", ["abd", "cab"], ("ab", True)),  # `cab` ends first
    ("aaab", ["aab", "ab"], ("a", True)),  # same end: the longer (earlier) one wins
    ("xyz", ["yzq"], ("xyz", False)),
    ("abababc", ["ababc"], ("ab", True)),  # needs the automaton's fallback
])
def test_cut_at_stop_keeps_its_rules(text: str, stops: list[str], expected: tuple[str, bool]) -> None:
    assert cut_at_stop(text, stops) == expected


def test_streamed_pieces_hold_back_only_a_possible_stop() -> None:
    matcher = StopMatcher(["<end>"])
    assert matcher.push("a<e").text == "a"
    assert matcher.push("x").text == "<ex"
    assert matcher.push("<en").text == ""
    step = matcher.push("d>tail")
    assert step.stopped and step.text == ""


def deep(levels: int) -> dict[str, Any]:
    """A schema nesting `levels` objects through `properties`."""
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def test_json_depth_is_iterative() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert json_depth(value) == 100_000
    assert json_depth(deep(3)) == 7


@pytest.mark.parametrize("param", [Param.RESPONSE_FORMAT, Param.TOOL_PARAMETERS])
def test_a_schema_deeper_than_the_limit_is_refused_by_rule(param: Param) -> None:
    with pytest.raises(ConstraintError) as caught:
        _check_schema(deep(100), param, 0 if param is Param.TOOL_PARAMETERS else None)
    assert caught.value.rule == f"max depth {MAX_SCHEMA_DEPTH}" and caught.value.param is param
    assert _check_schema(deep(MAX_SCHEMA_DEPTH // 2 - 1), param)


def test_the_redact_filter_hides_the_key_and_authorization_values() -> None:
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "bad %s", ("b'Authorization: x\\x00'",),
                               None)
    assert log_redact.RedactFilter("s3cret").filter(record)
    assert record.getMessage() == "bad b'Authorization: <redacted>'"
    try:
        raise ValueError("token s3cret seen")
    except ValueError:
        import sys

        record = logging.LogRecord("mock_server.app", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    log_redact.RedactFilter("s3cret").filter(record)
    text = logging.Formatter().format(record)
    assert "s3cret" not in text and "<redacted>" in text


def test_accept_errors_are_logged_once_per_period_without_traceback() -> None:
    throttle = log_redact.AcceptErrorThrottle(every=3600)

    def record() -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1,
                                 "socket.accept() out of system resource\nsocket: <fd=6>", (), None)

    first = record()
    assert throttle.filter(first) and "too many open files" in first.getMessage()
    assert [throttle.filter(record()) for _ in range(100)] == [False] * 100
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved", (), None)
    assert throttle.filter(other)
