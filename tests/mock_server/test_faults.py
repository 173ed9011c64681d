"""x-mock-fault: each fault breaks exactly its rule, and only on a server started with --allow-faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, sse_events, stream_chunks, tiny_config


@pytest.fixture(scope="module")
def faulty(tiny_backend) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with ServerThread(tiny_config(allow_faults=True), tiny_backend) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=60) as c:
        yield c


def post(c: httpx.Client, fault: str, **fields: object) -> httpx.Response:
    return c.post("/v1/chat/completions", json=chat_body(**fields), headers={"x-mock-fault": fault})


def test_faults_are_refused_unless_allowed(client: httpx.Client) -> None:
    r = post(client, "no-done")
    assert r.status_code == 400 and "--allow-faults" in r.json()["error"]


def test_unknown_fault_is_400(faulty: httpx.Client) -> None:
    r = post(faulty, "explode")
    assert r.status_code == 400 and "explode" in r.json()["error"]


def test_body_faults(faulty: httpx.Client) -> None:
    r = post(faulty, "http-500")
    assert r.status_code == 500 and r.json()["error_type"] == "internal"
    body = post(faulty, "no-id,bad-usage").json()
    assert "id" not in body
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] + 1
    r = post(faulty, "wrong-content-type")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert json.loads(r.text)["object"] == "chat.completion"


def test_stream_faults(faulty: httpx.Client) -> None:
    usage = {"stream": True, "stream_options": {"include_usage": True}}
    chunks = stream_chunks(post(faulty, "no-role", **usage).text)
    assert "role" not in chunks[0]["choices"][0]["delta"]
    chunks = stream_chunks(post(faulty, "double-finish", **usage).text)
    assert sum(1 for c in chunks for ch in c["choices"] if ch["finish_reason"]) == 2
    chunks = stream_chunks(post(faulty, "no-usage-chunk", **usage).text)
    assert all(c["choices"] for c in chunks)
    events = sse_events(post(faulty, "no-done", **usage).text)
    assert events[-1] != "[DONE]" and json.loads(events[-1])["usage"]
    events = sse_events(post(faulty, "error-mid-stream", **usage).text)
    assert json.loads(events[-1])["error_type"] == "internal" and "[DONE]" not in events
    assert len(events) == 3  # role chunk, one token chunk, the error event


def test_stall_delays_the_answer(faulty: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        faulty.post("/v1/chat/completions", json=chat_body(max_tokens=1), headers={"x-mock-fault": "stall=3"},
                    timeout=httpx.Timeout(60, read=0.5))
    assert post(faulty, "stall=0", max_tokens=1).status_code == 200


def test_slow_holds_every_token_back(faulty: httpx.Client) -> None:
    start = time.monotonic()
    r = post(faulty, "slow=0.25", max_tokens=2, seed=3)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    assert time.monotonic() - start >= 0.5  # 2 tokens x 0.25 s
    start = time.monotonic()
    text = post(faulty, "slow=0.25", max_tokens=2, seed=3, stream=True).text
    assert time.monotonic() - start >= 0.5
    assert stream_chunks(text)[-1]["choices"][0]["finish_reason"] == "length"


def test_fault_values_are_checked(faulty: httpx.Client) -> None:
    for header, words in (("slow=11", "[0, 10]"), ("slow", "needs seconds"), ("stall=-1", "[0, 120]"),
                          ("no-done=1", "takes no value")):
        r = post(faulty, header)
        assert r.status_code == 400 and words in r.json()["error"], (header, r.text)
