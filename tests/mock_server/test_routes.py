"""Every route of the mock, its bodies checked against the spec, and the error table (never a 5xx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mock_server.server import ServerThread
from spec import schemas
from tests.mock_server.conftest import chat_body, stream_chunks, tiny_config


def test_health_reports_ready_with_the_model(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert schemas.validate("Health", r.json()) == []
    assert r.json() == {"status": "ok", "model": "chatconform/tiny-random"}


def test_models_lists_the_served_model(client: httpx.Client) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert schemas.validate("ModelList", body) == []
    assert [m["id"] for m in body["data"]] == ["chatconform/tiny-random"]


def test_info_names_model_limits_and_features(client: httpx.Client) -> None:
    body = client.get("/info").json()
    assert body["model"] == "chatconform/tiny-random"
    assert body["limits"]["context_length"] == 256
    assert body["features"]["response_format"] == ["json", "regex", "text", "json_object", "json_schema"]
    assert body["config"]["model"] == "tiny"


def test_completion_is_schema_valid_with_real_usage(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert schemas.validate("response", body) == []
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "chatconform/tiny-random"
    assert body["system_fingerprint"].startswith("chatconform-")
    usage = body["usage"]
    assert usage["completion_tokens"] == 8 and body["choices"][0]["finish_reason"] == "length"
    assert usage["prompt_tokens"] > 10 and usage["total_tokens"] == usage["prompt_tokens"] + 8
    assert body["choices"][0]["logprobs"] is None


def test_ids_are_unique(client: httpx.Client) -> None:
    ids = {client.post("/v1/chat/completions", json=chat_body(max_tokens=1)).json()["id"] for _ in range(3)}
    assert len(ids) == 3


def test_model_path_route_accepts_plain_and_encoded_ids(client: httpx.Client) -> None:
    for path in ("/models/chatconform/tiny-random/v1/chat/completions",
                 "/models/chatconform%2Ftiny-random/v1/chat/completions"):
        r = client.post(path, json=chat_body(temperature=0))
        assert r.status_code == 200, (path, r.text)
        assert schemas.validate("response", r.json()) == []
    plain = client.post("/v1/chat/completions", json=chat_body(temperature=0)).json()
    routed = client.post("/models/chatconform/tiny-random/v1/chat/completions", json=chat_body(temperature=0)).json()
    assert plain["choices"][0]["message"]["content"] == routed["choices"][0]["message"]["content"]


def test_stream_is_event_stream_of_valid_chunks(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = stream_chunks(r.text)
    for chunk in chunks:
        assert schemas.validate("chunk", chunk) == [], chunk
        assert "usage" not in chunk
    assert len({c["id"] for c in chunks}) == 1


def _post_raw(client: httpx.Client, body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return client.post("/v1/chat/completions", content=body, headers=headers)


# (request body, expected status, text the error must contain: the parameter or the problem)
BAD_BODIES: list[tuple[Any, int, str]] = [
    (b"{", 400, "malformed JSON"),
    (b"\xff\xfe", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"null", 400, "JSON object"),
    (b'"text"', 400, "JSON object"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400, "NaN"),
    ({}, 422, "messages"),
    ({"messages": []}, 422, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 422, "messages[0]"),
    ({"messages": [{"role": "user"}]}, 422, "messages[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, 422, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}, 422, "messages[0].content[0]"),
    (chat_body(temperature="hot"), 422, "temperature"),
    (chat_body(temperature=2.5), 422, "temperature"),
    (chat_body(top_p=0), 422, "top_p"),
    (chat_body(top_p=1.5), 422, "top_p"),
    (chat_body(max_tokens=-1), 422, "max_tokens"),
    (chat_body(max_tokens="8"), 422, "max_tokens"),
    (chat_body(max_tokens=100_000), 422, "max_tokens"),
    (chat_body(frequency_penalty=-2.5), 422, "frequency_penalty"),
    (chat_body(presence_penalty=2.5), 422, "presence_penalty"),
    (chat_body(logprobs=True, top_logprobs=6), 422, "top_logprobs"),
    (chat_body(top_logprobs=0), 422, "top_logprobs"),
    (chat_body(stop=["a", "b", "c", "d", "e"]), 422, "stop"),
    (chat_body(n=0), 422, "n"),
    (chat_body(n=100), 422, "n"),
    (chat_body(seed=-1), 422, "seed"),
    (chat_body(logit_bias={"5": 101}), 422, "logit_bias"),
    (chat_body(logit_bias={"999999": 1}), 422, "logit_bias"),
    (chat_body(stream="yes"), 422, "stream"),
    (chat_body(stream_options={"include_usage": "yes"}), 422, "stream_options"),
    (chat_body(tool_choice="sometimes"), 422, "tool_choice"),
    (chat_body(tool_choice="required"), 422, "tool_choice"),
    (chat_body(tools=[{"type": "function", "function": {"name": "f"}}],
               tool_choice={"type": "function", "function": {"name": "g"}}), 422, "tool_choice"),
    (chat_body(tools=[{"type": "function", "function": {}}]), 422, "tools[0]"),
    (chat_body(tools=[{"type": "retrieval", "function": {"name": "f"}}]), 422, "tools[0]"),
    (chat_body(response_format={"type": "json", "value": {"type": "nonsense"}}), 422, "response_format"),
    (chat_body(response_format={"type": "json", "value": "{not json"}), 422, "response_format.value"),
    (chat_body(response_format={"type": "regex", "value": "(unclosed"}), 422, "response_format"),
    (chat_body(response_format={"type": "grammar", "value": "x"}), 422, "response_format"),
    (chat_body(store=True), 422, "store"),  # an OpenAI field this server does not know
    (chat_body(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]), 422, "messages[0].content[0]"),
]


@pytest.mark.parametrize("body,status,names", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_input_is_refused_with_the_envelope(client: httpx.Client, body: Any, status: int, names: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = _post_raw(client, raw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()
    assert schemas.validate("ErrorHf", error) == [], error
    assert names in error["error"], error


def test_stream_with_bad_parameter_is_refused_before_streaming(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(stream=True, temperature=9))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    r = _post_raw(client, json.dumps(chat_body()).encode(), "text/plain")
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_missing_content_type_is_read_as_json(client: httpx.Client) -> None:
    assert _post_raw(client, json.dumps(chat_body()).encode(), None).status_code == 200


def test_oversized_body_is_413(client: httpx.Client) -> None:
    big = json.dumps(chat_body(messages=[{"role": "user", "content": "x" * (9 * 1024 * 1024)}])).encode()
    r = _post_raw(client, big)
    assert r.status_code == 413 and r.json()["error_type"] == "payload_too_large"


def test_unknown_route_is_404_and_wrong_method_405(client: httpx.Client) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error_type"] == "not_found"
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert schemas.validate("error", r.json()) == []
    assert client.post("/health").status_code == 405


def test_openai_error_style(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    with ServerThread(tiny_config(error_style="openai"), tiny_backend) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=60) as c:
        r = c.post("/v1/chat/completions", json=chat_body(temperature=3))
        assert r.status_code == 422
        body = r.json()
        assert schemas.validate("ErrorOpenAI", body) == []
        assert body["error"]["param"] == "temperature" and body["error"]["type"] == "invalid_request_error"
        r = c.post("/v1/chat/completions", content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
