"""Shared fixtures: one tiny-model backend per session, servers on free 127.0.0.1 ports, HTTP clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mock_server.backend import EngineBackend, load_backend
from mock_server.config import ServerConfig, load_config
from mock_server.server import ServerThread


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
