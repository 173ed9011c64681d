"""SSE keep-alive: silences in a stream longer than --keepalive get `: keep-alive` comments; a stall gets none."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from mock_server.backend import EngineBackend
from mock_server.config import load_config
from mock_server.server import ServerThread
from tests.mock_server.conftest import KEEPALIVE, chat_body, split_keepalives, stream_chunks, tiny_config, wait_until

INTERVAL = 0.1


@pytest.fixture(scope="module")
def paced(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    """Faults allowed, a keep-alive after 0.1 s of silence."""
    with ServerThread(tiny_config(allow_faults=True, keepalive=INTERVAL), tiny_backend) as srv:
        yield srv


def _stream(base_url: str, body: dict, headers: dict[str, str] | None = None) -> str:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        r = c.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers or {})
        assert r.status_code == 200, r.text
        return r.text


def test_keepalive_is_configurable_and_defaults_to_15_s() -> None:
    assert load_config({}, env={}).keepalive == 15.0
    assert load_config({}, env={"CHATCONFORM_MOCK_KEEPALIVE": "0"}).keepalive == 0.0
    assert load_config({"keepalive": 2.5}, env={"CHATCONFORM_MOCK_KEEPALIVE": "0"}).keepalive == 2.5


def test_slow_tokens_get_keepalives_and_the_stream_still_parses(paced: ServerThread) -> None:
    body = chat_body(max_tokens=3, seed=4)
    text = _stream(paced.base_url, body, {"x-mock-fault": "slow=0.45"})
    events, keepalives = split_keepalives(text)
    assert keepalives >= 1, text
    chunks = stream_chunks(events)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    plain = _stream(paced.base_url, body, {"x-use-cache": "false"})
    assert split_keepalives(plain)[1] == 0  # no silence, no comment
    assert content == "".join(c["choices"][0]["delta"].get("content") or "" for c in stream_chunks(plain))


def test_official_client_ignores_keepalives(paced: ServerThread) -> None:
    oai = openai.OpenAI(base_url=paced.base_url + "/v1", api_key="sk-anything", max_retries=0, timeout=60)
    chunks = list(oai.chat.completions.create(model="chatconform/tiny-random", max_tokens=2, seed=4, stream=True,
                                              messages=[{"role": "user", "content": "hi"}],
                                              extra_headers={"x-mock-fault": "slow=0.35"}))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices[0].delta.content) <= 2


def test_stall_stays_silent(paced: ServerThread) -> None:
    """A stall is a dead server: no keep-alive, not even headers, so the client's read timeout fires."""
    with httpx.Client(base_url=paced.base_url, timeout=httpx.Timeout(60, read=0.6)) as c, \
            pytest.raises(httpx.ReadTimeout):
        c.post("/v1/chat/completions", json=chat_body(max_tokens=1, stream=True), headers={"x-mock-fault": "stall=2"})


def test_waiting_in_the_queue_gets_keepalives_before_the_first_token(paused_backend: EngineBackend) -> None:
    gate = paused_backend.generator.running_gate
    wait_until(lambda: paused_backend.stats()["outstanding"] == 0, "the server is idle")
    gate.clear()
    texts: dict[int, str] = {}
    try:
        with ServerThread(tiny_config(keepalive=INTERVAL), paused_backend) as srv:
            def run(seed: int) -> None:
                texts[seed] = _stream(srv.base_url, chat_body(max_tokens=4, seed=seed), {"x-use-cache": "false"})

            threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
            for t in threads:
                t.start()
            wait_until(lambda: paused_backend.stats()["waiting"] == 2, "both requests wait for the one batch slot")
            time.sleep(5 * INTERVAL)  # no token comes meanwhile
            gate.set()
            for t in threads:
                t.join(60)
    finally:
        gate.set()
    assert len(texts) == 2
    for text in texts.values():
        events, count = split_keepalives(text)
        assert count >= 2, text
        assert text.split("\n\n")[1] == KEEPALIVE, text  # right after the role chunk, before any token
        assert stream_chunks(events)[-1]["choices"][0]["finish_reason"] == "length"


def test_zero_disables_keepalives(paused_backend: EngineBackend) -> None:
    gate = paused_backend.generator.running_gate
    wait_until(lambda: paused_backend.stats()["outstanding"] == 0, "the server is idle")
    gate.clear()
    try:
        with ServerThread(tiny_config(keepalive=0), paused_backend) as srv, \
                httpx.Client(base_url=srv.base_url, timeout=60) as c, \
                c.stream("POST", "/v1/chat/completions", json=chat_body(max_tokens=2, stream=True)) as r:
            stream = r.iter_bytes()
            head = next(stream)  # the role chunk
            time.sleep(5 * INTERVAL)  # no token comes meanwhile
            gate.set()
            text = (head + b"".join(stream)).decode()
    finally:
        gate.set()
    assert KEEPALIVE not in text
    assert stream_chunks(text)[-1]["choices"][0]["finish_reason"] == "length"
