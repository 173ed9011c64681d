"""A pytest plugin: the `chatconform_server` fixture, one mock server per test session.

Registered through the `pytest11` entry point (or `-p mock_server.pytest_plugin`). The fixture
yields the base URL (`http://127.0.0.1:<free port>`) of a server that is ready to answer. Its
configuration comes from the environment like `chatconform serve` (CHATCONFORM_MODEL=tiny for a
fast random-weight model; the SmolLM2 reference by default), with `--chatconform-model` to override
the model; host and port are always 127.0.0.1 and a free port.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mock_server.config import MODELS, load_config
from mock_server.server import ServerThread

READY_TIMEOUT_S = 600.0  # the first use of the reference model may convert it (minutes on a small CPU)


def pytest_addoption(parser: pytest.Parser) -> None:
    """--chatconform-model: which model the session server runs."""
    parser.addoption("--chatconform-model", choices=MODELS, default=None,
                     help="model of the chatconform_server fixture (default: CHATCONFORM_MODEL, else smollm2)")


@pytest.fixture(scope="session")
def chatconform_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The base URL of a ready mock server for this session."""
    config = load_config({"host": "127.0.0.1", "port": 0, "model": request.config.getoption("--chatconform-model")})
    with ServerThread(config) as server:
        server.wait_ready(READY_TIMEOUT_S)
        yield server.base_url
