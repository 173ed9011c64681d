"""Clients that are slow or heavy: read timeouts close them, and one heavy request stalls nobody else.

No timing asserts: a slow client must be closed (eventually, bounded by a count of reads), and
/health is answered while a heavy request is in flight (its wait is measured in bench/abuse.py).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.abuse.harness import MockProcess

READ_TIMEOUT_S = "1"
RECV_TIMEOUT_S = 60  # far above the read timeout: only a server that never closes reaches it
# A 7.5 MB body of long messages: seconds of parsing and tokenizing before its 422 (context length).
HEAVY_MESSAGES = 250
HEAVY_CONTENT = "hello there " * 2500


@pytest.fixture(scope="module")
def impatient() -> Iterator[MockProcess]:
    """A server that closes clients after a 1 s read timeout."""
    with MockProcess("--read-timeout", READ_TIMEOUT_S) as server:
        yield server


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection; bounded by a count of reads."""
    sock.settimeout(RECV_TIMEOUT_S)
    data = b""
    for _ in range(100):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept sending and never closed: {data[:200]!r}")


def test_a_client_that_never_finishes_its_headers_is_closed(impatient: MockProcess) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        assert read_until_closed(sock) == b""


def test_a_client_that_never_finishes_its_body_gets_408_and_is_closed(impatient: MockProcess) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"messages\"")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"read timeout" in answer and b"[rule: read_timeout]" in answer


def test_a_crowd_of_slow_clients_is_closed_and_others_are_served(impatient: MockProcess) -> None:
    crowd = [socket.create_connection(("127.0.0.1", impatient.port)) for _ in range(50)]
    try:
        for sock in crowd:
            sock.sendall(b"GET /health HTTP/1.1\r\nHo")
        assert httpx.get(impatient.base_url + "/health", timeout=60).status_code == 200
        assert all(read_until_closed(sock) == b"" for sock in crowd)
    finally:
        for sock in crowd:
            sock.close()


def test_health_answers_while_a_heavy_request_is_in_flight(impatient: MockProcess) -> None:
    payload = json.dumps({"messages": [{"role": "user", "content": HEAVY_CONTENT}] * HEAVY_MESSAGES,
                          "max_tokens": 2}).encode()
    with socket.create_connection(("127.0.0.1", impatient.port)) as heavy:
        heavy.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        # Both are answered, the heavy one with a clear 4xx. How long /health waits behind it is a
        # matter of time and load, so it is measured in bench/abuse.py, not asserted here.
        health = httpx.get(impatient.base_url + "/health", timeout=60)
        assert health.status_code == 200
        answer = read_until_closed(heavy)
    assert answer.startswith(b"HTTP/1.1 422"), answer[:300]
