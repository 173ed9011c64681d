"""x-use-cache for streams: a cached generation answers streamed and non-streamed requests alike; only
generations that ran to their end are kept."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mock_server.backend import EngineBackend
from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, stream_chunks, tiny_config, wait_until

URL = "/v1/chat/completions"


def _body(prompt: str, **fields: Any) -> dict[str, Any]:
    return chat_body(messages=[{"role": "user", "content": prompt}], **fields)


def _stream(c: httpx.Client, body: dict[str, Any], **headers: str) -> tuple[str, list[dict[str, Any]]]:
    r = c.post(URL, json={**body, "stream": True}, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["x-cache"], stream_chunks(r.text)


def _content(chunks: list[dict[str, Any]]) -> str:
    return "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])


def _without_identity(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k not in ("id", "created")} for c in chunks]


def test_a_repeated_stream_is_replayed_from_the_cache(client: httpx.Client) -> None:
    body = _body("stream cache: replay me", temperature=0, max_tokens=6, logprobs=True, top_logprobs=2,
                 stream_options={"include_usage": True})
    first_state, first = _stream(client, body)
    second_state, second = _stream(client, body)
    assert (first_state, second_state) == ("miss", "hit")
    # The same chunks, one per token, with the usage chunk; only the identity is fresh.
    assert _without_identity(second) == _without_identity(first)
    assert second[-1]["usage"]["completion_tokens"] == 6 and second[-1]["choices"] == []
    assert len({c["id"] for c in second}) == 1 and second[0]["id"] != first[0]["id"]
    # Leaving out the usage chunk is how the answer is sent, not what was generated: still a hit.
    state, plain = _stream(client, {k: v for k, v in body.items() if k != "stream_options"})
    assert state == "hit" and all(c["choices"] for c in plain) and _content(plain) == _content(first)


def test_streamed_and_plain_requests_share_the_generation(client: httpx.Client) -> None:
    body = _body("stream cache: shared", seed=21, max_tokens=7, n=2)
    plain = client.post(URL, json=body)
    assert plain.headers["x-cache"] == "miss"
    state, chunks = _stream(client, body)
    assert state == "hit"
    for choice in plain.json()["choices"]:
        streamed = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"]
                           if ch["index"] == choice["index"])
        assert streamed == choice["message"]["content"]
    other = _body("stream cache: shared the other way", temperature=0, max_tokens=5)
    state, chunks = _stream(client, other)
    again = client.post(URL, json=other)
    assert state == "miss" and again.headers["x-cache"] == "hit"
    assert again.json()["choices"][0]["message"]["content"] == _content(chunks)
    assert again.json()["usage"]["completion_tokens"] == 5


def test_no_cache_header_and_random_requests_always_generate(client: httpx.Client) -> None:
    body = _body("stream cache: never", temperature=0, max_tokens=4)
    assert _stream(client, body, **{"x-use-cache": "false"})[0] == "miss"
    assert _stream(client, body, **{"x-use-cache": "false"})[0] == "miss"  # nor was the first one stored
    assert _stream(client, body)[0] == "miss"
    assert _stream(client, body)[0] == "hit"
    assert _stream(client, body, **{"x-use-cache": "false"})[0] == "miss"  # nor read
    sampled = _body("stream cache: random", temperature=1, max_tokens=4)
    assert [_stream(client, sampled)[0] for _ in range(2)] == ["miss", "miss"]


@pytest.fixture(scope="module")
def paused_server(paused_backend: EngineBackend) -> Iterator[ServerThread]:
    with ServerThread(tiny_config(allow_faults=True), paused_backend) as srv:
        yield srv


def test_a_stream_cut_short_is_not_cached(paused_server: ServerThread, paused_backend: EngineBackend) -> None:
    gate, scheduler = paused_backend.generator.running_gate, paused_backend.scheduler
    body = _body("stream cache: cut", temperature=0, max_tokens=6, stream=True)
    wait_until(lambda: paused_backend.stats()["outstanding"] == 0, "the server is idle")
    cancels = scheduler.cancels_requested
    gate.clear()  # admitted, then no token comes until the client has gone
    try:
        host, port = paused_server.base_url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=30)
        payload = json.dumps(body).encode()
        sock.sendall(f"POST {URL} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        received = b""
        for _ in range(100):  # bounded: headers and the role chunk may come in separate reads
            received += sock.recv(4096)
            if b"data: " in received:
                break
        assert b"data: " in received and b"x-cache: miss" in received.lower()
        sock.close()
        wait_until(lambda: scheduler.cancels_requested > cancels, "the server saw the client leave")
    finally:
        gate.set()
    wait_until(lambda: paused_backend.stats()["outstanding"] == 0, "the generation was dropped")
    with httpx.Client(base_url=paused_server.base_url, timeout=60) as c:
        assert _stream(c, body)[0] == "miss"  # generated anew, and this time kept
        assert _stream(c, body)[0] == "hit"
        # A stream broken by a fault neither reads nor feeds the cache.
        faulted = _body("stream cache: faulted", temperature=0, max_tokens=6, stream=True)
        r = c.post(URL, json=faulted, headers={"x-mock-fault": "error-mid-stream"})
        assert r.headers["x-cache"] == "miss" and "[DONE]" not in r.text
        assert _stream(c, faulted)[0] == "miss"
        assert c.post(URL, json=body, headers={"x-mock-fault": "no-done"}).headers["x-cache"] == "miss"
