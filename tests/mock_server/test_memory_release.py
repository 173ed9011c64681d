"""Memory given back after the requests that leave the most of it in malloc's arenas.

A grammar compiled for tools or a response_format, or a body of megabytes, leaves hundreds of MB free
but held by glibc's malloc (bench/README.md has the measurements); the server asks for a trim after
such a request, and not after an ordinary one (a trim costs a pass over the heap).
"""

from __future__ import annotations

import httpx
import pytest

from mock_server import memory
from mock_server.backend import EngineBackend
from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, tiny_config

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}


@pytest.mark.parametrize(("fields", "status", "trims"), [
    ({}, 200, 0),
    ({"tools": [TOOL]}, 200, 1),
    ({"response_format": SCHEMA}, 200, 1),
    ({"response_format": {"type": "text"}}, 200, 0),
    # too long a prompt for the tiny model's context: refused, but its body was parsed all the same
    ({"messages": [{"role": "user", "content": "x" * memory.LARGE_BODY_BYTES}]}, 422, 1),
], ids=["plain", "tools", "json-schema", "text-format", "large-body"])
def test_a_trim_follows_the_requests_that_need_one(tiny_backend: EngineBackend, monkeypatch: pytest.MonkeyPatch,
                                                   fields: dict[str, object], status: int, trims: int) -> None:
    calls: list[None] = []
    monkeypatch.setattr(memory, "release_later", lambda: calls.append(None))
    with ServerThread(tiny_config(), tiny_backend) as server:
        r = httpx.post(server.base_url + "/v1/chat/completions", json=chat_body(max_tokens=4, **fields), timeout=120)
    assert r.status_code == status, r.text
    assert len(calls) == trims
