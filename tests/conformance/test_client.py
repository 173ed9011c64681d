"""The suite's HTTP client: strict SSE parsing from raw bytes, stall timeout, evidence and curl lines, and
transport failures kept apart from answers (retry on a fresh connection, NoAnswer, bounded reads)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from conformance.client import Exchange, NoAnswer, Target, TargetUnreachable
from conformance.config import ConfigError, SuiteConfig, load_config
from conformance.embedded import free_port
from conformance.exchange import header_argument
from conformance.sse import SseParser, parse_sse
from conformance.transport import TRANSPORT_ANSWER, UNRESPONSIVE_AFTER
from tests.conformance.rawserver import RawServer, json_answer, sse_head

MODELS = json_answer(200, json.dumps({"object": "list", "data": [{"id": "m1", "object": "model"}]}))
CHUNK = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]}


def event(payload: object, end: bytes = b"\n") -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return b"data: " + text.encode() + end + end


# -- the parser --------------------------------------------------------------------------------

def test_well_formed_stream_parses_into_chunks_and_done() -> None:
    parsed = parse_sse(event(CHUNK) + b": keep-alive\n\n" + event("[DONE]"))
    assert parsed.chunks == [CHUNK]
    assert parsed.data == [json.dumps(CHUNK), "[DONE]"]
    assert parsed.done and not parsed.after_done and not parsed.framing_errors
    assert parsed.raw_lines == [f"data: {json.dumps(CHUNK)}", "", ": keep-alive", "", "data: [DONE]", ""]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_every_line_terminator_of_the_sse_grammar_is_accepted(end: bytes) -> None:
    parsed = parse_sse(event(CHUNK, end) + event("[DONE]", end))
    assert parsed.chunks == [CHUNK] and parsed.done and not parsed.framing_errors


def test_crlf_split_across_reads_is_one_terminator() -> None:
    parser = SseParser()
    raw = event(CHUNK, b"\r\n") + event("[DONE]", b"\r\n")
    for i in range(len(raw)):  # one byte per read: every CR arrives without its LF
        parser.feed(raw[i:i + 1])
    parsed = parser.close()
    assert parsed.chunks == [CHUNK] and parsed.done
    assert parsed.raw_lines.count("") == 2  # no phantom blank lines from the CR/LF split


def test_a_line_that_is_no_sse_field_is_a_framing_error() -> None:
    parsed = parse_sse(b"hello world\n\n" + b'{"raw": "json"}\n\n' + event("[DONE]"))
    assert len(parsed.framing_errors) == 2
    assert "no field name" in parsed.framing_errors[0]


def test_an_unknown_field_name_is_a_framing_error_but_event_id_retry_are_fine() -> None:
    parsed = parse_sse(b"event: message\nid: 1\nretry: 10\n" + event(CHUNK) + b"dtaa: x\n\n")
    assert parsed.chunks == [CHUNK]
    assert parsed.framing_errors == ["line 6: unknown field 'dtaa' (expected data, event, id, retry or a ':' comment)"]


def test_missing_blank_line_merges_events_and_missing_final_blank_is_reported() -> None:
    parsed = parse_sse(b"data: {\"a\": 1}\ndata: {\"b\": 2}\n")
    assert parsed.data == ['{"a": 1}\n{"b": 2}']  # SSE joins consecutive data lines into one event
    assert parsed.non_json_events == ['{"a": 1}\n{"b": 2}']
    assert any("before the blank line" in e for e in parsed.framing_errors)


def test_stream_ending_inside_a_line_is_reported() -> None:
    parsed = parse_sse(event(CHUNK) + b"data: [DO")
    assert not parsed.done
    assert any("inside a line" in e for e in parsed.framing_errors)


def test_lines_after_done_and_error_events_are_collected() -> None:
    error = {"error": "boom", "error_type": "generation"}
    parsed = parse_sse(event(CHUNK) + event(error) + event("[DONE]") + event(CHUNK))
    assert parsed.error_event == error and parsed.chunks == [CHUNK]
    assert parsed.after_done == [f"data: {json.dumps(CHUNK)}"]


def test_non_object_json_and_invalid_utf8_are_recorded() -> None:
    parsed = parse_sse(b"data: [1, 2]\n\n" + b"data: \xff\xfe\n\n")
    assert parsed.non_json_events[0] == "[1, 2]"
    assert any("not UTF-8" in e for e in parsed.framing_errors)


# -- the client against a scripted server --------------------------------------------------------

def make_target(base_url: str, **kw: object) -> Target:
    return Target(SuiteConfig(base_url=base_url, model="m1", **kw))  # type: ignore[arg-type]


def test_stream_that_stalls_is_abandoned_after_the_timeout() -> None:
    script = [sse_head(), event(CHUNK), 30.0, event("[DONE]")]
    with RawServer(script, get_script=[MODELS]) as server:
        target = make_target(server.base_url, timeout=0.5)
        ex = target.chat_stream(target.body(stream=True))
    assert ex.stalled and not ex.done
    assert ex.chunks == [CHUNK] and ex.first_event_s is not None
    assert ex.elapsed_s < 10  # abandoned, not waited out


def test_stream_that_keeps_trickling_hits_the_overall_deadline() -> None:
    script = [sse_head()] + [b": ping\n\n", 0.1] * 200
    with RawServer(script, get_script=[MODELS]) as server:
        target = make_target(server.base_url, timeout=0.3)
        ex = target.chat_stream(target.body(stream=True))
    assert ex.overran and not ex.done


def test_crlf_stream_over_http_and_evidence_keeps_raw_lines() -> None:
    script = [sse_head(), event(CHUNK, b"\r\n"), event("[DONE]", b"\r\n")]
    with RawServer(script, get_script=[MODELS]) as server:
        target = make_target(server.base_url, api_key="s3cret")
        ex = target.chat_stream(target.body(stream=True))
        sent = server.received[-1]
    assert ex.status == 200 and ex.done and ex.chunks == [CHUNK] and not ex.framing_errors
    evidence = ex.evidence()
    assert evidence["sse_lines"][0] == f"data: {json.dumps(CHUNK)}"
    assert evidence["request"]["headers"]["Authorization"] == "***"
    assert b"Authorization: Bearer s3cret" in sent
    assert "s3cret" not in json.dumps(evidence)


def test_models_are_discovered_and_body_overrides_remove_none() -> None:
    with RawServer([MODELS]) as server:
        target = Target(SuiteConfig(base_url=server.base_url + "/v1/"))
    assert target.config.base_url == server.base_url
    assert target.model == "m1" and target.models == ["m1"]
    body = target.body(max_tokens=None, temperature=0)
    assert body == {"model": "m1", "messages": [{"role": "user", "content": "Say hello."}], "temperature": 0}


def test_unreachable_target_raises_a_suite_side_error() -> None:
    with pytest.raises(TargetUnreachable, match="cannot connect"):
        Target(SuiteConfig(base_url=f"http://127.0.0.1:{free_port()}"))


def test_curl_line_reproduces_a_redacted_key_from_the_environment() -> None:
    ex = Exchange("POST", "http://h/v1/chat/completions", {"Content-Type": "application/json", "Authorization": "***"},
                  '{"a": "it\'s"}', 400, {}, "{}", 0.1)
    words = shlex.split(ex.curl())
    assert words[:5] == ["curl", "-sS", "-X", "POST", "http://h/v1/chat/completions"]
    assert "Authorization: Bearer $CHATCONFORM_API_KEY" in words
    assert words[-1] == '{"a": "it\'s"}'


def test_evidence_truncates_large_bodies() -> None:
    ex = Exchange("POST", "http://h/x", {}, "x" * 200_000, 413, {}, "y" * 100_000, 0.1)
    evidence = ex.evidence()
    assert len(evidence["request"]["body"]) < 70_000 and "truncated" in evidence["body"]


def test_delay_paces_requests() -> None:
    with RawServer([MODELS]) as server:
        target = make_target(server.base_url, delay=0.3)
        target.get("/v1/models")
        first = target._last_request
        target.get("/v1/models")
    assert target._last_request - first >= 0.3


# -- concurrency, pacing, the burst ----------------------------------------------------------------

SLOW_OK = [0.3, json_answer(200, json.dumps({"ok": True}))]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_many_keeps_at_most_concurrency_requests_in_flight(concurrency: int) -> None:
    with RawServer(SLOW_OK, get_script=[MODELS]) as server:
        target = make_target(server.base_url, concurrency=concurrency)
        started = time.monotonic()
        answers = target.many(lambda i=i: target.chat(target.body(max_tokens=i)) for i in range(8))
        elapsed = time.monotonic() - started
    assert [json.loads(ex.request_body or "")["max_tokens"] for ex in answers] == list(range(8))  # in order
    assert server.max_active == concurrency == target.max_in_flight
    assert elapsed >= 0.3 * 8 / concurrency


def test_many_raises_the_first_exception_in_order_after_all_ran() -> None:
    ran: list[int] = []

    def job(i: int) -> int:
        ran.append(i)
        if i in (2, 3):
            raise ValueError(f"job {i}")
        return i

    with RawServer([MODELS]) as server:
        serial, parallel = make_target(server.base_url), make_target(server.base_url, concurrency=4)
    with pytest.raises(ValueError, match="job 2"):
        serial.many(lambda i=i: job(i) for i in range(6))
    assert ran == [0, 1, 2]  # one at a time: the first failure stops the rest, as a loop would
    ran.clear()
    with pytest.raises(ValueError, match="job 2"):
        parallel.many(lambda i=i: job(i) for i in range(6))
    assert sorted(ran) == list(range(6))
    assert parallel.many([]) == [] and parallel.many([lambda: 1]) == [1]


def test_delay_spaces_the_starts_of_parallel_requests() -> None:
    with RawServer([json_answer(200, "{}")], get_script=[MODELS]) as server:
        target = make_target(server.base_url, concurrency=4, delay=0.25)
        started = time.monotonic()
        target.many([lambda: target.chat()] * 4)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.7  # 4 starts, 0.25 s apart (the first waits for the model discovery's answer)


def test_burst_sends_everything_at_once_whatever_the_concurrency() -> None:
    throttled = json_answer(429, json.dumps({"error": "slow down"})).replace(
        b"\r\n\r\n", b"\r\nRetry-After: 2\r\n\r\n", 1)
    with RawServer([0.3, throttled], get_script=[MODELS]) as server:
        target = make_target(server.base_url)  # concurrency 1
        answers = target.burst([target.body(max_tokens=1) for _ in range(12)], headers={"x-use-cache": "false"})
    assert [ex.status for ex in answers] == [429] * 12
    assert server.max_active >= 6  # sent together, not one at a time
    assert target.max_in_flight == 1  # the burst takes no slot (only the model discovery did)
    assert len(target.throttled) == 12 and target.throttled[0].header("retry-after") == "2"
    assert target.burst([]) == []


# -- exact evidence: only the configured key is redacted ---------------------------------------------

@pytest.mark.parametrize(("sent", "shown"), [
    ({}, "***"),  # the configured key: redacted, reproduced from $CHATCONFORM_API_KEY
    ({"Authorization": "Bearer chatconform-wrong-token"}, "Bearer chatconform-wrong-token"),
    ({"Authorization": "Bearer"}, "Bearer"),  # an empty Bearer (HTTP forbids a trailing space)
])
def test_curl_line_sends_the_authorization_that_was_judged(sent: dict[str, str], shown: str) -> None:
    with RawServer([json_answer(401, '{"error": "no"}')], get_script=[MODELS]) as server:
        target = make_target(server.base_url, api_key="s3cret")
        ex = target.chat(target.body(), headers=sent)
        replay = subprocess.run(["bash", "-c", ex.curl()], env={**os.environ, "CHATCONFORM_API_KEY": "s3cret"},
                                capture_output=True, timeout=60, check=False)
        original, replayed = server.received[-2], server.received[-1]
    assert ex.evidence()["request"]["headers"]["Authorization"] == shown
    assert replay.returncode == 0, replay.stderr
    authorization = [line for line in original.split(b"\r\n") if line.lower().startswith(b"authorization:")]
    assert authorization and authorization[0] in replayed.split(b"\r\n")  # the very header that was judged
    assert replayed.endswith(original.partition(b"\r\n\r\n")[2])  # and the same body
    if shown != "***":
        assert "s3cret" not in ex.curl() and "CHATCONFORM_API_KEY" not in ex.curl()


def test_the_key_inside_another_header_value_is_redacted_and_expanded() -> None:
    assert header_argument("x-api-key", "${CHATCONFORM_API_KEY}") == '"x-api-key: ${CHATCONFORM_API_KEY}"'
    word = header_argument("x-note", 'a "$b" ${CHATCONFORM_API_KEY}')
    out = subprocess.run(["bash", "-c", f"printf %s {word}"], env={"CHATCONFORM_API_KEY": "K"}, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out == 'x-note: a "$b" K'


# -- transport failures: retried once on a fresh connection, never a status ----------------------------

OK = json_answer(200, json.dumps({"ok": True}), keep_alive=True)
GARBAGE = [b"\x00\x01 this is not HTTP\r\n\r\n"]


def test_a_request_dropped_on_a_kept_alive_connection_is_answered_on_a_fresh_one() -> None:
    with RawServer([OK], reused="drop") as server:
        target = make_target(server.base_url)  # GET /v1/models opens the connection, kept alive
        ex = target.chat()
    assert (ex.status, ex.connection, server.dropped) == (200, "fresh", 1)
    log = target.transport
    assert (log.requests, log.retries, len(log.recovered), log.failures) == (2, 1, 1, [])
    [event] = log.recovered
    assert event.reused and event.attempts[0].status == 0 and event.attempts[0].connection == "reused"
    assert "no HTTP response" in (event.attempts[0].transport_error or "")


def test_a_request_never_answered_raises_no_answer_rooted_in_the_transport_clause() -> None:
    with RawServer(GARBAGE, get_script=[MODELS]) as server:
        target = make_target(server.base_url)
        with pytest.raises(NoAnswer) as caught:
            target.chat()
        sent = len(server.received)
    error = caught.value
    assert error.root == TRANSPORT_ANSWER and "judged by transport.answer.every-request" in error.message
    assert [ex.status for ex in error.exchanges] == [0, 0]  # the first attempt and the retry on a fresh connection
    assert sent == 3 and target.transport.retries == 1 and len(target.transport.failures) == 1
    evidence = error.evidence()[-1]
    assert evidence["transport_error"].startswith("no HTTP response: RemoteProtocolError")
    assert evidence["connection"] == "fresh" and evidence["body"].startswith("[no answer: ")


def test_consecutive_requests_without_an_answer_stop_the_run_from_sending() -> None:
    with RawServer(GARBAGE) as server:
        target = make_target(server.base_url)  # the discovery gets no answer: no model list, not unreachable
        for _ in range(UNRESPONSIVE_AFTER - 1):
            with pytest.raises(NoAnswer):
                target.chat()
        sent = len(server.received)
        with pytest.raises(NoAnswer, match="target unresponsive: 3 consecutive requests got no answer"):
            target.chat_stream(target.body(stream=True))
        with pytest.raises(NoAnswer) as caught:
            target.chat()
        assert len(server.received) == sent  # nothing was sent once the target was unresponsive
    assert target.models == [] and target.unresponsive is not None
    assert caught.value.exchanges[-1].transport_error.startswith("not sent: target unresponsive")


def test_an_answer_resets_the_count_of_consecutive_failures() -> None:
    with RawServer(GARBAGE, get_script=[MODELS]) as server:
        target = make_target(server.base_url)
        for _ in range(2 * UNRESPONSIVE_AFTER):
            with pytest.raises(NoAnswer):
                target.chat()
            target.get("/v1/models")
    assert target.unresponsive is None and len(target.transport.failures) == 2 * UNRESPONSIVE_AFTER


def huge_body(size: int) -> Iterator[bytes]:
    """A 200 answer with a body of `size` bytes, produced lazily in 1 MiB pieces."""
    yield f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
    piece = b"x" * (1 << 20)
    for _ in range(size >> 20):
        yield piece


def test_a_body_over_the_size_limit_is_cut_and_is_no_answer() -> None:
    with RawServer(lambda request: huge_body(1 << 30), get_script=[MODELS]) as server:
        target = make_target(server.base_url, max_response_bytes=1 << 20)
        with pytest.raises(NoAnswer) as caught:
            target.chat()
    [ex] = caught.value.exchanges  # not sent again: it would only cost as much
    assert ex.status == 0 and ex.headers["content-length"] == str(1 << 30)
    assert "larger than 1048576 bytes (--max-response-bytes)" in (ex.transport_error or "")
    assert 64 * 1024 < len(ex.body_text) < 70 * 1024  # what arrived, kept as evidence up to the evidence limit


def test_a_stream_over_the_size_limit_is_no_answer() -> None:
    def endless(request: bytes) -> Iterator[bytes]:
        yield sse_head()
        while True:
            yield event(CHUNK) * 100

    with RawServer(endless, get_script=[MODELS]) as server:
        target = make_target(server.base_url, max_response_bytes=1 << 20)
        with pytest.raises(NoAnswer, match="larger than 1048576 bytes"):
            target.chat_stream(target.body(stream=True))


def test_a_body_that_never_ends_meets_the_overall_deadline() -> None:
    def trickle(request: bytes) -> Iterator[bytes | float]:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        while True:
            yield b" "
            yield 0.05

    with RawServer(trickle, get_script=[MODELS]) as server:
        target = make_target(server.base_url, timeout=0.5)
        with pytest.raises(NoAnswer, match="still arriving after 2 s") as caught:
            target.chat()
    assert len(caught.value.exchanges) == 1  # not sent again: it would only take as long


def test_a_target_that_was_reached_and_then_refuses_connections_gives_no_answer() -> None:
    with RawServer([MODELS]) as server:
        target = make_target(server.base_url)
    with pytest.raises(NoAnswer, match="ConnectError"):  # not TargetUnreachable: it was reached before
        target.chat()


def test_a_stream_without_a_response_head_is_retried_but_a_broken_stream_is_returned() -> None:
    cut_short = [sse_head(), event(CHUNK)]  # then the connection closes: no [DONE]
    with RawServer(cut_short, get_script=[MODELS]) as server:
        target = make_target(server.base_url)
        stream = target.chat_stream(target.body(stream=True))
    assert stream.status == 200 and stream.chunks == [CHUNK] and not stream.done
    assert target.transport.retries == 0  # a response came: the stream clauses judge it
    with RawServer(GARBAGE, get_script=[MODELS]) as server:
        target = make_target(server.base_url)
        with pytest.raises(NoAnswer) as caught:
            target.chat_stream(target.body(stream=True))
    assert [ex.status for ex in caught.value.exchanges] == [0, 0]


def test_burst_leaves_out_requests_without_an_answer() -> None:
    with RawServer(GARBAGE, get_script=[MODELS]) as server:
        target = make_target(server.base_url)
        answers = target.burst([target.body(max_tokens=1) for _ in range(4)])
    assert answers == [] and target.transport.burst_unanswered == 4
    assert target.transport.failures == [] and target.transport.retries == 0  # tolerated, never judged


@pytest.mark.parametrize("value", [0, 1023, "many"])
def test_max_response_bytes_must_be_an_integer_of_at_least_1_kib(value: object) -> None:
    with pytest.raises(ConfigError, match="max_response_bytes: must be"):
        load_config({"base_url": "http://h", "max_response_bytes": value})
