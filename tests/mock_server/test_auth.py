"""authorization: with a key, a missing or wrong bearer token is 401 with the envelope; without one, anything goes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mock_server.server import ServerThread
from spec import schemas
from tests.mock_server.conftest import chat_body, tiny_config

KEY = "hf_test_secret"


@pytest.fixture(scope="module")
def locked(tiny_backend) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    with ServerThread(tiny_config(api_key=KEY), tiny_backend) as srv:
        yield srv


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer hf_test_secre", "Basic aGk6aGk=", "Bearer",
                                    "hf_test_secret"])
def test_missing_or_wrong_token_is_401(locked: ServerThread, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
        r = httpx.request(method, locked.base_url + path, json=chat_body(), headers=headers, timeout=30)
        assert r.status_code == 401, (path, header, r.text)
        assert schemas.validate("ErrorHf", r.json()) == []
        assert r.json()["error_type"] == "authentication"


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"bearer {KEY}", f"Bearer: {KEY}"])
def test_right_token_is_accepted(locked: ServerThread, header: str) -> None:
    """The standard form, any case of the scheme, and the seeds' `Bearer: <token>` spelling."""
    r = httpx.post(locked.base_url + "/v1/chat/completions", json=chat_body(max_tokens=1),
                   headers={"Authorization": header}, timeout=30)
    assert r.status_code == 200


def test_health_needs_no_token(locked: ServerThread) -> None:
    assert httpx.get(locked.base_url + "/health", timeout=30).status_code == 200


def test_open_server_ignores_any_token(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(max_tokens=1, temperature=0),
                    headers={"Authorization": "Bearer whatever"})
    assert r.status_code == 200
