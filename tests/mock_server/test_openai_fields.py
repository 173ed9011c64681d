"""OpenAI's current request fields, as current OpenAI-client code sends them: honoured, or refused with a 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from mock_server.backend import EngineBackend
from mock_server.request import validate_body
from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, tiny_config

URL = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def recording(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    with ServerThread(tiny_config(record_requests=True), tiny_backend) as srv:
        yield srv


def test_max_completion_tokens_means_max_tokens(client: httpx.Client) -> None:
    body = client.post(URL, json={"messages": MESSAGES, "max_completion_tokens": 3, "seed": 4}).json()
    same = client.post(URL, json={"messages": MESSAGES, "max_tokens": 3, "seed": 4}).json()
    assert body["usage"]["completion_tokens"] == 3 and body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"] == same["choices"][0]["message"]


def test_both_token_limits_at_once_are_refused_naming_the_field(client: httpx.Client) -> None:
    r = client.post(URL, json={"messages": MESSAGES, "max_tokens": 3, "max_completion_tokens": 3})
    assert r.status_code == 422 and "max_completion_tokens" in r.json()["error"]
    ok = client.post(URL, json={"messages": MESSAGES, "max_tokens": None, "max_completion_tokens": 2})
    assert ok.status_code == 200


def test_max_completion_tokens_over_the_context_names_itself(client: httpx.Client) -> None:
    r = client.post(URL, json={"messages": MESSAGES, "max_completion_tokens": 100_000})
    assert r.status_code == 422 and r.json()["error"].startswith("$.max_completion_tokens")


def test_user_is_accepted_and_recorded(recording: ServerThread) -> None:
    recording.requests.clear()
    r = httpx.post(recording.base_url + URL, json=chat_body(user="end-user-42", max_tokens=1), timeout=60)
    assert r.status_code == 200
    assert recording.requests.last().user == "end-user-42"


def test_parallel_tool_calls_is_typed() -> None:
    assert validate_body(chat_body(parallel_tool_calls=False)).parallel_tool_calls is False
    assert validate_body(chat_body()).parallel_tool_calls is True
    with pytest.raises(Exception, match="parallel_tool_calls"):
        validate_body(chat_body(parallel_tool_calls="yes"))


def test_current_openai_client_code_runs(server: ServerThread) -> None:
    """What the OpenAI quickstart sends today: max_completion_tokens, user, parallel_tool_calls."""
    oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-x", max_retries=0, timeout=60)
    out = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=4,
                                      user="u-1", parallel_tool_calls=False, seed=1)
    assert out.model == "gpt-4o-mini" and out.usage is not None and out.usage.completion_tokens <= 4
