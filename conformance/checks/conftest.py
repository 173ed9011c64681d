"""Fixtures every check can use: the target, the configuration, and spec validation that raises Fail."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.samples import WEATHER_TOOL, Sample
from conformance.validation import validate_body
from conformance.verdicts import Fail
from spec import schemas as spec_schemas


@pytest.fixture(scope="session")
def suite_config(pytestconfig: pytest.Config) -> SuiteConfig:
    """The run's SuiteConfig (built by the plugin from options, environment and defaults)."""
    from conformance.plugin import session_state

    return session_state(pytestconfig).config


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    """The server under test (one client for the whole session)."""
    from conformance.plugin import session_state

    return session_state(pytestconfig).target()


@pytest.fixture(scope="session")
def schemas() -> ModuleType:
    """The `spec.schemas` module (validators of the OpenAPI component schemas)."""
    return spec_schemas


@pytest.fixture(scope="session")
def validate() -> Callable[..., None]:
    """validate(kind, body, exchanges=()) -> None; raises Fail listing the spec violations."""
    return validate_body


@pytest.fixture
def dialect(suite_config: SuiteConfig) -> str:
    """The dialect under test: `hf` or `openai`."""
    return suite_config.dialect


@pytest.fixture(scope="session")
def responses(target: Target) -> list[Sample]:
    """Varied non-streaming 200 responses (plain, system prompt, length-capped, n=2, tool call, early stop).

    Requests the target refuses are left out (their own clauses judge the refusal); a target that
    refuses the plain request fails every check that uses this fixture.
    """
    plan = [
        ("plain", target.body(max_tokens=8)),
        ("system", target.body(max_tokens=8, messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a colour."}])),
        ("length-1", target.body(max_tokens=1)),
        ("short-answer", target.body(max_tokens=32, temperature=0, messages=[
            {"role": "user", "content": "Reply with just the word yes."}])),
        ("n-2", target.body(max_tokens=4, n=2, seed=7)),
        ("tool-call", target.body(max_tokens=48, tools=[WEATHER_TOOL], tool_choice="required", messages=[
            {"role": "user", "content": "What is the weather in Paris?"}])),
    ]
    samples = []
    answers = target.many(lambda body=body: target.chat(body) for _, body in plan)
    for (label, body), ex in zip(plan, answers, strict=True):
        if label == "plain" and ex.status != 200:
            raise Fail(f"the plain request was not answered 200 (got {ex.status}); response checks cannot run",
                       expected=200, actual=ex.status, exchanges=ex)
        if ex.status == 200 and isinstance(ex.json, dict):
            samples.append(Sample(label, body, ex))
    return samples


@pytest.fixture(scope="session")
def streams(target: Target) -> list[Sample]:
    """Varied streams (plain, with include_usage, length-capped, n=2 when accepted) read once per session."""
    plan = [
        ("plain", target.body(max_tokens=12, stream=True)),
        ("usage", target.body(max_tokens=12, stream=True, stream_options={"include_usage": True})),
        ("length-1", target.body(max_tokens=1, stream=True, stream_options={"include_usage": True})),
        ("short-answer", target.body(max_tokens=32, temperature=0, stream=True, messages=[
            {"role": "user", "content": "Reply with just the word yes."}])),
        ("n-2", target.body(max_tokens=4, n=2, seed=7, stream=True, stream_options={"include_usage": True})),
    ]
    samples = []
    answers = target.many(lambda body=body: target.chat_stream(body) for _, body in plan)
    for (label, body), ex in zip(plan, answers, strict=True):
        if label == "plain" and ex.status != 200:
            raise Fail(f"the plain stream request was not answered 200 (got {ex.status}); stream checks cannot run",
                       expected=200, actual=ex.status, exchanges=ex)
        if ex.status == 200:
            samples.append(Sample(label, body, ex))
    return samples

