"""Model ids: any id served as an alias by default, only the known ones with --strict-models; error envelopes
in the dialect each client reads."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from mock_server.backend import EngineBackend
from mock_server.errors import NotFound, request_style
from mock_server.models import ModelCatalog
from mock_server.server import ServerThread
from spec import schemas
from tests.mock_server.conftest import chat_body, stream_chunks, tiny_config

SERVED = "chatconform/tiny-random"
APP_MODELS = ("google/gemma-2-2b-it", "gpt-4o-mini", "meta-llama/Llama-3.3-70B-Instruct")


@pytest.fixture(scope="module")
def strict(tiny_backend: EngineBackend) -> Iterator[httpx.Client]:
    """A client of a --strict-models server with one alias."""
    with ServerThread(tiny_config(strict_models=True, aliases=("my-alias",)), tiny_backend) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=60) as c:
        yield c


@pytest.mark.parametrize("model", APP_MODELS)
def test_any_model_id_is_served_and_echoed(client: httpx.Client, model: str) -> None:
    body = client.post("/v1/chat/completions", json=chat_body(model=model, max_tokens=2)).json()
    assert body["model"] == model and schemas.validate("response", body) == []
    chunks = stream_chunks(client.post("/v1/chat/completions",
                                       json=chat_body(model=model, max_tokens=2, stream=True)).text)
    assert {c["model"] for c in chunks} == {model}


def test_model_route_serves_any_id_and_echoes_it(client: httpx.Client) -> None:
    r = client.post("/models/google/gemma-2-2b-it/v1/chat/completions", json=chat_body(max_tokens=2))
    assert r.status_code == 200 and r.json()["model"] == "google/gemma-2-2b-it"


def test_placeholders_and_no_model_answer_with_the_served_id(client: httpx.Client) -> None:
    for fields in ({}, {"model": "tgi"}, {"model": "dummy"}, {"model": None}):
        assert client.post("/v1/chat/completions", json=chat_body(max_tokens=1, **fields)).json()["model"] == SERVED


def test_body_and_path_models_must_agree(client: httpx.Client) -> None:
    r = client.post("/models/acme/a/v1/chat/completions", json=chat_body(model="acme/b"))
    assert r.status_code == 422 and "acme/a" in r.json()["error"]


def test_strict_refuses_unknown_ids_on_body_and_route(strict: httpx.Client) -> None:
    r = strict.post("/v1/chat/completions", json=chat_body(model="acme/other"))
    assert r.status_code == 404 and "acme/other" in r.json()["error"]
    r = strict.post("/models/acme/unknown/v1/chat/completions", json=chat_body())
    assert r.status_code == 404 and "acme/unknown" in r.json()["error"]


def test_strict_serves_its_id_and_aliases_and_lists_them(strict: httpx.Client) -> None:
    assert [m["id"] for m in strict.get("/v1/models").json()["data"]] == [SERVED, "my-alias"]
    for model in (SERVED, "my-alias"):
        r = strict.post("/v1/chat/completions", json=chat_body(model=model, max_tokens=1))
        assert r.status_code == 200 and r.json()["model"] == model
    assert strict.post("/models/my-alias/v1/chat/completions", json=chat_body(max_tokens=1)).status_code == 200
    info = strict.get("/info").json()
    assert info["aliases"] == ["my-alias"] and info["config"]["strict_models"] is True


def test_catalog_rules() -> None:
    lenient = ModelCatalog(SERVED, ("alias",))
    assert lenient.ids == (SERVED, "alias") and lenient.answer_id("x/y") == "x/y"
    assert lenient.answer_id(None, "x/y") == "x/y" and lenient.answer_id("dummy") == SERVED
    with pytest.raises(NotFound):
        ModelCatalog(SERVED, strict=True).answer_id("x/y")


def test_request_style_follows_the_client() -> None:
    assert request_style("auto", {"User-Agent": "OpenAI/Python 2.4.0"}) == "openai"
    assert request_style("auto", {"User-Agent": "AsyncOpenAI/Python 2.4.0"}) == "openai"
    assert request_style("auto", {"x-stainless-lang": "js", "User-Agent": "node"}) == "openai"
    assert request_style("auto", {"User-Agent": "huggingface_hub/1.0; python/3.11"}) == "hf"
    assert request_style("auto", {}) == "hf"
    assert request_style("hf", {"User-Agent": "OpenAI/Python 2.4.0"}) == "hf"
    assert request_style("openai", {}) == "openai"


def test_openai_client_surfaces_the_message(server: ServerThread) -> None:
    """By default (auto) the official openai client gets OpenAI's envelope, so its exception says why."""
    oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-x", max_retries=0, timeout=60)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert "temperature" in str(err.value) and err.value.body["param"] == "temperature"


def test_hf_client_surfaces_the_message(server: ServerThread) -> None:
    hf = InferenceClient(base_url=server.base_url, api_key="hf_x", timeout=60)
    with pytest.raises(HfHubHTTPError) as err:
        hf.chat_completion(messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert "temperature" in str(err.value) and "{'" not in str(err.value)


def test_strict_404_reaches_the_openai_client(strict: httpx.Client) -> None:
    oai = openai.OpenAI(base_url=str(strict.base_url) + "/v1", api_key="sk-x", max_retries=0, timeout=60)
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert "model not found: gpt-4o-mini" in str(err.value)
