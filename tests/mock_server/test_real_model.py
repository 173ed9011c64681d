"""A few requests against the real SmolLM2 int4 model (prepared on first use): real answers, real tools."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import jsonschema
import pytest

from mock_server.backend import REFERENCE_MODEL_ID, load_backend
from mock_server.config import load_config
from mock_server.server import ServerThread
from spec import schemas
from tests.mock_server.conftest import stream_chunks
from tests.mock_server.test_stream import check_state_machine

pytestmark = pytest.mark.slow

CITY_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def real() -> Iterator[httpx.Client]:
    config = load_config({"port": 0, "model": "smollm2", "weights": "int4"}, env={})
    backend = load_backend(config)
    with ServerThread(config, backend) as srv, httpx.Client(base_url=srv.base_url, timeout=120) as c:
        yield c
    backend.close()


def ask(client: httpx.Client, **fields: object) -> dict:
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": fields.pop("q")}],
                                                   "temperature": 0, **fields})
    assert r.status_code == 200, r.text
    assert schemas.validate("response", r.json()) == []
    return r.json()


def test_greedy_answer_and_stream_parity(real: httpx.Client) -> None:
    body = ask(real, q="What is the capital of France?", max_tokens=40)
    assert body["model"] == REFERENCE_MODEL_ID
    assert body["choices"][0]["finish_reason"] == "stop"
    text = body["choices"][0]["message"]["content"]
    assert "Paris" in text
    question = [{"role": "user", "content": "What is the capital of France?"}]
    r = real.post("/v1/chat/completions", json={"messages": question, "temperature": 0, "max_tokens": 40,
                                               "stream": True, "stream_options": {"include_usage": True}})
    chunks = stream_chunks(r.text)
    state = check_state_machine(chunks, usage=True)
    assert state[0]["content"] == text and chunks[-1]["usage"] == body["usage"]


def test_required_tool_call_has_schema_valid_arguments(real: httpx.Client) -> None:
    body = ask(real, q="What is the weather in Paris?", max_tokens=60, tools=[CITY_TOOL], tool_choice="required")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
    jsonschema.validate(json.loads(call["function"]["arguments"]), CITY_TOOL["function"]["parameters"])


def test_json_response_format(real: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    body = ask(real, q="Give me a person as JSON.", max_tokens=60, response_format={"type": "json", "value": schema})
    assert body["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), schema)
