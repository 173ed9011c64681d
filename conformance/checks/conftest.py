"""Fixtures every check can use: the target, the configuration, and spec validation that raises Fail."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.samples import SampleSet, collect
from conformance.tool_calls import WEATHER, tool_body
from conformance.validation import validate_body
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


# A prompt no model answers within 4 tokens: both choices of the n 2 samples end by max_tokens.
LONG_STORY = [{"role": "user", "content": "Write a long story about a cat."}]


@pytest.fixture(scope="session")
def responses(target: Target) -> SampleSet:
    """Varied non-streaming responses (plain, system prompt, length-capped, early stop, n 2, tool call), answered or not.

    Each sample names the clause that judges whether its request is accepted; checks judge the
    accepted samples and report a lost one as not exercised (see conformance.samples).
    """
    accepted = "request.messages.accepted"
    plan = [
        ("plain", target.body(max_tokens=8), accepted),
        ("system", target.body(max_tokens=8, messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a colour."}]), "message.system.accepted"),
        ("length-1", target.body(max_tokens=1), accepted),
        ("short-answer", target.body(max_tokens=32, temperature=0, messages=[
            {"role": "user", "content": "Reply with just the word yes."}]), accepted),
        ("n-2", target.body(max_tokens=4, n=2, seed=7, messages=LONG_STORY), "request.n.multiple"),
        ("tool-call", tool_body(target, tools=[WEATHER], tool_choice="required"), "tools.choice.required"),
    ]
    return collect(target, plan, stream=False, refusable=("n-2",))


@pytest.fixture(scope="session")
def streams(target: Target) -> SampleSet:
    """Varied streams (plain, with include_usage, length-capped, early stop, n 2), answered or not, read once per session."""
    accepted = "stream.content-type.event-stream"
    usage = {"include_usage": True}
    plan = [
        ("plain", target.body(max_tokens=12, stream=True), accepted),
        ("usage", target.body(max_tokens=12, stream=True, stream_options=usage), accepted),
        ("length-1", target.body(max_tokens=1, stream=True, stream_options=usage), accepted),
        ("short-answer", target.body(max_tokens=32, temperature=0, stream=True, messages=[
            {"role": "user", "content": "Reply with just the word yes."}]), accepted),
        ("n-2", target.body(max_tokens=4, n=2, seed=7, stream=True, stream_options=usage, messages=LONG_STORY),
         "request.n.multiple"),
    ]
    return collect(target, plan, stream=True, refusable=("n-2",))
