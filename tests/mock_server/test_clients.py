"""The official clients work unchanged except for the base URL: openai and huggingface_hub, streamed and not."""

from __future__ import annotations

import json

import openai
import pytest
from huggingface_hub import InferenceClient

from mock_server.server import ServerThread
from tests.mock_server.test_stream import WEATHER_TOOL

MODEL = "chatconform/tiny-random"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture()
def oai(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-anything", max_retries=0, timeout=60)


@pytest.fixture()
def hf(server: ServerThread) -> InferenceClient:
    return InferenceClient(base_url=server.base_url, api_key="hf_anything", timeout=60)


def test_openai_completion(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0,
                                      logprobs=True, top_logprobs=2)
    assert out.model == MODEL and out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 6
    assert len(out.choices[0].logprobs.content) == 6
    assert isinstance(out.choices[0].message.content, str)


def test_openai_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    plain = oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6


def test_openai_tool_call(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=40, seed=1, tools=[WEATHER_TOOL],
                                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = out.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    assert out.choices[0].finish_reason == "tool_calls"


def test_openai_error_is_raised_with_status(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oai.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=5)
    assert "temperature" in str(err.value)  # auto: the SDK gets OpenAI's envelope, so its exception has the message
    assert err.value.response.json()["error"]["param"] == "temperature"


def test_hf_chat_completion(hf: InferenceClient) -> None:
    out = hf.chat_completion(messages=MESSAGES, max_tokens=6, temperature=0, seed=3)
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 6
    assert isinstance(out.choices[0].message.content, str)


def test_hf_stream_and_openai_style_api(hf: InferenceClient) -> None:
    pieces = [c.choices[0].delta.content for c in hf.chat_completion(messages=MESSAGES, max_tokens=6, temperature=0,
                                                                      stream=True) if c.choices]
    plain = hf.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0)
    assert "".join(p or "" for p in pieces) == plain.choices[0].message.content
    streamed = hf.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == plain.choices[0].message.content
