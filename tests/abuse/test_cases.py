"""The attacker's cases, one by one: each gets a clear 4xx naming parameter, rule and value (or is served).

The server runs as a subprocess under a memory cap (harness.py), so that a regression fails a
test instead of taking the machine's memory.
"""

from __future__ import annotations

import gzip
import json
import socket
from typing import Any

import httpx
import pytest

from mock_server.limits import API_LIMITS
from reference_model.grammar import MAX_SCHEMA_DEPTH
from tests.abuse.conftest import API_KEY
from tests.abuse.harness import MockProcess

USER = [{"role": "user", "content": "Say hi."}]
STOP_LIMIT = API_LIMITS.max_stop_chars
RSS_SLACK = 200 * 1024 * 1024  # a 1 MB stop cost 20 GB before; what a refused request may leave behind


def body(**fields: Any) -> dict[str, Any]:
    """A small valid request plus fields."""
    return {"messages": USER, "max_tokens": 4, "temperature": 0, **fields}


def post(server: MockProcess, headers: dict[str, str], payload: Any = None, raw: bytes | None = None,
         ) -> httpx.Response:
    """POST to the chat route with a fresh connection."""
    content = raw if raw is not None else json.dumps(payload).encode()
    return httpx.post(server.base_url + "/v1/chat/completions", content=content, headers=headers, timeout=120)


def raw_exchange(server: MockProcess, request: bytes) -> bytes:
    """Send bytes on a new socket and read until the server closes it (bounded by count; send Connection: close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(request)
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def nested_schema(levels: int) -> dict[str, Any]:
    """An object schema whose property `a` nests `levels` deep (two JSON levels each)."""
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def test_a_stop_of_a_megabyte_is_refused_and_leaves_memory_where_it_was(guarded: MockProcess,
                                                                          auth: dict[str, str]) -> None:
    before = guarded.rss_bytes()
    for stop in ("x" * 1_000_000, ["a", "y" * 1_000_000]):
        for stream in (False, True):
            response = post(guarded, auth, body(stop=stop, stream=stream))
            assert response.status_code == 422, response.text
            assert f"maximum of {STOP_LIMIT} characters" in response.text and "maxLength" in response.text
            assert "$.stop[" in response.text and "xxxx" in response.text or "yyyy" in response.text
    assert guarded.alive()
    assert guarded.rss_bytes() - before < RSS_SLACK


def test_a_stop_at_the_limit_is_served(guarded: MockProcess, auth: dict[str, str]) -> None:
    response = post(guarded, auth, body(stop=["z" * STOP_LIMIT, "\u00e9" * STOP_LIMIT]))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("place", ["content", "stop", "model", "user", "tool name", "logit_bias key",
                                   "schema key", "name"])
def test_a_lone_surrogate_is_a_400_naming_where(guarded: MockProcess, auth: dict[str, str], place: str) -> None:
    bad = "a\ud800b"
    fields: dict[str, Any] = {
        "content": {"messages": [{"role": "user", "content": bad}]},
        "stop": {"stop": bad}, "model": {"model": bad}, "user": {"user": bad},
        "tool name": {"tools": [{"type": "function", "function": {"name": bad}}]},
        "logit_bias key": {"logit_bias": {bad: 1}},
        "schema key": {"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {bad: {}}}}}},
        "name": {"messages": [{"role": "user", "content": "hi", "name": bad}]},
    }[place]
    response = post(guarded, auth, raw=json.dumps(body(**fields)).encode())  # ensure_ascii: sent as \ud800
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "lone UTF-16 surrogate \\ud800" in message and "[rule: unicode scalar values]" in message
    assert message.startswith("$.")


def test_a_surrogate_pair_is_text_and_served(guarded: MockProcess, auth: dict[str, str]) -> None:
    raw = json.dumps(body(messages=[{"role": "user", "content": "smile \U0001F600"}])).encode()
    assert b"\\ud83d\\ude00" in raw
    assert post(guarded, auth, raw=raw).status_code == 200


def test_a_logit_bias_key_of_thousands_of_digits_is_a_422(guarded: MockProcess, auth: dict[str, str]) -> None:
    response = post(guarded, auth, body(logit_bias={"7" * 4301: 1}))
    assert response.status_code == 422, response.text
    assert "$.logit_bias" in response.text and "4301 digits" in response.text and "[rule:" in response.text


@pytest.mark.parametrize("where", ["response_format", "tool"])
def test_a_schema_nested_100_deep_is_a_422(guarded: MockProcess, auth: dict[str, str], where: str) -> None:
    schema = nested_schema(100)
    fields = ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
              if where == "response_format" else
              {"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]})
    response = post(guarded, auth, body(**fields))
    assert response.status_code == 422, response.text
    # A tool's schema is in the prompt too: the tiny model's 256-token context refuses it first
    # (test_units checks the depth rule on tool parameters directly).
    expected = f"max depth {MAX_SCHEMA_DEPTH}" if where == "response_format" else "[rule:"
    assert expected in response.text


def test_a_schema_within_the_depth_limit_is_served(guarded: MockProcess, auth: dict[str, str]) -> None:
    schema = nested_schema(MAX_SCHEMA_DEPTH // 2 - 1)
    response = post(guarded, auth, body(response_format={"type": "json_schema",
                                                          "json_schema": {"name": "x", "schema": schema}}))
    assert response.status_code == 200, response.text


def test_a_body_that_claims_gzip_but_is_not_is_a_400_that_closes(guarded: MockProcess,
                                                                  auth: dict[str, str]) -> None:
    response = post(guarded, {**auth, "Content-Encoding": "gzip"}, body())
    assert response.status_code == 400, response.text
    assert "Content-Encoding 'gzip'" in response.text and "[rule: Content-Encoding]" in response.text
    assert response.headers.get("Connection", "").lower() == "close"
    real = post(guarded, {**auth, "Content-Encoding": "gzip"}, raw=gzip.compress(json.dumps(body()).encode()))
    assert real.status_code == 200, real.text


def test_a_non_utf8_authorization_is_a_401(guarded: MockProcess) -> None:
    payload = json.dumps(body()).encode()
    answer = raw_exchange(guarded, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                   b"Authorization: Bearer \xff\xfe" + API_KEY.encode() + b"\r\n"
                                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                          + payload)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_the_key_followed_by_a_nul_byte_never_reaches_the_log(guarded: MockProcess) -> None:
    answer = raw_exchange(guarded, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                   b"Authorization: Bearer " + API_KEY.encode() + b"\x00\r\nContent-Length: 2\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer[:20], answer[:200]
    # The log is written by the server as the answer goes out; one more request orders us after it.
    assert httpx.get(guarded.base_url + "/health", timeout=30).status_code == 200
    log = guarded.log_text()
    assert "<redacted>" in log
    assert API_KEY not in log


def test_a_hundred_thousand_messages_are_refused_before_validation(guarded: MockProcess,
                                                                   auth: dict[str, str]) -> None:
    response = post(guarded, auth, body(messages=[{"role": "user", "content": "hi"}] * 100_000))
    assert response.status_code == 422, response.text
    assert f"maximum of {API_LIMITS.max_messages}" in response.text and "maxItems" in response.text


def test_the_server_survives_all_of_it(guarded: MockProcess, auth: dict[str, str]) -> None:
    assert guarded.alive()
    assert post(guarded, auth, body()).status_code == 200
