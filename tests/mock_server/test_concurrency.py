"""The scheduler under load: concurrent requests batch together, a full queue answers 429, a client
that goes away has its generation cancelled."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mock_server.backend import EngineBackend, load_backend
from mock_server.server import ServerThread
from reference_model.generation import BatchGenerator
from tests.mock_server.conftest import chat_body, stream_chunks, tiny_config


def test_concurrent_requests_all_succeed_and_match_alone(client: httpx.Client) -> None:
    bodies = [chat_body(seed=s, max_tokens=6) for s in range(6)]
    alone = [client.post("/v1/chat/completions", json=b).json()["choices"][0]["message"]["content"] for b in bodies]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda b: client.post("/v1/chat/completions", json=b), bodies))
    assert [r.status_code for r in together] == [200] * 6
    assert [r.json()["choices"][0]["message"]["content"] for r in together] == alone


class GatedGenerator(BatchGenerator):
    """The real generator, whose steps wait while the gate is closed (bounded), so a test decides
    when generation may go on: what it checks then cannot depend on how fast this machine is."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = threading.Event()
        self.gate.set()

    def step(self):  # type: ignore[no-untyped-def]
        self.gate.wait(30)
        return super().step()


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, EngineBackend]]:
    """A server whose model takes one request at a time and queues none."""
    config = tiny_config(max_batch=1, max_queue=0)
    backend = load_backend(config, work_dir=Path(tmp_path_factory.mktemp("narrow")), make_generator=GatedGenerator)
    with ServerThread(config, backend) as srv:
        yield srv, backend
    backend.generator.gate.set()
    backend.close()


def _wait(predicate, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_full_queue_answers_429_with_retry_after(narrow: tuple[ServerThread, EngineBackend]) -> None:
    srv, backend = narrow
    gate = backend.generator.gate
    _wait(lambda: backend.stats()["outstanding"] == 0, "the server is idle")
    gate.clear()  # the first request is admitted, then its generation waits at the gate
    with httpx.Client(base_url=srv.base_url, timeout=60) as c, \
            c.stream("POST", "/v1/chat/completions", json=chat_body(max_tokens=50, stream=True, seed=1)) as first:
        stream = first.iter_bytes()
        head = next(stream)  # the role chunk: the first request holds the only place
        second = c.post("/v1/chat/completions", json=chat_body(max_tokens=1))
        gate.set()
        assert second.status_code == 429, second.text
        assert int(second.headers["Retry-After"]) >= 0
        assert second.json()["error_type"] == "overloaded"
        rest = b"".join(stream)
        assert stream_chunks((head + rest).decode())[-1]["choices"][0]["finish_reason"] == "length"
    _wait(lambda: backend.stats()["outstanding"] == 0, "the first request finished")
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=1)).status_code == 200


def test_disconnect_cancels_generation(narrow: tuple[ServerThread, EngineBackend]) -> None:
    srv, backend = narrow
    gate = backend.generator.gate
    scheduler = backend.scheduler
    _wait(lambda: backend.stats()["outstanding"] == 0, "the server is idle")
    tokens_before, cancels_before = scheduler.tokens, scheduler.cancels_requested
    gate.clear()  # admitted, then generation waits until the client is gone
    # A raw socket, so that closing it really drops the connection mid-stream.
    host, port = srv.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    payload = json.dumps(chat_body(max_tokens=200, stream=True, seed=2)).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n" \
           f"Content-Length: {len(payload)}\r\n\r\n"
    sock.sendall(head.encode() + payload)
    received = b""
    for _ in range(100):  # bounded: headers and the role chunk may come in separate reads
        received += sock.recv(4096)
        if b"data: " in received:
            break
    assert b"data: " in received  # the stream began
    assert backend.stats()["outstanding"] == 1
    sock.close()
    _wait(lambda: scheduler.cancels_requested > cancels_before, "the server saw the client leave")
    gate.set()
    _wait(lambda: backend.stats()["outstanding"] == 0, "the generation was dropped")
    assert backend.stats()["running"] == 0
    generated = scheduler.tokens - tokens_before
    assert generated < 200, f"the generation ran to the end ({generated} tokens) although the client left"
