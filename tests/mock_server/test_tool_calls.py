"""Parallel tool calls on the tiny model: several calls per answer, streamed as per-call fragments, read back by
the official clients (openai's stream helper, huggingface_hub)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

from mock_server.backend import EngineBackend
from mock_server.limits import API_LIMITS
from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, stream_chunks
from tests.mock_server.test_stream import WEATHER_TOOL, check_state_machine

URL = "/v1/chat/completions"
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "JST"]}},
                                       "required": ["zone"], "additionalProperties": False}}}
# Short, so that the tiny model's 256-token context holds the tools, the question and two calls (30 tokens each).
SHORT = {"messages": [{"role": "user", "content": "Hi"}], "tool_prompt": ""}


@pytest.fixture(scope="module")
def no_end(tiny_backend: EngineBackend) -> dict[str, float]:
    """logit_bias that keeps the random model from ending its turn: it calls until a bound stops it."""
    return {str(tiny_backend.tokenizer.eos_id): -100}


def several(no_end: dict[str, float], **fields: Any) -> dict[str, Any]:
    """A request whose answer is two calls: tool_choice required, the end of turn pushed away, and after two
    calls of 30 tokens fewer tokens left under max_tokens 120 than a third needs (twice the longest, 60)."""
    return chat_body(**{**SHORT, "max_tokens": 120, "temperature": 0, "tools": [WEATHER_TOOL],
                        "tool_choice": "required", "logit_bias": no_end, "seed": 5, **fields})


def _calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["choices"][0]["message"]["tool_calls"]


def test_several_calls_each_with_its_id_and_valid_arguments(client: httpx.Client, no_end: dict[str, float]) -> None:
    body = client.post(URL, json=several(no_end)).json()
    calls = _calls(body)
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert len(calls) == 2
    assert len({c["id"] for c in calls}) == len(calls)
    for call in calls:
        assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
        assert json.loads(call["function"]["arguments"]) in ({"city": "Paris"}, {"city": "Rome"})


def test_parallel_tool_calls_false_allows_one_call(client: httpx.Client, no_end: dict[str, float]) -> None:
    body = client.post(URL, json=several(no_end, parallel_tool_calls=False)).json()
    assert len(_calls(body)) == 1 and body["choices"][0]["finish_reason"] == "tool_calls"


def test_named_choice_bounds_every_call(client: httpx.Client, no_end: dict[str, float]) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    other = {"type": "function", "function": {"name": "w"}}
    calls = _calls(client.post(URL, json=several(no_end, tool_choice=named, tools=[other, TIME_TOOL],
                                                 max_tokens=None)).json())
    assert 2 <= len(calls) <= API_LIMITS.max_tool_calls and {c["function"]["name"] for c in calls} == {"get_time"}


def test_a_small_budget_ends_after_complete_calls(client: httpx.Client, no_end: dict[str, float]) -> None:
    """No call is begun that the tokens left could not hold: the answer ends with complete calls."""
    one = client.post(URL, json=several(no_end, parallel_tool_calls=False)).json()
    length = one["usage"]["completion_tokens"]
    body = client.post(URL, json=several(no_end, max_tokens=2 * length)).json()
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert len(_calls(body)) == 1  # a second call needs twice the first one's tokens left
    assert all(json.loads(c["function"]["arguments"]) for c in _calls(body))


def test_stream_sends_each_call_name_once_and_arguments_in_fragments(client: httpx.Client,
                                                                     no_end: dict[str, float]) -> None:
    plain = client.post(URL, json=several(no_end)).json()
    chunks = stream_chunks(client.post(URL, json=several(no_end, stream=True)).text)
    state = check_state_machine(chunks)
    fragments = [f for c in chunks for ch in c["choices"] for f in ch["delta"].get("tool_calls") or []]
    firsts: dict[int, dict[str, Any]] = {}
    for fragment in fragments:
        if fragment["index"] not in firsts:
            firsts[fragment["index"]] = fragment
            assert fragment["id"] and fragment["type"] == "function" and fragment["function"]["name"]
        else:
            assert set(fragment) == {"index", "function"} and set(fragment["function"]) == {"arguments"}
    assert sorted(firsts) == list(range(len(_calls(plain))))
    assert len(fragments) > 2 * len(firsts)  # arguments come in several fragments, token by token
    streamed = [(state[0]["calls"][i]["id"], state[0]["calls"][i]["name"], state[0]["calls"][i]["arguments"])
                for i in sorted(state[0]["calls"])]
    assert streamed == [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in _calls(plain)]
    assert state[0]["finish"] == "tool_calls"


def test_openai_stream_helper_assembles_several_calls(server: ServerThread, no_end: dict[str, float]) -> None:
    oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-x", max_retries=0, timeout=60)
    request = several(no_end)
    fields = {k: v for k, v in request.items() if k != "tool_prompt"}
    with oai.chat.completions.stream(model="gpt-4o-mini", **fields, extra_body={"tool_prompt": ""}) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert len(calls) >= 2 and len(done) == len(calls)
    assert [e.index for e in done] == list(range(len(calls)))
    plain = httpx.post(server.base_url + URL, json=request, timeout=60).json()
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in _calls(plain)]


def test_hf_stream_deltas_assemble_several_calls(server: ServerThread, no_end: dict[str, float]) -> None:
    hf = InferenceClient(base_url=server.base_url, api_key="hf_x", timeout=60)
    request = several(no_end)
    calls: dict[int, dict[str, str]] = {}
    for chunk in hf.chat_completion(stream=True, **request):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    plain = httpx.post(server.base_url + URL, json=request, timeout=60).json()
    assert len(calls) >= 2
    assert [calls[i] for i in sorted(calls)] == [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in _calls(plain)]
