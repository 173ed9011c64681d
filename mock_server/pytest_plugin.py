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

Cassettes, in the manner of VCR.py's "once" mode:

- `chatconform_cassettes` (function): the base URL of a server (127.0.0.1, a free port) that replays
  the test's cassette folder (`chatconform serve --replay`, instantly by default), offline. The folder
  is `cassettes/<test module stem>/<test name>` beside the test file, or the one named by the marker
  `@pytest.mark.chatconform_cassettes("folder", speed="recorded", match_ignore=["seed"])` (relative to
  the test file). When the folder holds no cassettes and pytest runs with `--chatconform-record`, the
  server records instead (`chatconform serve --record`): every request goes to `--chatconform-upstream
  URL` (or CHATCONFORM_RECORD_UPSTREAM) with CHATCONFORM_MOCK_UPSTREAM_KEY as its bearer token, and the
  folder is filled for the next runs; without the flag, the test fails saying how to record.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mock_server.config import MODELS, ConfigError, load_config
from mock_server.request_log import RequestLog

if TYPE_CHECKING:  # the server (aiohttp, the model) is imported by the fixture: a light install has none of it
    from mock_server.server import ServerThread

READY_TIMEOUT_S = 600.0  # the first use of the reference model may convert it (minutes on a small CPU)
RECORD_UPSTREAM_ENV = "CHATCONFORM_RECORD_UPSTREAM"
UPSTREAM_KEY_ENV = "CHATCONFORM_MOCK_UPSTREAM_KEY"
WRITE_TIMEOUT_S = 30.0  # after a recording test, how long its last cassettes may take to be written


def pytest_addoption(parser: pytest.Parser) -> None:
    """--chatconform-mock-model: which model the session server runs."""
    parser.addoption("--chatconform-mock-model", choices=MODELS, default=None,
                     help="model of the chatconform_server fixture (default: CHATCONFORM_MOCK_MODEL, else smollm2)")
    parser.addoption("--chatconform-record", action="store_true", default=False,
                     help="chatconform_cassettes: record a test's missing cassette folder from the upstream")
    parser.addoption("--chatconform-upstream", metavar="URL", default=None,
                     help=f"the upstream --chatconform-record records from (default: {RECORD_UPSTREAM_ENV}); its "
                          f"bearer token comes from {UPSTREAM_KEY_ENV}")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the chatconform_cassettes marker."""
    config.addinivalue_line("markers", "chatconform_cassettes(folder=None, *, speed='instant', match_ignore=()): "
                                       "the cassette folder (relative to the test file), replay speed and ignored "
                                       "body fields of the chatconform_cassettes fixture")


def cassette_folder(test_file: Path, test_name: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """A test's cassette folder: `folder` (relative to the test file's), else cassettes/<module stem>/<test name>."""
    if folder is not None:
        path = Path(folder)
        return path if path.is_absolute() else test_file.parent / path
    return test_file.parent / "cassettes" / test_file.stem / (re.sub(r"[^\w.-]+", "_", test_name).strip("_") or "test")


def _cassette_config(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Path]:
    """The replay or record settings of a test's server, and its folder (pytest.fail when neither applies)."""
    marker = request.node.get_closest_marker("chatconform_cassettes")
    args: tuple[Any, ...] = marker.args if marker is not None else ()
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    folder = cassette_folder(request.path, request.node.name, args[0] if args else options.pop("folder", None))
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    if folder.is_dir() and any(folder.rglob("*.json")):
        values |= {"replay": str(folder), "replay_speed": str(options.pop("speed", "instant")),
                   "match_ignore": list(options.pop("match_ignore", ()))}
    elif request.config.getoption("--chatconform-record"):
        upstream = request.config.getoption("--chatconform-upstream") or os.environ.get(RECORD_UPSTREAM_ENV)
        if not upstream:
            pytest.fail(f"--chatconform-record needs the upstream to record from: --chatconform-upstream URL or "
                        f"{RECORD_UPSTREAM_ENV}", pytrace=False)
        values |= {"record": str(folder), "upstream": upstream, "upstream_key": os.environ.get(UPSTREAM_KEY_ENV) or None}
        options.pop("speed", None)
        options.pop("match_ignore", None)
    else:
        pytest.fail(f"no cassettes in {folder}: record them once with pytest --chatconform-record "
                    f"--chatconform-upstream URL (or {RECORD_UPSTREAM_ENV}=URL)", pytrace=False)
    if options:
        pytest.fail(f"@pytest.mark.chatconform_cassettes: unknown option(s) {sorted(options)}; "
                    f"it takes folder, speed and match_ignore", pytrace=False)
    return values, folder


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


@pytest.fixture()
def chatconform_cassettes(request: pytest.FixtureRequest) -> Iterator[str]:
    """The base URL of a server replaying this test's cassettes, or recording them (see the module's docstring)."""
    from reference_model.extras import MockExtraMissing, require_mock_extra

    try:
        require_mock_extra("the chatconform_cassettes fixture")
    except MockExtraMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    from mock_server.recorder import RECORDING_KEY
    from mock_server.server import ServerThread

    values, folder = _cassette_config(request)
    try:
        config = load_config(values, env={})
        server = ServerThread(config).start()
    except ConfigError as exc:
        pytest.fail(f"chatconform_cassettes ({folder}): {exc}", pytrace=False)
    try:
        yield server.base_url
        if config.record is not None and server.app is not None:  # the test's last cassettes are being written
            recording = server.app[RECORDING_KEY]
            deadline = time.monotonic() + WRITE_TIMEOUT_S
            while recording.pending and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        server.stop()
