"""Shared fixtures: one tiny-model backend per session, servers on free 127.0.0.1 ports, HTTP clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mock_server.backend import EngineBackend, load_backend
from mock_server.config import ServerConfig, load_config
from mock_server.server import ServerThread
from reference_model.generation import BatchGenerator


def tiny_config(**overrides: Any) -> ServerConfig:
    """A config for the tiny model on a free local port, the environment ignored."""
    return load_config({"model": "tiny", "port": 0, "host": "127.0.0.1", **overrides}, env={})


@pytest.fixture(scope="session")
def tiny_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineBackend]:
    """The tiny random-weight model behind the real generator and scheduler."""
    backend = load_backend(tiny_config(), work_dir=Path(tmp_path_factory.mktemp("tiny")))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def server(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    """A default (open, hf error style) server on the tiny backend."""
    with ServerThread(tiny_config(), tiny_backend) as srv:
        yield srv


@pytest.fixture()
def client(server: ServerThread) -> Iterator[httpx.Client]:
    """An HTTP client for the default server."""
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


USER = [{"role": "user", "content": "Hello, who are you?"}]


def chat_body(**fields: Any) -> dict[str, Any]:
    """A minimal valid request plus fields (short by default: max_tokens 8)."""
    return {"messages": USER, "max_tokens": 8, **fields}


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body, checking the framing: `data: ...` then a blank line."""
    assert text.endswith("\n\n"), f"stream does not end with a blank line: {text[-40:]!r}"
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, f"bad SSE event {block!r}"
        events.append(block[len("data: "):])
    return events


def stream_chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of a stream that ends with [DONE] (checked)."""
    events = sse_events(text)
    assert events[-1] == "[DONE]", f"last event is {events[-1]!r}"
    assert "[DONE]" not in events[:-1]
    return [json.loads(e) for e in events[:-1]]


KEEPALIVE = ": keep-alive"


def split_keepalives(text: str) -> tuple[str, int]:
    """The SSE body without its `: keep-alive` comment events, and how many there were."""
    blocks = text.split("\n\n")
    kept = [b for b in blocks if b != KEEPALIVE]
    return "\n\n".join(kept), len(blocks) - len(kept)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    """Poll until the predicate holds; fail naming `what` after `timeout` seconds (a hang guard, not a timing
    assert: a loaded machine may take long)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


class PausedGenerator(BatchGenerator):
    """The real generator, whose steps do nothing while `running` is clear (the worker still admits
    and cancels requests meanwhile): a test decides when tokens may come, whatever this machine's speed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.running_gate = threading.Event()
        self.running_gate.set()

    def step(self):  # type: ignore[no-untyped-def]
        if not self.running_gate.wait(0.01):
            return {}
        return super().step()


@pytest.fixture(scope="session")
def paused_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineBackend]:
    """A tiny-model backend with one batch slot and a queue of two, whose generation a test can pause."""
    config = tiny_config(max_batch=1, max_queue=2)
    backend = load_backend(config, work_dir=Path(tmp_path_factory.mktemp("paused")), make_generator=PausedGenerator)
    yield backend
    backend.generator.running_gate.set()
    backend.close()
