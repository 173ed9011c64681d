"""A pytest plugin: one mock server per test session, and the requests it received.

Registered through the `pytest11` entry point (or `-p mock_server.pytest_plugin`). Fixtures:

- `chatconform_server` (session): the base URL (`http://127.0.0.1:<free port>`) of a server that
  is ready to answer;
- `chatconform_requests` (function): that server's `RequestLog`, cleared when the test starts,
  so it holds what this test's code sent: `.all()`, `.last()`, `.chat()`, `.chat_bodies()`,
  `.clear()`; each entry a `RecordedRequest` (method, path, query, headers with credentials
  redacted, the JSON body or the text, the answer's status, whether it streamed, the time);
- `chatconform_providers` (function): huggingface_hub's Inference Providers routing pointed at that
  server for the test (hub_routing.py), so `InferenceClient(provider="cerebras", ...)` and the
  auto-router reach the mock unchanged; yields the base URL.

The server's configuration comes from the environment like `chatconform serve`
(CHATCONFORM_MOCK_MODEL=tiny for a fast random-weight model; the SmolLM2 reference by default), with
`--chatconform-mock-model` to override the model; host and port are always 127.0.0.1 and a free port,
and requests are always recorded (the log keeps the last 1000).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mock_server.config import MODELS, load_config
from mock_server.request_log import RequestLog

if TYPE_CHECKING:  # the server (aiohttp, the model) is imported by the fixture: a light install has none of it
    from mock_server.server import ServerThread

READY_TIMEOUT_S = 600.0  # the first use of the reference model may convert it (minutes on a small CPU)


def pytest_addoption(parser: pytest.Parser) -> None:
    """--chatconform-mock-model: which model the session server runs."""
    parser.addoption("--chatconform-mock-model", choices=MODELS, default=None,
                     help="model of the chatconform_server fixture (default: CHATCONFORM_MOCK_MODEL, else smollm2)")


@pytest.fixture(scope="session")
def chatconform_server_thread(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """The session's ready mock server (its `base_url`, its `requests` log)."""
    from reference_model.extras import MockExtraMissing, require_mock_extra

    try:
        require_mock_extra("the chatconform_server fixture")
    except MockExtraMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    from mock_server.server import ServerThread

    config = load_config({"host": "127.0.0.1", "port": 0, "model": request.config.getoption("--chatconform-mock-model"),
                          "record_requests": True})
    with ServerThread(config) as server:
        server.wait_ready(READY_TIMEOUT_S)
        yield server


@pytest.fixture(scope="session")
def chatconform_server(chatconform_server_thread: ServerThread) -> str:
    """The base URL of a ready mock server for this session."""
    return chatconform_server_thread.base_url


@pytest.fixture()
def chatconform_providers(chatconform_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """huggingface_hub's provider routing sent to the session's server for this test; the server's base URL."""
    from mock_server.hub_routing import route_hub_to

    route_hub_to(chatconform_server, monkeypatch)
    return chatconform_server


@pytest.fixture()
def chatconform_requests(chatconform_server_thread: ServerThread) -> RequestLog:
    """The requests the session's server received during this test (cleared at its start)."""
    log = chatconform_server_thread.requests
    log.clear()
    return log
