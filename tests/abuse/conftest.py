"""Servers for the abuse tests: `python -m mock_server --model tiny` subprocesses under a memory cap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.abuse.harness import MockProcess

API_KEY = "abuse-test-key-4f2a"


@pytest.fixture(scope="module")
def guarded() -> Iterator[MockProcess]:
    """A server that requires API_KEY."""
    with MockProcess("--api-key", API_KEY) as server:
        yield server


@pytest.fixture()
def auth() -> dict[str, str]:
    """Headers that pass the guarded server's key check."""
    return {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
