"""The Inference Providers router, emulated: per-provider routes, model:provider ids, the router's model list,
and huggingface_hub's InferenceClient(provider=...) pointed at the mock by route_hub_to (the fixture's work)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.inference._providers import PROVIDERS

from mock_server.backend import EngineBackend
from mock_server.hub_routing import route_hub_to
from mock_server.router import PROVIDER_ROUTES, split_model
from mock_server.server import ServerThread
from spec import schemas
from tests.mock_server.conftest import chat_body, tiny_config
from tests.mock_server.test_stream import WEATHER_TOOL

SNIPPET_MODEL = "meta-llama/Llama-3.3-70B-Instruct"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def recording(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    with ServerThread(tiny_config(record_requests=True), tiny_backend) as srv:
        yield srv


@pytest.fixture()
def routed(recording: ServerThread, monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    """huggingface_hub routed to the recording server, its log cleared."""
    route_hub_to(recording.base_url, monkeypatch)
    recording.requests.clear()
    return recording


def test_the_routes_are_huggingface_hubs() -> None:
    """Every conversational provider of the installed huggingface_hub has its route here, and only those."""
    routes = {}
    for name, tasks in PROVIDERS.items():
        helper = tasks.get("conversational")
        if helper is not None and name != "hf-inference":
            routes[name] = helper._prepare_route("org/model", "hf_x")
    assert {k: v for k, v in PROVIDER_ROUTES.items() if k != "hf-inference"} == routes
    assert "hf-inference" in PROVIDERS and "conversational" in PROVIDERS["hf-inference"]


def test_model_ids_with_a_provider_or_policy() -> None:
    assert split_model("openai/gpt-oss-120b:cerebras") == ("openai/gpt-oss-120b", "cerebras")
    assert split_model("google/gemma-2-2b-it:fastest") == ("google/gemma-2-2b-it", "fastest")
    assert split_model("ft:gpt-4o-mini:acme::abc") == ("ft:gpt-4o-mini:acme::abc", None)


@pytest.mark.parametrize("provider", sorted(PROVIDER_ROUTES))
def test_every_provider_route_answers(client: httpx.Client, provider: str) -> None:
    path = f"/{provider}" + PROVIDER_ROUTES[provider].replace("{model_id:.+}", SNIPPET_MODEL)
    r = client.post(path, json=chat_body(model=SNIPPET_MODEL, max_tokens=2))
    assert r.status_code == 200, r.text
    assert r.json()["model"] == SNIPPET_MODEL and schemas.validate("response", r.json()) == []


def test_suffixed_ids_are_served_and_checked_without_the_suffix(tiny_backend: EngineBackend) -> None:
    with ServerThread(tiny_config(strict_models=True, aliases=("openai/gpt-oss-120b",)), tiny_backend) as srv:
        ok = httpx.post(srv.base_url + "/v1/chat/completions", timeout=60,
                        json=chat_body(model="openai/gpt-oss-120b:cerebras", max_tokens=1))
        assert ok.status_code == 200 and ok.json()["model"] == "openai/gpt-oss-120b:cerebras"
        unknown = httpx.post(srv.base_url + "/v1/chat/completions", timeout=60,
                             json=chat_body(model="acme/x:groq", max_tokens=1))
        assert unknown.status_code == 404


def test_models_list_has_the_routers_provider_entries(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert schemas.validate("ModelList", body) == []
    providers = body["data"][0]["providers"]
    assert [p["provider"] for p in providers] == list(PROVIDER_ROUTES)
    assert all(p["status"] == "live" and p["supports_tools"] and p["supports_structured_output"]
               and p["context_length"] == 256 for p in providers)


def test_the_providers_snippet_runs_unchanged(routed: ServerThread) -> None:
    """The seeds' Inference Providers snippet, as written (the token comes from HF_TOKEN, set by the fixture)."""
    import os

    client = InferenceClient(provider="cerebras", api_key=os.environ["HF_TOKEN"])
    completion = client.chat.completions.create(model=SNIPPET_MODEL, messages=MESSAGES, max_tokens=4)
    assert completion.model == SNIPPET_MODEL and completion.choices[0].message.content is not None
    sent = routed.requests.last()
    assert sent.path == "/cerebras/v1/chat/completions" and sent.body["model"] == SNIPPET_MODEL


@pytest.mark.parametrize(("provider", "path"), [
    ("groq", "/groq/openai/v1/chat/completions"),
    ("hf-inference", f"/hf-inference/models/{SNIPPET_MODEL}/v1/chat/completions"),
    ("auto", "/v1/chat/completions"),
    (None, "/v1/chat/completions"),
])
def test_each_provider_and_the_auto_router_reach_the_mock(routed: ServerThread, provider: str | None,
                                                          path: str) -> None:
    client = InferenceClient(provider=provider, api_key="hf_my_token")  # type: ignore[arg-type]
    out = client.chat_completion(model=SNIPPET_MODEL, messages=MESSAGES, max_tokens=3, temperature=0)
    assert out.choices[0].message.content is not None
    assert routed.requests.last().path == path


def test_a_providers_own_key_goes_to_the_mock_too(routed: ServerThread) -> None:
    client = InferenceClient(provider="together", api_key="tgp_not_an_hf_token")
    client.chat_completion(model=SNIPPET_MODEL, messages=MESSAGES, max_tokens=2)
    assert routed.requests.last().path == "/together/v1/chat/completions"


def test_streaming_tools_and_structured_output_through_a_provider(routed: ServerThread) -> None:
    client = InferenceClient(provider="hf-inference", api_key="hf_x")
    pieces = [c.choices[0].delta.content or "" for c in client.chat_completion(
        model=SNIPPET_MODEL, messages=MESSAGES, max_tokens=4, stream=True) if c.choices]
    assert len(pieces) >= 1
    out = client.chat_completion(model=SNIPPET_MODEL, messages=MESSAGES, max_tokens=40, seed=1,
                                 tools=[WEATHER_TOOL], tool_choice="required")
    assert out.choices[0].message.tool_calls[0].function.name == "get_weather"
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    # huggingface_hub turns json_schema into TGI's {"type": "json_object", "value": schema} for hf-inference
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    answer = client.chat_completion(model=SNIPPET_MODEL, messages=MESSAGES, max_tokens=20, seed=2,
                                    response_format=fmt)
    assert routed.requests.last().body["response_format"] == {"type": "json_object", "value": schema}
    assert set(json.loads(answer.choices[0].message.content)) == {"ok"}


def test_the_routers_openai_snippet_runs_with_the_mocks_base_url(routed: ServerThread) -> None:
    oai = openai.OpenAI(base_url=routed.base_url + "/v1", api_key="hf_x", max_retries=0, timeout=60)
    out = oai.chat.completions.create(model="openai/gpt-oss-120b:cerebras", messages=MESSAGES, max_tokens=2)
    assert out.model == "openai/gpt-oss-120b:cerebras"
