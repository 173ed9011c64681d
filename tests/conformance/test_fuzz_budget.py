"""The fuzz shrink budget: a failing random case costs at most --fuzz-shrink extra requests, and the
finding is a request that really failed (sent again, it fails again)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from schemathesis import GenerationMode

from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.fuzz import VALID, run_phase
from tests.conformance.breaker_hooks import breaker, refuse_when
from tests.conformance.breaking_proxy import IDENTITY, BreakingProxy, Call, Reply

FUZZ_BUDGET = 12


def streams_fail(body: dict[str, Any]) -> bool:
    """The broken rule: every request asking for a stream is answered 500 (schema-valid ones included)."""
    return body.get("stream") is True


def counting(hook: Any) -> Any:
    """The request hook, recording in the proxy's state every chat request and whether it was broken."""
    def wrapped(call: Call) -> Call | Reply:
        outcome = hook(call)
        if call.is_chat:
            call.state.setdefault("sent", []).append(isinstance(outcome, Reply))
        return outcome
    return wrapped


STREAMS_500 = breaker("streams-500", VALID, "500 on any stream request",
                      request=counting(refuse_when(streams_fail, "internal error", status=500)))


@pytest.fixture()
def broken(proxy: BreakingProxy) -> Iterator[BreakingProxy]:
    """The session's proxy in front of the tiny mock, answering 500 to streams."""
    proxy.use(STREAMS_500)
    yield proxy
    proxy.use(IDENTITY)


def fuzz_positive(proxy: BreakingProxy, shrink: int) -> tuple[Any, list[bool]]:
    """Run the positive phase through the proxy; return its result and the chat requests the proxy saw."""
    config = SuiteConfig(base_url=proxy.url, fuzz_budget=FUZZ_BUDGET, fuzz_shrink=shrink, seed=7)
    target = Target(config)
    try:
        proxy.state.clear()
        result = run_phase(target, config, GenerationMode.POSITIVE)
    finally:
        target.close()
    return result, list(proxy.state.get("sent", []))


@pytest.mark.parametrize("shrink", [0, 5])
def test_requests_after_the_first_random_failure_are_bounded(broken: BreakingProxy, shrink: int) -> None:
    result, sent = fuzz_positive(broken, shrink)
    assert result.error is None
    assert result.after_failure is not None, "the random run met no failing case: the test proves nothing"
    # Hypothesis may finish shrinking before the budget is spent (bodies it already sent are judged
    # from memory and cost nothing), so the bound is an upper one.
    assert result.shrink_requests <= shrink
    # What the proxy saw: the coverage cases, then at most fuzz_budget random cases and `shrink` more.
    random_sent = result.random_cases - result.replayed
    assert len(sent) == result.examples
    assert random_sent <= FUZZ_BUDGET + shrink
    first_random_failure = len(sent) - random_sent + sent[len(sent) - random_sent:].index(True)
    assert len(sent) - 1 - first_random_failure <= FUZZ_BUDGET + shrink


def test_the_reported_request_really_fails(broken: BreakingProxy) -> None:
    result, _ = fuzz_positive(broken, 5)
    finding = result.findings[VALID]
    assert finding.exchange.status == 500
    body = finding.exchange.request_body or ""
    again = httpx.post(broken.url + "/v1/chat/completions", content=body.encode(),
                       headers={"content-type": "application/json"}, timeout=60)
    assert again.status_code == 500  # the finding reproduces: it is a request that really failed
    assert streams_fail(json.loads(body))
