"""The request log (--record-requests, the pytest fixture's `chatconform_requests`): what is recorded, when,
with credentials redacted, bounded, and readable over HTTP at /mock/requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from mock_server.backend import EngineBackend
from mock_server.request_log import RecordedRequest, RequestLog, decode_body, make_entry, redact
from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, stream_chunks, tiny_config, wait_until

URL = "/v1/chat/completions"


@pytest.fixture(scope="module")
def recording(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    """A server that records requests (faults allowed)."""
    with ServerThread(tiny_config(record_requests=True, allow_faults=True), tiny_backend) as srv:
        yield srv


@pytest.fixture()
def log(recording: ServerThread) -> RequestLog:
    recording.requests.clear()
    return recording.requests


def _entry(path: str = URL, size: int = 0) -> RecordedRequest:
    return make_entry(method="POST", path=path, query={}, headers={}, raw=b"x" * size, status=200, streamed=False,
                      timestamp=0.0)


def test_log_is_a_bounded_ring_buffer() -> None:
    log = RequestLog(max_entries=3, max_bytes=100)
    for i in range(5):
        log.record(_entry(f"/p{i}"))
    assert [e.path for e in log.all()] == ["/p2", "/p3", "/p4"] and len(log) == 3
    log.clear()
    for i in range(3):
        log.record(_entry(f"/b{i}", 40), 40)
    assert [e.path for e in log] == ["/b1", "/b2"]  # 120 bytes would pass the byte bound
    log.record(_entry("/huge", 500), 500)
    assert [e.path for e in log] == ["/huge"]  # the newest entry stays even alone over the bound
    log.clear()
    with pytest.raises(LookupError):
        log.last()


def test_log_takes_entries_from_many_threads() -> None:
    log = RequestLog(max_entries=1000)
    threads = [threading.Thread(target=lambda: [log.record(_entry()) for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log) == 800 and len(log.chat()) == 800


def test_credentials_are_redacted_and_bodies_decoded() -> None:
    assert redact("Authorization", "Bearer sk-secret") == "Bearer ***"
    assert redact("authorization", "sk-secret") == "***"
    assert redact("x-api-key", "k") == "***" and redact("x-use-cache", "false") == "false"
    assert decode_body(b'{"a": 1}') == ({"a": 1}, None)
    assert decode_body(b"not json \xff") == (None, "not json \ufffd")
    assert decode_body(b"") == (None, None)
    entry = make_entry(method="GET", path="/x", query={"a": "1"}, headers={"Authorization": "Bearer t", "X-A": "1"},
                       raw=None, status=200, streamed=False, timestamp=1.0)
    assert entry.headers == {"authorization": "Bearer ***", "x-a": "1"} and entry.to_json()["query"] == {"a": "1"}


def test_chat_requests_are_recorded_with_their_answers(recording: ServerThread, log: RequestLog) -> None:
    before = time.time()
    with httpx.Client(base_url=recording.base_url, timeout=60) as c:
        plain = c.post(URL + "?trace=1", json=chat_body(max_tokens=2), headers={"Authorization": "Bearer sk-secret"})
        streamed = c.post(URL, json=chat_body(max_tokens=2, stream=True))
        # The entry is there as soon as the client has its answer, streamed or not.
        assert len(log) == 2
        bad = c.post(URL, content=b"{oops", headers={"Content-Type": "application/json"})
        c.get("/health")
    assert plain.status_code == streamed.status_code == 200 and bad.status_code == 400
    stream_chunks(streamed.text)
    first, second, third, fourth = log.all()
    assert (first.method, first.path, first.query, first.status, first.streamed) == ("POST", URL, {"trace": "1"},
                                                                                     200, False)
    assert first.headers["authorization"] == "Bearer ***"
    assert "sk-secret" not in repr(log.all())
    assert first.body == chat_body(max_tokens=2) and first.text is None
    assert before <= first.timestamp <= second.timestamp <= time.time()
    assert second.streamed and second.status == 200 and second.body["stream"] is True
    assert third.status == 400 and third.body is None and third.text == "{oops"
    assert (fourth.method, fourth.path, fourth.body, fourth.is_chat) == ("GET", "/health", None, False)
    assert log.last() == fourth
    assert [e.status for e in log.chat()] == [200, 200, 400]
    assert log.chat_bodies() == [chat_body(max_tokens=2), chat_body(max_tokens=2, stream=True), None]


def test_a_client_that_leaves_before_any_answer_is_recorded_as_499(recording: ServerThread, log: RequestLog) -> None:
    with httpx.Client(base_url=recording.base_url, timeout=httpx.Timeout(60, read=0.3)) as c, \
            pytest.raises(httpx.ReadTimeout):
        c.post(URL, json=chat_body(max_tokens=1), headers={"x-mock-fault": "stall=3"})
    wait_until(lambda: len(log) == 1, "the abandoned request was recorded")
    entry = log.last()
    assert entry.status == 499 and entry.body == chat_body(max_tokens=1) and not entry.streamed
    assert entry.headers["x-mock-fault"] == "stall=3"


def test_the_log_is_served_at_mock_requests(recording: ServerThread, log: RequestLog) -> None:
    with httpx.Client(base_url=recording.base_url, timeout=60) as c:
        c.post(URL, json=chat_body(max_tokens=1), headers={"Authorization": "Bearer sk-secret"})
        listed = c.get("/mock/requests")
        assert listed.status_code == 200
        data = listed.json()["data"]
        assert [(e["method"], e["path"], e["status"]) for e in data] == [("POST", URL, 200)]
        assert data[0]["headers"]["authorization"] == "Bearer ***" and data[0]["body"] == chat_body(max_tokens=1)
        assert c.get("/info").json()["features"]["request_log"] == "/mock/requests"
        assert c.delete("/mock/requests").status_code == 204
        assert c.get("/mock/requests").json()["data"] == []
    assert len(log) == 0  # reading or clearing the log is not recorded


def test_the_log_is_off_unless_asked_for(server: ServerThread, client: httpx.Client) -> None:
    assert client.get("/mock/requests").status_code == 404
    assert client.get("/info").json()["features"]["request_log"] is False
    with pytest.raises(RuntimeError, match="record_requests"):
        server.requests  # noqa: B018


def test_the_log_needs_the_key_and_keeps_refused_bodies(tiny_backend: EngineBackend) -> None:
    with ServerThread(tiny_config(record_requests=True, api_key="k"), tiny_backend) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=60) as c:
        refused = c.post(URL, json=chat_body(max_tokens=1), headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert c.get("/mock/requests").status_code == 401
        listed = c.get("/mock/requests", headers={"Authorization": "Bearer k"}).json()["data"]
    # The refused request is there with the body it was refused before reading; the log's own route is not.
    assert [(e["status"], e["body"]) for e in listed] == [(401, chat_body(max_tokens=1))]
    assert listed[0]["headers"]["authorization"] == "Bearer ***"
