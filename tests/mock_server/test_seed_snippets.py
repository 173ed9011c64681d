"""The seeds' snippets and their OpenAI-client twins, run as written against the real-model mock.

Only the address and the key change: the huggingface_hub snippets reach the mock through the
provider routing of `route_hub_to` (the `chatconform_providers` fixture), the OpenAI client through
its base_url; the image is a data URL (the mock fetches no remote image unless told to). Each
snippet keeps its model id, max_tokens=500 and all.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator

import openai
import pytest
from huggingface_hub import InferenceClient
from PIL import Image

from mock_server.backend import load_backend
from mock_server.config import load_config
from mock_server.hub_routing import route_hub_to
from mock_server.server import ServerThread

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _data_url() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (30, 90, 200)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def mock() -> Iterator[str]:
    config = load_config({"port": 0, "model": "smollm2", "weights": "int4", "record_requests": True}, env={})
    backend = load_backend(config)
    with ServerThread(config, backend) as srv:
        yield srv.base_url
    backend.close()


@pytest.fixture()
def providers(mock: str, monkeypatch: pytest.MonkeyPatch) -> str:
    route_hub_to(mock, monkeypatch)  # what the chatconform_providers fixture does
    return mock


def test_hf_inference_api_streaming_snippet(providers: str) -> None:
    client = InferenceClient(
        "google/gemma-2-2b-it",
        token=os.environ["HF_TOKEN"],
    )
    text = ""
    for message in client.chat_completion(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=500,
        stream=True,
    ):
        text += message.choices[0].delta.content or ""
    assert text  # sampled (temperature 1, no seed): any text; the stream parsed to its end


def test_providers_llm_snippet(providers: str) -> None:
    client = InferenceClient(
        provider="cerebras",
        api_key=os.environ["HF_TOKEN"],
    )
    completion = client.chat.completions.create(
        model="meta-llama/Llama-3.3-70B-Instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=500,
    )
    assert completion.model == "meta-llama/Llama-3.3-70B-Instruct"
    assert completion.choices[0].message.content and completion.choices[0].finish_reason in ("stop", "length")


def test_providers_vlm_snippet_with_a_data_url(providers: str) -> None:
    client = InferenceClient(
        provider="fireworks-ai",
        api_key=os.environ["HF_TOKEN"],
    )
    completion = client.chat.completions.create(
        model="meta-llama/Llama-3.2-11B-Vision-Instruct",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe this image in one sentence."},
            {"type": "image_url", "image_url": {"url": _data_url()}},
        ]}],
        max_tokens=500,
    )
    assert completion.choices[0].message.content


def test_openai_client_text_stream_and_image(mock: str) -> None:
    client = openai.OpenAI(base_url=mock + "/v1", api_key="hf_xxx")
    completion = client.chat.completions.create(model="openai/gpt-oss-120b:cerebras", messages=QUESTION,
                                                max_completion_tokens=500)
    assert completion.model == "openai/gpt-oss-120b:cerebras" and completion.choices[0].message.content
    stream = client.chat.completions.create(model="google/gemma-2-2b-it", messages=QUESTION, max_tokens=500,
                                            stream=True, temperature=0)
    assert "Paris" in "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    image = client.chat.completions.create(model="meta-llama/Llama-3.2-11B-Vision-Instruct", max_tokens=500,
                                           messages=[{"role": "user", "content": [
                                               {"type": "text", "text": "Describe this image in one sentence."},
                                               {"type": "image_url", "image_url": {"url": _data_url()}}]}])
    assert image.choices[0].message.content


def test_tools_in_both_clients(providers: str) -> None:
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    hf = InferenceClient(provider="together", api_key=os.environ["HF_TOKEN"])
    out = hf.chat.completions.create(model="Qwen/Qwen2.5-7B-Instruct", messages=question, tools=[tool],
                                     tool_choice="required", max_tokens=500)
    call = out.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    oai = openai.OpenAI(base_url=providers + "/v1", api_key="hf_xxx")
    plain = oai.chat.completions.create(model="Qwen/Qwen2.5-7B-Instruct", messages=question, tools=[tool],
                                        tool_choice="required", max_tokens=500)
    assert plain.choices[0].message.tool_calls[0].function.name == "get_weather"
