"""The fuzz shrink budget: a failing random case costs at most --fuzz-shrink extra requests, and the
finding is a request that really failed (sent again, it fails again). And what the fuzzer sends and
counts: every body names the model under test, response_format variants follow the dialect, 2xx
answers are counted per phase, and a request without an HTTP answer is counted, never judged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from schemathesis import GenerationMode

from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.fuzz import DOCUMENTED, INVALID, VALID, run_phase
from conformance.fuzz_inputs import dialect_openapi
from tests.conformance.breaker_hooks import breaker, refuse_when
from tests.conformance.breaking_proxy import IDENTITY, BreakingProxy, Call, Reply
from tests.conformance.rawserver import RawServer, json_answer

# Random cases per run: enough that the seeded run (seed 7) meets a stream request among them.
FUZZ_BUDGET = 20


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


# --- what is sent and counted ---------------------------------------------------------------------------


def needs_model(body: dict[str, Any]) -> bool:
    """A router's rule: a request that names no model is refused with 400."""
    return not isinstance(body.get("model"), str)


MODEL_REQUIRED = breaker("model-required-400", VALID, "400 to a chat request without a model",
                         request=counting(refuse_when(needs_model, "model: required", status=400)))


def test_every_body_names_the_model_so_generation_is_reached(proxy: BreakingProxy) -> None:
    """Against a server that needs `model`, the positive phase still gets 2xx answers (it names the model)."""
    proxy.use(MODEL_REQUIRED)
    try:
        result, sent = fuzz_positive(proxy, 0)
    finally:
        proxy.use(IDENTITY)
    assert result.error is None
    assert result.generated > 0, f"no 2xx: {dict(result.statuses)}"
    assert not any(sent), "a generated body went out without the model"
    assert VALID not in result.findings


@pytest.mark.parametrize(("dialect", "other"), [("hf", "json_schema"), ("openai", "regex")])
def test_response_format_variants_follow_the_dialect(dialect: str, other: str) -> None:
    """The fuzzer's spec keeps only the response_format variants of the dialect under test."""
    schema = dialect_openapi(dialect)["components"]["schemas"]["ResponseFormat"]
    mapping = schema["discriminator"]["mapping"]
    assert other not in mapping and other not in schema["properties"]["type"]["enum"]
    assert len(schema["oneOf"]) == len(mapping) >= 2


MODELS = json_answer(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "created": 0,
                                                                   "owned_by": "x"}]}))


def test_a_request_without_an_answer_is_counted_not_judged() -> None:
    """A server that closes every chat connection unanswered: counted as no answer, no status finding."""
    with RawServer(script=[], get_script=[MODELS]) as server:
        config = SuiteConfig(base_url=server.base_url, fuzz_budget=2, fuzz_shrink=0, seed=7, timeout=5)
        target = Target(config)
        try:
            result = run_phase(target, config, GenerationMode.NEGATIVE)
        finally:
            target.close()
    assert result.error is None
    assert result.examples > 0 and result.no_answer == result.examples
    assert not result.statuses and result.generated == 0
    assert DOCUMENTED not in result.findings and INVALID not in result.findings


def test_several_findings_in_one_phase_are_findings_not_a_suite_error() -> None:
    from conformance.fuzz import _InvalidNotRefused, _ValidNotAccepted, suite_error

    findings = BaseExceptionGroup("two bugs", [_InvalidNotRefused("x"), _ValidNotAccepted("y")])
    assert suite_error(findings) is None
    mixed = BaseExceptionGroup("a bug and ours", [_InvalidNotRefused("x"), KeyError("k")])
    assert "KeyError" in (suite_error(mixed) or "")
