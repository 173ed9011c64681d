"""The stream's state machine: role first, one finish_reason per choice, usage chunk last, [DONE] last."""

from __future__ import annotations

import json
from typing import Any

import httpx

from spec import schemas
from tests.mock_server.conftest import chat_body, stream_chunks

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                   "required": ["city"], "additionalProperties": False}}}


def check_state_machine(chunks: list[dict[str, Any]], *, n: int = 1, usage: bool = False) -> dict[int, dict[str, Any]]:
    """Assert the stream rules; return per choice its content, tool calls and finish_reason."""
    for chunk in chunks:
        assert schemas.validate("chunk", chunk) == [], chunk
        assert chunk["object"] == "chat.completion.chunk"
    assert len({(c["id"], c["model"], c["created"]) for c in chunks}) == 1
    body = chunks
    if usage:
        assert chunks[-1]["choices"] == [] and isinstance(chunks[-1]["usage"], dict)
        body = chunks[:-1]
        assert all("usage" in c and c["usage"] is None for c in body)
    else:
        assert all(c.get("usage") is None and c["choices"] for c in chunks)
    state: dict[int, dict[str, Any]] = {}
    for chunk in body:
        for choice in chunk["choices"]:
            i = choice["index"]
            delta = choice["delta"]
            if i not in state:
                assert delta.get("role") == "assistant", f"first delta of choice {i} has no role: {delta}"
                state[i] = {"content": "", "calls": {}, "finish": None, "logprobs": []}
            s = state[i]
            assert s["finish"] is None, f"choice {i} continues after its finish_reason"
            s["content"] += delta.get("content") or ""
            for frag in delta.get("tool_calls") or []:
                call = s["calls"].setdefault(frag["index"], {"id": frag.get("id"), "name": None, "arguments": ""})
                if frag.get("function", {}).get("name"):
                    call["name"] = frag["function"]["name"]
                call["arguments"] += frag.get("function", {}).get("arguments", "")
            if choice.get("logprobs"):
                s["logprobs"] += choice["logprobs"]["content"]
            s["finish"] = choice.get("finish_reason")
    assert sorted(state) == list(range(n))
    assert all(s["finish"] is not None for s in state.values())
    return state


def test_stream_matches_non_stream_at_temperature_zero(client: httpx.Client) -> None:
    body = chat_body(temperature=0, max_tokens=12)
    plain = client.post("/v1/chat/completions", json=body).json()
    r = client.post("/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
    chunks = stream_chunks(r.text)
    state = check_state_machine(chunks, usage=True)
    assert state[0]["content"] == plain["choices"][0]["message"]["content"]
    assert state[0]["finish"] == plain["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == plain["usage"]
    # One chunk per token: the role chunk, at most 12 token chunks, the finish chunk.
    assert len(chunks) <= 1 + 12 + 1 + 1


def test_stream_logprob_entries_number_completion_tokens(client: httpx.Client) -> None:
    body = chat_body(max_tokens=10, seed=5, logprobs=True, top_logprobs=3, stream=True,
                     stream_options={"include_usage": True})
    chunks = stream_chunks(client.post("/v1/chat/completions", json=body).text)
    state = check_state_machine(chunks, usage=True)
    entries = state[0]["logprobs"]
    assert len(entries) == chunks[-1]["usage"]["completion_tokens"] == 10
    assert all(len(e["top_logprobs"]) == 3 for e in entries)
    assert bytes(b for e in entries for b in e["bytes"]).decode("utf-8", "replace") == state[0]["content"]


def test_stream_tool_call_deltas_carry_index_id_and_name(client: httpx.Client) -> None:
    body = chat_body(max_tokens=40, stream=True, tools=[WEATHER_TOOL], tool_choice="required", seed=1)
    chunks = stream_chunks(client.post("/v1/chat/completions", json=body).text)
    state = check_state_machine(chunks)
    assert state[0]["finish"] == "tool_calls"
    calls = state[0]["calls"]
    assert calls and all(c["id"] and c["name"] == "get_weather" for c in calls.values())
    assert all(json.loads(c["arguments"])["city"] in ("Paris", "Rome") for c in calls.values())
    assert state[0]["content"] == ""


def test_stream_with_several_choices(client: httpx.Client) -> None:
    body = chat_body(max_tokens=4, n=3, seed=11, stream=True, stream_options={"include_usage": True})
    chunks = stream_chunks(client.post("/v1/chat/completions", json=body).text)
    state = check_state_machine(chunks, n=3, usage=True)
    assert chunks[-1]["usage"]["completion_tokens"] == 12
    assert len({s["content"] for s in state.values()}) > 1
