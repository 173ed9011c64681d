"""Shared fixtures for tests/conformance: tiny mock providers as subprocesses, and the breaking proxy.

The suite is a black box, so its targets run as separate processes exactly as a user would start
them: `python -m mock_server --model tiny --port 0 --allow-faults` (the real-model mock only in
slow tests). Each fixture waits on /health and kills its process at the end of the session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conformance.breakers import IDENTITY, KEYED_TOKEN, Breaker, BreakingProxy

URL_LINE = re.compile(r"mock server on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT_S = 120.0  # the tiny model builds in seconds; a loaded 2-core machine is slower
REAL_START_TIMEOUT_S = 900.0  # the reference model may be converted on first use


@dataclass
class MockProcess:
    """A running mock provider subprocess: its base URL and its log file."""

    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_mock(log: Path, *args: str, timeout: float = START_TIMEOUT_S, ready: bool = True) -> MockProcess:
    """Start `python -m mock_server` on a free port; wait for /health 200 (ready=False: only until it listens)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATCONFORM_")}  # the flags alone decide
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "mock_server", "--host", "127.0.0.1", "--port", "0",
                                    "--log-level", "warning", *args],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    base_url: str | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mock server exited with {process.returncode}: {log.read_text(errors='replace')}")
        if base_url is None:
            found = URL_LINE.search(log.read_text(errors="replace"))
            base_url = found.group(1) if found else None
        if base_url is not None and not ready:
            return MockProcess(base_url, process, log)
        if base_url is not None:
            try:
                if httpx.get(base_url + "/health", timeout=5).status_code == 200:
                    return MockProcess(base_url, process, log)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"mock server not healthy within {timeout:g} s: {log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def tiny_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of an open tiny-model mock (faults allowed), for the whole session."""
    mock = start_mock(tmp_path_factory.mktemp("mock") / "tiny.log", "--model", "tiny", "--allow-faults",
                      "--strict-models")  # unknown model ids get 404, as with the embedded mock of `check`
    yield mock.base_url
    mock.stop()


@pytest.fixture(scope="session")
def keyed_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a tiny-model mock that requires `Authorization: Bearer KEYED_TOKEN`."""
    mock = start_mock(tmp_path_factory.mktemp("mock") / "keyed.log", "--model", "tiny", "--api-key", KEYED_TOKEN)
    yield mock.base_url
    mock.stop()


@pytest.fixture(scope="session")
def real_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the real-model (SmolLM2) mock; only slow tests use it."""
    mock = start_mock(tmp_path_factory.mktemp("mock") / "real.log", "--model", "smollm2",
                      "--strict-models", timeout=REAL_START_TIMEOUT_S)
    yield mock.base_url
    mock.stop()


LOAD_DELAY_S = 3.0  # long enough for the suite's first requests to see the loading model


@pytest.fixture()
def loading_mock(tmp_path: Path) -> Iterator[str]:
    """Base URL of a fresh tiny mock that reports its model as loading (503) for its first seconds."""
    mock = start_mock(tmp_path / "loading.log", "--model", "tiny", "--load-delay", str(LOAD_DELAY_S), ready=False)
    yield mock.base_url
    mock.stop()


@pytest.fixture(scope="session")
def proxy(tiny_mock: str) -> Iterator[BreakingProxy]:
    """A breaking proxy in front of the open tiny mock (identity until a test calls `use`)."""
    with BreakingProxy(tiny_mock) as running:
        yield running


@pytest.fixture(scope="session")
def keyed_proxy(keyed_mock: str) -> Iterator[BreakingProxy]:
    """A breaking proxy in front of the token-requiring tiny mock."""
    with BreakingProxy(keyed_mock) as running:
        yield running


@pytest.fixture()
def using(request: pytest.FixtureRequest) -> Iterator[Callable[..., BreakingProxy]]:
    """use(breaker, proxy fixture name="proxy") -> that proxy with the breaker; identity again afterwards."""
    used: list[BreakingProxy] = []

    def use(breaker: Breaker, name: str = "proxy") -> BreakingProxy:
        proxy: BreakingProxy = request.getfixturevalue(name)
        used.append(proxy.use(breaker))
        return proxy
    yield use
    for proxy in used:
        proxy.use(IDENTITY)
