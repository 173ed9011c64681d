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


# The prompt on which SmolLM2 (int4, temperature 0) makes two calls in one answer: Paris, then Tokyo.
TWO_CITIES = "Weather in Paris and in Tokyo? Call the tool once per city."
TWO_CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]


def _two_cities(**fields: object) -> dict:
    return {"messages": [{"role": "user", "content": TWO_CITIES}], "tools": [CITY_TOOL], "tool_choice": "required",
            "temperature": 0, "seed": 1, "max_tokens": 120, **fields}


def test_two_cities_prompt_makes_two_parallel_calls(real: httpx.Client) -> None:
    body = real.post("/v1/chat/completions", json=_two_cities()).json()
    choice = body["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == TWO_CALLS
    assert len({c["id"] for c in calls}) == 2
    chunks = stream_chunks(real.post("/v1/chat/completions", json=_two_cities(stream=True)).text)
    state = check_state_machine(chunks)
    streamed = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(state[0]["calls"].items())]
    assert streamed == TWO_CALLS and state[0]["finish"] == "tool_calls"


def test_two_parallel_calls_stream_into_both_official_clients(real: httpx.Client) -> None:
    import openai
    from huggingface_hub import InferenceClient

    base = str(real.base_url).rstrip("/")
    request = _two_cities()
    oai = openai.OpenAI(base_url=base + "/v1", api_key="sk-x", max_retries=0, timeout=120)
    with oai.chat.completions.stream(model="HuggingFaceTB/SmolLM2-135M-Instruct", **request) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == TWO_CALLS
    assembled: dict[int, dict[str, str]] = {}
    hf = InferenceClient(base_url=base, api_key="hf_x", timeout=120)
    for chunk in hf.chat_completion(stream=True, **request):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = assembled.setdefault(delta.index, {"name": "", "arguments": ""})
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(assembled.items())] == TWO_CALLS
