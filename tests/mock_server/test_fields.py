"""Each request field changes the output the way the spec says (tiny model: real tokens, random weights)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema

from spec import schemas
from tests.mock_server.conftest import chat_body
from tests.mock_server.test_stream import WEATHER_TOOL


def post(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json=chat_body(**fields))
    assert r.status_code == 200, r.text
    body = r.json()
    assert schemas.validate("response", body) == [], body
    return body


def content(body: dict[str, Any], i: int = 0) -> str:
    return body["choices"][i]["message"]["content"]


def test_max_tokens_limits_and_reports_length(client: httpx.Client) -> None:
    for n in (1, 5):
        body = post(client, max_tokens=n, seed=3)
        assert body["usage"]["completion_tokens"] == n
        assert body["choices"][0]["finish_reason"] == "length"


def test_seed_reproduces_and_varies(client: httpx.Client) -> None:
    a = content(post(client, seed=42, temperature=1, max_tokens=10))
    b = content(post(client, seed=42, temperature=1, max_tokens=10))
    others = {content(post(client, seed=s, temperature=1, max_tokens=10)) for s in (1, 2, 3)}
    assert a == b
    assert len(others | {a}) > 1


def test_temperature_zero_repeats(client: httpx.Client) -> None:
    assert content(post(client, temperature=0, max_tokens=10)) == content(post(client, temperature=0, max_tokens=10))


def test_stop_sequence_ends_generation_and_is_excluded(client: httpx.Client) -> None:
    free = content(post(client, temperature=0, max_tokens=12))
    word = free.split()[2]  # a later word of the greedy output; the output must stop before it
    body = post(client, temperature=0, max_tokens=12, stop=[word])
    assert body["choices"][0]["finish_reason"] == "stop"
    assert word not in content(body)
    assert free.startswith(content(body))
    single = post(client, temperature=0, max_tokens=12, stop=word)
    assert content(single) == content(body)


def test_logprobs_shape(client: httpx.Client) -> None:
    body = post(client, max_tokens=6, logprobs=True, top_logprobs=2, temperature=0)
    entries = body["choices"][0]["logprobs"]["content"]
    assert len(entries) == body["usage"]["completion_tokens"] == 6
    for e in entries:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 2
        assert e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][1]["logprob"]
        assert abs(e["logprob"] - e["top_logprobs"][0]["logprob"]) < 1e-6  # greedy: chosen is the best
    assert bytes(b for e in entries for b in e["bytes"]).decode() == content(body)
    none = post(client, max_tokens=2, logprobs=True)
    assert all(e["top_logprobs"] == [] for e in none["choices"][0]["logprobs"]["content"])


def test_logit_bias_forces_a_token(client: httpx.Client, tiny_backend) -> None:  # type: ignore[no-untyped-def]
    body = post(client, max_tokens=3, logit_bias={"28": 100}, logprobs=True, seed=1)
    forced = tiny_backend.tokenizer.decode([28])
    assert [e["token"] for e in body["choices"][0]["logprobs"]["content"]] == [forced] * 3
    assert content(body) == forced * 3


def test_penalties_and_bounds_are_accepted(client: httpx.Client) -> None:
    for fields in ({"frequency_penalty": -2}, {"presence_penalty": 2}, {"temperature": 2, "top_p": 1},
                   {"reasoning_effort": "high"}, {"temperature": None, "seed": None, "stop": None, "tools": None}):
        post(client, max_tokens=2, **fields)


def test_json_schema_formats_give_valid_json(client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
              "additionalProperties": False}
    for fmt in ({"type": "json", "value": schema}, {"type": "json", "value": json.dumps(schema)},
                {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}):
        body = post(client, max_tokens=30, seed=2, response_format=fmt)
        assert body["choices"][0]["finish_reason"] == "stop", body
        jsonschema.validate(json.loads(content(body)), schema)


def test_json_object_and_text_formats(client: httpx.Client) -> None:
    obj = post(client, max_tokens=60, seed=4, response_format={"type": "json_object"},
               logit_bias={"28": -100})
    if obj["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(content(obj)), dict)
    else:  # cut by max_tokens: a prefix of an object
        assert content(obj).startswith("{")
    text = post(client, max_tokens=6, temperature=0, response_format={"type": "text"})
    assert content(text) == content(post(client, max_tokens=6, temperature=0))


def test_regex_format_full_match(client: httpx.Client) -> None:
    pattern = r"(yes|no), [0-9]{3}"
    body = post(client, max_tokens=20, seed=9, response_format={"type": "regex", "value": pattern})
    assert body["choices"][0]["finish_reason"] == "stop"
    assert re.fullmatch(pattern, content(body))


def test_tool_choice_required_and_named_call_declared_tools(client: httpx.Client) -> None:
    other = {"type": "function", "function": {"name": "get_time", "arguments": {
        "type": "object", "properties": {"zone": {"enum": ["UTC"]}}, "required": ["zone"],
        "additionalProperties": False}}}
    for choice, names in (("required", {"get_weather", "get_time"}),
                          ({"type": "function", "function": {"name": "get_time"}}, {"get_time"})):
        body = post(client, max_tokens=50, seed=7, tools=[WEATHER_TOOL, other], tool_choice=choice,
                    tool_prompt="Use the tools.")
        choice0 = body["choices"][0]
        assert choice0["finish_reason"] == "tool_calls", body
        calls = choice0["message"]["tool_calls"]
        assert calls and {c["function"]["name"] for c in calls} <= names
        assert len({c["id"] for c in calls}) == len(calls)
        for c in calls:
            args = json.loads(c["function"]["arguments"])
            assert args in ({"city": "Paris"}, {"city": "Rome"}, {"zone": "UTC"})


def test_tool_choice_none_and_auto(client: httpx.Client) -> None:
    none = post(client, max_tokens=8, seed=7, tools=[WEATHER_TOOL], tool_choice="none")
    assert "tool_calls" not in none["choices"][0]["message"]
    assert none["choices"][0]["finish_reason"] != "tool_calls"
    auto = post(client, max_tokens=40, seed=7, tools=[WEATHER_TOOL])
    message = auto["choices"][0]["message"]
    assert isinstance(message.get("content"), str) or message["tool_calls"][0]["function"]["name"] == "get_weather"


def test_tool_result_turn_is_accepted(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                                      "function": {"name": "get_weather",
                                                                   "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"}]
    post(client, messages=messages, tools=[WEATHER_TOOL], max_tokens=4)


def test_several_choices(client: httpx.Client) -> None:
    body = post(client, n=2, seed=8, max_tokens=5)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 10
    assert content(body, 0) != content(body, 1)


def test_message_kinds_are_accepted(client: httpx.Client) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": [{"type": "text",
                                                                                              "text": "Really."}]},
                {"role": "user", "content": "Hi", "name": "ann"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Bye"}]}]
    post(client, messages=messages, max_tokens=2)
    parts = post(client, messages=[{"role": "user", "content": [{"type": "text", "text": "Hello, who are you?"}]}],
                 temperature=0)
    assert content(parts) == content(post(client, temperature=0))


NULLABLE = ("model", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "n", "logit_bias",
            "reasoning_effort", "response_format", "seed", "stop", "stream_options", "temperature", "top_p", "tools",
            "tool_choice", "tool_prompt")


def test_explicit_nulls_mean_absent(client: httpx.Client) -> None:
    base = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 6, "temperature": 0}
    nulls = {**{name: None for name in NULLABLE}, **base}
    with_nulls = client.post("/v1/chat/completions", json=nulls)
    plain = client.post("/v1/chat/completions", json=base)
    assert with_nulls.status_code == plain.status_code == 200, with_nulls.text
    assert content(with_nulls.json()) == content(plain.json())
    unbounded = client.post("/v1/chat/completions", json={**base, "max_tokens": None, "temperature": None})
    assert unbounded.status_code == 200
